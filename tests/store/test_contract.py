"""The store contract (`store/base.py`: EventLogStore and SnapshotStore), written once and run
against every backend through the `store` fixture: memory, SQLite and PostgreSQL.

What every backend must do alike is here, including what a plain SQL client must not be able to
do behind swarmlog's back (the `raw_sql` fixture: a connection of the same database; the
in-memory store has none, and says so when it skips those tests).
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.codec import StoredEvent, fold_row
from domain.errors import ConcurrencyError, CorruptEvent, InvalidEvent, StoreError
from domain.events import Event, EventType
from domain.lenient import encode_as_given
from store import (
    EVERYTHING,
    DataCondition,
    EventFilter,
    EventLogStore,
    SnapshotStore,
    Store,
    first_stored,
    is_url,
    prefix_end,
    stored_count,
)
from tests.conftest import StoreFactory
from tests.strategies import EPOCH, ev, remove_prefix, rows, stored

_T = EventType


def bid(task: str | None, agent: str | None, amount: int, minute: float = 0,
        source: str = "test") -> Event:
    return ev(_T.BID_SUBMITTED, task, agent, minute=minute, source=source, bid_sats=amount)


def positions(found: Iterable[StoredEvent]) -> list[int]:
    return [r.position for r in found]


def sats(row: StoredEvent) -> int:
    """The bid of a stored bid, read from its payload text."""
    return int(json.loads(row.data or "{}")["bid_sats"])


def at(minute: float) -> datetime:
    return EPOCH + timedelta(minutes=minute)


# -- a plain SQL client of the store's database (what another program could do) -------------------


class RawSQL:
    """A connection to the store's database that is not swarmlog's: `?` placeholders on both."""

    def __init__(self, location: str) -> None:
        self.postgres = is_url(location)
        self._conn: Any = (psycopg.connect(location, autocommit=True) if self.postgres
                           else sqlite3.connect(location, isolation_level=None))
        #: What the driver raises when the append-only guard refuses a statement: on SQLite an
        #: UPDATE is refused by its guard; a DELETE cannot even be prepared outside swarmlog,
        #: whose own connection alone defines the function the DELETE guard calls.
        self.refused: type[Exception] = (psycopg.IntegrityError if self.postgres
                                         else sqlite3.IntegrityError)
        self.refused_delete: tuple[type[Exception], str] = (
            (psycopg.IntegrityError, "append-only") if self.postgres
            else (sqlite3.OperationalError, "no such function: swarmlog_pruning"))

    def execute(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(sql.replace("?", "%s") if self.postgres else sql, params)
        return cursor.fetchall() if cursor.description else []

    def tamper(self, sql: str, *params: Any) -> None:
        """Run an UPDATE of event_log with its guard lifted for the one statement: someone
        altering a stored row behind swarmlog's back."""
        if self.postgres:
            self.execute("ALTER TABLE event_log DISABLE TRIGGER event_log_no_update")
            self.execute(sql, *params)
            self.execute("ALTER TABLE event_log ENABLE TRIGGER event_log_no_update")
        else:
            ((guard,),) = self.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'event_log_no_update'")
            self.execute("DROP TRIGGER event_log_no_update")
            self.execute(sql, *params)
            self.execute(guard)

    def close(self) -> None:
        self._conn.close()


@pytest.fixture
def raw_sql(store: Store, backend: tuple[StoreFactory, str | None]) -> Iterator[RawSQL]:
    """A plain SQL client of `store`'s database (created by `store` first)."""
    location = backend[1]
    if location is None:
        pytest.skip("the in-memory store has no database another client could reach")
    client = RawSQL(location)
    yield client
    client.close()


# -- appending and reading -------------------------------------------------------------------------


def test_every_backend_is_an_event_log_and_a_snapshot_store(store: Store) -> None:
    assert isinstance(store, EventLogStore) and isinstance(store, SnapshotStore)


def test_an_empty_log_reads_nothing_and_has_head_zero(store: Store) -> None:
    assert list(store.read()) == [] and list(store.query()) == []
    assert store.head() == 0 and stored_count(store) == 0 and first_stored(store) == 1
    assert store.append([]) == [] and store.head() == 0
    assert store.stream_versions(["task-t1", "system"]) == {"task-t1": 0, "system": 0}
    assert store.count_by_type() == {} and store.get("no-such-id") is None
    assert prefix_end(store, at(0)) == 0 and store.prunes() == []


def test_positions_start_at_one_and_rows_read_back_exactly_as_appended(store: Store) -> None:
    events = [ev(_T.TASK_CREATED, "t1", description="index docs"), bid("t1", "a1", 10),
              ev(_T.AGENT_JOINED, agent="a1", name="Ann"), ev(_T.SYSTEM_INFO),
              bid("t2", "a1", 12), bid("t1", "a2", 9)]
    assert store.append(rows(*events[:2])) == [1, 2]
    assert store.append(rows(*events[2:])) == [3, 4, 5, 6]
    assert list(store.read()) == stored(events)  # every field, positions and stream versions
    assert [r.event for r in store.read()] == events
    assert store.head() == 6 and stored_count(store) == 6


def test_stream_versions_count_each_stream_from_one_without_gaps(store: Store) -> None:
    store.append(rows(bid("t1", "a", 1), bid("t2", "a", 1), bid("t1", "a", 2)))
    store.append(rows(ev(_T.AGENT_JOINED, agent="a"), ev(_T.SYSTEM_ERROR, message="x"),
                      bid("t1", "b", 3)))
    assert [(r.stream_id, r.stream_version) for r in store.read()] == [
        ("task-t1", 1), ("task-t2", 1), ("task-t1", 2), ("agent-a", 1), ("system", 1),
        ("task-t1", 3)]
    assert store.stream_versions(["task-t1", "task-t2", "agent-a", "agent-b", "system"]) == {
        "task-t1": 3, "task-t2": 1, "agent-a": 1, "agent-b": 0, "system": 1}
    assert store.stream_versions([]) == {}


def test_reappending_stored_rows_returns_their_positions_and_stores_nothing_again(
        store: Store) -> None:
    first, second, third = rows(bid("t1", "a1", 1), bid("t2", "a1", 2), bid("t1", "a2", 3))
    assert store.append([first, second]) == [1, 2]
    assert store.append([second]) == [2]
    assert store.append([first, third, third]) == [1, 3, 3]
    assert store.head() == 3 and [r.id for r in store.read()] == [first.id, second.id, third.id]
    assert store.stream_versions(["task-t1", "task-t2"]) == {"task-t1": 2, "task-t2": 1}


def test_a_row_reusing_a_stored_id_leaves_the_stored_row_as_it_was(store: Store) -> None:
    (original,) = rows(bid("t1", "a1", 1))
    impostor = original._replace(data='{"bid_sats":999}', source="impostor")
    assert store.append([original]) == [1]
    assert store.append([impostor]) == [1]
    assert store.append([original._replace(id="fresh"), impostor]) == [2, 1]
    stored = store.get(original.id)
    assert stored is not None and stored.hash is not None
    assert stored._replace(hash=None) == original._replace(position=1, stream_version=1)


def test_a_batch_repeating_an_id_stores_its_first_row_once(store: Store) -> None:
    (original,) = rows(bid("t1", "a1", 1))
    repeat = original._replace(data='{"bid_sats":2}')
    assert store.append([original, repeat]) == [1, 1]
    assert [r._replace(hash=None) for r in store.read()] == [
        original._replace(position=1, stream_version=1)]


def test_a_batch_the_database_refuses_stores_none_of_its_rows(
        store: Store, backend: tuple[StoreFactory, str | None]) -> None:
    if backend[1] is None:
        pytest.skip("the in-memory store has no column constraints to refuse a row")
    store.append(rows(bid("t1", "a1", 1)))
    good, bad, later = rows(bid("t1", "a1", 2), bid("t2", "a1", 3), bid("t1", "a1", 4))
    with pytest.raises(StoreError, match="cannot append to"):
        store.append([good, bad._replace(source=None), later])  # type: ignore[arg-type]
    assert positions(store.read()) == [1] and store.head() == 1
    assert store.stream_versions(["task-t1", "task-t2"]) == {"task-t1": 1, "task-t2": 0}
    assert store.append([good, bad, later]) == [2, 3, 4]


def test_get_finds_a_row_by_its_id(store: Store) -> None:
    wanted = bid("t1", "a1", 7)
    store.append(rows(bid("t0", "a0", 1), wanted))
    found = store.get(wanted.id)
    assert found is not None and found.position == 2 and found.event == wanted
    assert store.get("no-such-id") is None


def test_read_gives_the_rows_after_one_position_up_to_another(store: Store) -> None:
    store.append(rows(*(bid("t", "a", n) for n in range(10))))
    assert positions(store.read(after=7)) == [8, 9, 10]
    assert positions(store.read(after=2, until=5)) == [3, 4, 5]
    assert positions(store.read(until=2)) == [1, 2]
    assert list(store.read(after=10)) == [] and list(store.read(after=5, until=5)) == []
    assert list(store.read(after=6, until=3)) == []


def test_a_scan_reads_what_a_fold_needs_of_the_same_rows_in_pages(store: Store) -> None:
    store.append(rows(*(bid(f"t{n % 7}", "a", n) for n in range(4500))))
    store.append(rows(ev(_T.AGENT_JOINED, agent="a", name="Ann"), ev(_T.SYSTEM_INFO)))
    for after, until in ((0, None), (0, 4502), (1999, 4001), (2000, 2000), (4400, 9999),
                         (4502, None), (10, 3)):
        pages = list(store.scan(after, until))
        assert all(0 < len(page) <= 2000 for page in pages)
        assert [r for page in pages for r in page] == \
            [fold_row(r) for r in store.read(after, until)]
    row = next(store.scan(4500, 4501))[0]  # as a fold reads it: the driver's own values
    assert row[:7] == (4501, "agent.joined", "test", None, "a", '{"name":"Ann"}', row[6])
    assert row[7] == 1 and row[8]


def test_reading_100k_rows_streams_in_bounded_memory(store: Store) -> None:
    for start in range(0, 100_000, 5_000):
        store.append(rows(*(bid(f"t{n % 100}", "a", n) for n in range(start, start + 5_000))))
    tracemalloc.start()
    try:
        seen = 0
        for row in store.read():
            seen += 1
            assert row.position == seen
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 100_000
    # Holding every row would take well over 40 MB; a streaming read holds a page.
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.1f} MiB while reading"


# -- expected versions -----------------------------------------------------------------------------


def test_expected_versions_guard_each_stream_a_batch_writes(store: Store) -> None:
    assert store.append(rows(ev(_T.TASK_CREATED, "t1")), expected={"task-t1": 0}) == [1]
    assert store.append(rows(bid("t1", "a1", 5), ev(_T.AGENT_JOINED, agent="a1")),
                        expected={"task-t1": 1, "agent-a1": 0}) == [2, 3]
    with pytest.raises(ConcurrencyError) as raised:
        store.append(rows(bid("t1", "a2", 4), ev(_T.AGENT_JOINED, agent="a2")),
                     expected={"task-t1": 2, "agent-a2": 0, "agent-a1": 0})
    assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == (
        "agent-a1", 0, 1)
    assert store.head() == 3
    assert store.stream_versions(["task-t1", "agent-a1", "agent-a2"]) == {
        "task-t1": 2, "agent-a1": 1, "agent-a2": 0}


def test_a_stream_the_batch_does_not_write_is_checked_and_left_as_it_is(store: Store) -> None:
    store.append(rows(ev(_T.TASK_CREATED, "t1"), ev(_T.AGENT_JOINED, agent="a1")))
    # The decision read agent a1 at version 1; the batch writes only the task's stream.
    assert store.append(rows(bid("t1", "a1", 5)), expected={"task-t1": 1, "agent-a1": 1}) == [3]
    assert store.stream_versions(["task-t1", "agent-a1"]) == {"task-t1": 2, "agent-a1": 1}
    store.append(rows(ev(_T.AGENT_STATUS_CHANGED, agent="a1", status="busy")))
    with pytest.raises(ConcurrencyError) as raised:
        store.append(rows(bid("t1", "a1", 4)), expected={"task-t1": 2, "agent-a1": 1})
    assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == (
        "agent-a1", 1, 2)
    assert store.head() == 4 and store.stream_versions(["task-t1"]) == {"task-t1": 2}


@pytest.mark.parametrize("stale", ["task-t1", "task-t2", "agent-a1", "agent-nobody"])
def test_a_mismatch_on_any_expected_stream_appends_nothing(store: Store, stale: str) -> None:
    store.append(rows(ev(_T.TASK_CREATED, "t1"), ev(_T.TASK_CREATED, "t2"),
                      ev(_T.AGENT_JOINED, agent="a1")))
    expected = {"task-t1": 1, "task-t2": 1, "agent-a1": 1, "agent-nobody": 0}
    expected[stale] += 1
    before = list(store.read())
    with pytest.raises(ConcurrencyError) as raised:
        store.append(rows(bid("t1", "a1", 1), bid("t2", "a1", 2), ev(_T.SYSTEM_INFO)),
                     expected=expected)
    assert raised.value.stream_id == stale
    assert list(store.read()) == before and store.head() == 3
    assert store.stream_versions(["task-t1", "task-t2", "system"]) == {
        "task-t1": 1, "task-t2": 1, "system": 0}


def test_expected_version_zero_means_the_stream_must_be_new(store: Store) -> None:
    store.append(rows(ev(_T.TASK_CREATED, "t1")))
    with pytest.raises(ConcurrencyError):
        store.append(rows(ev(_T.TASK_CREATED, "t1")), expected={"task-t1": 0})
    assert store.append(rows(ev(_T.TASK_CREATED, "t2")), expected={"task-t2": 0}) == [2]


def test_a_retried_append_succeeds_with_its_old_expected_versions_unless_it_adds_rows(
        store: Store) -> None:
    batch = rows(ev(_T.TASK_CREATED, "t1"), ev(_T.AGENT_JOINED, agent="a1"))
    expected = {"task-t1": 0, "agent-a1": 0}
    assert store.append(batch, expected=expected) == [1, 2]
    assert store.append(batch, expected=expected) == [1, 2]  # the answer was lost: a retry
    with pytest.raises(ConcurrencyError):
        store.append([*batch, *rows(bid("t1", "a1", 3))], expected=expected)
    assert store.head() == 2


# -- querying --------------------------------------------------------------------------------------

#: A fixed log for the queries: three tasks, three agents, two sources, eleven types, and
#: timestamps out of position order (so that a time range is not a range of positions).
_KINDS = [_T.TASK_CREATED, _T.BID_SUBMITTED, _T.TASK_FAILED, _T.TASK_COMPLETED, _T.AGENT_JOINED,
          _T.TOOL_CALLED, _T.SYSTEM_INFO, _T.TIMMY_THOUGHT, _T.TASK_STARTED, _T.AUCTION_CLOSED,
          _T.ERROR_CAPTURED]


def _query_log() -> list[Event]:
    rng = random.Random(17)
    return [ev(rng.choice(_KINDS), rng.choice(["t1", "t2", "t3", None]),
               rng.choice(["a1", "a2", "a3", None]), minute=rng.randrange(60),
               source=rng.choice(["coordinator", "agent"])) for _ in range(80)]


def _expected(log: Sequence[StoredEvent], where: EventFilter, after: int = 0,
              before: int | None = None, limit: int | None = None,
              newest_first: bool = False) -> list[int]:
    """What a query must give, found the plain way."""

    def holds(r: StoredEvent) -> bool:
        moment = datetime.fromisoformat(r.timestamp)
        return ((where.types is None or r.event_type in where.types)
                and where.task_id in (None, r.task_id) and where.agent_id in (None, r.agent_id)
                and where.source in (None, r.source)
                and (where.since is None or where.since <= moment)
                and (where.until is None or moment < where.until)
                and after < r.position and (before is None or r.position < before))

    found = [r.position for r in log if holds(r)]
    return (found[::-1] if newest_first else found)[:limit]


def test_each_filter_of_a_query_selects_its_rows(store: Store) -> None:
    store.append(rows(
        bid("t1", "a1", 1, minute=0),
        bid("t2", "a2", 2, minute=1, source="other"),
        ev(_T.TASK_STARTED, "t1", "a2", minute=2),
        ev(_T.AGENT_JOINED, agent="a1", minute=3),
        ev(_T.TASK_FAILED, "t2", minute=4, reason="no bids"),
        ev(_T.SYSTEM_INFO, minute=5, source="other", message="hi")))
    assert positions(store.query(EventFilter(task_id="t1"))) == [1, 3]
    assert positions(store.query(EventFilter(agent_id="a2"))) == [2, 3]
    assert positions(store.query(EventFilter(agent_id="a1"))) == [1, 4]
    assert positions(store.query(EventFilter(source="other"))) == [2, 6]
    assert positions(store.query(EventFilter(since=at(1), until=at(3)))) == [2, 3]
    assert positions(store.query(EventFilter(since=at(4)))) == [5, 6]
    assert positions(store.query(EventFilter(until=at(1)))) == [1]
    several = EventFilter(types=frozenset({"task.failed", "agent.joined", "task.exploded"}))
    assert positions(store.query(several)) == [4, 5]
    assert positions(store.query(EventFilter(types=frozenset({_T.TASK_STARTED})))) == [3]
    assert list(store.query(EventFilter(types=frozenset()))) == []
    both = EventFilter(types=frozenset({"bid.submitted"}), task_id="t2", agent_id="a2",
                       source="other", since=at(1), until=at(2))
    assert positions(store.query(both)) == [2]
    assert positions(store.query(EVERYTHING, newest_first=True, limit=2)) == [6, 5]


def _data_log() -> list[StoredEvent]:
    """Payloads of every JSON kind, and two rows whose payload is not looked into."""
    conforming = rows(
        bid("t1", "a1", 120), bid("t2", "a2", 90),
        ev(_T.TOOL_COMPLETED, "t1", "a1", tool="web.search", call_id="c1", duration_ms=1.5),
        ev(_T.SYSTEM_INFO, message="120"),
        ev(_T.TOOL_CALLED, "t2", "a2", tool="sql", call_id="c2", arguments={"depth": 3, "q": "x"}),
        ev(_T.AGENT_STATUS_CHANGED, agent="a1", status="busy", ok=True, note=None),
        ev(_T.AGENT_STATUS_CHANGED, agent="a2", status="idle", ok=False))
    (base,) = rows(bid("t3", "a3", 120))
    not_json = base._replace(id="not-json", data="{bid_sats: NaN", conforms=False, hash=None)
    unchecked = base._replace(id="unchecked", conforms=None, hash=None)
    return [*conforming, not_json, unchecked]


@pytest.mark.parametrize(("path", "op", "value", "expected"), [
    ("bid_sats", "=", "120", [1]),
    ("bid_sats", "=", "120.0", [1]),
    ("bid_sats", "!=", "120", [2, 3, 4, 5, 6, 7, 8, 9]),
    ("bid_sats", ">", "100", [1]),
    ("bid_sats", "<", "100", [2]),
    ("duration_ms", ">", "1", [3]),
    ("duration_ms", "<", "1.5e0", []),
    ("message", "=", "120", [4]),
    ("message", ">", "100", []),
    ("tool", "=", "web.search", [3]),
    ("arguments.depth", "=", "3", [5]),
    ("arguments.q", "=", "x", [5]),
    ("arguments", "=", "x", []),
    ("status", "=", "busy", [6]),
    ("ok", "=", "true", [6]),
    ("ok", "=", "false", [7]),
    ("ok", "!=", "true", [1, 2, 3, 4, 5, 7, 8, 9]),
    ("note", "=", "null", [6]),
    ("nothing", "=", "null", []),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_data_condition_selects_by_one_payload_field(store: Store, path: str, op: str,
                                                       value: str, expected: list[int]) -> None:
    store.append(_data_log())
    condition = DataCondition(tuple(path.split(".")), op, value)
    found = positions(store.query(EventFilter(data=(condition,))))
    assert found == expected
    assert found == [r.position for r in store.read() if condition.holds(r)]


def test_data_conditions_combine_with_every_other_filter(store: Store) -> None:
    store.append(_data_log())
    big = DataCondition(("bid_sats",), ">", "50")
    assert positions(store.query(EventFilter(data=(big,)))) == [1, 2]
    assert positions(store.query(EventFilter(data=(big, DataCondition(("bid_sats",), "<", "100"))
                                             ))) == [2]
    assert positions(store.query(EventFilter(task_id="t1", data=(big,)))) == [1]
    assert positions(store.query(EventFilter(types=frozenset({"bid.submitted"}), agent_id="a2",
                                             since=at(-1), data=(big,)))) == [2]
    assert positions(store.query(EventFilter(data=(big,)), newest_first=True, limit=1)) == [2]


@pytest.mark.parametrize(("path", "op", "value", "problem"), [
    ((), "=", "1", "not a path"), (("a'b",), "=", "1", "not a path"), (("a", ""), "=", "1", "not a path"),
    (("x",), ">", "ten", "compares numbers"), (("x",), "~", "1", "operator"),
    (("x",), "<", "NaN", "compares numbers"),
])
def test_a_malformed_data_condition_is_refused(path: tuple[str, ...], op: str, value: str,
                                               problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        DataCondition(path, op, value)


def test_a_naive_time_is_refused(store: Store) -> None:
    store.append(rows(bid("t", "a", 1)))
    with pytest.raises(InvalidEvent, match="naive"):
        list(store.query(EventFilter(since=datetime(2025, 3, 1))))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_query_gives_the_rows_a_plain_filter_gives(store: Store, data: st.DataObject) -> None:
    # (The store is filled once and only read: sharing it between examples is sound.)
    if store.head() == 0:
        store.append(rows(*_query_log()))
    log = list(store.read())
    draw = data.draw
    maybe_minute = st.none() | st.integers(-1, 61).map(at)
    where = EventFilter(
        types=draw(st.none() | st.frozensets(st.sampled_from([k.value for k in _KINDS]
                                                             + ["task.exploded"]), max_size=4)),
        task_id=draw(st.sampled_from([None, None, "t1", "t3", "t9"])),
        agent_id=draw(st.sampled_from([None, None, "a2", "a9"])),
        source=draw(st.sampled_from([None, None, "agent"])),
        since=draw(maybe_minute), until=draw(maybe_minute))
    options: dict[str, Any] = {
        "after": draw(st.integers(0, 82)), "before": draw(st.none() | st.integers(0, 82)),
        "limit": draw(st.none() | st.integers(0, 30)), "newest_first": draw(st.booleans())}
    assert positions(store.query(where, **options)) == _expected(log, where, **options)


def _pages(store: Store, where: EventFilter, size: int, newest_first: bool) -> list[list[int]]:
    """Every page of a query, each asked for by the last position of the one before."""
    pages: list[list[int]] = []
    while True:
        cursor: dict[str, int] = {}
        if pages:
            cursor = {"before" if newest_first else "after": pages[-1][-1]}
        page = positions(store.query(where, limit=size, newest_first=newest_first, **cursor))
        if not page:
            return pages
        pages.append(page)


@pytest.mark.parametrize("where", [
    EVERYTHING, EventFilter(types=frozenset({"bid.submitted", "task.failed"})),
    EventFilter(task_id="t1"), EventFilter(agent_id="a3"), EventFilter(source="agent"),
    EventFilter(since=at(10), until=at(50)), EventFilter(types=frozenset({"task.started"})),
], ids=["everything", "types", "task", "agent", "source", "time", "one type"])
@pytest.mark.parametrize("newest_first", [False, True], ids=["oldest first", "newest first"])
def test_keyset_pages_walk_a_query_in_both_directions(store: Store, where: EventFilter,
                                                      newest_first: bool) -> None:
    store.append(rows(*_query_log()))
    whole = positions(store.query(where, newest_first=newest_first))
    pages = _pages(store, where, 3, newest_first)
    assert [p for page in pages for p in page] == whole == _expected(
        list(store.read()), where, newest_first=newest_first)
    assert all(len(page) == 3 for page in pages[:-1]) and len(pages) >= 2


def test_a_query_longer_than_a_page_streams_every_row_once_in_both_directions(
        store: Store) -> None:
    # Past the SQL backends' 2,000-row page and 500-position chunk, on every query path.
    log = [bid(f"t{n % 2}", f"a{n % 3}", n, minute=n) for n in range(4_500)]
    log[1000:1000] = [ev(_T.TASK_FAILED, "t0", minute=1000, reason="x")]
    store.append(rows(*log))
    found = list(store.read())
    for where in (EVERYTHING, EventFilter(types=frozenset({"bid.submitted"})),
                  EventFilter(task_id="t0"),
                  EventFilter(since=at(200), until=at(3_900)),
                  EventFilter(types=frozenset({"bid.submitted", "task.failed"}), agent_id="a1",
                              since=at(100))):
        for newest_first in (False, True):
            for limit in (None, 2_100):
                got = positions(store.query(where, limit=limit, newest_first=newest_first))
                assert got == _expected(found, where, limit=limit, newest_first=newest_first), (
                    where, newest_first, limit)


def test_count_by_type_counts_each_type_in_a_time_range(store: Store) -> None:
    store.append(rows(bid("t1", "a", 1, minute=0), bid("t1", "a", 2, minute=60),
                      ev(_T.SYSTEM_ERROR, minute=120, message="x"),
                      ev(_T.TASK_CREATED, "t2", minute=180)))
    assert store.count_by_type() == {"bid.submitted": 2, "system.error": 1, "task.created": 1}
    assert store.count_by_type(since=at(30)) == {"bid.submitted": 1, "system.error": 1,
                                                 "task.created": 1}
    assert store.count_by_type(until=at(120)) == {"bid.submitted": 2}
    assert store.count_by_type(at(60), at(180)) == {"bid.submitted": 1, "system.error": 1}
    assert store.count_by_type(at(200)) == {}


def test_ids_and_texts_that_look_like_sql_are_stored_verbatim(store: Store) -> None:
    task, agent, source = "t1'; DROP TABLE event_log; --", 'a" OR 1=1 --', "x%s?%%"
    hostile = ev(_T.BID_SUBMITTED, task, agent, source=source, id="e'); DELETE FROM swarmlog_streams; --",
                 bid_sats=1, note="'); DROP TABLE swarmlog_snapshots; --")
    store.append(rows(bid("t1", "a", 0), hostile))
    for where in (EventFilter(task_id=task), EventFilter(agent_id=agent),
                  EventFilter(source=source)):
        assert [r.event for r in store.query(where)] == [hostile]
    found = store.get(hostile.id)
    assert found is not None and found.event == hostile
    assert store.stream_versions([f"task-{task}"]) == {f"task-{task}": 1}
    store.save_snapshot("p", 1, 2, "{}", [(task, '"x"'), ("t%", '"y"'), ("t_", '"z"')])
    assert store.snapshot_items("p", 1, 2, prefix="t1'") == [(task, '"x"')]
    assert store.snapshot_items("p", 1, 2, prefix="t%") == [("t%", '"y"')]
    assert store.snapshot_items("p", 1, 2, prefix="t_") == [("t_", '"z"')]
    assert store.head() == 2 and len(list(store.read())) == 2


def test_a_payload_keeps_its_exact_json_text(store: Store) -> None:
    # Another client's spelling (spaces, key order, escapes, number forms): kept byte for byte.
    text = ('{"tool": "search", "zeta": 1,  "alpha": {"z": [1.5e-7, 1E2, 9223372036854775807],'
            ' "a": "\\u00fcn\\u00efc\\u00f8d\\u00e9 \\u2713 \\"q\\""}, "args": {"b": null, "a": true}}')
    (base,) = rows(ev(_T.TOOL_CALLED, agent="a", tool="search"))
    written = base._replace(data=text, conforms=None, hash=None)
    (ours,) = rows(ev(_T.TOOL_CALLED, agent="a", tool="grep", arguments={"ü": [1.5, None]}))
    store.append([written, ours])
    assert [r.data for r in store.read()] == [text, ours.data]
    decoded = next(store.read()).event
    assert decoded.data.model_extra is not None
    assert decoded.data.model_extra["alpha"]["a"] == 'ünïcødé ✓ "q"'


def test_an_event_stored_as_the_adr017_module_took_it_reads_back_exactly(store: Store) -> None:
    """What the facade stores as given (not conforming: an empty source, a payload that is not
    JSON, NUL and lone-surrogate escapes, 70-bit integers) every backend keeps byte for byte."""
    given = [
        encode_as_given("task.created", "", "t1"),
        encode_as_given("system.warning", "cron", data={"ratio": float("nan"), "inf": float("inf")}),
        encode_as_given("system.info", "c", data={"text": "nul\x00and\ud800", "big": 2**70}),
        encode_as_given("bid.submitted", "c", "t1", "a1", {"bid_sats": 12.5}),
    ]
    assert [r.conforms for r in given] == [False] * 4
    store.append(given)
    back = list(store.read())
    assert [(r.source, r.data, bool(r.conforms)) for r in back] == [
        (r.source, r.data, False) for r in given]


# -- pruning ---------------------------------------------------------------------------------------


def test_a_prune_keeps_positions_and_stream_versions_going(store: Store) -> None:
    store.append(rows(*(bid("t1", "a", n, minute=n * 60 * 24) for n in range(4))))
    end = prefix_end(store, at(2 * 60 * 24))
    assert end == 2 and first_stored(store) == 1
    doomed = list(store.read(until=2))
    assert remove_prefix(store, 1, end, "2025-03-03T00:00:00.000000+00:00", "/a/seg.jsonl.gz",
                         "ab" * 32) == 2
    assert positions(store.read()) == [3, 4] and store.get(doomed[0].id) is None
    assert store.head() == 4 and stored_count(store) == 2 and first_stored(store) == 3
    assert store.append(rows(bid("t1", "a", 9))) == [5]
    assert [r.stream_version for r in store.read()] == [3, 4, 5]
    assert store.stream_versions(["task-t1"]) == {"task-t1": 5}
    (prune,) = store.prunes()
    assert (prune.first_position, prune.last_position, prune.removed, prune.cutoff,
            prune.archive_path, prune.archive_sha256) == (
        1, 2, 2, "2025-03-03T00:00:00.000000+00:00", "/a/seg.jsonl.gz", "ab" * 32)
    assert remove_prefix(store, 3, 5, "2025-04-01T00:00:00.000000+00:00", None, None) == 3
    assert list(store.read()) == [] and store.head() == 5
    assert stored_count(store) == 0 and first_stored(store) == 6 and prefix_end(store, at(0)) == 5
    assert [(p.first_position, p.last_position, p.removed) for p in store.prunes()] == [
        (1, 2, 2), (3, 5, 3)]
    assert store.prunes()[0].id < store.prunes()[1].id
    assert store.append(rows(bid("t1", "a", 10))) == [6] and store.count_by_type() == {
        "bid.submitted": 1}


def test_a_recorded_prune_deletes_its_rows_oldest_first_a_bounded_step_at_a_time(
    store: Store
) -> None:
    store.append(rows(*(bid("t1", "a", n) for n in range(10))))
    record = store.record_prune(1, 7, "2025-03-02T00:00:00.000000+00:00", None, None)
    assert (record.first_position, record.last_position, record.removed) == (1, 7, 7)
    assert store.prunes() == [record] and record.cut_hash == store.hash_at(7)
    assert positions(store.read()) == list(range(1, 11))  # recorded, not yet deleted
    assert store.delete_pruned(3) == 3
    assert positions(store.read()) == list(range(4, 11)) and first_stored(store) == 4
    assert store.hash_at(7) == record.cut_hash  # (the rows before the cut go first)
    assert store.delete_pruned(3) == 3 and store.delete_pruned(3) == 1
    assert store.delete_pruned(3) == 0 and positions(store.read()) == [8, 9, 10]
    assert store.hash_at(7) == record.cut_hash


def test_a_prune_is_recorded_only_over_exactly_the_oldest_stored_rows(store: Store) -> None:
    store.append(rows(*(bid("t1", "a", n) for n in range(10))))
    for first, last in ((2, 5), (1, 11), (0, 3)):
        with pytest.raises(StoreError, match=f"cannot record a prune of {first}..{last}"):
            store.record_prune(first, last, "2025-03-02T00:00:00.000000+00:00", None, None)
    store.record_prune(1, 5, "2025-03-02T00:00:00.000000+00:00", None, None)
    store.delete_pruned(2)  # a prune killed while deleting: rows 3..5 are left
    with pytest.raises(StoreError, match="another prune ran meanwhile, or one is not finished"):
        store.record_prune(6, 8, "2025-03-02T00:00:00.000000+00:00", None, None)
    assert len(store.prunes()) == 1 and store.delete_pruned(100) == 3
    assert store.record_prune(6, 8, "2025-03-02T00:00:00.000000+00:00", None, None).removed == 3
    assert store.delete_pruned(100) == 3 and positions(store.read()) == [9, 10]


def test_a_prune_is_not_recorded_over_a_recorded_prune_whose_rows_are_still_stored(
    store: Store
) -> None:
    """A prune killed after recording itself leaves its rows stored: a second prune (one that
    did not take the prune lock) must not record them again, whichever its range."""
    store.append(rows(*(bid("t1", "a", n) for n in range(10))))
    store.record_prune(1, 3, "2025-03-02T00:00:00.000000+00:00", None, None)
    for last in (2, 3, 7):
        with pytest.raises(StoreError, match="a recorded prune reaches position 3; another "
                                             "prune ran meanwhile, or one is not finished"):
            store.record_prune(1, last, "2025-03-02T00:00:00.000000+00:00", None, None)
    assert len(store.prunes()) == 1 and store.delete_pruned(100) == 3
    assert store.record_prune(4, 7, "2025-03-02T00:00:00.000000+00:00", None, None).removed == 4


def test_one_prune_lock_at_a_time_and_it_is_let_go_of_after_the_body(store: Store) -> None:
    held = store.prune_lock()
    with held, pytest.raises(StoreError, match="another prune of it is running"), \
            store.prune_lock():
        pytest.fail("a second holder of the prune lock")
    with pytest.raises(ZeroDivisionError), store.prune_lock():
        1 / 0  # noqa: B018
    with store.prune_lock():
        pass


_HOLD_PRUNE_LOCK = """
import sys, time
from store import open_store
store = open_store(sys.argv[1])
with store.prune_lock():
    print("held", flush=True)
    time.sleep(120)
"""


def test_the_prune_lock_of_a_killed_process_is_let_go_of(
        backend: tuple[StoreFactory, str | None]) -> None:
    factory, location = backend
    if location is None:
        pytest.skip("the in-memory store lives in one process; there is nothing to share")
    store = factory()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_PRUNE_LOCK, location], text=True,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StoreError, match="another prune of it is running"), \
                store.prune_lock():
            pytest.fail("the prune lock held by another process")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    deadline = time.monotonic() + 10  # (the server notices the dropped connection)
    while True:
        try:
            with store.prune_lock():
                break
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    store.close()


def test_prefix_end_stops_before_the_first_young_row(store: Store) -> None:
    old, young = 0, 10 * 60 * 24
    store.append(rows(bid("t", "a", 1, minute=old), bid("t", "a", 2, minute=young),
                      bid("t", "a", 3, minute=old)))
    assert prefix_end(store, at(5 * 60 * 24)) == 1
    assert prefix_end(store, at(young)) == 1  # a row at the cutoff is young
    assert prefix_end(store, at(50 * 60 * 24)) == 3
    assert prefix_end(store, at(-1)) == 0


def test_prefix_end_passes_rows_stamped_at_no_time_or_later_than_any_append(store: Store) -> None:
    """Such rows (written by another client) would otherwise stop every prune, for good."""
    now = at(30 * 60 * 24)
    stamped = [row._replace(timestamp=stamp) for row, stamp in zip(
        rows(*(bid("t", "a", n, minute=n) for n in range(4))),
        ["yesterday", "9999-12-31T23:59:59.999999+00:00", "2026-01-01T00:00:00+00:00", ""],
        strict=True)]
    store.append([*rows(bid("t", "a", 9)), *stamped, *rows(bid("t", "a", 10, minute=60))])
    assert prefix_end(store, at(1), now=now) == 5  # up to the young event at 60 minutes
    assert prefix_end(store, at(61), now=now) == 6
    ahead = now + timedelta(minutes=4)  # a clock a few minutes ahead: young, not impossible
    store.append(rows(bid("t", "a", 11, minute=(ahead - EPOCH) / timedelta(minutes=1)),
                      bid("t", "a", 12)))
    assert prefix_end(store, now, now=now) == 6


# -- snapshots -------------------------------------------------------------------------------------


def test_snapshots_are_found_by_projection_version_and_position(store: Store) -> None:
    assert store.latest_snapshot("read_models", 1) is None and store.snapshots() == []
    first = store.save_snapshot("read_models", 1, 10, '{"n": 1}')
    second = store.save_snapshot("read_models", 1, 20, '{"n": 2}')
    other = store.save_snapshot("read_models", 2, 30, '{"n": 3}')
    latest = store.latest_snapshot("read_models", 1)
    assert latest is not None and (latest.id, latest.projection, latest.version, latest.position,
                                   latest.state) == (second, "read_models", 1, 20, '{"n": 2}')
    assert len({first, second, other}) == 3 and [s.id for s in store.snapshots()] == [
        first, second, other]
    assert [(s.id, s.position, s.state) for s in store.snapshots(with_state=False)] == [
        (s.id, s.position, "") for s in store.snapshots()]
    earlier = store.latest_snapshot("read_models", 1, upto=19)
    assert earlier is not None and earlier.id == first
    assert store.latest_snapshot("read_models", 1, upto=9) is None
    assert store.latest_snapshot("other", 1) is None
    assert store.delete_snapshots([first]) == 1 and store.delete_snapshots([]) == 0
    assert store.delete_snapshots([first]) == 0
    assert store.latest_snapshot("read_models", 1, upto=19) is None
    assert [s.id for s in store.snapshots()] == [second, other]
    assert store.save_snapshot("read_models", 1, 40, "{}") > other  # ids are not reused


def test_two_snapshots_at_one_position_give_the_newer(store: Store) -> None:
    older = store.save_snapshot("read_models", 1, 10, '"older"')
    newer = store.save_snapshot("read_models", 1, 10, '"newer"')
    latest = store.latest_snapshot("read_models", 1)
    assert latest is not None and latest.id == newer != older and latest.state == '"newer"'


def test_snapshot_items_give_each_entry_as_of_a_position(store: Store) -> None:
    store.save_snapshot("tasks", 1, 10, "{}", [("t1", '"a"'), ("t2", '"b"')])
    store.save_snapshot("tasks", 1, 20, "{}", [("t1", '"c"'), ("t3", '"d"')])
    store.save_snapshot("tasks", 2, 20, "{}", [("t1", '"other version"')])
    store.save_snapshot("agents", 1, 20, "{}", [("t1", '"other projection"')])
    assert [store.snapshot_item("tasks", 1, "t1", upto) for upto in (9, 10, 19, 20, 99)] == [
        None, '"a"', '"a"', '"c"', '"c"']
    assert store.snapshot_item("tasks", 1, "t3", 19) is None
    assert store.snapshot_item("tasks", 1, "t9", 99) is None
    assert store.snapshot_items("tasks", 1, 15) == [("t1", '"a"'), ("t2", '"b"')]
    assert store.snapshot_items("tasks", 1, 20) == [("t1", '"c"'), ("t2", '"b"'), ("t3", '"d"')]
    assert store.snapshot_items("tasks", 2, 20) == [("t1", '"other version"')]
    assert store.snapshot_items("tasks", 1, 9) == []
    # Two snapshots at one position (two processes): the newer write of an entry stands.
    store.save_snapshot("tasks", 1, 20, "{}", [("t1", '"e"')])
    assert store.snapshot_item("tasks", 1, "t1", 20) == '"e"'


def test_snapshot_items_are_filtered_by_key_prefix_in_key_order(store: Store) -> None:
    keys = ["task:t10", "task:t1", "task:t2", "task:T1", "task:", "tasks", "agent:a1",
            "task:t1\U0001f600", "task:tü"]
    store.save_snapshot("read_models", 1, 5, "{}", [(k, f'"{i}"') for i, k in enumerate(keys)])
    tasks = ["task:", "task:T1", "task:t1", "task:t10", "task:t1\U0001f600", "task:t2", "task:tü"]
    assert [k for k, _ in store.snapshot_items("read_models", 1, 5, prefix="task:")] == tasks
    assert [k for k, _ in store.snapshot_items("read_models", 1, 5, prefix="task:t1")] == [
        "task:t1", "task:t10", "task:t1\U0001f600"]
    assert [k for k, _ in store.snapshot_items("read_models", 1, 5)] == sorted(keys)
    assert store.snapshot_items("read_models", 1, 5, prefix="x") == []
    assert store.snapshot_items("read_models", 1, 5, prefix="agent:a1") == [("agent:a1", '"6"')]


def test_deleting_a_snapshot_keeps_its_items_for_newer_snapshots(store: Store) -> None:
    old = store.save_snapshot("tasks", 1, 10, "{}", [("t1", '"closed"')])
    store.save_snapshot("tasks", 1, 20, "{}", [("t2", '"closed too"')])
    store.delete_snapshots([old])
    assert store.snapshot_items("tasks", 1, 20) == [("t1", '"closed"'), ("t2", '"closed too"')]


# -- transactions ----------------------------------------------------------------------------------


def test_a_failed_transaction_leaves_the_log_and_the_snapshots_as_they_were(store: Store) -> None:
    store.append(rows(bid("t", "a", 1), bid("t", "a", 2), bid("u", "a", 3)))
    kept = store.save_snapshot("tasks", 1, 1, "{}", [("t", '"kept"')])
    before = list(store.read())
    with pytest.raises(RuntimeError, match="crash"), store.transaction():
        store.append(rows(bid("t", "a", 4), ev(_T.AGENT_JOINED, agent="a")))
        store.save_snapshot("tasks", 1, 5, "{}", [("t", '"lost"')])
        store.delete_snapshots([kept])
        remove_prefix(store, 1, 2, "2025-03-02T00:00:00.000000+00:00", None, None)
        raise RuntimeError("crash inside the transaction")
    assert list(store.read()) == before and store.head() == 3 and store.prunes() == []
    assert [s.id for s in store.snapshots()] == [kept]
    assert store.snapshot_items("tasks", 1, 99) == [("t", '"kept"')]
    assert store.stream_versions(["task-t", "agent-a"]) == {"task-t": 2, "agent-a": 0}
    assert store.append(rows(bid("t", "a", 5))) == [4]  # positions stay gapless


def test_a_transaction_commits_all_its_work_at_once_and_nested_ones_join_it(store: Store) -> None:
    with store.transaction():
        store.append(rows(bid("t", "a", 1)))
        with store.transaction():
            store.append(rows(bid("t", "a", 2)))
            store.save_snapshot("tasks", 1, 2, "{}")
        assert store.head() == 2  # its own work is visible inside
    assert positions(store.read()) == [1, 2] and len(store.snapshots()) == 1
    with pytest.raises(RuntimeError), store.transaction():
        with store.transaction():
            store.append(rows(bid("t", "a", 3)))
        raise RuntimeError("the outer transaction fails after the inner one ended")
    assert store.head() == 2


def test_a_refused_append_inside_a_transaction_keeps_the_transactions_other_work(
        store: Store) -> None:
    stored_row, first, second = rows(bid("t", "a", 1), bid("t", "a", 2), bid("t", "a", 3))
    store.append([stored_row])
    with store.transaction():
        store.append([first])
        assert store.append([stored_row, second]) == [1, 3]  # a partial retry
        with pytest.raises(ConcurrencyError):
            store.append(rows(bid("t", "a", 4)), expected={"task-t": 0})
        assert store.append(rows(bid("t", "a", 5)), expected={"task-t": 3}) == [4]
    assert [r.stream_version for r in store.read()] == [1, 2, 3, 4]
    assert [r.id for r in store.read()][:3] == [stored_row.id, first.id, second.id]


# -- concurrency -----------------------------------------------------------------------------------


def test_one_store_shared_by_threads_hands_out_each_position_once(store: Store) -> None:
    results: list[list[int]] = [[] for _ in range(4)]

    def write(n: int) -> None:
        for i in range(25):
            results[n] += store.append(rows(bid(f"t{n}", "a", i)))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p for r in results for p in r) == list(range(1, 101))
    assert all(r == sorted(r) for r in results)
    for n in range(4):
        found = list(store.query(EventFilter(task_id=f"t{n}")))
        assert [r.stream_version for r in found] == list(range(1, 26))
        assert [sats(r) for r in found] == list(range(25))


def test_a_reader_in_another_thread_sees_whole_batches_only(store: Store) -> None:
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            store.append(rows(*(bid("t", "a", n) for n in range(50))))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(20):
            seen = positions(store.read())
            assert seen == list(range(1, len(seen) + 1)) and len(seen) % 50 == 0
    finally:
        stop.set()
        writer.join()


def test_concurrent_appends_from_two_processes_lose_nothing(
        backend: tuple[StoreFactory, str | None]) -> None:
    factory, location = backend
    if location is None:
        pytest.skip("the in-memory store lives in one process; there is nothing to share")
    factory().close()  # create the schema before the writers race
    writers = [subprocess.Popen([sys.executable, "-m", "tests.store.writer", location, name,
                                 "40", "25"]) for name in ("w1", "w2")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    store = factory()
    try:
        found = list(store.read())
        assert positions(found) == list(range(1, 2001))
        for name in ("w1", "w2"):
            bids = [sats(r) for r in found if r.source == name]
            assert bids == list(range(1000))  # each writer's rows, all there, in its own order
        for task in {r.task_id for r in found if r.task_id}:
            versions = [r.stream_version for r in store.query(EventFilter(task_id=task))]
            assert versions == list(range(1, len(versions) + 1))
    finally:
        store.close()


def test_wait_for_append_wakes_when_another_thread_appends(store: Store) -> None:
    assert store.wait_for_append(0, timeout=0.05) is False
    writer = threading.Timer(0.1, lambda: store.append(rows(bid("t", "a", 1))))
    writer.start()
    assert store.wait_for_append(0, timeout=5) is True
    writer.join()
    assert store.wait_for_append(0, timeout=0) is True
    assert store.wait_for_append(1, timeout=0.05) is False


def test_size_bytes_grows_with_the_log_where_the_log_has_a_size(store: Store) -> None:
    empty = store.size_bytes()
    store.append(rows(*(bid("t", "a", n) for n in range(2_000))))
    grown = store.size_bytes()
    if empty is None:  # the in-memory store
        assert grown is None
    else:
        assert grown is not None and grown > empty > 0


# -- what a plain SQL client sees and may do -------------------------------------------------------


def test_update_and_delete_from_a_plain_sql_client_are_refused(store: Store,
                                                               raw_sql: RawSQL) -> None:
    store.append(rows(ev(_T.TASK_CREATED, "t1", source="test")))
    with pytest.raises(raw_sql.refused, match="append-only"):
        raw_sql.execute("UPDATE event_log SET source = 'forged'")
    refused, why = raw_sql.refused_delete
    for statement in ("DELETE FROM event_log", "DELETE FROM event_log WHERE seq = 1"):
        with pytest.raises(refused, match=why):
            raw_sql.execute(statement)
    assert raw_sql.execute("SELECT seq, source FROM event_log") == [(1, "test")]


def test_the_prune_gate_is_closed_again_after_a_prune(store: Store, raw_sql: RawSQL) -> None:
    store.append(rows(*(bid("t", "a", n) for n in range(3))))
    remove_prefix(store, 1, 1, "2025-03-01T00:00:00.000000+00:00", None, None)
    refused, why = raw_sql.refused_delete
    with pytest.raises(refused, match=why):
        raw_sql.execute("DELETE FROM event_log")
    assert raw_sql.execute("SELECT seq FROM event_log ORDER BY seq") == [(2,), (3,)]


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("data", '{"bid_sats": -5}', "bid_sats"),
    ("event_type", "task.exploded", "task.exploded"),
    ("data", "[1, 2]", "not an object"),
])
def test_a_row_altered_behind_the_stores_back_raises_corrupt_event_naming_its_position(
        store: Store, raw_sql: RawSQL, column: str, value: str, reason: str) -> None:
    store.append(rows(bid("t", "a", 1), bid("t", "a", 2), bid("t", "a", 3)))
    raw_sql.tamper(f"UPDATE event_log SET {column} = ? WHERE seq = 2", value)
    first, altered, last = store.read()  # reading rows does not validate them
    assert sats(first) == 1 and last.position == 3
    with pytest.raises(CorruptEvent) as raised:
        _ = altered.event
    assert raised.value.seq == 2 and reason in str(raised.value).lower()
    with pytest.raises(raw_sql.refused):  # the guard is back
        raw_sql.execute("UPDATE event_log SET source = 'x'")


def test_a_plain_client_sees_the_exact_payload_text_and_null_for_none(store: Store,
                                                                      raw_sql: RawSQL) -> None:
    spelled = '{"b": 1,  "a": "\\u00e9"}'
    (base,) = rows(ev(_T.SYSTEM_INFO, message="m"))
    store.append([*rows(ev(_T.SYSTEM_ERROR)), base._replace(data=spelled, hash=None)])
    assert raw_sql.execute("SELECT seq, CAST(data AS TEXT) FROM event_log ORDER BY seq") == [
        (1, None), (2, spelled)]
    assert raw_sql.execute("SELECT count(*) FROM event_log WHERE data IS NULL") == [(1,)]
    (empty, _) = store.read()
    assert empty.data is None and empty.stream_id == "system" and empty.event.data.model_dump(
        exclude_unset=True) == {}
