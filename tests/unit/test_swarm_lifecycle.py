"""Stateful property tests: the real `Coordinator` driven through a real store, its read models
(caught up after every step) compared with a simple model; and two backends driven with the same
commands, step by step, that must agree.

In the first machine each rule is a command. The model alone says what it must do: append these
events, do nothing (a harmless repeat), or be refused (`InvalidTransition`, nothing appended).
It runs on the in-memory store, and with fewer examples on SQLite files and on PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from domain.agent import Presence
from domain.codec import StoredEvent, encode
from domain.commands import (
    CallTool,
    CloseBidding,
    Command,
    CompleteTask,
    FailTask,
    FinishTool,
    PostTask,
    RecordError,
    RegisterAgent,
    RemoveAgent,
    StartTask,
    SubmitBid,
)
from domain.errors import InvalidTransition
from domain.events import EventType
from domain.task import TaskStatus
from projections.models import ReadModels, ReadModelsProjection, counts
from projections.tasks import open_tasks
from store import MemoryStore, SQLiteStore, Store
from swarmlog.coordinator import Coordinator
from swarmlog.log import EventLog
from tests import pg
from tests.strategies import timestamps

_T = EventType
OPEN = {"created", "bidding", "assigned", "running"}
CAPABILITIES = [(), ("code",), ("code", "search")]
REQUIRED = [(), ("code",), ("search",)]


@dataclass
class Task:
    required: tuple[str, ...]
    status: str = "bidding"
    bids: dict[str, int] = field(default_factory=dict)  # agent -> its bid, in first-bid order
    agent: str | None = None
    winning_bid: int | None = None
    tool_calls: int = 0
    tool_failures: int = 0


@dataclass
class Agent:
    capabilities: tuple[str, ...]
    online: bool = True
    task: str | None = None  # assigned or running
    status: str | None = None  # as last reported
    bids: int = 0
    won: int = 0
    completed: int = 0
    failed: int = 0
    sats: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    calls: dict[str, str | None] = field(default_factory=dict)  # open call -> its task


# -- stores, one per example ---------------------------------------------------------------------

Opener = Callable[[], Store]
#: A fresh store for each example: (how to open it, again after a restart; how to drop it).
Backend = Callable[[], tuple[Opener, Callable[[], None]]]


def memory() -> tuple[Opener, Callable[[], None]]:
    """A fresh in-memory store (reopening it is getting it back)."""
    store = MemoryStore()
    return (lambda: store), (lambda: None)


def sqlite_files(folder: Path) -> Backend:
    numbers = itertools.count()

    def fresh() -> tuple[Opener, Callable[[], None]]:
        path = folder / f"log-{next(numbers)}.db"
        return (lambda: SQLiteStore(str(path))), (lambda: None)

    return fresh


def postgres_databases() -> tuple[Opener, Callable[[], None]]:
    from store.postgres import PostgresStore

    url = pg.create_database()
    return (lambda: PostgresStore(url)), (lambda: pg.drop_database(pg.name_of(url)))


# -- the swarm against a simple model ------------------------------------------------------------


class SwarmAgainstAModel(RuleBasedStateMachine):
    agents = Bundle("agents")
    tasks = Bundle("tasks")

    def __init__(self, fresh: Backend) -> None:
        super().__init__()
        self.open_store, self.drop = fresh()
        self.log = EventLog(self.open_store())
        self.coordinator = Coordinator(self.log)
        self.model_tasks: dict[str, Task] = {}
        self.model_agents: dict[str, Agent] = {}
        self.lost_calls: list[tuple[str, str]] = []  # (agent, call) dropped when it left
        self.tally: Counter[str] = Counter()  # events appended, by type
        self.finished: dict[str, TaskStatus] = {}  # terminal statuses seen so far
        self.next_call = 0

    def teardown(self) -> None:
        self.log.close()
        self.drop()

    @property
    def store(self) -> Store:
        return self.log.store

    def expect(self, kinds: list[EventType] | None, command: Callable[[], object]) -> list[StoredEvent]:
        """Run `command`; the model says it appends events of `kinds`, in order ([]: a harmless
        repeat), or is refused (None) and appends nothing."""
        head = self.store.head()
        if kinds is None:
            with pytest.raises(InvalidTransition):
                command()
            assert self.store.head() == head
            return []
        command()
        appended = list(self.store.read(head))
        assert [r.event_type for r in appended] == [k.value for k in kinds]
        self.tally.update(r.event_type for r in appended)
        return appended

    # -- agents -------------------------------------------------------------------------------

    @initialize(target=agents, at=timestamps)
    def two_agents_join(self, at: datetime) -> object:
        self.register("a1", ("code",), at)
        self.register("a2", ("code", "search"), at)
        return multiple("a1", "a2")

    @precondition(lambda self: len(self.model_agents) < 4 or
                  not all(a.online for a in self.model_agents.values()))  # someone may join
    @rule(target=agents, agent=st.sampled_from(["a1", "a2", "a3", "a4"]),
          capabilities=st.sampled_from(CAPABILITIES), at=timestamps)
    def register(self, agent: str, capabilities: tuple[str, ...], at: datetime) -> object:
        known = self.model_agents.get(agent)
        kinds: list[EventType] | None = [_T.AGENT_JOINED]
        if known is not None and known.online:  # the same profile again: nothing to record
            kinds = [] if known.capabilities == capabilities else None
        self.expect(kinds, lambda: self.coordinator.register_agent(agent, agent, capabilities,
                                                                   at=at))
        if known is None:
            self.model_agents[agent] = Agent(capabilities)
            return agent
        if kinds:
            known.online, known.capabilities = True, capabilities
        return multiple()

    @rule(agent=agents, at=timestamps)
    def remove(self, agent: str, at: datetime) -> None:
        a = self.model_agents[agent]
        if not a.online:
            self.expect([], lambda: self.coordinator.remove_agent(agent, "again", at=at))
            return
        held = a.task
        kinds = [_T.AGENT_LEFT] + ([_T.TASK_FAILED] if held is not None else [])
        self.expect(kinds, lambda: self.coordinator.remove_agent(agent, "bye", at=at))
        a.online = False
        self.lost_calls += [(agent, call) for call in a.calls]
        a.calls = {}
        if held is not None:  # its task cannot go on without it
            self.settle(self.model_tasks[held], "failed")

    # -- tasks ----------------------------------------------------------------------------------

    @precondition(lambda self: sum(t.status in OPEN for t in self.model_tasks.values()) < 3)
    @rule(target=tasks, required=st.sampled_from(REQUIRED), at=timestamps)
    def post(self, required: tuple[str, ...], at: datetime) -> str:
        task = f"t{len(self.model_tasks) + 1}"
        self.expect([_T.TASK_CREATED, _T.TASK_BIDDING], lambda: self.coordinator.post_task(
            task, task_id=task, required_capabilities=required, at=at))
        self.model_tasks[task] = Task(required)
        return task

    @rule(task=tasks, agent=agents, sats=st.integers(0, 50), at=timestamps)
    def bid(self, task: str, agent: str, sats: int, at: datetime) -> None:
        t, a = self.model_tasks[task], self.model_agents[agent]
        kinds: list[EventType] | None = [_T.BID_SUBMITTED]
        if t.status != "bidding" or not a.online or not set(t.required) <= set(a.capabilities):
            kinds = None
        elif agent in t.bids:
            kinds = [] if t.bids[agent] == sats else None  # one bid each; the same one again
        self.expect(kinds, lambda: self.coordinator.submit_bid(task, agent, sats, at=at))
        if kinds:
            t.bids[agent] = sats
            a.bids += 1

    @rule(task=tasks, at=timestamps)
    def close(self, task: str, at: datetime) -> None:
        """The lowest bid of an online, idle bidder wins (ties: the earliest bidder); no such bid:
        the task fails."""
        t = self.model_tasks[task]
        if t.status != "bidding":
            self.expect(None, lambda: self.coordinator.close_bidding(task, at=at))
            return
        eligible = [(sats, i, agent) for i, (agent, sats) in enumerate(t.bids.items())
                    if self.model_agents[agent].online and self.model_agents[agent].task is None]
        if not eligible:
            self.expect([_T.AUCTION_CLOSED, _T.TASK_FAILED],
                        lambda: self.coordinator.close_bidding(task, at=at))
            t.status = "failed"
            return
        sats, _, winner = min(eligible)
        rows = self.expect([_T.AUCTION_CLOSED, _T.TASK_ASSIGNED, _T.AGENT_STATUS_CHANGED],
                           lambda: self.coordinator.close_bidding(task, at=at))
        assert (rows[1].agent_id, rows[2].agent_id) == (winner, winner)
        assert rows[2].stream_id == f"agent-{winner}"  # the claim is in the winner's stream
        t.status, t.agent, t.winning_bid = "assigned", winner, sats
        a = self.model_agents[winner]
        a.task, a.won, a.status = task, a.won + 1, "busy"

    @rule(task=tasks, data=st.data(), at=timestamps)
    def start(self, task: str, data: st.DataObject, at: datetime) -> None:
        t = self.model_tasks[task]
        named = data.draw(st.none() | st.sampled_from(sorted(self.model_agents)), label="as")
        ok = t.status == "assigned" and named in (None, t.agent)
        self.expect([_T.TASK_STARTED] if ok else None,
                    lambda: self.coordinator.start_task(task, agent_id=named, at=at))
        if ok:
            t.status = "running"

    @rule(task=tasks, at=timestamps)
    def complete(self, task: str, at: datetime) -> None:
        t = self.model_tasks[task]
        ok = t.status == "running"
        self.expect([_T.TASK_COMPLETED, _T.AGENT_STATUS_CHANGED] if ok else None,
                    lambda: self.coordinator.complete_task(task, "done", at=at))
        if ok:
            self.settle(t, "completed")

    @rule(task=tasks, at=timestamps)
    def fail(self, task: str, at: datetime) -> None:
        t = self.model_tasks[task]
        kinds: list[EventType] | None = None
        if t.status in OPEN:
            kinds = [_T.TASK_FAILED]
            if t.agent is not None and self.model_agents[t.agent].online:
                kinds.append(_T.AGENT_STATUS_CHANGED)  # its worker is free again
        self.expect(kinds, lambda: self.coordinator.fail_task(task, "gave up", at=at))
        if kinds:
            self.settle(t, "failed")

    def settle(self, t: Task, status: str) -> None:
        t.status = status
        if t.agent is not None:
            a = self.model_agents[t.agent]
            a.task = None
            if a.online:
                a.status = "idle"
            if status == "completed":
                a.completed, a.sats = a.completed + 1, a.sats + (t.winning_bid or 0)
            else:
                a.failed += 1

    @precondition(lambda self: any(t.status in OPEN for t in self.model_tasks.values()))
    @rule(data=st.data(), at=timestamps)
    def advance(self, data: st.DataObject, at: datetime) -> None:
        """The next step of an open task, the furthest along first (hypothesis favours those):
        a bid by an agent that could win, the auction's close, the start, the completion.
        Progress needs several such steps in a row, and the other rules are many."""
        rank = ["running", "assigned", "bidding", "created"]
        task = data.draw(st.sampled_from(sorted(
            (i for i, t in self.model_tasks.items() if t.status in OPEN),
            key=lambda i: (rank.index(self.model_tasks[i].status), i))), label="task")
        t = self.model_tasks[task]
        if t.status == "running":
            self.complete(task, at)
        elif t.status == "assigned":
            self.start(task, data, at)
        elif t.status == "bidding":
            could_win = sorted(a for a, m in self.model_agents.items()
                               if m.online and m.task is None and a not in t.bids
                               and set(t.required) <= set(m.capabilities))
            winnable = any(self.model_agents[a].online and self.model_agents[a].task is None
                           for a in t.bids)
            # Bid while nobody could win; then mostly close. (Hypothesis favours 0.)
            if could_win and (not winnable or data.draw(st.integers(0, 2), label="bid again")):
                self.bid(task, data.draw(st.sampled_from(could_win), label="bidder"),
                         data.draw(st.integers(0, 50), label="sats"), at)
            else:
                self.close(task, at)

    # Three more ways to the same rule keep the lifecycle going (hypothesis has no rule weights).
    @precondition(lambda self: any(t.status in OPEN for t in self.model_tasks.values()))
    @rule(data=st.data(), at=timestamps)
    def advance_more(self, data: st.DataObject, at: datetime) -> None:
        self.advance(data, at)

    @precondition(lambda self: any(t.status in OPEN for t in self.model_tasks.values()))
    @rule(data=st.data(), at=timestamps)
    def advance_further(self, data: st.DataObject, at: datetime) -> None:
        self.advance(data, at)

    @precondition(lambda self: any(t.status in OPEN for t in self.model_tasks.values()))
    @rule(data=st.data(), at=timestamps)
    def advance_again(self, data: st.DataObject, at: datetime) -> None:
        self.advance(data, at)

    # -- tools and errors -----------------------------------------------------------------------

    @rule(agent=agents, for_task=st.sampled_from(["none", "its own", "any"]), data=st.data(),
          at=timestamps)
    def call_tool(self, agent: str, for_task: str, data: st.DataObject, at: datetime) -> None:
        a = self.model_agents[agent]
        task = None
        if for_task == "its own":
            task = a.task
        elif for_task == "any" and self.model_tasks:
            task = data.draw(st.sampled_from(sorted(self.model_tasks)), label="task")
        self.next_call += 1
        call = f"c{self.next_call}"
        # A call for a task: only by the agent running it.
        ok = a.online and (task is None or (self.model_tasks[task].status == "running"
                                            and self.model_tasks[task].agent == agent))
        rows = self.expect([_T.TOOL_CALLED] if ok else None, lambda: self.coordinator.record_tool_call(
            agent, "grep", {"q": "x"}, task_id=task, call_id=call, at=at))
        if ok:
            assert rows[0].task_id == task
            a.calls[call], a.tool_calls = task, a.tool_calls + 1
            if task is not None:
                self.model_tasks[task].tool_calls += 1

    @precondition(lambda self: any(a.calls for a in self.model_agents.values()))
    @rule(data=st.data(), failed=st.booleans(), at=timestamps)
    def finish_tool(self, data: st.DataObject, failed: bool, at: datetime) -> None:
        agent, call = data.draw(st.sampled_from(sorted(
            (agent, call) for agent, a in self.model_agents.items() for call in a.calls)))
        a = self.model_agents[agent]
        task = a.calls.pop(call)
        rows = self.expect([_T.TOOL_FAILED if failed else _T.TOOL_COMPLETED],
                           lambda: self.coordinator.record_tool_result(
                               agent, call, tool="grep", duration_ms=3.0, result="ok",
                               error="boom" if failed else None, at=at))
        assert rows[0].task_id == task  # in the stream of the call
        if failed:
            a.tool_failures += 1
            if task is not None:
                self.model_tasks[task].tool_failures += 1

    @rule(task=tasks, agent=agents, what=st.sampled_from(["post", "bid", "finish"]),
          data=st.data(), at=timestamps)
    def what_the_model_forbids_is_refused(self, task: str, agent: str, what: str,
                                          data: st.DataObject, at: datetime) -> None:
        """A task posted again, a bid by an agent that never joined, or a tool result for a call
        that is not open for its agent: one it dropped by leaving, another agent's, or one never
        made."""
        if what == "post":
            self.expect(None, lambda: self.coordinator.post_task("again", task_id=task, at=at))
        elif what == "bid":
            self.expect(None, lambda: self.coordinator.submit_bid(task, "stranger", 1, at=at))
        else:
            others = [call for who, a in self.model_agents.items() if who != agent
                      for call in a.calls]
            lost = [call for who, call in self.lost_calls if who == agent]
            call = data.draw(st.sampled_from(sorted({*others, *lost, "never"})), label="call")
            self.expect(None, lambda: self.coordinator.record_tool_result(
                agent, call, tool="grep", duration_ms=1.0, at=at))

    @precondition(lambda self: self.tally["system.error"] < 3)  # (or it crowds out the rest)
    @rule(at=timestamps)
    def record_error(self, at: datetime) -> None:
        self.expect([_T.SYSTEM_ERROR], lambda: self.coordinator.record_error("disk full", at=at))

    # -- restarts -------------------------------------------------------------------------------

    @rule()
    def snapshot_and_restart(self) -> None:
        """A snapshot moves closed tasks and offline agents out of memory and changes nothing
        the read models say; a restart from it (a new connection) says the same too."""
        p = ReadModelsProjection()
        before = p.dump(self.log.models)
        self.log.snapshot()
        models = self.runner_models()
        assert all(t.is_open for t in models.tasks.tasks.values())
        assert all(a.online for a in models.agents.agents.values())
        assert p.dump(models) == before
        reopened = self.open_store()
        if reopened is not self.store:  # (the in-memory store is shared, not reopened)
            self.log.close()
        self.log = EventLog(reopened)
        self.coordinator = Coordinator(self.log)
        assert p.dump(self.log.models) == before
        assert all(t.is_open for t in self.runner_models().tasks.tasks.values())

    def runner_models(self) -> ReadModels:
        """The read models as they are (not caught up: nothing is appended meanwhile)."""
        models: ReadModels = self.log.runner.state(ReadModelsProjection.name)
        return models

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def the_read_models_equal_the_model(self) -> None:
        models = self.log.models
        tasks = models.tasks.tasks.merged()  # closed tasks may be in the store since a snapshot
        assert set(tasks) == set(self.model_tasks)
        for task_id, t in self.model_tasks.items():
            view = tasks[task_id]
            assert view.status is not None
            assert (view.status.value, view.agent_id, view.winning_bid, view.bids,
                    view.tool_calls, view.tool_failures, view.required_capabilities) == (
                t.status, t.agent, t.winning_bid, t.bids, t.tool_calls, t.tool_failures,
                list(t.required) or None)
        roster = models.agents.agents.merged()  # offline agents may be in the store too
        assert set(roster) == set(self.model_agents)
        for agent_id, a in self.model_agents.items():
            v = roster[agent_id]
            assert (v.presence, v.capabilities, v.current_task, v.status, v.bids, v.tasks_won,
                    v.tasks_completed, v.tasks_failed, v.sats_earned, v.tool_calls,
                    v.tool_failures, v.open_calls) == (
                Presence.ONLINE if a.online else Presence.OFFLINE, list(a.capabilities), a.task,
                a.status, a.bids, a.won, a.completed, a.failed, a.sats, a.tool_calls,
                a.tool_failures, a.calls)
        assert models.tasks.anomaly_count == models.agents.anomaly_count == 0

    @invariant()
    def terminal_states_never_change(self) -> None:
        tasks = self.log.models.tasks.tasks.merged()
        for task_id, status in self.finished.items():
            assert tasks[task_id].status is status
        self.finished.update({i: t.status for i, t in tasks.items()
                              if t.status is not None and not t.is_open})

    @invariant()
    def summary_counts_equal_the_tallies(self) -> None:
        models = self.log.models
        summary = models.summary
        statuses = Counter(t.status for t in self.model_tasks.values())
        assert {s.value: n for s, n in summary.tasks_by_status.items()} == {
            s.value: statuses[s.value] for s in TaskStatus}
        assert sum(summary.tasks_by_status.values()) == self.tally["task.created"]
        assert {kind: n for kind, n in summary.by_type.items() if n} == dict(self.tally)
        assert summary.total == sum(self.tally.values()) == self.store.head()
        online = sum(a.online for a in self.model_agents.values())
        assert counts(models)["agents_online"] == online

    @invariant()
    def an_agent_works_on_at_most_one_task(self) -> None:
        models = self.log.models
        tasks = models.tasks.tasks.merged()
        for agent in models.agents.agents.merged().values():
            working = [t.task_id for t in tasks.values() if t.is_open and t.agent_id == agent.agent_id]
            assert working == ([agent.current_task] if agent.current_task else [])


def test_the_swarm_follows_its_model_in_memory() -> None:
    run_state_machine_as_test(lambda: SwarmAgainstAModel(memory),
                              settings=settings(max_examples=100, stateful_step_count=50))


def test_the_swarm_follows_its_model_on_sqlite(tmp_path: Path) -> None:
    fresh = sqlite_files(tmp_path)
    run_state_machine_as_test(lambda: SwarmAgainstAModel(fresh),
                              settings=settings(max_examples=25, stateful_step_count=40))


@pytest.mark.postgres
def test_the_swarm_follows_its_model_on_postgres(postgres_server: str) -> None:
    run_state_machine_as_test(lambda: SwarmAgainstAModel(postgres_databases),
                              settings=settings(max_examples=5, stateful_step_count=30))


# -- two backends, the same commands --------------------------------------------------------------

TASK_IDS = st.sampled_from(["t1", "t2", "t3"])
AGENT_IDS = st.sampled_from(["a1", "a2", "a3"])
CALL_IDS = st.sampled_from(["c1", "c2", "c3"])

#: Commands drawn blindly from small pools of ids: many are refused, enough go through.
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(RegisterAgent, agent_id=AGENT_IDS, name=st.just("agent"),
              capabilities=st.sampled_from(CAPABILITIES), at=timestamps),
    st.builds(RemoveAgent, agent_id=AGENT_IDS, reason=st.just("bye"), at=timestamps),
    st.builds(PostTask, task_id=TASK_IDS, description=st.just("work"),
              required_capabilities=st.sampled_from(REQUIRED), at=timestamps),
    st.builds(SubmitBid, task_id=TASK_IDS, agent_id=AGENT_IDS, bid_sats=st.integers(0, 9),
              at=timestamps),
    st.builds(CloseBidding, task_id=TASK_IDS, at=timestamps),
    st.builds(StartTask, task_id=TASK_IDS, agent_id=st.none() | AGENT_IDS, at=timestamps),
    st.builds(CompleteTask, task_id=TASK_IDS, result=st.just("done"), at=timestamps),
    st.builds(FailTask, task_id=TASK_IDS, reason=st.just("gave up"), at=timestamps),
    st.builds(CallTool, agent_id=AGENT_IDS, tool=st.just("grep"), call_id=CALL_IDS,
              task_id=st.none() | TASK_IDS, at=timestamps),
    st.builds(FinishTool, agent_id=AGENT_IDS, call_id=CALL_IDS, tool=st.just("grep"),
              duration_ms=st.just(2.0), error=st.none() | st.just("boom"), at=timestamps),
    st.builds(RecordError, message=st.just("disk full"), task_id=st.none() | TASK_IDS,
              at=timestamps),
)


def counting_ids() -> Callable[[datetime], str]:
    """Event ids from a counter: two coordinators given the same commands make the same ids."""
    numbers = itertools.count(1)
    return lambda at: f"event-{next(numbers)}"


class Side:
    """One backend of the comparison: its store, the log over it, and its coordinator (whose
    ids count from 1, so that both sides make the same)."""

    def __init__(self, open_store: Opener, drop: Callable[[], None]) -> None:
        self.open_store, self.drop = open_store, drop
        self.log = EventLog(open_store())
        self.coordinator = Coordinator(self.log, new_id=counting_ids())


class TwoBackendsAgree(RuleBasedStateMachine):
    """The tutorial's database agreement test: every command goes to both coordinators, each
    with its own store; they must decide alike, store alike and read alike."""

    def __init__(self, left: Backend, right: Backend) -> None:
        super().__init__()
        self.sides = [Side(*fresh()) for fresh in (left, right)]

    def teardown(self) -> None:
        for side in self.sides:
            side.log.close()
            side.drop()

    def outcome(self, coordinator: Coordinator, command: Command) -> Any:
        try:
            return [encode(e) for e in coordinator.execute(command)]
        except InvalidTransition as e:
            return f"refused: {e}"

    @initialize(at=timestamps)
    def two_agents_and_a_task(self, at: datetime) -> None:
        for command in (RegisterAgent(agent_id="a1", name="agent", capabilities=("code",), at=at),
                        RegisterAgent(agent_id="a2", name="agent", at=at),
                        PostTask(task_id="t1", description="work", at=at)):
            self.execute(command)

    @rule(command=commands)
    def execute(self, command: Command) -> None:
        left, right = (self.outcome(side.coordinator, command) for side in self.sides)
        assert left == right

    @rule(data=st.data(), at=timestamps)
    def a_command_that_moves_things_on(self, data: st.DataObject, at: datetime) -> None:
        """One the first backend's read models say is likely to go through (blind commands are
        mostly refused): a bid by an idle agent, an auction's close, a start, a tool call on a
        running task, a tool result, a completion."""
        models = self.sides[0].log.models
        agents = models.agents.agents
        likely: list[Command] = []
        for task in open_tasks(models.tasks):
            t = task.task_id
            if task.status is TaskStatus.BIDDING:
                likely += [SubmitBid(task_id=t, agent_id=a.agent_id, bid_sats=len(likely), at=at)
                           for a in agents.values() if a.idle and a.agent_id not in task.bids]
                likely.append(CloseBidding(task_id=t, at=at))
            elif task.status is TaskStatus.ASSIGNED:
                likely.append(StartTask(task_id=t, at=at))
            elif task.status is TaskStatus.RUNNING and task.agent_id is not None:
                likely += [CallTool(agent_id=task.agent_id, tool="grep", call_id=c, task_id=t,
                                    at=at) for c in ("c1", "c2")]
                likely.append(CompleteTask(task_id=t, at=at))
        likely += [FinishTool(agent_id=a.agent_id, call_id=c, tool="grep", duration_ms=1.0, at=at)
                   for a in agents.values() for c in a.open_calls]
        if likely:
            self.execute(data.draw(st.sampled_from(likely), label="command"))

    @rule(which=st.sampled_from([0, 1]))
    def snapshot_and_restart_one_of_them(self, which: int) -> None:
        side = self.sides[which]
        side.log.snapshot()
        reopened = side.open_store()
        if reopened is not side.log.store:  # (the in-memory store is shared, not reopened)
            side.log.close()
        side.log = side.coordinator.log = EventLog(reopened)

    @invariant()
    def they_store_the_same_rows(self) -> None:
        left, right = (list(side.log.read()) for side in self.sides)
        assert left == right
        streams = {row.stream_id for row in left}
        assert self.sides[0].log.store.stream_versions(streams) == \
            self.sides[1].log.store.stream_versions(streams)

    @invariant()
    def they_say_the_same(self) -> None:
        p = ReadModelsProjection()
        left, right = (p.dump(side.log.models) for side in self.sides)
        assert left == right


def test_memory_and_sqlite_agree_step_by_step(tmp_path: Path) -> None:
    fresh = sqlite_files(tmp_path)
    run_state_machine_as_test(lambda: TwoBackendsAgree(memory, fresh),
                              settings=settings(max_examples=30, stateful_step_count=50))


@pytest.mark.postgres
def test_sqlite_and_postgres_agree_step_by_step(tmp_path: Path, postgres_server: str) -> None:
    fresh = sqlite_files(tmp_path)
    run_state_machine_as_test(lambda: TwoBackendsAgree(fresh, postgres_databases),
                              settings=settings(max_examples=4, stateful_step_count=40))
