"""What only the SQLite backend has to prove: its schema, guards, migrations and file errors."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.errors import CorruptEvent, StoreError
from domain.events import BidSubmitted, EventType, TaskCreated
from store.schema import SCHEMA_VERSION
from store.sqlite import SQLiteEventStore

T_HOUR = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "log.db")


def test_update_and_delete_through_raw_sqlite_are_refused(path: str) -> None:
    with SQLiteEventStore(path) as store:
        store.append([TaskCreated(source="test", task_id="t1")])
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE event_log SET source = 'forged'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM event_log")
    assert raw.execute("SELECT source FROM event_log").fetchall() == [("test",)]


def test_sql_looking_ids_are_stored_verbatim(path: str) -> None:
    hostile = "t1'; DROP TABLE event_log; --"
    with SQLiteEventStore(path) as store:
        store.append([BidSubmitted(source="x", task_id=hostile, agent_id='a" OR 1=1', data={"bid_sats": 1})])
        (found,) = store.read_task(hostile)
        assert found.event.task_id == hostile and found.event.agent_id == 'a" OR 1=1'


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("data", "{not json", "unexpected character"), ("event_type", "task.exploded", "task.exploded"),
     ("data", '{"bid_sats": -5}', "bid_sats"), ("data", "[1, 2]", "not an object")],
)
def test_a_corrupt_row_raises_corrupt_event_naming_its_seq(path: str, column: str, value: str,
                                                            reason: str) -> None:
    with SQLiteEventStore(path) as store:
        store.append([BidSubmitted(source="x", task_id="t", agent_id="a", data={"bid_sats": 1})])
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("DROP TRIGGER event_log_no_update")  # someone tampering behind swarmlog's back
    raw.execute(f"UPDATE event_log SET {column} = ?", (value,))
    raw.close()
    with SQLiteEventStore(path) as store, pytest.raises(CorruptEvent) as raised:
        list(store.read())
    assert raised.value.seq == 1 and reason in str(raised.value).lower()


def test_a_database_of_the_seed_adr017_schema_is_upgraded_on_open(path: str) -> None:
    raw = sqlite3.connect(path)
    raw.execute("""CREATE TABLE event_log (id TEXT PRIMARY KEY, event_type TEXT NOT NULL,
                   source TEXT NOT NULL, task_id TEXT, agent_id TEXT, data TEXT,
                   timestamp TEXT NOT NULL)""")
    rows = [("e2", "bid.submitted", "coordinator", "t1", "a1", json.dumps({"bid_sats": 30}),
             "2026-01-01T00:00:02+00:00"),
            ("e1", "task.created", "coordinator", "t1", None, None, "2026-01-01T00:00:01+00:00"),
            ("e3", "agent.joined", "coordinator", None, "a1", '{"name": "Ann"}',
             "2026-01-01T00:00:03+00:00")]
    raw.executemany("INSERT INTO event_log VALUES (?,?,?,?,?,?,?)", rows)
    raw.commit()
    raw.close()
    with SQLiteEventStore(path) as store:
        got = [(r.position, r.event.id, r.stream_id, r.stream_version) for r in store.read()]
        assert got == [(1, "e1", "task-t1", 1), (2, "e2", "task-t1", 2), (3, "e3", "agent-a1", 1)]
        assert store.stream_version("task-t1") == 2
        assert store.append([TaskCreated(source="x", task_id="t2")]) == [4]
        _, joined = store.read_agent("a1")
        assert joined.event.event_type is EventType.AGENT_JOINED and joined.event.data.name == "Ann"
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_a_newer_swarmlog_is_refused(path: str) -> None:
    SQLiteEventStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer than this swarmlog"):
        SQLiteEventStore(path)


def test_a_file_that_is_not_sqlite_gives_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="not a database"):
        SQLiteEventStore(str(bogus))


def test_opening_without_create_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no swarmlog database"):
        SQLiteEventStore(str(tmp_path / "missing.db"), create=False)


def test_the_log_is_in_wal_mode_with_the_adr_indexes(path: str) -> None:
    SQLiteEventStore(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexed = {row[4] for row in raw.execute("SELECT * FROM sqlite_master WHERE type = 'index'")
               if row[4]}
    for column in ("task_id", "agent_id", "timestamp", "event_type"):
        assert any(f"({column})" in sql for sql in indexed), column


def _plan(store: SQLiteEventStore, call: Callable[[], object]) -> str:
    """The query plan of the last event_log query `call` ran."""
    seen: list[str] = []
    store._conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        store._conn.set_trace_callback(None)
    sql = [s for s in seen if "FROM event_log" in s][-1]
    return " | ".join(row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql))


@pytest.mark.parametrize(
    ("filters", "index"),
    [({"task_id": "t1", "event_type": EventType.BID_SUBMITTED}, "idx_event_log_task_id"),
     ({"agent_id": "a1", "since": T_HOUR}, "idx_event_log_agent_id"),
     ({"since": T_HOUR}, "idx_event_log_timestamp"),
     ({"since": T_HOUR, "until": T_HOUR, "event_type": EventType.BID_SUBMITTED, "limit": 5},
      "idx_event_log_timestamp"),
     ({"event_type": EventType.TASK_FAILED, "limit": 10}, "idx_event_log_event_type")],
)
def test_every_query_walks_the_index_of_its_most_selective_filter(path: str, filters: dict,  # type: ignore[type-arg]
                                                                   index: str) -> None:
    with SQLiteEventStore(path) as store:
        plan = _plan(store, lambda: store.query(**filters))
        assert index in plan and "SCAN event_log" not in plan.replace(f"USING INDEX {index}", "")


def test_time_ranges_use_the_timestamp_index_and_the_prune_cut_sorts_nothing(path: str) -> None:
    with SQLiteEventStore(path) as store:
        assert "idx_event_log_timestamp" in _plan(store, lambda: list(store.read_range(T_HOUR)))
        # The cut walks the log from its start and stops at the first young event: no sort.
        assert "TEMP B-TREE" not in _plan(store, lambda: store.prefix_end(T_HOUR))
