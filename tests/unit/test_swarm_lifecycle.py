"""A stateful property test: a swarm driven through a real store, its projections (caught up by
the runner after every step) compared with a simple model.

Each rule is a command. The model alone decides whether it is valid: if so, its events are
appended; if not, the lifecycle table must refuse it (`InvalidTransition`) and nothing is
appended. Run on the in-memory store, and with fewer examples on SQLite files.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

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
)

from domain.errors import InvalidTransition
from domain.events import (
    AgentJoined,
    AgentLeft,
    AuctionClosed,
    BidSubmitted,
    Event,
    EventType,
    SystemErrorLogged,
    TaskAssigned,
    TaskBiddingOpened,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskStarted,
    ToolCalled,
    ToolCompleted,
    ToolFailed,
)
from domain.lifecycle import (
    TERMINAL_STATUSES,
    AgentPresence,
    TaskStatus,
    require_agent_transition,
    require_task_transition,
)
from projections.runner import ProjectionRunner
from store.base import EventStore
from store.memory import MemoryEventStore
from store.sqlite import SQLiteEventStore
from tests.strategies import timestamps

_T = EventType
SRC = "coordinator"
OPEN = {"created", "bidding", "assigned", "running"}
#: The model's own statement of the task lifecycle (the oracle for `domain.lifecycle`).
MODEL_MOVES: dict[str, set[EventType]] = {
    "created": {_T.TASK_BIDDING, _T.TASK_FAILED},
    "bidding": {_T.BID_SUBMITTED, _T.AUCTION_CLOSED, _T.TASK_ASSIGNED, _T.TASK_FAILED},
    "assigned": {_T.TASK_STARTED, _T.TASK_FAILED},
    "running": {_T.TASK_COMPLETED, _T.TASK_FAILED},
    "completed": set(),
    "failed": set(),
}
WORK = {_T.BID_SUBMITTED, _T.TASK_ASSIGNED, _T.TASK_STARTED, _T.TASK_COMPLETED}


@dataclass
class Task:
    status: str = "created"
    bids: dict[str, int] = field(default_factory=dict)  # agent -> latest bid, in first-bid order
    agent: str | None = None
    winning_bid: int | None = None
    tool_calls: int = 0


@dataclass
class Agent:
    online: bool = True
    task: str | None = None
    won: int = 0
    completed: int = 0
    failed: int = 0
    sats: int = 0
    tool_calls: int = 0
    tool_failures: int = 0


class SwarmLifecycle(RuleBasedStateMachine):
    agents = Bundle("agents")
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.store = self.open_store()
        self.runner = ProjectionRunner(self.store)
        self.model_tasks: dict[str, Task] = {}
        self.model_agents: dict[str, Agent] = {}
        self.calls: dict[str, tuple[str, str | None]] = {}  # open call -> (agent, task)
        self.by_type: dict[str, int] = {}
        self.finished: dict[str, str] = {}  # terminal statuses seen so far
        self.next_call = 0

    def open_store(self) -> EventStore:
        return MemoryEventStore()

    def teardown(self) -> None:
        self.store.close()

    def append(self, *events: Event) -> None:
        self.store.append(list(events))
        for e in events:
            kind = e.event_type.value  # type: ignore[attr-defined]
            self.by_type[kind] = self.by_type.get(kind, 0) + 1

    def refused(self, check: object) -> None:
        """The model says the command is invalid: the table must say so too."""
        assert callable(check)
        with pytest.raises(InvalidTransition):
            check()

    def presence(self, agent: str) -> AgentPresence | None:
        a = self.model_agents.get(agent)
        return None if a is None else AgentPresence.ONLINE if a.online else AgentPresence.OFFLINE

    # -- agents -------------------------------------------------------------------------------

    @initialize(target=agents, at=timestamps)
    def two_agents_join(self, at: datetime) -> object:
        for agent in ("a1", "a2"):
            self.join(agent, at)
        return multiple("a1", "a2")

    @rule(target=agents, agent=st.sampled_from(["a1", "a2", "a3", "a4"]), at=timestamps)
    def join(self, agent: str, at: datetime) -> object:
        known = self.model_agents.get(agent)
        if known is not None and known.online:
            self.refused(lambda: require_agent_transition(agent, AgentPresence.ONLINE,
                                                          _T.AGENT_JOINED))
            return multiple()
        self.append(AgentJoined(source=SRC, agent_id=agent, data={"name": agent}, timestamp=at))
        if known is None:
            self.model_agents[agent] = Agent()
            return agent
        known.online = True
        return multiple()

    @rule(agent=agents, at=timestamps)
    def leave(self, agent: str, at: datetime) -> None:
        a = self.model_agents[agent]
        if not a.online:
            self.refused(lambda: require_agent_transition(agent, AgentPresence.OFFLINE,
                                                          _T.AGENT_LEFT))
            return
        a.online = False
        events: list[Event] = [AgentLeft(source=SRC, agent_id=agent, timestamp=at)]
        if a.task is not None:  # the coordinator fails the task of an agent that leaves
            events.append(TaskFailed(source=SRC, task_id=a.task, agent_id=agent,
                                     data={"reason": "agent left"}, timestamp=at))
            self.model_tasks[a.task].status = "failed"
            a.task, a.failed = None, a.failed + 1
        self.append(*events)

    # -- tasks ----------------------------------------------------------------------------------

    @precondition(lambda self: sum(t.status in OPEN for t in self.model_tasks.values()) < 3)
    @rule(target=tasks, at=timestamps)
    def post(self, at: datetime) -> str:
        task = f"t{len(self.model_tasks) + 1}"
        self.append(TaskCreated(source=SRC, task_id=task, data={"description": task},
                                timestamp=at))
        self.model_tasks[task] = Task()
        return task

    def pick(self, data: st.DataObject, *statuses: str) -> str:
        """A task in one of `statuses`, the furthest along first (hypothesis favours those)."""
        rank = ["running", "assigned", "bidding", "created"]
        return data.draw(st.sampled_from(sorted(
            (i for i, t in self.model_tasks.items() if t.status in statuses),
            key=lambda i: (rank.index(self.model_tasks[i].status), i))))

    def has(self, *statuses: str) -> bool:
        return any(t.status in statuses for t in self.model_tasks.values())

    @precondition(lambda self: self.has("created", "bidding", "assigned", "running"))
    @rule(data=st.data(), at=timestamps)
    def advance(self, data: st.DataObject, at: datetime) -> None:
        """The next step of an open task: open bidding, a bid or the auction's close, the
        start, the completion or failure. (One rule, so that swarm testing, which switches
        rules off at random, does not cut the lifecycle short.)"""
        task = self.pick(data, "created", "bidding", "assigned", "running")
        t = self.model_tasks[task]
        if t.status == "created":
            self.append(TaskBiddingOpened(source=SRC, task_id=task, timestamp=at))
            t.status = "bidding"
        elif t.status == "bidding":
            online = sorted(a for a, m in self.model_agents.items() if m.online)
            winnable = any(self.model_agents[a].online and self.model_agents[a].task is None
                           for a in t.bids)
            # Bid while nobody could win; then mostly close. (Hypothesis favours 0.)
            if online and (not winnable or data.draw(st.integers(0, 2), label="bid again")):
                agent = data.draw(st.sampled_from(online), label="bidder")
                sats = data.draw(st.integers(0, 50), label="bid_sats")
                self.append(BidSubmitted(source=SRC, task_id=task, agent_id=agent,
                                         data={"bid_sats": sats}, timestamp=at))
                t.bids[agent] = sats
            else:
                self.close_auction(task, at, data.draw(st.booleans(), label="say bid_sats"))
        elif t.status == "assigned":
            self.append(TaskStarted(source=SRC, task_id=task, agent_id=t.agent, timestamp=at))
            t.status = "running"
        else:
            ok = data.draw(st.integers(0, 3), label="fail, not complete") < 3
            if ok:
                self.append(TaskCompleted(source=SRC, task_id=task, agent_id=t.agent,
                                          timestamp=at))
            else:
                self.append(TaskFailed(source=SRC, task_id=task, agent_id=t.agent,
                                       data={"reason": "gave up"}, timestamp=at))
            self.settle(t, "completed" if ok else "failed")

    # Progress needs several steps in a row; the other rules are many. Two more ways to the same
    # rule keep the lifecycle going (hypothesis has no rule weights).
    @precondition(lambda self: self.has("created", "bidding", "assigned", "running"))
    @rule(data=st.data(), at=timestamps)
    def advance_more(self, data: st.DataObject, at: datetime) -> None:
        self.advance(data, at)

    @precondition(lambda self: self.has("bidding", "assigned", "running"))
    @rule(data=st.data(), at=timestamps)
    def advance_further(self, data: st.DataObject, at: datetime) -> None:
        self.advance(data, at)

    def close_auction(self, task: str, at: datetime, say_sats: bool) -> None:
        """The lowest bid of an online, idle bidder wins (ties: the earliest bidder); no such
        bid: the task fails."""
        t = self.model_tasks[task]
        eligible = [(sats, i, a) for i, (a, sats) in enumerate(t.bids.items())
                    if self.model_agents[a].online and self.model_agents[a].task is None]
        closed = AuctionClosed(source=SRC, task_id=task, data={"bid_count": len(t.bids)},
                               timestamp=at)
        if not eligible:
            self.append(closed, TaskFailed(source=SRC, task_id=task, data={"reason": "no bids"},
                                           timestamp=at))
            t.status = "failed"
            return
        sats, _, winner = min(eligible)
        data = {"bid_sats": sats} if say_sats else {}  # absent: the folds use the agent's bid
        self.append(closed, TaskAssigned(source=SRC, task_id=task, agent_id=winner, data=data,
                                         timestamp=at))
        t.status, t.agent, t.winning_bid = "assigned", winner, sats
        a = self.model_agents[winner]
        a.task, a.won = task, a.won + 1

    @rule(task=tasks, at=timestamps)
    def give_up(self, task: str, at: datetime) -> None:
        t = self.model_tasks[task]
        if t.status not in OPEN:
            self.refused(lambda: require_task_transition(task, TaskStatus(t.status),
                                                         _T.TASK_FAILED))
            return
        self.append(TaskFailed(source=SRC, task_id=task, agent_id=t.agent,
                               data={"reason": "cancelled"}, timestamp=at))
        self.settle(t, "failed")

    @rule(task=tasks, agent=agents, kind=st.sampled_from(sorted(
        {k for moves in MODEL_MOVES.values() for k in moves} | {_T.TASK_CREATED})))
    def commands_the_model_forbids_are_refused(self, task: str, agent: str,
                                               kind: EventType) -> None:
        """Out-of-order task commands, and work asked of an agent that is not online."""
        status = self.model_tasks[task].status
        if kind not in MODEL_MOVES[status]:
            self.refused(lambda: require_task_transition(task, TaskStatus(status), kind))
        if kind in WORK and not self.model_agents[agent].online:
            self.refused(lambda: require_agent_transition(agent, self.presence(agent), kind))

    def settle(self, t: Task, status: str) -> None:
        t.status = status
        if t.agent is not None:
            a = self.model_agents[t.agent]
            a.task = None
            if status == "completed":
                a.completed, a.sats = a.completed + 1, a.sats + (t.winning_bid or 0)
            else:
                a.failed += 1

    # -- tools and errors -----------------------------------------------------------------------

    @rule(agent=agents, at=timestamps, on_task=st.booleans())
    def call_tool(self, agent: str, at: datetime, on_task: bool) -> None:
        a = self.model_agents[agent]
        if not a.online:
            self.refused(lambda: require_agent_transition(agent, AgentPresence.OFFLINE,
                                                          _T.TOOL_CALLED))
            return
        self.next_call += 1
        call, task = f"c{self.next_call}", a.task if on_task else None
        self.append(ToolCalled(source=SRC, agent_id=agent, task_id=task,
                               data={"tool": "grep", "call_id": call}, timestamp=at))
        self.calls[call] = (agent, task)
        a.tool_calls += 1
        if task is not None:
            self.model_tasks[task].tool_calls += 1

    @precondition(lambda self: any(self.model_agents[a].online for a, _ in self.calls.values()))
    @rule(data=st.data(), at=timestamps, failed=st.booleans())
    def finish_tool(self, data: st.DataObject, at: datetime, failed: bool) -> None:
        ready = sorted(c for c, (a, _) in self.calls.items() if self.model_agents[a].online)
        call = data.draw(st.sampled_from(ready))
        agent, _ = self.calls.pop(call)
        cls = ToolFailed if failed else ToolCompleted
        self.append(cls(source=SRC, agent_id=agent, data={"call_id": call}, timestamp=at))
        self.model_agents[agent].tool_failures += failed

    @rule(at=timestamps)
    def system_error(self, at: datetime) -> None:
        self.append(SystemErrorLogged(source="system", data={"message": "disk"}, timestamp=at))

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def projections_equal_the_model(self) -> None:
        self.runner.catch_up()
        tasks, agents = self.runner.state("tasks"), self.runner.state("agents")
        every = tasks.tasks.merged()  # closed tasks may be in the store since a snapshot
        assert set(every) == set(self.model_tasks)
        for task_id, t in self.model_tasks.items():
            view = every[task_id]
            assert (view.status.value, view.agent_id, view.winning_bid, view.tool_calls) == (
                t.status, t.agent, t.winning_bid, t.tool_calls)
        roster = agents.agents.merged()  # offline agents may be in the store since a snapshot
        assert set(roster) == set(self.model_agents)
        for agent_id, a in self.model_agents.items():
            v = roster[agent_id]
            assert (v.online, v.current_task, v.tasks_won, v.tasks_completed, v.tasks_failed,
                    v.sats_earned, v.tool_calls, v.tool_failures) == (
                a.online, a.task, a.won, a.completed, a.failed, a.sats, a.tool_calls,
                a.tool_failures)
        assert tasks.anomaly_count == agents.anomaly_count == 0

    @invariant()
    def a_task_is_in_exactly_one_status_and_terminal_ones_never_change(self) -> None:
        self.runner.catch_up()
        tasks = self.runner.state("tasks").tasks.merged()
        for status in TaskStatus:
            assert sum(t.status is status for t in tasks.values()) == sum(
                t.status == status.value for t in self.model_tasks.values())
        for task_id, status in self.finished.items():
            assert tasks[task_id].status.value == status
        self.finished.update({i: t.status.value for i, t in tasks.items() if not t.is_open})

    @invariant()
    def an_agent_has_at_most_one_current_task(self) -> None:
        self.runner.catch_up()
        tasks = self.runner.state("tasks").tasks.merged()
        for agent in self.runner.state("agents").agents.merged().values():
            working = [t for t in tasks.values() if t.is_open and t.agent_id == agent.agent_id]
            assert len(working) <= 1
            assert [t.task_id for t in working] == ([agent.current_task]
                                                    if agent.current_task else [])

    @invariant()
    def summary_counts_equal_the_tallies(self) -> None:
        self.runner.catch_up()
        summary = self.runner.state("summary")
        by_status = {s.value: n for s, n in summary.tasks_by_status.items()}
        created = self.by_type.get("task.created", 0)
        assert by_status["completed"] + by_status["failed"] + sum(
            by_status[s] for s in OPEN) == created == len(self.model_tasks)
        assert {k.value: n for k, n in summary.by_type.items() if n} == self.by_type
        assert summary.agents_online == sum(a.online for a in self.model_agents.values())

    @invariant()
    def sats_earned_are_the_winning_bids_of_completed_tasks(self) -> None:
        self.runner.catch_up()
        tasks = self.runner.state("tasks").tasks.merged()
        for agent in self.runner.state("agents").agents.merged().values():
            assert agent.sats_earned == sum(
                t.winning_bid or 0 for t in tasks.values()
                if t.agent_id == agent.agent_id and t.status is TaskStatus.COMPLETED)


class SwarmLifecycleOnSQLite(SwarmLifecycle):
    """The same swarm on a SQLite file (and a snapshot now and then, read back on restart)."""

    def open_store(self) -> EventStore:
        self.folder = Path(tempfile.mkdtemp(prefix="swarmlog-"))
        return SQLiteEventStore(self.folder / "log.db")

    @rule()
    def snapshot_and_restart(self) -> None:
        before = {p.name: p.dump(self.runner.state(p.name)) for p in self.runner.projections}
        self.runner.snapshot()
        # The snapshot moved the closed tasks out of memory, and nothing else changed.
        for state in (self.runner.state("tasks").tasks, self.runner.state("agents").tasks):
            assert all(entry.status not in TERMINAL_STATUSES for entry in state.values())
        assert all(a.online for a in self.runner.state("agents").agents.values())
        assert all(s not in TERMINAL_STATUSES for s in self.runner.state("summary").task_status.values())
        assert {p.name: p.dump(self.runner.state(p.name)) for p in self.runner.projections} == before
        self.runner = ProjectionRunner(self.store)
        self.runner.start()
        assert all(t.is_open for t in self.runner.state("tasks").tasks.values())
        assert {p.name: p.dump(self.runner.state(p.name)) for p in self.runner.projections} == before

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.folder, ignore_errors=True)


class SwarmLifecycleOnPostgres(SwarmLifecycleOnSQLite):
    """The same swarm on a real PostgreSQL database (a fresh one per example)."""

    def open_store(self) -> EventStore:
        from store.postgres import PostgresEventStore
        from tests import pg

        self.folder = Path(tempfile.mkdtemp(prefix="swarmlog-"))
        return PostgresEventStore(pg.create_database())


TestSwarmLifecycle = SwarmLifecycle.TestCase
TestSwarmLifecycle.settings = settings(max_examples=100, stateful_step_count=60)
TestSwarmLifecycleOnSQLite = SwarmLifecycleOnSQLite.TestCase
TestSwarmLifecycleOnSQLite.settings = settings(max_examples=12, stateful_step_count=40)
TestSwarmLifecycleOnPostgres = pytest.mark.postgres(SwarmLifecycleOnPostgres.TestCase)
TestSwarmLifecycleOnPostgres.settings = settings(max_examples=5, stateful_step_count=30)
