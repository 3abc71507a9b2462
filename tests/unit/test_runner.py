"""The projection runner against real stores (in memory and SQLite): start-up from snapshots,
catch-up, follow, rebuild, fold_to, pruned history, streaming, threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.codec import build_event
from domain.errors import ProjectionError
from domain.events import Event, EventType, SystemInfoLogged
from domain.lifecycle import TaskStatus
from projections.agents import AgentsProjection, all_agents, get_agent, online_agents
from projections.base import fold
from projections.runner import ProjectionRunner, default_projections
from projections.summary import counts
from projections.tasks import (
    TasksProjection,
    all_tasks,
    count_by_status,
    get_task,
    open_tasks,
    tasks_by_status,
)
from store.base import EventStore, Recorded
from store.memory import MemoryEventStore
from store.sqlite import SQLiteEventStore
from tests.strategies import fixed_story, recorded, swarm_stories

STORY = fixed_story(8)


class CountingStore:
    """A real store whose `read` counts the events it yields (and how far it ran ahead)."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.yielded = 0

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[Recorded]:
        for record in self.inner.read(after, limit):
            self.yielded += 1
            yield record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory that opens the same store again (a second SQLite connection is what another
    process would have)."""
    opened: list[EventStore] = []
    shared = MemoryEventStore()

    def make() -> EventStore:
        store = shared if request.param == "memory" else SQLiteEventStore(tmp_path / "log.db")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def full_fold(events: list[Event]) -> list[Any]:
    return [fold(p, recorded(events)) for p in default_projections()]


def states(runner: ProjectionRunner) -> list[Any]:
    return [runner.state(p.name) for p in runner.projections]


def test_a_fresh_database_folds_from_zero(make_store: Any) -> None:
    store = make_store()
    store.append(STORY)
    runner = ProjectionRunner(store)
    assert runner.start() == len(STORY)
    assert runner.position == len(STORY)
    assert states(runner) == full_fold(STORY)


def test_startup_reads_only_the_events_after_the_snapshot(make_store: Any) -> None:
    store = make_store()
    head, tail = STORY[: len(STORY) // 2], STORY[len(STORY) // 2 :]
    store.append(head)
    first = ProjectionRunner(store)
    first.start()
    ids = first.snapshot()
    assert len(ids) == 3
    store.append(tail)

    counting = CountingStore(make_store())
    runner = ProjectionRunner(counting)  # type: ignore[arg-type]
    assert runner.start() == counting.yielded == len(tail)
    assert runner.positions() == dict.fromkeys(["tasks", "agents", "summary"], len(STORY))
    assert states(runner) == full_fold(STORY)


def test_a_snapshot_of_an_older_projection_version_is_ignored(make_store: Any) -> None:
    store = make_store()
    store.append(STORY)
    old = ProjectionRunner(store)
    old.start()
    old.snapshot()

    class Changed(TasksProjection):
        version = TasksProjection.version + 1

    counting = CountingStore(store)
    runner = ProjectionRunner(counting, [Changed(), *default_projections()[1:]])  # type: ignore[arg-type]
    assert runner.start() == counting.yielded == len(STORY)  # one shared pass from 0
    assert states(runner) == full_fold(STORY)


def test_catch_up_folds_only_new_events(make_store: Any) -> None:
    store = make_store()
    runner = ProjectionRunner(store)
    assert runner.catch_up() == 0  # starts first
    store.append(STORY[:5])
    assert runner.catch_up() == 5
    assert runner.catch_up() == 0
    store.append(STORY[5:])
    assert runner.catch_up() == len(STORY) - 5
    assert states(runner) == full_fold(STORY)


def test_follow_folds_what_another_connection_appends(make_store: Any) -> None:
    runner = ProjectionRunner(make_store())
    stop, seen = threading.Event(), []
    follower = threading.Thread(target=runner.follow, args=(stop, 0.01, seen.append))
    follower.start()
    try:
        writer = make_store()
        for i in range(0, len(STORY), 7):
            writer.append(STORY[i : i + 7])
            # Queries from this thread while the follower folds: never a half-applied state.
            runner.query("tasks", count_by_status)
            runner.query("summary", counts)
        for _ in range(500):
            if runner.position == len(STORY):
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        follower.join(5)
    assert not follower.is_alive()
    assert [r.position for r in seen] == list(range(1, len(STORY) + 1))
    assert states(runner) == full_fold(STORY)


def test_rebuild_discards_state_refolds_and_reports_progress(make_store: Any) -> None:
    store = make_store()
    store.append(STORY)
    runner = ProjectionRunner(store, page_size=4)
    runner.start()
    before = runner.state("tasks")
    reports: list[tuple[int, int]] = []
    assert runner.rebuild(lambda done, total: reports.append((done, total))) == len(STORY)
    assert runner.state("tasks") is not before
    assert states(runner) == full_fold(STORY)
    assert reports[-1] == (len(STORY), len(STORY))
    assert [d for d, _ in reports] == sorted({min(len(STORY), 4 * i) for i in
                                              range(1, len(STORY) // 4 + 2)})


def test_fold_to_stops_exactly_at_a_position_and_never_goes_back(make_store: Any) -> None:
    store = make_store()
    store.append(STORY)
    runner = ProjectionRunner(store)
    runner.fold_to(10)
    assert runner.position == 10
    assert states(runner) == full_fold(STORY[:10])
    with pytest.raises(ProjectionError, match="cannot fold back to position 5"):
        runner.fold_to(5)
    with pytest.raises(ProjectionError, match="the log ends at"):
        runner.fold_to(len(STORY) + 1)
    runner.catch_up()
    assert states(runner) == full_fold(STORY)


def test_startup_refuses_to_guess_when_pruned_events_are_missing(make_store: Any) -> None:
    store = make_store()
    store.append(STORY)
    store.delete_through(10)
    store.record_prune(1, 10, 10, "2025-03-02T00:00:00.000000+00:00", None, None)
    with pytest.raises(ProjectionError, match=r"were pruned and their archive is missing"):
        ProjectionRunner(store).start()
    with pytest.raises(ProjectionError, match="were pruned"):
        ProjectionRunner(store).rebuild()  # and no snapshot at the cut to start from either


def test_startup_after_a_prune_uses_the_snapshots_taken_before_it(make_store: Any) -> None:
    store = make_store()
    store.append(STORY)
    pruner = ProjectionRunner(store)
    pruner.fold_to(10)
    pruner.snapshot()
    store.delete_through(10)
    store.record_prune(1, 10, 10, "2025-03-02T00:00:00.000000+00:00", None, None)
    runner = ProjectionRunner(store)
    assert runner.start() == len(STORY) - 10
    assert states(runner) == full_fold(STORY)  # pruning never changes what projections say


def prune_through(store: EventStore, position: int) -> None:
    """What a prune does, from its primitives: snapshot every projection at the cut, delete."""
    pruner = ProjectionRunner(store)
    pruner.fold_to(position)
    pruner.snapshot()
    first = store.head() - store.count() + 1
    store.record_prune(first, position, position - first + 1, "2025-03-09T00:00:00.000000+00:00",
                       None, None)
    store.delete_through(position)


@pytest.mark.parametrize("cut", [10, len(STORY)])  # part of the tail, or all of it
def test_catch_up_notices_events_pruned_before_it_folded_them(make_store: Any, cut: int) -> None:
    store = make_store()
    store.append(STORY[:5])
    runner = ProjectionRunner(store)
    runner.start()
    store.append(STORY[5:])
    prune_through(make_store(), cut)  # (another connection: another process)
    runner.catch_up()
    assert runner.position == len(STORY)
    assert states(runner) == full_fold(STORY)


def test_a_snapshot_that_cannot_be_loaded_is_reported(make_store: Any) -> None:
    store = make_store()
    store.save_snapshot("tasks", TasksProjection.version, 0, "{not json")
    with pytest.raises(ProjectionError, match=r"cannot be loaded.*delete it, or rebuild"):
        ProjectionRunner(store).start()


def test_folding_streams_page_by_page(make_store: Any) -> None:
    store = make_store()
    store.append([SystemInfoLogged(source="s") for _ in range(300)])
    counting = CountingStore(store)

    class Watching(TasksProjection):
        """Checks that the store is never read more than a page ahead of the fold."""

        def apply_many(self, state: Any, records: Any) -> Any:
            assert counting.yielded - records[-1].position <= 1
            return super().apply_many(state, records)

    runner = ProjectionRunner(counting, [Watching()], page_size=16)  # type: ignore[arg-type]
    assert runner.start() == 300


def test_projection_names_must_be_unique_and_known(make_store: Any) -> None:
    with pytest.raises(ValueError, match="unique"):
        ProjectionRunner(make_store(), [TasksProjection(), TasksProjection()])
    runner = ProjectionRunner(make_store())
    with pytest.raises(ProjectionError, match="no projection named 'nope'"):
        runner.state("nope")


def test_a_fold_that_raises_is_reported_and_the_next_call_reloads() -> None:
    store = MemoryEventStore()
    store.append(STORY[:3])

    class Broken(TasksProjection):
        fail = True

        def apply_many(self, state: Any, records: Any) -> Any:
            if self.fail:
                raise RuntimeError("boom")
            return super().apply_many(state, records)

    broken = Broken()
    runner = ProjectionRunner(store, [broken])
    with pytest.raises(ProjectionError, match="must never raise"):
        runner.start()
    broken.fail = False
    assert runner.catch_up() == 3
    assert runner.query("tasks", open_tasks) == open_tasks(fold(TasksProjection(),
                                                                 recorded(STORY[:3])))


@settings(max_examples=15)
@given(swarm_stories(30), st.data())
def test_snapshot_at_any_point_then_start_equals_the_full_fold(
    events: list[Event], data: st.DataObject
) -> None:
    store = MemoryEventStore()
    cut = data.draw(st.integers(0, len(events)))
    store.append(events[:cut])
    ProjectionRunner(store).snapshot()
    store.append(events[cut:])
    runner = ProjectionRunner(store)
    assert runner.start() == len(events) - cut
    assert states(runner) == full_fold(events)
    assert runner.state("summary").by_type[EventType.SYSTEM_ERROR] == sum(
        e.event_type is EventType.SYSTEM_ERROR for e in events)  # type: ignore[attr-defined]


@settings(max_examples=15)
@given(swarm_stories(30), st.lists(st.integers(0, 10**6), max_size=4))
def test_a_chain_of_snapshots_and_restarts_equals_the_full_fold(
    events: list[Event], cuts: list[int]
) -> None:
    """Each snapshot moves the closed tasks out of memory; each restart loads only the open ones;
    the states equal the full fold all along (closed tasks read back from the store)."""
    store = MemoryEventStore()
    done = 0
    for cut in sorted(c % (len(events) + 1) for c in cuts):
        store.append(events[done:cut])
        done = cut
        runner = ProjectionRunner(store)
        runner.start()
        runner.snapshot()
        assert states(runner) == full_fold(events[:cut])
        restarted = ProjectionRunner(store)
        restarted.start()
        assert all(t.is_open for t in restarted.state("tasks").tasks.values())
        assert states(restarted) == full_fold(events[:cut])
    store.append(events[done:])
    runner = ProjectionRunner(store)
    runner.start()
    assert states(runner) == full_fold(events)


def test_closed_tasks_are_read_from_the_store_and_still_take_events(make_store: Any) -> None:
    """After a restart from a snapshot, queries see the closed tasks, and events that name them
    (a late tool call, a second task.created, a second completion) fold as they would have."""
    store = make_store()
    store.append(STORY)
    first = ProjectionRunner(store)
    first.start()
    first.snapshot()
    late = [build_event(EventType.TOOL_CALLED, "x", "t1", "a1", {"call_id": "late"}),
            build_event(EventType.TASK_CREATED, "x", "t2"),
            build_event(EventType.TASK_COMPLETED, "x", "t4", "a1")]
    store.append(late)
    runner = ProjectionRunner(make_store())
    runner.start()
    # In memory: what is open, and the closed tasks the late events touched.
    assert set(runner.state("tasks").tasks) == {"t1", "t2", "t4"}
    assert states(runner) == full_fold(STORY + late)
    expected = fold(TasksProjection(), recorded(STORY + late))
    for query in (all_tasks, count_by_status, open_tasks):
        assert runner.query("tasks", query) == query(expected)
    for status in TaskStatus:
        assert runner.query("tasks", tasks_by_status, status) == tasks_by_status(expected, status)
    assert runner.query("tasks", get_task, "t3") == get_task(expected, "t3")
    assert get_task(expected, "t1").tool_calls == 2  # type: ignore[union-attr]
    assert runner.query("tasks", get_task, "nope") is None


def test_offline_agents_are_read_from_the_store_and_may_come_back(make_store: Any) -> None:
    store = make_store()
    join = [build_event(EventType.AGENT_JOINED, "x", agent_id=a, data={"name": a}) for a in "abc"]
    store.append([*join, build_event(EventType.AGENT_LEFT, "x", agent_id="b"),
                  build_event(EventType.AGENT_LEFT, "x", agent_id="c")])
    first = ProjectionRunner(store)
    first.start()
    first.snapshot()
    assert set(first.state("agents").agents) == {"a"}  # the offline ones left memory
    back = [build_event(EventType.AGENT_JOINED, "x", agent_id="c"),
            build_event(EventType.TIMMY_THOUGHT, "x", agent_id="b")]  # b: work while offline
    store.append(back)
    runner = ProjectionRunner(make_store())
    runner.start()
    everything = [r.event for r in store.read()]
    assert states(runner) == full_fold(everything)
    expected = fold(AgentsProjection(), recorded(everything))
    assert [a.agent_id for a in runner.query("agents", all_agents)] == ["a", "b", "c"]
    assert runner.query("agents", all_agents) == all_agents(expected)
    assert runner.query("agents", online_agents) == online_agents(expected)
    assert [a.agent_id for a in online_agents(expected)] == ["a", "c"]
    assert runner.query("agents", get_agent, "b") == get_agent(expected, "b")
    assert get_agent(expected, "b").anomaly_count == 1  # type: ignore[union-attr]
