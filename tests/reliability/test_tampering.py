"""The audit trail against an adversary with write access to the database file: each attack is
made with a plain SQL client (sqlite3, psycopg), and `verify` names it — with no key where the
chain alone tells, with a key or a witness where only they can."""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.codec import StoredEvent
from projections.verify import KeyRequired, VerifyReport
from store.archive import read_segment, to_line
from store.chain import Chain
from swarmlog.cli import cli
from swarmlog.log import EventLog
from tests import pg
from tests.strategies import EPOCH, fixed_story

KEY = b"k" * 32


# -- a log to attack ------------------------------------------------------------------------------


def make_log(path: Path, *, key: bytes | None = None, prune: bool = True,
             witness: Path | None = None) -> dict[str, Any]:
    """A log of a small swarm: part of it pruned to an archive, a snapshot, and (given a witness
    file) a checkpoint at its head. Returns what the attacks need to know."""
    chain = Chain(key)
    with EventLog(_store(path, chain)) as log:
        log.append(fixed_story(tasks=6))  # ~70 events, stamped from 2025-03-01
        facts: dict[str, Any] = {"head": log.store.head()}
        if prune:
            report = log.prune(before=EPOCH + timedelta(minutes=5), archive=path.parent / "archive")
            facts["cut"], facts["archive"] = report.last_position, report.archive_path
        log.snapshot()
        if witness is not None:
            log.checkpoint(witness, path.parent / "signing.key")
    return facts


def _store(path: Path, chain: Chain) -> Any:
    from store import SQLiteStore

    return SQLiteStore(path, chain=chain)


def verify(path: Path, *, key: bytes | None = None, witness: Path | None = None,
           deep: bool = False) -> VerifyReport:
    with EventLog(_store(path, Chain(key))) as log:
        return log.verify(witness=witness, deep=deep)


def kinds(report: VerifyReport) -> set[tuple[str, int | None]]:
    return {(f.kind, f.position) for f in report.findings}


class Raw:
    """A plain sqlite3 client of the file, guards lifted as an attacker would lift them."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.create_function("swarmlog_pruning", 0, lambda: 1)  # defines the gate itself
        self.guard = self.conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'event_log_no_update'").fetchone()[0]
        self.conn.execute("DROP TRIGGER event_log_no_update")

    def __call__(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def row(self, position: int) -> StoredEvent:
        (found,) = self("SELECT seq, id, event_type, source, task_id, agent_id, data, timestamp, "
                        "stream_id, stream_version, schema_version, conforms, hash FROM event_log "
                        "WHERE seq = ?", position)
        return StoredEvent(*found)

    def close(self) -> None:
        self.conn.execute(self.guard)
        self.conn.close()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    path = tmp_path / "log.db"
    yield path, make_log(path)


def attack(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    raw = Raw(path)
    for sql, params in statements:
        raw(sql, *params)
    raw.close()


# -- the untampered log ---------------------------------------------------------------------------


def test_an_untampered_log_verifies_with_its_archive_snapshot_and_witness(tmp_path: Path) -> None:
    path, witness = tmp_path / "log.db", tmp_path / "witness"
    make_log(path, witness=witness)
    report = verify(path, witness=witness, deep=True)
    assert report.ok, report.problems
    assert report.archives == 1 and report.snapshots >= 2 and report.events > 30


# -- rows ----------------------------------------------------------------------------------------


def test_a_changed_row_is_named_even_with_its_hash_kept(log: tuple[Path, dict[str, Any]]) -> None:
    path, facts = log
    position = facts["cut"] + 3
    attack(path, ("UPDATE event_log SET data = '{\"bid_sats\":1}' WHERE seq = ?", (position,)))
    assert ("changed", position) in kinds(verify(path))


def test_a_row_whose_hash_is_removed_is_named_inserted(log: tuple[Path, dict[str, Any]]) -> None:
    path, facts = log
    position = facts["cut"] + 3
    attack(path, ("UPDATE event_log SET source = 'forger', hash = NULL WHERE seq = ?", (position,)))
    assert ("inserted", position) in kinds(verify(path))


def test_a_forged_row_with_a_hash_recomputed_without_the_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    facts = make_log(path, key=KEY)
    raw = Raw(path)
    last = raw.row(facts["head"])
    forged = last._replace(position=last.position + 1, id="forged", source="forger",
                           stream_version=last.stream_version + 1)
    forged = forged._replace(hash=Chain().link(last.hash, forged))  # the forger has no key
    raw("INSERT INTO event_log (seq, id, event_type, source, task_id, agent_id, data, timestamp, "
        "stream_id, stream_version, schema_version, conforms, hash) VALUES "
        "(?,?,?,?,?,?,?,?,?,?,?,?,?)", *forged)
    raw("UPDATE swarmlog_streams SET version = version + 1 WHERE stream_id = ?", forged.stream_id)
    raw.close()
    assert ("changed", forged.position) in kinds(verify(path, key=KEY))
    with pytest.raises(KeyRequired):
        verify(path)  # a chain made with a key is not checked without it


@pytest.mark.parametrize("same_stream", [False, True], ids=["two streams", "one task"])
def test_two_rows_swapped_hashes_and_all_are_named_reordered(
        log: tuple[Path, dict[str, Any]], same_stream: bool) -> None:
    path, facts = log
    raw = Raw(path)
    rows = [raw.row(p) for p in range(facts["cut"] + 1, facts["head"] + 1)]
    a = rows[2]
    b = next(r for r in rows[3:] if (r.stream_id == a.stream_id) == same_stream)
    raw("UPDATE event_log SET id = 'moving', stream_version = -1 WHERE seq = ?", a.position)
    for here, there in ((b, a), (a, b)):  # (out of the way first: ids and versions are unique)
        raw("UPDATE event_log SET id = ?, event_type = ?, source = ?, task_id = ?, agent_id = ?, "
            "data = ?, timestamp = ?, stream_id = ?, stream_version = ?, hash = ? WHERE seq = ?",
            there.id, there.event_type, there.source, there.task_id, there.agent_id,
            there.data, there.timestamp, there.stream_id, there.stream_version, there.hash,
            here.position)
    raw.close()
    found = kinds(verify(path))
    assert {("reordered", a.position), ("reordered", b.position)} <= found


def test_a_run_of_middle_rows_deleted_is_named_removed(log: tuple[Path, dict[str, Any]]) -> None:
    path, facts = log
    first = facts["cut"] + 4
    attack(path, ("DELETE FROM event_log WHERE seq BETWEEN ? AND ?", (first, first + 2)))
    assert ("removed", first) in kinds(verify(path))


def test_a_tail_cut_with_the_heads_rolled_back_is_named_truncated_by_the_witness(
        tmp_path: Path) -> None:
    path, witness = tmp_path / "log.db", tmp_path / "witness"
    facts = make_log(path, witness=witness)
    head = facts["head"]
    raw = Raw(path)
    last = raw.row(head)
    raw("DELETE FROM event_log WHERE seq = ?", head)
    raw("UPDATE sqlite_sequence SET seq = ? WHERE name = 'event_log'", head - 1)
    raw("UPDATE swarmlog_streams SET version = version - 1 WHERE stream_id = ?", last.stream_id)
    raw("DELETE FROM swarmlog_snapshots WHERE position = ?", head)
    raw.close()
    assert verify(path).ok  # consistent in itself: only what is kept outside the file can tell
    assert ("truncated", head) in kinds(verify(path, witness=witness))


def test_a_history_rewritten_and_rechained_without_a_key_fails_against_the_witness(
        tmp_path: Path) -> None:
    path, witness = tmp_path / "log.db", tmp_path / "witness"
    facts = make_log(path, witness=witness)
    raw = Raw(path)
    rows = [raw.row(p) for p in range(facts["cut"] + 1, facts["head"] + 1)]
    previous = raw("SELECT cut_hash FROM swarmlog_prunes")[0][0]
    for row in rows:  # one row changed, every hash after it recomputed (no key is needed)
        changed = row._replace(source="forger") if row is rows[3] else row
        previous = Chain().link(previous, changed._replace(hash=None))
        raw("UPDATE event_log SET source = ?, hash = ? WHERE seq = ?", changed.source, previous,
            row.position)
    raw("DELETE FROM swarmlog_snapshots")  # (they are bound to the old chain)
    raw.close()
    assert verify(path).ok
    assert ("changed", facts["head"]) in kinds(verify(path, witness=witness))


# -- prunes, archives, snapshots, the gate ---------------------------------------------------------


def test_an_archive_changed_with_its_recorded_sha256_is_named(
        log: tuple[Path, dict[str, Any]]) -> None:
    path, facts = log
    segment = Path(facts["archive"])
    rows = list(read_segment(segment))
    rows[2] = rows[2]._replace(source="forger")
    with gzip.open(segment, "wb") as out:
        out.write(b"".join(to_line(r) for r in rows))
    digest = hashlib.sha256(segment.read_bytes()).hexdigest()
    attack(path, ("UPDATE swarmlog_prunes SET archive_sha256 = ?", (digest,)))
    assert ("changed archive", rows[2].position) in kinds(verify(path))


@pytest.mark.parametrize("table", ["swarmlog_snapshots", "swarmlog_snapshot_items"])
def test_a_changed_snapshot_or_item_is_named(log: tuple[Path, dict[str, Any]], table: str) -> None:
    path, _ = log
    raw = Raw(path)
    if table == "swarmlog_snapshots":
        raw("UPDATE swarmlog_snapshots SET state = replace(state, '\"completed\":', "
            "'\"failed\":') WHERE id = (SELECT max(id) FROM swarmlog_snapshots)")
    else:
        raw("UPDATE swarmlog_snapshot_items SET state = replace(state, '\"completed\"', "
            "'\"failed\"') WHERE key = (SELECT max(key) FROM swarmlog_snapshot_items "
            "WHERE state LIKE '%\"completed\"%')")
    raw.close()
    assert any(kind == "changed snapshot" for kind, _ in kinds(verify(path)))


def test_a_start_up_passes_over_a_changed_snapshot(log: tuple[Path, dict[str, Any]]) -> None:
    path, _ = log
    with EventLog(path) as honest:
        expected = honest.models.summary.total
    attack(path, ("UPDATE swarmlog_snapshots SET state = replace(state, '\"total\":', "
                  "'\"total\":1000000+') ", ()))
    with EventLog(path) as log:
        assert log.models.summary.total == expected


def test_middle_rows_deleted_under_a_forged_prune_record_are_named(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    make_log(path, prune=False)
    attack(path,
           ("DELETE FROM event_log WHERE seq BETWEEN 5 AND 9", ()),
           ("INSERT INTO swarmlog_prunes (first_position, last_position, count, cutoff, pruned_at)"
            " VALUES (5, 9, 5, '2025-03-01T00:00:00.000000+00:00', "
            "'2025-03-02T00:00:00.000000+00:00')", ()))
    assert any(kind == "forged prune" for kind, _ in kinds(verify(path)))


def test_a_plain_client_cannot_delete_without_dropping_a_guard_first(
        log: tuple[Path, dict[str, Any]]) -> None:
    path, facts = log
    raw = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="swarmlog_pruning"):
        raw.execute("DELETE FROM event_log")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE event_log SET source = 'x'")
    assert raw.execute("SELECT count(*) FROM event_log").fetchone()[0] == facts["head"] - facts["cut"]
    raw.close()


def test_verify_exits_0_1_or_2_and_lists_every_finding_as_json(
        log: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, facts = log
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", str(path), "verify"]).exit_code == 0
    attack(path, ("UPDATE event_log SET source = 'x' WHERE seq = ?", (facts["cut"] + 2,)))
    result = runner.invoke(cli, ["--db", str(path), "verify", "--json"])
    assert result.exit_code == 1
    import json

    findings = json.loads(result.stdout)["findings"]
    assert {"kind": "changed", "table": "event_log", "position": facts["cut"] + 2,
            "detail": "the row does not match its hash"} in findings
    missing = runner.invoke(cli, ["--db", str(path), "verify", "--witness", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "witness" in missing.stderr


# -- PostgreSQL: the same attacks through psycopg ---------------------------------------------------


@pytest.mark.postgres
def test_attacks_on_postgresql_are_named_too(postgres_server: str) -> None:
    url = pg.create_database()
    with EventLog(url) as log:
        log.append(fixed_story(tasks=3))
        head = log.store.head()
        log.snapshot()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE event_log DISABLE TRIGGER USER")
        conn.execute("UPDATE event_log SET data = '{\"bid_sats\":1}' WHERE seq = 5")
        conn.execute("UPDATE event_log SET hash = NULL WHERE seq = 7")
        conn.execute("DELETE FROM event_log WHERE seq BETWEEN 10 AND 11")
        conn.execute("UPDATE swarmlog_snapshots SET state = replace(state, '\"total\":', "
                     "'\"total\":1+')")
        conn.execute("ALTER TABLE event_log ENABLE TRIGGER USER")
    with EventLog(url) as log:
        found = kinds(log.verify())
    assert {("changed", 5), ("inserted", 7), ("removed", 10)} <= found
    assert ("changed snapshot", head) in found


# -- any tampering, on any log ----------------------------------------------------------------------

TAMPERS = ["field", "hash", "delete", "swap", "snapshot", "item", "prune", "archive", "truncate",
           "rechain"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data(), st.sampled_from(TAMPERS), st.booleans())
def test_any_tampering_of_any_log_fails_verify_and_none_passes(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, tamper: str,
        keyed: bool) -> None:
    where = tmp_path_factory.mktemp("tamper")
    path, witness = where / "log.db", where / "witness"
    key = KEY if keyed else None
    facts = make_log(path, key=key, witness=witness)
    assert verify(path, key=key, witness=witness).ok
    cut, head = facts["cut"], facts["head"]
    position = data.draw(st.integers(cut + 1, head), label="position")
    raw = Raw(path)
    if tamper == "field":
        column, value = data.draw(st.sampled_from([
            ("source", "forger"), ("task_id", "t999"), ("agent_id", None), ("data", '{"x":1}'),
            ("timestamp", "2030-01-01T00:00:00.000000+00:00"), ("event_type", "system.info"),
            ("stream_version", 999), ("conforms", 0), ("schema_version", 2)]), label="field")
        if getattr(raw.row(position), column) == value:
            raw.close()
            return  # nothing would change
        raw(f"UPDATE event_log SET {column} = ? WHERE seq = ?", value, position)
    elif tamper == "hash":
        raw("UPDATE event_log SET hash = ? WHERE seq = ?", data.draw(
            st.none() | st.binary(min_size=32, max_size=32)), position)
    elif tamper == "delete":
        raw("DELETE FROM event_log WHERE seq = ?", position)
    elif tamper == "swap":
        other = data.draw(st.integers(cut + 1, head).filter(lambda p: p != position))
        a, b = raw.row(position), raw.row(other)
        raw("UPDATE event_log SET source = ?, data = ?, hash = ? WHERE seq = ?",
            b.source, b.data, b.hash, a.position)
        raw("UPDATE event_log SET source = ?, data = ?, hash = ? WHERE seq = ?",
            a.source, a.data, a.hash, b.position)
        if (a.source, a.data, a.hash) == (b.source, b.data, b.hash):
            raw.close()
            return  # nothing was changed
    elif tamper == "snapshot":
        raw("UPDATE swarmlog_snapshots SET state = replace(state, '\"total\":', '\"total\":7+')")
    elif tamper == "item":
        raw("UPDATE swarmlog_snapshot_items SET state = replace(state, ':0,', ':1,')")
    elif tamper == "prune":
        raw("UPDATE swarmlog_prunes SET count = count + 1")
    elif tamper == "archive":
        segment = Path(facts["archive"])
        rows = list(read_segment(segment))
        index = data.draw(st.integers(0, len(rows) - 1))
        rows[index] = rows[index]._replace(source="forger")
        with gzip.open(segment, "wb") as out:
            out.write(b"".join(to_line(r) for r in rows))
        raw("UPDATE swarmlog_prunes SET archive_sha256 = ?",
            hashlib.sha256(segment.read_bytes()).hexdigest())
    elif tamper == "truncate":
        for seq in range(head, position - 1, -1):
            raw("DELETE FROM event_log WHERE seq = ?", seq)
        raw("UPDATE sqlite_sequence SET seq = ? WHERE name = 'event_log'", position - 1)
    elif tamper == "rechain":
        previous = raw("SELECT cut_hash FROM swarmlog_prunes")[0][0]
        for p in range(cut + 1, head + 1):
            row = raw.row(p)
            if p == position:
                row = row._replace(source="forger")
            previous = Chain(None).link(previous, row._replace(hash=None))
            raw("UPDATE event_log SET source = ?, hash = ? WHERE seq = ?", row.source, previous, p)
    raw.close()
    try:
        report = verify(path, key=key, witness=witness)
    except KeyRequired:
        pytest.fail("the verifier has the key")
    assert not report.ok, f"{tamper} at {position} went unnoticed"
