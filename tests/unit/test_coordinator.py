"""The coordinator shell over a real store: Given past commands, When a command, Then the events
it appends (or a refusal that appends nothing). Every append expects each stream its decision
read, so coordinators racing on one store, in one process or in several, on SQLite or on
PostgreSQL, never assign one task twice nor one agent to two open tasks. A stateful property
test compares the coordinator with a simple model."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.agent import Presence
from domain.codec import StoredEvent
from domain.commands import (
    CallTool,
    CloseBidding,
    Command,
    CompleteTask,
    FailTask,
    FinishTool,
    PostTask,
    RegisterAgent,
    RemoveAgent,
    StartTask,
    SubmitBid,
)
from domain.errors import ConcurrencyError, InvalidEvent, InvalidTransition
from domain.events import AgentStatusChanged, EventType, TaskBiddingOpened
from domain.task import TaskStatus
from projections.models import ReadModelsProjection
from projections.tasks import get_task
from store import MemoryStore
from swarmlog.coordinator import Coordinator
from swarmlog.log import EventLog
from tests import pg
from tests.racers import Racers

T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
_T = EventType


def _ticking(start: datetime = T0) -> Callable[[], datetime]:
    seconds = itertools.count()
    return lambda: start + timedelta(seconds=next(seconds))


@pytest.fixture
def log() -> Iterator[EventLog]:
    opened = EventLog(MemoryStore())
    yield opened
    opened.close()


@pytest.fixture
def coordinator(log: EventLog) -> Coordinator:
    return Coordinator(log, clock=_ticking())


def _types(log: EventLog, after: int = 0) -> list[str]:
    return [r.event_type for r in log.read(after=after)]


def _swarm(c: Coordinator, *agents: str, caps: tuple[str, ...] = ("python",)) -> None:
    for agent_id in agents:
        c.register_agent(agent_id, f"agent {agent_id}", caps)


def _running(c: Coordinator, task_id: str = "t1", agent_id: str = "a1") -> None:
    """Given: agent a1 online, running task t1 (won with 100 sats)."""
    _swarm(c, agent_id)
    c.post_task("index the docs", task_id=task_id, required_capabilities=["python"])
    c.submit_bid(task_id, agent_id, 100)
    assert c.close_bidding(task_id) == agent_id
    c.start_task(task_id)


# -- the happy path -------------------------------------------------------------------------------


def test_post_task_creates_it_then_opens_bidding_and_returns_its_id(
        coordinator: Coordinator, log: EventLog) -> None:
    task_id = coordinator.post_task("summarise the logs", window_seconds=45)
    assert _types(log) == ["task.created", "task.bidding"]
    task = get_task(log.tasks, task_id)
    assert task is not None and task.status is TaskStatus.BIDDING
    assert task.description == "summarise the logs"
    bidding = list(log.read())[1].event
    assert isinstance(bidding, TaskBiddingOpened) and bidding.data.window_seconds == 45


def test_a_task_runs_from_auction_to_completion_and_pays_its_agent(
        coordinator: Coordinator, log: EventLog) -> None:
    _running(coordinator)
    call = coordinator.record_tool_call("a1", "web_search", {"q": "x"}, task_id="t1")
    coordinator.record_tool_result("a1", call, tool="web_search", duration_ms=12.5, result={"n": 3})
    coordinator.complete_task("t1", {"pages": 4})
    assert _types(log) == ["agent.joined", "task.created", "task.bidding", "bid.submitted",
                           "auction.closed", "task.assigned", "agent.status_changed",
                           "task.started", "tool.called", "tool.completed", "task.completed",
                           "agent.status_changed"]
    task, agent = log.tasks.tasks["t1"], log.agents.agents["a1"]
    assert (task.status, task.agent_id, task.winning_bid, task.tool_calls) == (
        TaskStatus.COMPLETED, "a1", 100, 1)
    assert (agent.current_task, agent.tasks_completed, agent.sats_earned) == (None, 1, 100)
    assert log.tasks.anomaly_count == log.agents.anomaly_count == 0


def test_a_tool_result_goes_to_the_stream_of_its_call(coordinator: Coordinator, log: EventLog) -> None:
    _running(coordinator)
    for_task = coordinator.record_tool_call("a1", "grep", task_id="t1")
    own = coordinator.record_tool_call("a1", "grep")
    head = log.store.head()
    coordinator.record_tool_result("a1", for_task, tool="grep", duration_ms=1.0)
    coordinator.record_tool_result("a1", own, tool="grep", duration_ms=1.0, error="boom")
    assert [(r.event_type, r.stream_id) for r in log.read(after=head)] == [
        ("tool.completed", "task-t1"), ("tool.failed", "agent-a1")]


def test_lowest_bid_wins_ties_by_time(coordinator: Coordinator, log: EventLog) -> None:
    _swarm(coordinator, "a1", "a2", "a3", "a4")
    coordinator.post_task("index the docs", task_id="t1")
    for agent_id, sats in (("a1", 300), ("a2", 200), ("a3", 200), ("a4", 250)):
        coordinator.submit_bid("t1", agent_id, sats)
    head = log.store.head()
    assert coordinator.close_bidding("t1") == "a2"  # 200, and earlier than a3's 200
    closed, assigned, claimed = (r.event for r in log.read(after=head))
    assert closed.data.model_dump(exclude_unset=True) == {
        "winner": "a2", "winning_bid": 200, "bid_count": 4}
    assert (assigned.event_type, assigned.agent_id) == (_T.TASK_ASSIGNED, "a2")
    assert assigned.data.model_dump() == {"bid_sats": 200}
    assert isinstance(claimed, AgentStatusChanged) and claimed.stream_id == "agent-a2"
    assert claimed.data.model_dump(exclude_unset=True) == {"status": "busy", "task": "t1"}


def test_the_winner_is_claimed_in_its_own_stream_and_released_when_its_task_ends(
        coordinator: Coordinator, log: EventLog) -> None:
    _running(coordinator, "t1", "a1")
    coordinator.fail_task("t1", "flaky")
    statuses = [(r.event.data.model_dump(exclude_unset=True), r.stream_version)
                for r in log.read() if r.event_type == "agent.status_changed"]
    assert statuses == [({"status": "busy", "task": "t1"}, 2), ({"status": "idle", "task": "t1"}, 3)]
    assert log.agents.agents["a1"].status == "idle"


def test_no_bids_fails_the_task(coordinator: Coordinator, log: EventLog) -> None:
    coordinator.post_task("index the docs", task_id="t1")
    assert coordinator.close_bidding("t1") is None
    assert _types(log)[-2:] == ["auction.closed", "task.failed"]
    task = log.tasks.tasks["t1"]
    assert (task.status, task.failure_reason) == (TaskStatus.FAILED, "no bids")


def test_bidders_who_left_or_are_busy_cannot_win(coordinator: Coordinator, log: EventLog) -> None:
    _running(coordinator, "t0", "busy")
    _swarm(coordinator, "gone", "a3")
    coordinator.post_task("index the docs", task_id="t1")
    coordinator.submit_bid("t1", "gone", 10)
    coordinator.submit_bid("t1", "busy", 20)
    coordinator.submit_bid("t1", "a3", 500)
    coordinator.remove_agent("gone", "crashed")
    assert coordinator.close_bidding("t1") == "a3"
    coordinator.post_task("index more docs", task_id="t2")
    coordinator.submit_bid("t2", "busy", 20)
    assert coordinator.close_bidding("t2") is None
    assert log.tasks.tasks["t2"].failure_reason == "no eligible bids (every bidder left or is busy)"


def test_an_agent_leaving_fails_its_task_in_the_same_call(coordinator: Coordinator, log: EventLog) -> None:
    _running(coordinator)
    head = log.store.head()
    events = coordinator.remove_agent("a1", "crashed")
    assert [e.event_type.value for e in events] == ["agent.left", "task.failed"]
    assert _types(log, head) == ["agent.left", "task.failed"]
    task, agent = log.tasks.tasks["t1"], log.agents.agents["a1"]
    assert (task.status, task.failure_reason) == (TaskStatus.FAILED, "crashed")
    assert (agent.presence, agent.current_task, agent.tasks_failed) == (Presence.OFFLINE, None, 1)


def test_an_agent_leaving_while_assigned_fails_that_task_too(coordinator: Coordinator, log: EventLog) -> None:
    _swarm(coordinator, "a1")
    coordinator.post_task("index the docs", task_id="t1")
    coordinator.submit_bid("t1", "a1", 5)
    coordinator.close_bidding("t1")
    coordinator.remove_agent("a1", "scaled down")
    assert log.tasks.tasks["t1"].status is TaskStatus.FAILED


def test_harmless_repeats_append_nothing(coordinator: Coordinator, log: EventLog) -> None:
    _swarm(coordinator, "a1", "a2")
    coordinator.post_task("index the docs", task_id="t1")
    coordinator.submit_bid("t1", "a1", 100)
    coordinator.remove_agent("a2", "done")
    head = log.store.head()
    assert coordinator.register_agent("a1", "agent a1", ["python"]) == []
    assert coordinator.submit_bid("t1", "a1", 100) == []
    assert coordinator.remove_agent("a2", "done again") == []
    assert log.store.head() == head


def test_commands_carry_the_given_time_and_source(log: EventLog) -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    Coordinator(log, source="swarm-7").register_agent("a1", "Ada", ["sql"], at=at)
    event = next(log.read()).event
    assert (event.timestamp, event.source) == (at, "swarm-7")


def test_ids_come_from_the_coordinators_id_source(log: EventLog) -> None:
    numbers = itertools.count(1)
    c = Coordinator(log, new_id=lambda at: f"id-{next(numbers)}", clock=_ticking())
    task_id = c.post_task("index the docs")
    assert task_id == "id-1"
    assert [r.id for r in log.read()] == ["id-2", "id-3"]


# -- a decision ---------------------------------------------------------------------------------


def test_a_decision_expects_every_stream_it_read_at_the_version_it_read(
        coordinator: Coordinator, log: EventLog) -> None:
    _swarm(coordinator, "a1", "a2", "a3")
    coordinator.post_task("index the docs", task_id="t1")
    coordinator.submit_bid("t1", "a1", 5)
    coordinator.submit_bid("t1", "a2", 4)
    head = log.store.head()
    decision = coordinator.prepare(CloseBidding(task_id="t1", at=T0))
    assert decision.expected == {"task-t1": 4, "agent-a1": 1, "agent-a2": 1}  # not a3: no bid
    assert [e.event_type.value for e in decision.events] == [
        "auction.closed", "task.assigned", "agent.status_changed"]
    assert log.store.head() == head  # deciding appends nothing
    coordinator.commit(decision)
    assert log.tasks.tasks["t1"].agent_id == "a2"
    assert log.store.stream_versions(["task-t1", "agent-a2"]) == {"task-t1": 6, "agent-a2": 2}


def test_a_command_on_a_new_stream_expects_it_to_be_new(coordinator: Coordinator) -> None:
    decision = coordinator.prepare(PostTask(task_id="t1", description="x", at=T0))
    assert decision.expected == {"task-t1": 0}
    decision = coordinator.prepare(RegisterAgent(agent_id="a1", name="Ada", at=T0))
    assert decision.expected == {"agent-a1": 0}


# -- refusals -------------------------------------------------------------------------------------


def _refusals() -> list[tuple[str, Callable[[Coordinator], Any]]]:
    tool = {"tool": "shell", "duration_ms": 1.0}
    return [
        ("bid on an unknown task", lambda c: c.submit_bid("nope", "a1", 5)),
        ("bid after the auction closed", lambda c: c.submit_bid("t1", "a2", 5)),
        ("bid by an unknown agent", lambda c: c.submit_bid("t2", "stranger", 5)),
        ("bid by an agent that left", lambda c: c.submit_bid("t2", "left", 5)),
        ("bid without the capability", lambda c: c.submit_bid("t3", "a2", 5)),
        ("a second, different bid", lambda c: c.submit_bid("t2", "a2", 6)),
        ("a negative bid", lambda c: c.submit_bid("t2", "a3", -1)),
        ("a bid that is not an int", lambda c: c.submit_bid("t2", "a3", "5")),
        ("close an auction twice", lambda c: c.close_bidding("t1")),
        ("close an unknown auction", lambda c: c.close_bidding("nope")),
        ("start a task still bidding", lambda c: c.start_task("t2")),
        ("start a task running already", lambda c: c.start_task("t1")),
        ("start a task as another agent", lambda c: c.start_task("t4", agent_id="a2")),
        ("complete a task not started", lambda c: c.complete_task("t4")),
        ("complete a finished task", lambda c: c.complete_task("done")),
        ("fail a finished task", lambda c: c.fail_task("done", "late")),
        ("fail with an empty reason", lambda c: c.fail_task("t2", " ")),
        ("post a task id twice", lambda c: c.post_task("again", task_id="t2")),
        ("post without a description", lambda c: c.post_task("", task_id="t9")),
        ("register an online agent as someone else", lambda c: c.register_agent("a1", "Bob", [])),
        ("remove an unknown agent", lambda c: c.remove_agent("stranger", "bye")),
        ("call a tool as an agent that left", lambda c: c.record_tool_call("left", "shell")),
        ("call a tool for someone else's task", lambda c: c.record_tool_call("a2", "shell", task_id="t1")),
        ("call a tool for a task not running", lambda c: c.record_tool_call("a3", "shell", task_id="t4")),
        ("reuse an open call id", lambda c: c.record_tool_call("a1", "shell", call_id="c1")),
        ("finish an unknown call", lambda c: c.record_tool_result("a1", "c404", **tool)),
        ("finish someone else's call", lambda c: c.record_tool_result("a2", "c1", **tool)),
        ("a naive timestamp", lambda c: c.register_agent("a9", "Naive", at=datetime(2025, 1, 1))),
    ]


@pytest.mark.parametrize("attempt", [a for _, a in _refusals()], ids=[n for n, _ in _refusals()])
def test_every_invalid_command_is_refused_and_appends_nothing(
        coordinator: Coordinator, log: EventLog, attempt: Callable[[Coordinator], Any]) -> None:
    c = coordinator
    _running(c, "t1", "a1")  # a1 runs t1
    c.register_agent("a2", "agent a2", ["python"])
    c.register_agent("a3", "agent a3", ["python", "sql"])
    _swarm(c, "left")
    c.remove_agent("left", "gone")
    c.post_task("still bidding", task_id="t2", required_capabilities=["python"])
    c.submit_bid("t2", "a2", 5)
    c.post_task("needs sql", task_id="t3", required_capabilities=["sql"])
    c.post_task("assigned to a3", task_id="t4")
    c.submit_bid("t4", "a3", 7)
    c.close_bidding("t4")
    _running(c, "done", "a4")
    c.complete_task("done")
    c.record_tool_call("a1", "shell", task_id="t1", call_id="c1")
    head = log.store.head()
    with pytest.raises((InvalidTransition, InvalidEvent)) as refused:
        attempt(c)
    assert log.store.head() == head
    assert "\n" not in str(refused.value)


def test_a_refusal_names_the_task_and_its_status(coordinator: Coordinator) -> None:
    coordinator.post_task("index the docs", task_id="t1")
    with pytest.raises(InvalidTransition, match=r"cannot start 't1': it is bidding"):
        coordinator.start_task("t1")


# -- concurrency in one process -----------------------------------------------------------------


def _auction(path: Path | str, *tasks: str, bids: Iterable[tuple[str, str, int]] = (),
             agents: Iterable[str] = ("a1", "a2")) -> None:
    """Given (in a store): `agents` online, `tasks` open for bidding, these bids."""
    with EventLog(path) as log:
        c = Coordinator(log)
        _swarm(c, *agents)
        for task_id in tasks:
            c.post_task("index the docs", task_id=task_id)
        for task_id, agent_id, sats in bids:
            c.submit_bid(task_id, agent_id, sats)


def test_two_coordinators_deciding_on_the_same_task_cannot_both_win(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    _auction(path, "t1", bids=[("t1", "a1", 100), ("t1", "a2", 90)])
    with EventLog(path) as one, EventLog(path) as two:
        first = Coordinator(one).prepare(CloseBidding(task_id="t1", at=T0))
        second = Coordinator(two).prepare(FailTask(task_id="t1", reason="cancelled", at=T0))
        Coordinator(one).commit(first)
        with pytest.raises(ConcurrencyError, match="task-t1"):
            Coordinator(two).commit(second)
        assert one.tasks.tasks["t1"].status is TaskStatus.ASSIGNED
        assert _types(one).count("task.failed") == 0


def test_two_auctions_closing_at_once_cannot_both_claim_one_idle_agent(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    _auction(path, "t1", "t2", bids=[("t1", "a1", 10), ("t2", "a1", 10), ("t2", "a2", 50)])
    with EventLog(path) as one, EventLog(path) as two:
        first = Coordinator(one).prepare(CloseBidding(task_id="t1", at=T0))
        second = Coordinator(two).prepare(CloseBidding(task_id="t2", at=T0))
        assert first.events[1].agent_id == second.events[1].agent_id == "a1"  # both want a1
        Coordinator(one).commit(first)
        with pytest.raises(ConcurrencyError, match="agent-a1"):  # t2's own stream had not moved
            Coordinator(two).commit(second)
        assert Coordinator(two).close_bidding("t2") == "a2"  # decided again: a1 is busy now
        assert {t: v.agent_id for t, v in two.tasks.tasks.items()} == {"t1": "a1", "t2": "a2"}


def test_a_leaving_agent_and_a_completion_race_on_the_task_stream(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    with EventLog(path) as log:
        _running(Coordinator(log))
        head = log.store.head()
        leaving = Coordinator(log).prepare(RemoveAgent(agent_id="a1", reason="crashed", at=T0))
        Coordinator(log).complete_task("t1")
        with pytest.raises(ConcurrencyError):
            Coordinator(log).commit(leaving)
        # the agent.left was not kept either
        assert _types(log, head) == ["task.completed", "agent.status_changed"]


def test_a_leaving_agent_and_the_auction_it_wins_race_on_the_agents_stream(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    _auction(path, "t1", bids=[("t1", "a1", 10)])
    with EventLog(path) as log:
        leaving = Coordinator(log).prepare(RemoveAgent(agent_id="a1", reason="crashed", at=T0))
        assert [e.event_type.value for e in leaving.events] == ["agent.left"]  # it holds no task
        assert Coordinator(log).close_bidding("t1") == "a1"
        with pytest.raises(ConcurrencyError, match="agent-a1"):
            Coordinator(log).commit(leaving)
        events = Coordinator(log).remove_agent("a1", "crashed")  # decided again: it holds t1 now
        assert [e.event_type.value for e in events] == ["agent.left", "task.failed"]


# -- concurrency between processes ------------------------------------------------------------

RACERS = 3


@pytest.fixture(scope="module")
def racers() -> Iterator[Racers]:
    """Racing coordinator processes (see tests/racers.py), started once for this module."""
    started = Racers(RACERS)
    yield started
    started.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("postgres-tcp", marks=pytest.mark.postgres)])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """A factory of fresh, empty stores (their locations) on one backend: an SQLite file, or a
    database of the PostgreSQL server over its socket, or over TCP (127.0.0.1), as
    coordinators on several hosts reach it."""
    if request.param == "sqlite":
        numbers = itertools.count(1)
        return lambda: str(tmp_path / f"race-{next(numbers)}.db")
    request.getfixturevalue("postgres_server")  # a server that cannot start fails the test
    if request.param == "postgres-tcp":
        return lambda: pg.tcp_url(pg.create_database())
    return pg.create_database


def _stored(location: str) -> list[StoredEvent]:
    with EventLog(location) as log:
        return list(log.read())


def test_two_processes_closing_the_same_auction_exactly_one_wins(
        racers: Racers, new_store: Callable[[], str], tmp_path: Path) -> None:
    location = new_store()
    _auction(location, "t1", bids=[("t1", "a1", 100), ("t1", "a2", 90)])
    outcomes = racers.run(location, tmp_path, [[["close", "t1"]], [["close", "t1"]]], retries=0)
    assert sorted(o for (o,) in outcomes.values()) == ["appended", "conflict, gave up"]
    (winner,) = [name for name, (o,) in outcomes.items() if o == "appended"]
    assigned = [r for r in _stored(location) if r.event_type == "task.assigned"]
    assert [(r.source, r.agent_id) for r in assigned] == [(winner, "a2")]


def test_two_processes_closing_two_auctions_cannot_both_claim_one_idle_agent(
        racers: Racers, new_store: Callable[[], str], tmp_path: Path) -> None:
    location = new_store()
    _auction(location, "t1", "t2", bids=[("t1", "a1", 10), ("t2", "a1", 10)])
    outcomes = racers.run(location, tmp_path, [[["close", "t1"]], [["close", "t2"]]], retries=1)
    # The loser decides again: its only bidder is busy now, so its task fails.
    assert sorted(o for (o,) in outcomes.values()) == ["appended", "conflict, appended"]
    with EventLog(location) as log:
        tasks = sorted((v.status, v.agent_id, v.failure_reason) for v in log.tasks.tasks.values())
    assert tasks == [(TaskStatus.ASSIGNED, "a1", None),
                     (TaskStatus.FAILED, None, "no eligible bids (every bidder left or is busy)")]


# A race: agents a1..a3 online, tasks t1..t3 open for bidding with drawn bids. Then rounds: in
# each, every racer decides one command, all at once, and commits, all at once. In the first
# round the racers close auctions: t1, t2, and a drawn one (t1 first: a race on one task, and
# on one agent if the bids make it the winner of both); in the others, drawn commands.
AGENTS = ("a1", "a2", "a3")
TASKS = ("t1", "t2", "t3")
_task = st.sampled_from(TASKS)
_agent = st.sampled_from(AGENTS)
commands = st.one_of(
    st.tuples(st.just("close"), _task),
    st.tuples(st.sampled_from(["start", "complete", "fail"]), _task),
    st.tuples(st.sampled_from(["remove", "register"]), _agent),
    st.tuples(st.just("bid"), _task, _agent, st.integers(0, 2)),
).map(list)
auctions = st.fixed_dictionaries(
    {t: st.dictionaries(_agent, st.integers(0, 2), min_size=1) for t in TASKS})
schedules = st.tuples(
    _task, st.lists(st.lists(commands, min_size=RACERS, max_size=RACERS), max_size=2),
).map(lambda drawn: [[["close", "t1"], ["close", "t2"], ["close", drawn[0]]], *drawn[1]])


def _check_the_log(rows: list[StoredEvent]) -> None:
    """Replay the stored log: no task is assigned twice, no agent is assigned a task while it
    holds another open one, and the whole log is a lifecycle the deciders accept."""
    assigned: set[str] = set()
    holding: dict[str, str] = {}  # agent -> the open task it was assigned
    for row in rows:
        task_id, agent_id = row.task_id, row.agent_id
        if row.event_type == "task.assigned":
            assert task_id is not None and agent_id is not None
            assert task_id not in assigned, f"{task_id} assigned twice (position {row.position})"
            assert agent_id not in holding, (
                f"{agent_id} assigned {task_id} while holding {holding[agent_id]} "
                f"(position {row.position})")
            assigned.add(task_id)
            holding[agent_id] = task_id
        elif row.event_type in ("task.completed", "task.failed"):
            holding = {a: t for a, t in holding.items() if t != task_id}
    projection = ReadModelsProjection(plain=True)
    models = projection.fold_rows(projection.initial(), rows)
    assert models.tasks.anomaly_count == models.agents.anomaly_count == 0, (
        models.tasks.anomalies, models.agents.anomalies)


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(auctions=auctions, schedule=schedules)
def test_racing_coordinator_processes_never_assign_one_agent_twice_nor_one_task_twice(
        racers: Racers, new_store: Callable[[], str], tmp_path: Path,
        auctions: dict[str, dict[str, int]], schedule: list[list[list[Any]]]) -> None:
    # (`new_store` makes a fresh store for each example: fixtures are shared between examples.)
    location = new_store()
    _auction(location, *TASKS, agents=AGENTS,
             bids=[(t, a, s) for t, offers in auctions.items() for a, s in offers.items()])
    setup = len(_stored(location))
    outcomes = racers.run(location, tmp_path, [list(spec) for spec in zip(*schedule, strict=True)])
    for outcome in itertools.chain(*outcomes.values()):
        event(outcome)
    rows = _stored(location)
    _check_the_log(rows)
    writers = {r.source for r in rows if r.position > setup}
    assert writers == {name for name, theirs in outcomes.items()
                       if any(o.endswith("appended") for o in theirs)}


# -- a stateful property test against a simple model ----------------------------------------------

CALLS = ("c1", "c2")
CAPS = ("x", "y")
OPEN = {"bidding", "assigned", "running"}
MODEL_TASKS = ("t1", "t2", "t3", "t4")


@dataclass
class _Agent:
    online: bool
    caps: tuple[str, ...]
    task: str | None = None


@dataclass
class _Task:
    caps: tuple[str, ...]
    status: str = "bidding"
    bids: dict[str, int] = field(default_factory=dict)
    agent: str | None = None


class CoordinatorAgainstAModel(RuleBasedStateMachine):
    """Every command the model calls invalid is refused with nothing appended; every valid one
    appends exactly the events the model expects, and the read models agree with the model."""

    def __init__(self) -> None:
        super().__init__()
        self.log = EventLog(MemoryStore())
        self.coordinator = Coordinator(self.log)
        self.clock = T0
        self.agents: dict[str, _Agent] = {}
        self.tasks: dict[str, _Task] = {}
        self.calls: set[tuple[str, str]] = set()  # open (agent, call id): call ids are per agent

    def teardown(self) -> None:
        self.log.close()

    def _at(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def _expect(self, command: Command, expected: list[str] | None) -> None:
        outcome = "refused" if expected is None else "appended" if expected else "repeat"
        event(f"{type(command).__name__}: {outcome}")
        head = self.log.store.head()
        if expected is None:
            with pytest.raises((InvalidTransition, InvalidEvent)):
                self.coordinator.execute(command)
            assert self.log.store.head() == head
        else:
            self.coordinator.execute(command)
            assert _types(self.log, head) == expected

    def _online(self, agent_id: str) -> bool:
        agent = self.agents.get(agent_id)
        return agent is not None and agent.online

    def _end(self, task: _Task, status: str) -> list[str]:
        """The task ends; the events that free its agent, if it is online."""
        freed = []
        if task.agent is not None and task.status in ("assigned", "running"):
            self.agents[task.agent].task = None
            if self.agents[task.agent].online:
                freed = ["agent.status_changed"]
        task.status = status
        return freed

    @initialize(caps=st.lists(st.sets(st.sampled_from(CAPS)), min_size=len(AGENTS), max_size=len(AGENTS)))
    def a_swarm_with_work(self, caps: list[set[str]]) -> None:
        for agent_id, theirs in zip(AGENTS, caps, strict=True):
            self.register(agent_id, theirs)
        self.post("t1", set())

    @rule(agent_id=st.sampled_from(AGENTS), caps=st.sets(st.sampled_from(CAPS)))
    def register(self, agent_id: str, caps: set[str]) -> None:
        wanted = tuple(sorted(caps))
        agent = self.agents.get(agent_id)
        command = RegisterAgent(agent_id=agent_id, name=agent_id, capabilities=wanted, at=self._at())
        if agent is not None and agent.online:
            self._expect(command, [] if agent.caps == wanted else None)
            return
        self._expect(command, ["agent.joined"])
        self.agents[agent_id] = _Agent(True, wanted)

    @rule(agent_id=st.sampled_from(AGENTS))
    def remove(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        command = RemoveAgent(agent_id=agent_id, reason="bye", at=self._at())
        if agent is None:
            self._expect(command, None)
        elif not agent.online:
            self._expect(command, [])
        else:
            self._expect(command, ["agent.left"] + (["task.failed"] if agent.task else []))
            agent.online = False
            if agent.task:
                self._end(self.tasks[agent.task], "failed")
            self.calls = {(a, c) for a, c in self.calls if a != agent_id}  # its calls end with it

    @rule(task_id=st.sampled_from(MODEL_TASKS), caps=st.sets(st.sampled_from(CAPS), max_size=1))
    def post(self, task_id: str, caps: set[str]) -> None:
        command = PostTask(task_id=task_id, description="do it", required_capabilities=tuple(caps),
                           at=self._at())
        if task_id in self.tasks:
            self._expect(command, None)
        else:
            self._expect(command, ["task.created", "task.bidding"])
            self.tasks[task_id] = _Task(tuple(caps))

    @rule(task_id=st.sampled_from(MODEL_TASKS), agent_id=st.sampled_from(AGENTS), sats=st.integers(0, 3))
    def bid(self, task_id: str, agent_id: str, sats: int) -> None:
        command = SubmitBid(task_id=task_id, agent_id=agent_id, bid_sats=sats, at=self._at())
        task = self.tasks.get(task_id)
        if task is None or task.status != "bidding" or not self._online(agent_id) \
                or not set(task.caps) <= set(self.agents[agent_id].caps):
            self._expect(command, None)
        elif agent_id in task.bids:
            self._expect(command, [] if task.bids[agent_id] == sats else None)
        else:
            self._expect(command, ["bid.submitted"])
            task.bids[agent_id] = sats

    @rule(task_id=st.sampled_from(MODEL_TASKS))
    def close(self, task_id: str) -> None:
        command = CloseBidding(task_id=task_id, at=self._at())
        task = self.tasks.get(task_id)
        if task is None or task.status != "bidding":
            self._expect(command, None)
            return
        eligible = [(sats, i, a) for i, (a, sats) in enumerate(task.bids.items())
                    if self._online(a) and self.agents[a].task is None]
        if not eligible:
            self._expect(command, ["auction.closed", "task.failed"])
            task.status = "failed"
            return
        self._expect(command, ["auction.closed", "task.assigned", "agent.status_changed"])
        winner = min(eligible)[2]
        task.status, task.agent = "assigned", winner
        self.agents[winner].task = task_id

    @rule(task_id=st.sampled_from(MODEL_TASKS))
    def start(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        ok = task is not None and task.status == "assigned"
        self._expect(StartTask(task_id=task_id, at=self._at()), ["task.started"] if ok else None)
        if ok:
            self.tasks[task_id].status = "running"

    @rule(task_id=st.sampled_from(MODEL_TASKS))
    def complete(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        command = CompleteTask(task_id=task_id, at=self._at())
        if task is None or task.status != "running":
            self._expect(command, None)
            return
        freed = self._end(task, "completed")
        self._expect(command, ["task.completed", *freed])

    @rule(task_id=st.sampled_from(MODEL_TASKS))
    def fail(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        command = FailTask(task_id=task_id, reason="no", at=self._at())
        if task is None or task.status not in OPEN:
            self._expect(command, None)
            return
        freed = self._end(task, "failed")
        self._expect(command, ["task.failed", *freed])

    @rule(agent_id=st.sampled_from(AGENTS), call_id=st.sampled_from(CALLS),
          task_id=st.none() | st.sampled_from(MODEL_TASKS))
    def call_tool(self, agent_id: str, call_id: str, task_id: str | None) -> None:
        task = None if task_id is None else self.tasks.get(task_id)
        ok = self._online(agent_id) and (agent_id, call_id) not in self.calls and (
            task_id is None or (task is not None and task.status == "running" and task.agent == agent_id))
        self._expect(CallTool(agent_id=agent_id, tool="shell", call_id=call_id, task_id=task_id,
                              at=self._at()), ["tool.called"] if ok else None)
        if ok:
            self.calls.add((agent_id, call_id))

    @rule(agent_id=st.sampled_from(AGENTS), call_id=st.sampled_from(CALLS), failed=st.booleans())
    def finish_tool(self, agent_id: str, call_id: str, failed: bool) -> None:
        ok = self._online(agent_id) and (agent_id, call_id) in self.calls
        command = FinishTool(agent_id=agent_id, call_id=call_id, tool="shell", duration_ms=3.0,
                             error="boom" if failed else None, at=self._at())
        self._expect(command, [("tool.failed" if failed else "tool.completed")] if ok else None)
        if ok:
            self.calls.discard((agent_id, call_id))

    # Directed rules: valid moves, so that runs get deep into the lifecycle.

    def _with(self, status: str) -> list[str]:
        return sorted(t for t, m in self.tasks.items() if m.status == status)

    @precondition(lambda self: self._with("bidding"))
    @rule(data=st.data(), bids=st.dictionaries(st.sampled_from(AGENTS), st.integers(0, 3)))
    def run_an_auction(self, data: st.DataObject, bids: dict[str, int]) -> None:
        task_id = data.draw(st.sampled_from(self._with("bidding")))
        for agent_id, sats in bids.items():
            self.bid(task_id, agent_id, sats)
        self.close(task_id)

    @precondition(lambda self: self._with("assigned"))
    @rule(data=st.data())
    def start_an_assigned_task(self, data: st.DataObject) -> None:
        self.start(data.draw(st.sampled_from(self._with("assigned"))))

    @precondition(lambda self: self._with("running"))
    @rule(data=st.data(), call_id=st.sampled_from(CALLS))
    def call_a_tool_on_a_running_task(self, data: st.DataObject, call_id: str) -> None:
        task_id = data.draw(st.sampled_from(self._with("running")))
        agent_id = self.tasks[task_id].agent
        assert agent_id is not None
        self.call_tool(agent_id, call_id, task_id)

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), failed=st.booleans())
    def finish_an_open_call(self, data: st.DataObject, failed: bool) -> None:
        agent_id, call_id = data.draw(st.sampled_from(sorted(self.calls)))
        self.finish_tool(agent_id, call_id, failed)

    @precondition(lambda self: self._with("running"))
    @rule(data=st.data())
    def complete_a_running_task(self, data: st.DataObject) -> None:
        self.complete(data.draw(st.sampled_from(self._with("running"))))

    @invariant()
    def read_models_agree_with_the_model(self) -> None:
        tasks, agents = self.log.tasks, self.log.agents
        assert {t: (v.status and v.status.value, v.agent_id) for t, v in tasks.tasks.merged().items()} \
            == {t: (m.status, m.agent) for t, m in self.tasks.items()}
        assert {a: (v.online, v.current_task) for a, v in agents.agents.merged().items()} == {
            a: (m.online, m.task) for a, m in self.agents.items()}
        assert {(a, c) for a, v in agents.agents.merged().items() for c in v.open_calls} == self.calls
        assert tasks.anomaly_count == agents.anomaly_count == 0

    @invariant()
    def an_agent_has_at_most_one_current_task(self) -> None:
        holders = [t.agent_id for t in self.log.tasks.tasks.merged().values()
                   if t.status in (TaskStatus.ASSIGNED, TaskStatus.RUNNING)]
        assert len(holders) == len(set(holders))


TestCoordinatorAgainstAModel = CoordinatorAgainstAModel.TestCase
TestCoordinatorAgainstAModel.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
