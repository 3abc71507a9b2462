"""The integrity chain as an operator meets it: a key file, checkpoints to a witness (by hand and
with every prune and snapshot), `verify` and `status`, and a log older than the chain."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from domain.errors import StoreError
from store import SQLiteStore
from store.chain import Chain
from store.schema import migrations
from swarmlog.cli import cli
from swarmlog.log import EventLog
from tests.strategies import EPOCH, fixed_story, stored


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_a_log_chained_with_a_key_is_appended_and_verified_only_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, db = tmp_path / "swarm.key", str(tmp_path / "log.db")
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("SWARMLOG_KEY_FILE", str(key))
    with EventLog(db) as log:
        log.append(fixed_story(tasks=2))
        assert log.status()["chain"]["algorithm"] == "hmac-sha256"
    assert run("--db", db, "verify")[0] == 0
    monkeypatch.delenv("SWARMLOG_KEY_FILE")
    code, _, err = run("--db", db, "verify")
    assert code == 2 and "SWARMLOG_KEY_FILE" in err
    with EventLog(db) as log, pytest.raises(StoreError, match="made with a key"):
        log.append(fixed_story(tasks=1)[:1])  # no silent downgrade to an unkeyed chain
    monkeypatch.setenv("SWARMLOG_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(StoreError, match="cannot read the key file"):
        EventLog(db)


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"too short")
    from store.chain import key_from

    with pytest.raises(StoreError, match="16 or more"):
        key_from(short)


def test_checkpoints_by_hand_and_at_every_prune_and_snapshot_are_verified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db, witness, signing = str(tmp_path / "log.db"), tmp_path / "w.jsonl", tmp_path / "sign.key"
    with EventLog(db) as log:
        log.append(fixed_story(tasks=4))
    code, out, _ = run("--db", db, "checkpoint", "--witness", str(witness), "--signing-key",
                       str(signing))
    assert code == 0 and "checkpoint at position" in out
    assert signing.stat().st_mode & 0o077 == 0  # the key file is its owner's alone
    monkeypatch.setenv("SWARMLOG_WITNESS", str(witness))
    monkeypatch.setenv("SWARMLOG_SIGNING_KEY", str(signing))
    with EventLog(db) as log:
        log.append(fixed_story(tasks=1))
        log.snapshot()
        log.prune(before=EPOCH + timedelta(minutes=5), archive=tmp_path / "archive")
    lines = witness.read_text().splitlines()
    assert json.loads(lines[0])["witness"] == "swarmlog" and len(lines) == 1 + 3
    code, out, err = run("--db", db, "verify", "--json")  # $SWARMLOG_WITNESS is the default
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    forged = json.loads(lines[-1])
    forged["position"] += 1
    witness.write_text("\n".join([*lines, json.dumps(forged)]) + "\n")
    code, out, _ = run("--db", db, "verify", "--json")
    assert code == 1 and any(f["table"] == "witness" for f in json.loads(out)["findings"])


def test_a_witness_of_another_key_is_not_taken(tmp_path: Path) -> None:
    db, witness = str(tmp_path / "log.db"), tmp_path / "w.jsonl"
    with EventLog(db) as log:
        log.append(fixed_story(tasks=1))
        log.checkpoint(witness, tmp_path / "one.key")
        with pytest.raises(StoreError, match="another signing key"):
            log.checkpoint(witness, tmp_path / "other.key")
    code, _, err = run("--db", db, "verify", "--witness", str(witness), "--public-key", "ab" * 32)
    assert code == 2 and "was signed with key" in err


def test_a_log_older_than_the_chain_is_chained_from_what_it_still_holds(tmp_path: Path) -> None:
    from sqlite_utils import Database

    path = tmp_path / "log.db"
    migrations.apply(Database(path), stop_before="0007_integrity_chain")
    raw = sqlite3.connect(path, isolation_level=None)
    for row in stored(fixed_story(tasks=1)):
        raw.execute("INSERT INTO event_log (id, event_type, source, task_id, agent_id, data, "
                    "timestamp, stream_id, stream_version, schema_version, conforms) VALUES "
                    "(?,?,?,?,?,?,?,?,?,?,1)", (*row[1:11],))
    raw.execute("INSERT INTO swarmlog_streams SELECT stream_id, max(stream_version) "
                "FROM event_log GROUP BY stream_id")
    raw.execute("UPDATE swarmlog_prune_gate SET open = 1")  # a prune, as version 6 made them
    raw.execute("DELETE FROM event_log WHERE seq <= 3")
    raw.execute("UPDATE swarmlog_prune_gate SET open = 0")
    raw.execute("INSERT INTO swarmlog_prunes (first_position, last_position, count, cutoff, "
                "pruned_at) VALUES (1, 3, 3, 'c', 'p')")
    raw.close()
    with SQLiteStore(path, chain=Chain()) as store:
        (epoch,) = store.epochs()  # the chain starts at the first row still stored
        assert epoch.start == 4 and epoch.algorithm == "sha256"
        assert all(r.hash is not None for r in store.read())
    with EventLog(path) as log:
        report = log.verify()
        assert report.ok, report.problems
        assert report.chain_start == 4
        assert any("before the log had an integrity chain" in n for n in report.notes)
    code, out, _ = run("--db", str(path), "status", "--json")
    assert code == 0 and json.loads(out)["chain"]["starts_at"] == 4
