"""The EventStore contract, written once and run against every backend (`store` fixture)."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from domain.codec import encode, row_checksum
from domain.errors import ConcurrencyError, InvalidEvent
from domain.events import (
    AgentJoined,
    BidSubmitted,
    EventType,
    SystemErrorLogged,
    TaskCreated,
    TaskStarted,
)
from store.base import EventStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bid(task: str, agent: str, sats: int, at: datetime | None = None) -> BidSubmitted:
    return BidSubmitted(source="test", task_id=task, agent_id=agent, data={"bid_sats": sats},
                        timestamp=at or T0)


def test_positions_start_at_one_and_follow_append_order(store: EventStore) -> None:
    events = [bid("t1", "a1", n) for n in range(5)]
    assert store.append(events[:2]) == [1, 2]
    assert store.append(events[2:]) == [3, 4, 5]
    assert [r.position for r in store.read()] == [1, 2, 3, 4, 5]
    assert [r.event for r in store.read()] == events
    assert store.head() == 5 and store.count() == 5


def test_an_empty_log_reads_nothing_and_has_head_zero(store: EventStore) -> None:
    assert list(store.read()) == []
    assert store.head() == 0 and store.count() == 0
    assert store.append([]) == []


def test_a_batch_with_one_invalid_event_stores_nothing(store: EventStore) -> None:
    store.append([bid("t1", "a1", 1)])
    bad = SystemErrorLogged(source="test", data={"detail": "x" * 70_000})
    with pytest.raises(InvalidEvent):
        store.append([bid("t1", "a1", 2), bad, bid("t1", "a1", 3)])
    assert store.head() == 1 and [r.event.data.bid_sats for r in store.read()] == [1]
    assert store.stream_version("task-t1") == 1


def test_reappending_a_stored_event_is_a_noop_returning_its_position(store: EventStore) -> None:
    first, second = bid("t1", "a1", 1), bid("t2", "a1", 2)
    assert store.append([first, second]) == [1, 2]
    assert store.append([second]) == [2]
    third = bid("t1", "a2", 3)
    assert store.append([first, third, third]) == [1, 3, 3]
    assert store.head() == 3
    assert store.stream_version("task-t1") == 2


def test_stream_versions_are_gapless_per_stream(store: EventStore) -> None:
    store.append([bid("t1", "a", 1), bid("t2", "a", 1), bid("t1", "a", 2)])
    store.append([AgentJoined(source="test", agent_id="a"), SystemErrorLogged(source="test")])
    versions = [(r.stream_id, r.stream_version) for r in store.read()]
    assert versions == [("task-t1", 1), ("task-t2", 1), ("task-t1", 2), ("agent-a", 1), ("system", 1)]
    assert store.stream_version("task-t1") == 2 and store.stream_version("nope") == 0


def test_expected_version_guards_a_stream(store: EventStore) -> None:
    assert store.append([TaskCreated(source="test", task_id="t1")], expected_version=0) == [1]
    store.append([bid("t1", "a", 1)], expected_version=1)
    with pytest.raises(ConcurrencyError) as raised:
        store.append([bid("t1", "b", 2)], expected_version=1)
    assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == ("task-t1", 1, 2)
    assert store.head() == 2


def test_expected_version_zero_refuses_an_existing_stream(store: EventStore) -> None:
    store.append([TaskCreated(source="test", task_id="t1")])
    with pytest.raises(ConcurrencyError):
        store.append([TaskCreated(source="test", task_id="t1")], expected_version=0)
    assert store.head() == 1


def test_expected_version_applies_to_a_single_stream(store: EventStore) -> None:
    with pytest.raises(InvalidEvent, match="expected_version"):
        store.append([bid("t1", "a", 1), bid("t2", "a", 1)], expected_version=0)
    assert store.head() == 0


def test_a_retried_append_succeeds_even_with_its_old_expected_version(store: EventStore) -> None:
    event = TaskCreated(source="test", task_id="t1")
    assert store.append([event], expected_version=0) == [1]
    assert store.append([event], expected_version=0) == [1]


def test_read_after_and_limit(store: EventStore) -> None:
    store.append([bid("t", "a", n) for n in range(10)])
    assert [r.position for r in store.read(after=7)] == [8, 9, 10]
    assert [r.position for r in store.read(after=2, limit=3)] == [3, 4, 5]
    assert list(store.read(after=10)) == []


def test_reads_by_task_agent_and_time_range(store: EventStore) -> None:
    store.append([
        bid("t1", "a1", 1, T0),
        bid("t2", "a2", 2, T0 + timedelta(minutes=1)),
        TaskStarted(source="test", task_id="t1", agent_id="a2", timestamp=T0 + timedelta(minutes=2)),
        AgentJoined(source="test", agent_id="a1", timestamp=T0 + timedelta(minutes=3)),
    ])
    assert [r.position for r in store.read_task("t1")] == [1, 3]
    assert [r.position for r in store.read_agent("a2")] == [2, 3]
    assert [r.position for r in store.read_agent("a1")] == [1, 4]
    window = store.read_range(T0 + timedelta(minutes=1), T0 + timedelta(minutes=3))
    assert [r.position for r in window] == [2, 3]
    only_bids = store.read_range(since=T0, types=[EventType.BID_SUBMITTED])
    assert [r.position for r in only_bids] == [1, 2]
    assert list(store.read_range(types=[])) == []


def test_query_filters_newest_first_with_limit_and_offset(store: EventStore) -> None:
    store.append([bid("t1", "a1", n, T0 + timedelta(seconds=n)) for n in range(6)])
    store.append([TaskCreated(source="other", task_id="t1", timestamp=T0)])
    assert [r.position for r in store.query(task_id="t1", limit=3)] == [7, 6, 5]
    assert [r.position for r in store.query(task_id="t1", limit=2, offset=2)] == [5, 4]
    assert [r.position for r in store.query(source="other")] == [7]
    assert [r.position for r in store.query(event_type=EventType.TASK_CREATED)] == [7]
    since = store.query(since=T0 + timedelta(seconds=4), event_type=EventType.BID_SUBMITTED)
    assert [r.position for r in since] == [6, 5]
    assert [r.position for r in store.query(agent_id="a1", newest_first=False, limit=2)] == [1, 2]


def test_get_by_id(store: EventStore) -> None:
    event = bid("t1", "a1", 7)
    store.append([bid("t0", "a0", 1), event])
    found = store.get(event.id)
    assert found is not None and found.event == event and found.position == 2
    assert store.get("no-such-id") is None


def test_count_by_type_all_time_and_since(store: EventStore) -> None:
    store.append([bid("t1", "a", 1, T0), bid("t1", "a", 2, T0 + timedelta(hours=1)),
                  SystemErrorLogged(source="x", timestamp=T0 + timedelta(hours=2))])
    assert store.count_by_type() == {"bid.submitted": 2, "system.error": 1}
    assert store.count_by_type(T0 + timedelta(minutes=30)) == {"bid.submitted": 1, "system.error": 1}


def test_snapshots_are_found_by_projection_and_version(store: EventStore) -> None:
    assert store.latest_snapshot("tasks", 1) is None
    first = store.save_snapshot("tasks", 1, 10, '{"n": 1}')
    second = store.save_snapshot("tasks", 1, 20, '{"n": 2}')
    store.save_snapshot("tasks", 2, 30, '{"n": 3}')
    latest = store.latest_snapshot("tasks", 1)
    assert latest is not None and (latest.id, latest.position, latest.state) == (second, 20, '{"n": 2}')
    assert first != second and len(store.snapshots()) == 3
    assert [(s.id, s.position, s.state) for s in store.snapshots(with_state=False)] == [
        (s.id, s.position, "") for s in store.snapshots()]
    earlier = store.latest_snapshot("tasks", 1, upto=19)
    assert earlier is not None and earlier.id == first
    assert store.latest_snapshot("tasks", 1, upto=9) is None
    assert store.delete_snapshots([first]) == 1 and store.delete_snapshots([]) == 0
    assert store.latest_snapshot("tasks", 1, upto=19) is None
    assert [s.id for s in store.snapshots()] == [second, second + 1]
    assert store.save_snapshot("tasks", 1, 40, "{}") > second + 1  # ids are not reused


def test_snapshot_items_give_each_entry_as_of_a_position(store: EventStore) -> None:
    store.save_snapshot("tasks", 1, 10, "{}", [("t1", '"a"'), ("t2", '"b"')])
    store.save_snapshot("tasks", 1, 20, "{}", [("t1", '"c"'), ("t3", '"d"')])
    store.save_snapshot("tasks", 2, 20, "{}", [("t1", '"other version"')])
    store.save_snapshot("agents", 1, 20, "{}", [("t1", '"other projection"')])
    assert [store.snapshot_item("tasks", 1, "t1", at) for at in (9, 10, 19, 20, 99)] == [
        None, '"a"', '"a"', '"c"', '"c"']
    assert store.snapshot_item("tasks", 1, "t3", 19) is None
    assert store.snapshot_item("tasks", 1, "t9", 99) is None
    assert store.snapshot_items("tasks", 1, 15) == [("t1", '"a"'), ("t2", '"b"')]
    assert store.snapshot_items("tasks", 1, 20) == [("t1", '"c"'), ("t2", '"b"'), ("t3", '"d"')]
    assert store.snapshot_items("tasks", 2, 20) == [("t1", '"other version"')]
    assert store.snapshot_items("tasks", 1, 9) == []
    assert store.snapshot_items("tasks", 1, 20, prefix="t3") == [("t3", '"d"')]
    assert store.snapshot_items("tasks", 1, 20, prefix="x") == []
    # Two snapshots at one position (two processes): the newer write of an entry stands.
    store.save_snapshot("tasks", 1, 20, "{}", [("t1", '"e"')])
    assert store.snapshot_item("tasks", 1, "t1", 20) == '"e"'


def test_delete_through_keeps_positions_and_stream_versions_going(store: EventStore) -> None:
    store.append([bid("t1", "a", n, T0 + timedelta(days=n)) for n in range(4)])
    assert store.prefix_end(T0 + timedelta(days=2)) == 2
    with store.transaction():
        assert store.delete_through(2) == 2
        store.record_prune(1, 2, 2, (T0 + timedelta(days=2)).isoformat(), None, None)
    assert [r.position for r in store.read()] == [3, 4]
    assert store.head() == 4 and store.count() == 2
    assert store.append([bid("t1", "a", 9)]) == [5]
    assert [r.stream_version for r in store.read()] == [3, 4, 5]
    (prune,) = store.prunes()
    assert (prune.first_position, prune.last_position, prune.removed) == (1, 2, 2)


def test_prefix_end_stops_at_the_first_young_event(store: EventStore) -> None:
    old, young = T0, T0 + timedelta(days=10)
    store.append([bid("t", "a", 1, old), bid("t", "a", 2, young), bid("t", "a", 3, old)])
    assert store.prefix_end(T0 + timedelta(days=5)) == 1
    assert store.prefix_end(T0 + timedelta(days=50)) == 3
    assert store.prefix_end(T0 - timedelta(days=1)) == 0


def test_a_failed_transaction_leaves_the_log_as_it_was(store: EventStore) -> None:
    store.append([bid("t", "a", 1)])
    with pytest.raises(RuntimeError), store.transaction():
        store.append([bid("t", "a", 2)])
        store.save_snapshot("tasks", 1, 2, "{}", [("t", '"x"')])
        raise RuntimeError("crash inside the transaction")
    assert store.head() == 1 and store.count() == 1 and store.snapshots() == []
    assert store.snapshot_items("tasks", 1, 2) == []
    assert store.append([bid("t", "a", 3)]) == [2]


def test_concurrent_appends_from_two_processes_lose_nothing(backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    factory, location = backend
    if location is None:
        pytest.skip("the in-memory store lives in one process; nothing to share")
    factory().close()  # create the schema before the writers race
    writers = [
        subprocess.Popen([sys.executable, "-m", "tests.store.writer", location, name, "40", "25"])
        for name in ("w1", "w2")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    store = factory()
    records = list(store.read())
    assert [r.position for r in records] == list(range(1, 2001))
    for name in ("w1", "w2"):
        sats = [r.event.data.bid_sats for r in records if r.event.source == name]
        assert sats == list(range(1000))  # each writer's events, all there, in its own order
    for task in {r.event.task_id for r in records if r.event.task_id}:
        versions = [r.stream_version for r in store.read_task(task)]
        assert versions == list(range(1, len(versions) + 1))
    store.close()


def test_reading_100k_events_streams_in_bounded_memory(store: EventStore) -> None:
    for start in range(0, 100_000, 5_000):
        store.append([bid(f"t{n % 100}", "a", n) for n in range(start, start + 5_000)])
    tracemalloc.start()
    try:
        seen = 0
        for record in store.read():
            seen += 1
            assert record.position == seen
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 100_000
    # Holding every decoded event would take well over 150 MB; a streaming read holds a page.
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.1f} MiB while reading"


def test_wait_for_append_wakes_when_another_thread_appends(store: EventStore) -> None:
    import threading

    assert store.wait_for_append(0, timeout=0.05) is False
    writer = threading.Timer(0.1, lambda: store.append([bid("t", "a", 1)]))
    writer.start()
    assert store.wait_for_append(0, timeout=5) is True
    writer.join()
    assert store.wait_for_append(0, timeout=0) is True


def test_a_retried_append_inside_a_transaction_keeps_the_transactions_other_work(
        store: EventStore) -> None:
    stored, first, second = bid("t", "a", 1), bid("t", "a", 2), bid("t", "a", 3)
    store.append([stored])
    with store.transaction():
        store.append([first])
        assert store.append([stored, second]) == [1, 3]
        with pytest.raises(ConcurrencyError):
            store.append([bid("t", "a", 4)], expected_version=0)
    assert [r.event for r in store.read()] == [stored, first, second]


def test_query_rows_are_the_rows_of_query_undecoded(store: EventStore) -> None:
    store.append([bid("t1", "a", n) for n in range(4)] + [bid("t2", "b", 9)])
    for filters in ({}, {"task_id": "t1"}, {"agent_id": "b"}, {"limit": 2, "offset": 1},
                    {"newest_first": False}):
        rows, records = store.query_rows(**filters), store.query(**filters)
        assert [r[0] for r in rows] == [r.position for r in records], filters
        assert [(*r[1:9], r[10]) for r in rows] == [encode(r.event) for r in records]
        assert [r[11] for r in rows] == [row_checksum(encode(r.event)) for r in records]


def test_read_rows_gives_what_is_stored_undecoded(store: EventStore) -> None:
    events = [bid("t1", "a", 1), AgentJoined(source="test", agent_id="a", data={"name": "Ann"})]
    store.append(events)
    rows = list(store.read_rows())
    assert [(r[0], r[9]) for r in rows] == [(1, 1), (2, 1)]  # position, stream version
    assert [(*r[1:9], r[10]) for r in rows] == [encode(e) for e in events]
    assert [r[11] for r in rows] == [row_checksum(encode(e)) for e in events]
    assert [r[0] for r in store.read_rows(after=1, limit=5)] == [2]
