"""The projection runner against real stores (in memory and SQLite): start-up from snapshots,
catch-up, follow, rebuild, fold_to, pruned history, paging, cold tasks and agents, threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.codec import FoldRow, StoredEvent
from domain.errors import ProjectionError
from domain.events import Event, EventType
from domain.task import TaskStatus
from projections.agents import all_agents, get_agent, online_agents
from projections.models import ReadModels, ReadModelsProjection, counts
from projections.pruning import prune
from projections.runner import ProjectionRunner
from projections.tasks import all_tasks, get_task, open_tasks, tasks_by_status
from store import MemoryStore, SQLiteStore, Store
from store.base import first_stored
from tests.strategies import ev, fixed_story, remove_prefix, rows, stored, swarm_stories

_T = EventType
STORY = fixed_story(8)
NAME = ReadModelsProjection.name
CUTOFF = "2025-03-09T00:00:00.000000+00:00"


class CountingStore:
    """A real store whose `scan` counts the rows it yields (and so how far it ran ahead)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.scanned = 0

    def scan(self, after: int = 0, until: int | None = None) -> Iterator[list[FoldRow]]:
        for page in self.inner.scan(after, until):
            self.scanned += len(page)
            yield page

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A factory that opens the same store again (a second SQLite connection is what another
    process would have)."""
    opened: list[Store] = []
    shared = MemoryStore()

    def make() -> Store:
        store = shared if request.param == "memory" else SQLiteStore(str(tmp_path / "log.db"))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def append(store: Store, events: Iterable[Event]) -> None:
    store.append(rows(*events))


def full_fold(events: list[Event]) -> ReadModels:
    """The plain fold of the whole story: what every runner must end with."""
    p = ReadModelsProjection(plain=True)
    return p.fold_rows(p.initial(), stored(events))


def models(runner: ProjectionRunner) -> ReadModels:
    state: ReadModels = runner.state(NAME)
    return state


def test_a_fresh_database_folds_from_zero(make_store: Callable[[], Store]) -> None:
    store = make_store()
    append(store, STORY)
    runner = ProjectionRunner(store)
    assert runner.start() == len(STORY)
    assert runner.position == len(STORY)
    assert models(runner) == full_fold(STORY)


def test_startup_reads_only_the_events_after_the_snapshot(make_store: Callable[[], Store]) -> None:
    store = make_store()
    head, tail = STORY[: len(STORY) // 2], STORY[len(STORY) // 2 :]
    append(store, head)
    first = ProjectionRunner(store)
    first.start()
    assert len(first.snapshot()) == 1  # one projection: the three read models together
    append(store, tail)

    counting = CountingStore(make_store())
    runner = ProjectionRunner(counting)
    assert runner.start() == counting.scanned == len(tail)
    assert runner.positions() == {NAME: len(STORY)}
    assert models(runner) == full_fold(STORY)


def test_a_snapshot_of_an_older_projection_version_is_ignored(make_store: Callable[[], Store]) -> None:
    store = make_store()
    append(store, STORY)
    old = ProjectionRunner(store)
    old.start()
    old.snapshot()

    class Changed(ReadModelsProjection):
        version = ReadModelsProjection.version + 1

    counting = CountingStore(store)
    runner = ProjectionRunner(counting, [Changed()])
    assert runner.start() == counting.scanned == len(STORY)  # refolded from 0
    assert models(runner) == full_fold(STORY)


def test_catch_up_folds_only_new_events(make_store: Callable[[], Store]) -> None:
    store = make_store()
    runner = ProjectionRunner(store)
    assert runner.catch_up() == 0  # starts first
    append(store, STORY[:5])
    assert runner.catch_up() == 5
    assert runner.catch_up() == 0
    append(store, STORY[5:])
    assert runner.catch_up() == len(STORY) - 5
    assert models(runner) == full_fold(STORY)


def test_follow_folds_what_another_connection_appends(make_store: Callable[[], Store]) -> None:
    runner = ProjectionRunner(make_store())
    stop, seen = threading.Event(), list[StoredEvent]()
    follower = threading.Thread(target=runner.follow, args=(stop, 0.01, seen.append))
    follower.start()
    try:
        writer = make_store()
        for i in range(0, len(STORY), 7):
            append(writer, STORY[i : i + 7])
            # Queries from this thread while the follower folds: never a half-applied state.
            shown, tasks = runner.query(NAME, lambda m: (counts(m), all_tasks(m.tasks)))
            assert sum(shown["tasks_by_status"].values()) == len(tasks)
        for _ in range(500):
            if runner.position == len(STORY):
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        follower.join(5)
    assert not follower.is_alive()
    assert all(isinstance(row, StoredEvent) for row in seen)
    assert [row.position for row in seen] == list(range(1, len(STORY) + 1))
    assert models(runner) == full_fold(STORY)


def test_rebuild_discards_state_refolds_and_reports_progress(make_store: Callable[[], Store]) -> None:
    store = make_store()
    append(store, STORY)
    runner = ProjectionRunner(store, page_size=4)
    runner.start()
    before = models(runner)
    reports: list[tuple[int, int]] = []
    assert runner.rebuild(lambda done, total: reports.append((done, total))) == len(STORY)
    assert models(runner) is not before
    assert models(runner) == full_fold(STORY)
    assert reports[-1] == (len(STORY), len(STORY))  # after each of the store's pages
    assert [d for d, _ in reports] == sorted({d for d, _ in reports})


def test_fold_to_stops_exactly_at_a_position_and_never_goes_back(make_store: Callable[[], Store]) -> None:
    store = make_store()
    append(store, STORY)
    runner = ProjectionRunner(store)
    runner.fold_to(10)
    assert runner.position == 10
    assert models(runner) == full_fold(STORY[:10])
    with pytest.raises(ProjectionError, match="cannot fold back to position 5"):
        runner.fold_to(5)
    with pytest.raises(ProjectionError, match="the log ends at"):
        runner.fold_to(len(STORY) + 1)
    runner.catch_up()
    assert models(runner) == full_fold(STORY)


def test_startup_refuses_to_guess_when_pruned_events_are_missing(make_store: Callable[[], Store]) -> None:
    store = make_store()
    append(store, STORY)
    remove_prefix(store, 1, 10, CUTOFF, None, None)  # pruned without a snapshot or an archive
    with pytest.raises(ProjectionError, match=r"were pruned and their archive is missing"):
        ProjectionRunner(store).start()
    with pytest.raises(ProjectionError, match="were pruned"):
        ProjectionRunner(store).rebuild()  # and no snapshot at the cut to start from either


def prune_through(store: Store, position: int) -> None:
    """What a prune does, from its primitives: snapshot every projection at the cut, delete."""
    pruner = ProjectionRunner(store)
    pruner.fold_to(position)
    pruner.snapshot()
    remove_prefix(store, first_stored(store), position, CUTOFF, None, None)


def test_startup_after_a_prune_uses_the_snapshots_taken_before_it(make_store: Callable[[], Store]) -> None:
    store = make_store()
    append(store, STORY)
    prune_through(store, 10)
    runner = ProjectionRunner(store)
    assert runner.start() == len(STORY) - 10
    assert models(runner) == full_fold(STORY)  # pruning never changes what projections say
    rebuilt = ProjectionRunner(store)
    assert rebuilt.rebuild() == len(STORY) - 10  # from the snapshot at the cut: no archive
    assert models(rebuilt) == full_fold(STORY)


@pytest.mark.parametrize("cut", [10, len(STORY)])  # part of the tail, or all of it
def test_catch_up_notices_events_pruned_before_it_folded_them(
    make_store: Callable[[], Store], cut: int
) -> None:
    store = make_store()
    append(store, STORY[:5])
    runner = ProjectionRunner(store)
    runner.start()
    append(store, STORY[5:])
    prune_through(make_store(), cut)  # (another connection: another process)
    runner.catch_up()
    assert runner.position == len(STORY)
    assert models(runner) == full_fold(STORY)


def test_a_snapshot_that_cannot_be_loaded_is_reported(make_store: Callable[[], Store]) -> None:
    store = make_store()
    store.save_snapshot(NAME, ReadModelsProjection.version, 0, "{not json")
    with pytest.raises(ProjectionError, match=r"cannot be loaded.*delete it, or rebuild"):
        ProjectionRunner(store).start()


def test_folding_streams_page_by_page(make_store: Callable[[], Store]) -> None:
    store = make_store()
    append(store, [ev(_T.SYSTEM_INFO, message=f"{i}") for i in range(4500)])
    counting = CountingStore(store)
    pages: list[int] = []

    class Watching(ReadModelsProjection):
        """Checks that the store is never read more than one of its pages ahead of the fold."""

        def fold_scan(self, state: ReadModels, rows: Sequence[FoldRow],
                      full: Callable[[int], StoredEvent]) -> ReadModels:
            assert counting.scanned - rows[-1][0] < 2000
            pages.append(len(rows))
            return super().fold_scan(state, rows, full)

    runner = ProjectionRunner(counting, [Watching()], page_size=400)
    assert runner.start() == 4500
    assert pages == [400] * 11 + [100]  # the store's pages of 2,000, cut to 400
    assert models(runner).summary.by_type == {"system.info": 4500}


def test_rows_pruned_between_their_scan_and_their_whole_read_reload_from_the_prune(
    make_store: Callable[[], Store]
) -> None:
    """A fold scans a page, then reads whole the rows it takes the typed way; another process
    prunes in between. The fold starts again from the snapshot that prune stored."""
    store = make_store()
    store.append([r._replace(conforms=None) for r in rows(*STORY)])  # every row the typed way
    cut = len(STORY) // 2
    pruned: list[int] = []

    class PrunedMeanwhile:
        def read(self, after: int = 0, until: int | None = None) -> Iterator[StoredEvent]:
            if not pruned:
                cutoff = STORY[cut].timestamp  # events 1..cut are older
                pruned.append(prune(store, [ReadModelsProjection()], cutoff).removed)
            return store.read(after, until)

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    runner = ProjectionRunner(cast(Store, PrunedMeanwhile()))
    runner.start()
    assert pruned == [cut] and first_stored(store) == cut + 1
    assert runner.position == len(STORY)
    assert models(runner) == full_fold(STORY)


def test_projection_names_must_be_unique_and_known(make_store: Callable[[], Store]) -> None:
    with pytest.raises(ValueError, match="unique"):
        ProjectionRunner(make_store(), [ReadModelsProjection(), ReadModelsProjection()])
    runner = ProjectionRunner(make_store())
    with pytest.raises(ProjectionError, match="no projection named 'nope'"):
        runner.state("nope")


def test_a_fold_that_raises_is_reported_and_the_next_call_reloads() -> None:
    store = MemoryStore()
    append(store, STORY[:3])

    class Broken(ReadModelsProjection):
        fail = True

        def fold_scan(self, state: ReadModels, rows: Sequence[FoldRow],
                      full: Callable[[int], StoredEvent]) -> ReadModels:
            if self.fail:
                raise RuntimeError("boom")
            return super().fold_scan(state, rows, full)

    broken = Broken()
    runner = ProjectionRunner(store, [broken])
    with pytest.raises(ProjectionError, match="must never raise"):
        runner.start()
    broken.fail = False
    assert runner.catch_up() == 3
    assert models(runner) == full_fold(STORY[:3])


@settings(max_examples=15)
@given(swarm_stories(30), st.data())
def test_snapshot_at_any_point_then_start_equals_the_full_fold(
    events: list[Event], data: st.DataObject
) -> None:
    store = MemoryStore()
    cut = data.draw(st.integers(0, len(events)))
    append(store, events[:cut])
    ProjectionRunner(store).snapshot()
    append(store, events[cut:])
    runner = ProjectionRunner(store)
    assert runner.start() == len(events) - cut
    assert models(runner) == full_fold(events)
    assert models(runner).summary.by_type.get("system.error", 0) == sum(
        e.event_type is _T.SYSTEM_ERROR for e in events)


@settings(max_examples=15)
@given(swarm_stories(30), st.lists(st.integers(0, 10**6), max_size=4))
def test_a_chain_of_snapshots_and_restarts_equals_the_full_fold(
    events: list[Event], cuts: list[int]
) -> None:
    """Each snapshot moves the closed tasks and offline agents out of memory; each restart loads
    only what is open; the states equal the full fold all along (the rest read back from the
    store)."""
    store = MemoryStore()
    done = 0
    for cut in sorted(c % (len(events) + 1) for c in cuts):
        append(store, events[done:cut])
        done = cut
        runner = ProjectionRunner(store)
        runner.start()
        runner.snapshot()
        assert models(runner) == full_fold(events[:cut])
        restarted = ProjectionRunner(store)
        restarted.start()
        assert all(t.is_open for t in models(restarted).tasks.tasks.values())
        assert all(a.online for a in models(restarted).agents.agents.values())
        assert models(restarted) == full_fold(events[:cut])
    append(store, events[done:])
    runner = ProjectionRunner(store)
    runner.start()
    assert models(runner) == full_fold(events)


def test_closed_tasks_are_read_from_the_store_and_still_take_events(
    make_store: Callable[[], Store]
) -> None:
    """After a restart from a snapshot, queries see the closed tasks, and events that name them
    (a late tool call, a second task.created, a second completion) fold as they would have."""
    store = make_store()
    append(store, STORY)
    first = ProjectionRunner(store)
    first.start()
    first.snapshot()
    assert models(first).tasks.tasks == full_fold(STORY).tasks.tasks  # (read back when asked)
    assert len(models(first).tasks.tasks) == 0  # every task is closed: none is in memory
    late = [ev(_T.TOOL_CALLED, "t1", "a1", source="x", call_id="late"),
            ev(_T.TASK_CREATED, "t2", source="x"),
            ev(_T.TASK_COMPLETED, "t4", "a1", source="x")]
    append(store, late)
    runner = ProjectionRunner(make_store())
    runner.start()
    # In memory: what is open, and the closed tasks the late events touched.
    assert set(models(runner).tasks.tasks) == {"t1", "t2", "t4"}
    expected = full_fold(STORY + late)
    assert models(runner) == expected
    for query in (all_tasks, open_tasks):
        assert runner.query(NAME, lambda m, q=query: q(m.tasks)) == query(expected.tasks)
    for status in TaskStatus:
        assert runner.query(NAME, lambda m, s=status: tasks_by_status(m.tasks, s)) == \
            tasks_by_status(expected.tasks, status)
    assert runner.query(NAME, lambda m: get_task(m.tasks, "t3")) == get_task(expected.tasks, "t3")
    t1, t4 = get_task(expected.tasks, "t1"), get_task(expected.tasks, "t4")
    assert t1 is not None and t1.tool_calls == 2
    assert t4 is not None and t4.anomaly_count == 1  # completed twice
    assert runner.query(NAME, lambda m: get_task(m.tasks, "nope")) is None


def test_offline_agents_are_read_from_the_store_and_may_come_back(
    make_store: Callable[[], Store]
) -> None:
    store = make_store()
    append(store, [*(ev(_T.AGENT_JOINED, agent=a, name=a) for a in "abc"),
                   ev(_T.AGENT_LEFT, agent="b"), ev(_T.AGENT_LEFT, agent="c")])
    first = ProjectionRunner(store)
    first.start()
    first.snapshot()
    assert set(dict(models(first).agents.agents)) == {"a"}  # the offline ones left memory
    back = [ev(_T.AGENT_JOINED, agent="c"),
            ev(_T.TIMMY_THOUGHT, agent="b", content="hm")]  # b: work while offline
    append(store, back)
    runner = ProjectionRunner(make_store())
    runner.start()
    everything = [row.event for row in store.read()]
    expected = full_fold(everything)
    assert models(runner) == expected
    assert [a.agent_id for a in runner.query(NAME, lambda m: all_agents(m.agents))] == ["a", "b", "c"]
    assert runner.query(NAME, lambda m: all_agents(m.agents)) == all_agents(expected.agents)
    assert runner.query(NAME, lambda m: online_agents(m.agents)) == online_agents(expected.agents)
    assert [a.agent_id for a in online_agents(expected.agents)] == ["a", "c"]
    assert runner.query(NAME, lambda m: get_agent(m.agents, "b")) == get_agent(expected.agents, "b")
    b = get_agent(expected.agents, "b")
    assert b is not None and b.anomaly_count == 1
    assert counts(expected)["agents_online"] == runner.query(NAME, counts)["agents_online"] == 2
