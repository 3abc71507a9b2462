"""Faults injected for real: a full disk, a lock held too long, broken and hostile files."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from domain.errors import CorruptEvent, StoreError
from domain.events import BidSubmitted, Event, SystemErrorLogged, TaskBiddingOpened, TaskCreated
from projections.models import counts
from projections.tasks import get_task
from store import SQLiteStore, stored_count
from swarmlog.cli import cli
from swarmlog.log import EventLog
from tests.strategies import rows


def bids(n: int, start: int = 0) -> list[Event]:
    return [BidSubmitted(source="test", task_id=f"t{i % 50}", agent_id="a", data={"bid_sats": i,
                         "padding": "x" * 500}) for i in range(start, start + n)]


def swarmlog(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_a_full_disk_fails_the_append_whole_and_the_log_recovers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "log.db")
    store.append(rows(*bids(100)))
    conn = store._conn  # the test's one reach inside: SQLite's own quota stands in for the disk
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 5}")
    with pytest.raises(StoreError, match="full"):
        store.append(rows(*bids(2000, start=100)))
    assert store.head() == 100 and stored_count(store) == 100
    assert [r.position for r in store.read()] == list(range(1, 101))
    conn.execute("PRAGMA max_page_count = 1073741823")  # space returns
    assert store.append(rows(*bids(2000, start=100)))[-1] == 2100
    assert store.stream_versions(["task-t0"]) == {"task-t0": 2100 // 50}
    store.close()


@pytest.mark.postgres
def test_a_failing_statement_on_postgres_fails_the_append_whole_and_the_log_recovers() -> None:
    from store.postgres import PostgresStore
    from tests import pg

    url = pg.create_database()
    store = PostgresStore(url)
    store.append(rows(*bids(10)))
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:  # the disk fills up on the 11th row
        admin.execute("""CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN IF NEW.seq > 10 THEN RAISE EXCEPTION 'could not extend file: '
                         'No space left on device' USING ERRCODE = 'disk_full'; END IF;
                         RETURN NEW; END $$""")
        admin.execute("CREATE TRIGGER full_disk BEFORE INSERT ON event_log "
                      "FOR EACH ROW EXECUTE FUNCTION full_disk()")
        with pytest.raises(StoreError, match="space"):
            store.append(rows(*bids(5, start=10)))
        assert store.head() == 10 and stored_count(store) == 10
        admin.execute("DROP TRIGGER full_disk ON event_log")
    assert store.append(rows(*bids(5, start=10))) == [11, 12, 13, 14, 15]
    store.close()


def test_a_lock_held_past_the_busy_timeout_is_a_clear_store_error(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = SQLiteStore(path, busy_timeout=0.3)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match=r"locked by another writer for 0\.3s"):
        store.append(rows(*bids(1)))
    other.execute("ROLLBACK")
    assert store.append(rows(*bids(1))) == [1]


def test_a_truncated_database_gives_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with EventLog(path) as log:
        log.append(bids(3000))
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 3)
    with pytest.raises(StoreError, match=r"malformed|not a database") as raised, EventLog(path) as log:
        list(log.read())
    assert str(path) in str(raised.value)
    code, output = swarmlog("status", "--db", str(path))
    assert code == 2 and "error:" in output


def test_a_file_that_is_not_a_database_is_reported_by_status(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(os.urandom(8192))
    code, output = swarmlog("status", "--db", str(path))
    assert code == 2 and "not a database" in output


def test_a_read_only_database_reads_but_refuses_appends_clearly() -> None:
    tmp_path = Path(tempfile.mkdtemp())  # (pytest's own tmp dirs are closed to other users)
    path = tmp_path / "log.db"
    with EventLog(path) as log:
        log.append(bids(5))
    sqlite3.connect(path).execute("PRAGMA journal_mode=DELETE")  # no -wal/-shm left behind
    os.chmod(path, 0o444)
    os.chmod(tmp_path, 0o555)
    script = f"""
import os, sys
from domain.errors import StoreError
from domain.events import SystemErrorLogged
from swarmlog.log import EventLog
if os.geteuid() == 0:
    os.setgid(65534); os.setuid(65534)  # root ignores file modes: test as nobody
log = EventLog({str(path)!r}, create=False)
print("read", len(list(log.read())), log.summary.total)
try:
    log.append(SystemErrorLogged(source="x"))
except StoreError as e:
    print("refused", e)
"""
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              cwd=Path(__file__).parents[2], timeout=60)
    finally:
        os.chmod(tmp_path, 0o755)
        shutil.rmtree(tmp_path)
    assert "read 5 5" in done.stdout, done.stderr
    assert "refused cannot" in done.stdout and "readonly" in done.stdout, done.stdout


def test_rows_forged_behind_swarmlogs_back_are_named_by_seq_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with EventLog(path) as log:
        log.append([*bids(10), SystemErrorLogged(source="x")])
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("DROP TRIGGER event_log_no_update")
    raw.execute("UPDATE event_log SET data = '{broken' WHERE seq = 4")
    raw.execute("UPDATE event_log SET event_type = 'task.teleported' WHERE seq = 7")
    raw.close()
    with EventLog(path) as log:
        with pytest.raises(CorruptEvent) as raised:
            [r.event for r in log.read()]  # rows read as stored; their typed events are checked
        assert raised.value.seq == 4
        report = log.verify()
        assert not report.ok and report.events == 11
        assert {(f.kind, f.position) for f in report.findings} >= {("changed", 4), ("changed", 7)}
        assert any(f.position == 7 and "task.teleported" in f.detail for f in report.findings)
    code, output = swarmlog("verify", "--db", str(path))
    assert code == 1 and "position 4" in output and "position 7" in output
    code, output = swarmlog("status", "--db", str(path))
    assert code == 0  # status reads no rows: it still shows where the log stands
    code, output = swarmlog("summary", "--db", str(path))
    assert code == 0, output  # one bad row never makes a read command fail: it is counted
    with EventLog(path) as log:
        noted = {a.position: a.reason for a in log.models.summary.anomalies}
        assert set(noted) == {4, 7} and "task.teleported" in noted[7]
        assert log.rebuild() == 11 and counts(log.models)["total"] == 11


def test_a_foreign_row_nested_deeper_than_json_writers_go_is_exported_as_its_text(
        tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with EventLog(path) as log:
        log.append(bids(2))
    deep = '{"d":' * 300 + "1" + "}" * 300  # JSON, but deeper than orjson writes (254 levels)
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("INSERT INTO event_log (id, event_type, source, data, timestamp, stream_id, "
                "stream_version, schema_version) VALUES ('foreign', 'system.info', 'other', ?, "
                "'2026-01-01T00:00:00.000000+00:00', 'system', 1, 1)", (deep,))
    raw.execute("INSERT INTO swarmlog_streams (stream_id, version) VALUES ('system', 1)")
    raw.close()
    code, output = swarmlog("export", "--db", str(path))
    assert code == 0, output
    foreign = json.loads(output.splitlines()[-1])
    assert (foreign["id"], foreign["data"], foreign["data_text"]) == ("foreign", None, deep)
    code, output = swarmlog("verify", "--db", str(path))
    assert code == 1 and "position 3" in output  # no event swarmlog would store: inserted


def test_a_row_changed_after_it_was_written_is_validated_again_and_reported(tmp_path: Path) -> None:
    """Rebuilds read rows swarmlog wrote without validating them again, but check every value
    they keep; a row changed since, or inserted by another client, is folded as what in it
    conforms, and `verify` names both by the chain."""
    path = tmp_path / "log.db"
    with EventLog(path) as log:
        log.append([TaskCreated(source="x", task_id="t1"), TaskBiddingOpened(source="x", task_id="t1"),
                    *[BidSubmitted(source="x", task_id="t1", agent_id=f"a{i}",
                                   data={"bid_sats": 10 + i}) for i in range(3)]])
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("DROP TRIGGER event_log_no_update")
    raw.execute("""UPDATE event_log SET data = '{"bid_sats":1}' WHERE seq = 4""")  # still valid
    raw.execute("INSERT INTO event_log (id, event_type, source, task_id, agent_id, data, timestamp, "
                "stream_id, stream_version, schema_version) SELECT 'foreign', event_type, source, "
                "task_id, 'a9', '{\"bid_sats\":7}', timestamp, stream_id, 6, 1 FROM event_log "
                "WHERE seq = 5")
    raw.execute("UPDATE swarmlog_streams SET version = 6 WHERE stream_id = 'task-t1'")
    raw.close()
    with EventLog(path) as log:
        assert log.rebuild() == 6
        task = get_task(log.tasks, "t1")
        assert task is not None and task.bids == {"a0": 10, "a1": 1, "a2": 12, "a9": 7}
        report = log.verify()
        assert [(f.kind, f.position) for f in report.findings] == [("inserted", 6), ("changed", 4)]
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("""UPDATE event_log SET data = '{"bid_sats":-1}' WHERE seq = 3""")  # invalid
    raw.close()
    with EventLog(path) as log:  # the fold does not take the row's word for it: it is validated
        assert log.rebuild() == 6
        (noted,) = log.models.summary.anomalies
        assert noted.position == 3 and "bid_sats" in noted.reason
        task = get_task(log.tasks, "t1")
        assert task is not None and task.bids == {"a1": 1, "a2": 12, "a9": 7}
        assert any("position 3" in p for p in log.verify().problems)


def test_a_database_copied_back_from_an_older_backup_is_noticed(tmp_path: Path) -> None:
    path, backup = tmp_path / "log.db", tmp_path / "backup.db"
    with EventLog(path) as log:
        log.append(bids(10))
    shutil.copy(path, backup)
    with EventLog(path) as log:
        log.append(bids(10, start=10))
        log.snapshot()
        snapshots = log.store.snapshots()
    with EventLog(backup) as old:
        for s in snapshots:  # the newer snapshots, as if restored next to the older log
            old.store.save_snapshot(s.projection, s.version, s.position, s.state)
        report = old.verify()
        assert not report.ok and any("past the head" in p for p in report.problems)
