"""What only the SQLite backend has to prove: its pragmas and indexes, the plans of its queries,
the upgrade of older databases (the seed's ADR 017 file, swarmlog's own older schemas), and the
errors of files that are not its own. Everything both backends do alike is in test_contract.py."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from domain.codec import encode
from domain.errors import CorruptEvent, StoreError
from domain.events import EventType
from store import EVERYTHING, EventFilter, SQLiteStore, prefix_end
from store.schema import _crc, migrations
from tests.strategies import EPOCH, ev, rows

_T = EventType
HOUR = EPOCH + timedelta(hours=1)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "log.db")


def pragma(store: SQLiteStore, name: str) -> object:
    return store._conn.execute(f"PRAGMA {name}").fetchone()[0]


# -- the file and its connection -------------------------------------------------------------------


def test_the_log_is_in_wal_mode_with_normal_sync_and_a_busy_timeout(path: str) -> None:
    with SQLiteStore(path) as store:
        assert pragma(store, "journal_mode") == "wal"
        assert pragma(store, "synchronous") == 1  # NORMAL: durable at each checkpoint, with WAL
        assert pragma(store, "busy_timeout") == 10_000
    with SQLiteStore(path, busy_timeout=0.25) as patient:
        assert pragma(patient, "busy_timeout") == 250


def test_the_log_has_the_adr_indexes_and_a_unique_version_per_stream(path: str) -> None:
    SQLiteStore(path).close()
    raw = sqlite3.connect(path)
    indexed = {sql for (sql,) in raw.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    for column in ("task_id", "agent_id", "timestamp", "event_type"):
        assert f"CREATE INDEX idx_event_log_{column} ON event_log ({column})" in indexed
    table = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'event_log'").fetchone()[0]
    assert "UNIQUE (stream_id, stream_version)" in table and "id TEXT NOT NULL UNIQUE" in table
    raw.close()


def test_a_writer_that_holds_the_lock_too_long_gives_a_clear_error(path: str) -> None:
    with SQLiteStore(path) as holder, SQLiteStore(path, busy_timeout=0.2) as impatient:
        with holder.transaction():
            holder.append(rows(ev(_T.TASK_CREATED, "t1")))
            with pytest.raises(StoreError, match=r"locked by another writer for 0\.2s"):
                impatient.append(rows(ev(_T.TASK_CREATED, "t2")))
        assert impatient.append(rows(ev(_T.TASK_CREATED, "t3"))) == [2]


def test_a_row_whose_payload_is_not_json_raises_corrupt_event_naming_its_position(
        path: str) -> None:
    # Only SQLite can hold such a row (PostgreSQL's json column refuses it).
    with SQLiteStore(path) as store:
        store.append(rows(ev(_T.SYSTEM_INFO), ev(_T.SYSTEM_INFO)))
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("DROP TRIGGER event_log_no_update")  # someone tampering behind swarmlog's back
    raw.execute("UPDATE event_log SET data = '{not json' WHERE seq = 2")
    raw.close()
    with SQLiteStore(path) as store:
        _, broken = store.read()
        with pytest.raises(CorruptEvent) as raised:
            _ = broken.event
    assert raised.value.seq == 2 and "unexpected character" in str(raised.value).lower()


def test_a_file_that_is_not_sqlite_gives_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match=r"not a database.*is .*notes\.db a swarmlog SQLite file"):
        SQLiteStore(str(bogus))


def test_opening_without_create_needs_an_existing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="no swarmlog database"):
        SQLiteStore(str(missing), create=False)
    assert not missing.exists()


def test_a_database_from_a_newer_swarmlog_is_refused(path: str) -> None:
    SQLiteStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                "VALUES ('swarmlog', '0999_from_the_future', '2030-01-01')")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match=r"0999_from_the_future.*newer swarmlog"):
        SQLiteStore(path)


def test_the_log_lives_beside_a_hosts_tables_and_user_version_without_touching_them(
        path: str) -> None:
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 42")  # the host's own schema version
    for table in ("tasks", "bids", "registry", "snapshots", "streams", "prunes"):
        raw.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, what TEXT)")
        raw.execute(f"INSERT INTO {table} VALUES ('1', 'the host''s {table}')")
    raw.commit()
    raw.close()
    with SQLiteStore(path) as store:
        store.append(rows(ev(_T.TASK_CREATED, "t1")))
        store.save_snapshot("p", 1, 1, "{}")
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone() == (42,)
    for table in ("tasks", "bids", "registry", "snapshots", "streams", "prunes"):
        assert raw.execute(f"SELECT * FROM {table}").fetchall() == [("1", f"the host's {table}")]
    ours = {name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert ours - {"tasks", "bids", "registry", "snapshots", "streams", "prunes"} == {
        "event_log", "sqlite_sequence", "_sqlite_migrations", "swarmlog_streams",
        "swarmlog_snapshots", "swarmlog_snapshot_items", "swarmlog_prunes", "swarmlog_chain"}
    raw.close()


# -- older databases, upgraded on open -------------------------------------------------------------


def _seed_database(path: str) -> None:
    """A database as the seed's ADR 017 module wrote it (rows in insertion order, not time)."""
    raw = sqlite3.connect(path)
    raw.execute("""CREATE TABLE event_log (id TEXT PRIMARY KEY, event_type TEXT NOT NULL,
                   source TEXT NOT NULL, task_id TEXT, agent_id TEXT, data TEXT,
                   timestamp TEXT NOT NULL)""")
    raw.executemany("INSERT INTO event_log VALUES (?,?,?,?,?,?,?)", [
        ("e2", "bid.submitted", "coordinator", "t1", "a1", json.dumps({"bid_sats": 30}),
         "2026-01-01T00:00:02+00:00"),
        ("e1", "task.created", "coordinator", "t1", None, None, "2026-01-01T00:00:01+00:00"),
        ("e3", "agent.joined", "coordinator", None, "a1", '{"name": "Ann"}',
         "2026-01-01T00:00:03+00:00"),
        ("e4", "bid.submitted", "coordinator", "t1", "a2", json.dumps({"bid_sats": -5}),
         "2026-01-01T00:00:04.000000+00:00"),
        ("e5", "task.exploded", "coordinator", "t2", None, None, "2026-01-01T00:00:05.000000+00:00"),
        ("e6", "system.info", "cron", None, None, json.dumps([1, 2]),
         "2026-01-01T00:00:06.000000+00:00"),
    ])
    raw.commit()
    raw.close()


def test_a_database_of_the_seed_adr017_schema_is_upgraded_on_open(path: str) -> None:
    _seed_database(path)
    with SQLiteStore(path) as store:
        found = list(store.read())
        assert [(r.position, r.id, r.stream_id, r.stream_version) for r in found] == [
            (1, "e1", "task-t1", 1), (2, "e2", "task-t1", 2), (3, "e3", "agent-a1", 1),
            (4, "e4", "task-t1", 3), (5, "e5", "task-t2", 1), (6, "e6", "system", 1)]
        # 0005: each seed row was validated once: folds trust the conforming ones.
        assert [r.conforms for r in found] == [True, True, True, False, False, False]
        assert all(r.hash is not None and r.schema_version == 1 for r in found)  # chained (0007)
        joined = found[2].event
        assert joined.event_type is _T.AGENT_JOINED and joined.data.model_dump()["name"] == "Ann"
        assert found[2].data == '{"name": "Ann"}'  # the seed's own spelling, kept
        assert store.stream_versions(["task-t1", "agent-a1"]) == {"task-t1": 3, "agent-a1": 1}
        assert store.append(rows(ev(_T.TASK_CREATED, "t3"))) == [7]
        assert store.append(rows(ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=1)),
                            expected={"task-t1": 3}) == [8]
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 0  # the host's, untouched
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE event_log SET source = 'forged'")  # the guard is back after 0005
    raw.close()


def test_opening_an_upgraded_database_again_changes_nothing(path: str) -> None:
    _seed_database(path)
    with SQLiteStore(path) as store:
        first = list(store.read())
    with SQLiteStore(path) as store:
        assert list(store.read()) == first
    raw = sqlite3.connect(path)
    applied = [name for (name,) in raw.execute("SELECT name FROM _sqlite_migrations")]
    assert applied == [m.name for m in migrations._migrations]
    raw.close()


def test_a_version_4_database_marks_each_row_conforming_or_not_on_upgrade(path: str) -> None:
    migrations.apply(Database(path), stop_before="0005_conformance")
    raw = sqlite3.connect(path, isolation_level=None)
    ours, valid, invalid, altered = (
        encode(ev(_T.TASK_CREATED, "t1")),
        encode(ev(_T.TASK_BIDDING, "t1", window_seconds=30.0)),
        encode(ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=3))._replace(data='{"bid_sats": "lots"}'),
        encode(ev(_T.BID_SUBMITTED, "t1", "a2", bid_sats=3)))
    crcs = [_crc(ours), None, None, _crc(altered)]  # version 4 kept a CRC-32 of what it wrote
    altered = altered._replace(data='{"bid_sats": -1}')  # changed after it was written
    for version, (r, crc) in enumerate(zip([ours, valid, invalid, altered], crcs, strict=True), start=1):
        raw.execute("INSERT INTO event_log (id, event_type, source, task_id, agent_id, data, "
                    "timestamp, stream_id, stream_version, schema_version, checksum) VALUES "
                    "(?,?,?,?,?,?,?,?,?,?,?)", (r.id, r.event_type, r.source, r.task_id,
                                                r.agent_id, r.data, r.timestamp, r.stream_id,
                                                version, r.schema_version, crc))
    raw.execute("INSERT INTO swarmlog_streams VALUES ('task-t1', 4)")
    raw.close()
    with SQLiteStore(path) as store:
        found = list(store.read())
        # swarmlog's row by its checksum; another client's (no checksum) and an altered one
        # (checksum of other fields) validated.
        assert [r.conforms for r in found] == [True, True, False, False]
        assert [r.id for r in found] == [ours.id, valid.id, invalid.id, altered.id]
        assert found[0]._replace(hash=None) == ours._replace(position=1, stream_version=1)
        assert store.append(rows(ev(_T.TASK_STARTED, "t1")), expected={"task-t1": 4}) == [5]


# -- query plans -----------------------------------------------------------------------------------


def _plans(store: SQLiteStore, call: Callable[[], object]) -> list[str]:
    """The query plan of each event_log statement `call` ran, as one line each."""
    seen: list[str] = []
    store._conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        store._conn.set_trace_callback(None)
    return [" | ".join(row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql))
            for sql in seen if "FROM event_log" in sql]


@pytest.fixture
def planned(path: str) -> SQLiteStore:
    store = SQLiteStore(path)
    store.append(rows(*(ev(_T.BID_SUBMITTED, f"t{n % 3}", f"a{n % 2}", minute=n * 10, bid_sats=n)
                        for n in range(30))))
    return store


@pytest.mark.parametrize(("where", "options", "index"), [
    (EventFilter(task_id="t1", types=frozenset({"bid.submitted"})), {}, "idx_event_log_task_id"),
    (EventFilter(task_id="t1", agent_id="a1", source="test", since=EPOCH),
     {"newest_first": True}, "idx_event_log_task_id"),
    (EventFilter(agent_id="a1", since=HOUR), {}, "idx_event_log_agent_id"),
    (EventFilter(since=HOUR), {}, "idx_event_log_timestamp"),
    (EventFilter(since=EPOCH, until=HOUR, types=frozenset({"bid.submitted"})),
     {"limit": 5, "newest_first": True}, "idx_event_log_timestamp"),
    (EventFilter(types=frozenset({"task.failed"})), {"limit": 10, "newest_first": True},
     "idx_event_log_event_type"),
], ids=["task", "task and the rest", "agent", "since", "time range", "one type"])
def test_every_query_walks_the_index_of_its_most_selective_filter(
        planned: SQLiteStore, where: EventFilter, options: dict[str, Any], index: str) -> None:
    plans = _plans(planned, lambda: list(planned.query(where, **options)))
    assert any(f"INDEX {index} (" in plan for plan in plans), plans
    others = [ix for ix in ("task_id", "agent_id", "timestamp", "event_type")
              if f"idx_event_log_{ix}" != index]
    for plan in plans:  # no other index, no scan of the table, no sort
        assert not any(f"idx_event_log_{ix}" in plan for ix in others), plans
        assert "SCAN event_log" not in plan and "TEMP B-TREE" not in plan, plans


@pytest.mark.parametrize("where", [EVERYTHING, EventFilter(types=frozenset({"bid.submitted",
                                                                            "task.failed"}))],
                         ids=["everything", "several types"])
@pytest.mark.parametrize("newest_first", [False, True], ids=["oldest first", "newest first"])
def test_a_query_without_a_selective_filter_walks_the_log_in_position_order(
        planned: SQLiteStore, where: EventFilter, newest_first: bool) -> None:
    (plan,) = _plans(planned, lambda: list(planned.query(where, limit=5,
                                                         newest_first=newest_first)))
    assert plan == "SEARCH event_log USING INTEGER PRIMARY KEY (rowid>?)"


def test_counting_by_type_in_a_time_range_walks_the_timestamp_index(planned: SQLiteStore) -> None:
    (plan,) = _plans(planned, lambda: planned.count_by_type(since=HOUR))
    assert "USING INDEX idx_event_log_timestamp (timestamp>?)" in plan
    (plan,) = _plans(planned, lambda: planned.count_by_type(HOUR, HOUR + timedelta(hours=1)))
    assert "USING INDEX idx_event_log_timestamp (timestamp>? AND timestamp<?)" in plan


def test_the_prune_cut_costs_the_old_prefix_not_the_young_log(path: str) -> None:
    with SQLiteStore(path) as store:
        store.append(rows(*(ev(_T.SYSTEM_INFO, minute=n) for n in range(20_000))))
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0

        store._conn.set_progress_handler(step, 100)
        assert prefix_end(store, EPOCH + timedelta(minutes=10)) == 10
        store._conn.set_progress_handler(None, 0)
    assert steps < 20, f"{steps * 100} SQLite instructions to find a cut after 10 rows"


def test_a_read_only_store_reads_and_never_creates_migrates_or_writes(path: str) -> None:
    with pytest.raises(StoreError, match="no swarmlog database"):
        SQLiteStore(path, read_only=True)
    assert not Path(path).exists()
    with SQLiteStore(path) as store:
        store.append(rows(ev(_T.TASK_CREATED, "t1")))
    before = Path(path).read_bytes()
    with SQLiteStore(path, read_only=True) as reader:
        assert [r.task_id for r in reader.read()] == ["t1"]
        with pytest.raises(StoreError, match=r"readonly|read-only"):
            reader.append(rows(ev(_T.TASK_CREATED, "t2")))
        with pytest.raises(StoreError):
            reader.save_snapshot("p", 1, 1, "{}")
    assert Path(path).read_bytes() == before
