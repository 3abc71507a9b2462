"""The coordinator: the imperative shell around `swarm.commands.decide`.

For each command it reads the version of every stream the command touches, then the caught-up read
models (in that order, so the facts are at least as new as the versions), decides, and appends with
those versions as `expected_version` (stream `task-<id>` for task commands, `agent-<id>` for agent
commands). Two coordinators racing on one task cannot both win: the second append fails with
`ConcurrencyError` and appends nothing. `prepare` and `commit` are the two halves of `execute`.

Not guarded across streams: two coordinators closing two *different* auctions at once could both
pick the same idle agent (each checks the agent in its own read models, and only the task streams
are versioned). One coordinator per swarm, or an agent-stream claim on assignment, avoids it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from domain.events import Event, EventType
from domain.ids import new_event_id, utc_now
from projections.agents import AgentsState, get_agent
from projections.tasks import TasksState, get_task
from store.base import EventStore
from swarm.commands import (
    SOURCE,
    CallTool,
    CloseBidding,
    Command,
    CompleteTask,
    Facts,
    FailTask,
    FinishTool,
    PostTask,
    RecordError,
    RegisterAgent,
    RemoveAgent,
    StartTask,
    SubmitBid,
    decide,
)

__all__ = ["Coordinator", "Decision", "ReadModels"]

_T = EventType


# -- the imperative shell -----------------------------------------------------------------------


class ReadModels(Protocol):
    """What the coordinator needs of an `EventLog`: its store and caught-up read models."""

    @property
    def store(self) -> EventStore: ...

    @property
    def tasks(self) -> TasksState: ...

    @property
    def agents(self) -> AgentsState: ...


class Decision(NamedTuple):
    """The events a command produced, and the version of each stream they go to as read before
    the facts were (None: append without a version check)."""

    events: list[Event]
    expected: dict[str, int | None]


def _named_streams(command: Command) -> set[str]:
    """The streams whose versions guard a command (task first, else agent)."""
    if isinstance(command, RecordError):
        return set()  # a fact about the system: never refused, never raced
    task_id = getattr(command, "task_id", None)
    if task_id is not None:
        return {f"task-{task_id}"}
    return {f"agent-{command.agent_id}"}  # type: ignore[attr-defined]


class Coordinator:
    """Turns commands into validated events appended to an `EventLog`.

    `at` defaults to now (UTC); `new_id(at)` makes event, task and call ids (default: UUIDv7).
    """

    def __init__(self, log: ReadModels, *, source: str = SOURCE,
                 new_id: Callable[[datetime], str] | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.log = log
        self.source = source
        self._new_id = new_id
        self._clock = clock

    # -- the two halves of every command ------------------------------------------------------

    def facts(self, command: Command) -> Facts:
        """Copies of the read-model entries `command` names, caught up to the log's head."""
        tasks, agents = self.log.tasks, self.log.agents
        task_id = getattr(command, "task_id", None)
        agent_ids: set[str] = set()
        if (agent_id := getattr(command, "agent_id", None)) is not None:
            agent_ids.add(agent_id)
            if isinstance(command, RemoveAgent):
                agent = agents.agents.peek(agent_id)
                task_id = None if agent is None else agent.current_task
        task = None if task_id is None else get_task(tasks, task_id)
        if task is not None:
            if task.agent_id is not None:
                agent_ids.add(task.agent_id)
            if isinstance(command, CloseBidding):
                agent_ids.update(task.bids)
        views = {a: v for a in agent_ids if (v := get_agent(agents, a)) is not None}
        owner = None
        if isinstance(command, CallTool | FinishTool):
            owner = agents.open_calls.get(command.call_id)
        return Facts(task, views, owner)

    def prepare(self, command: Command) -> Decision:
        """Decide `command` against the current read models, appending nothing."""
        store = self.log.store
        streams = _named_streams(command)
        while True:
            expected: dict[str, int | None] = {s: store.stream_version(s) for s in streams}
            events = decide(command, self.facts(command))
            touched = {e.stream_id for e in events}
            if touched <= streams or isinstance(command, RecordError):
                break
            streams |= touched  # e.g. the task of a leaving agent: read its version, then decide again
        if self._new_id is not None:
            events = [e.model_copy(update={"id": self._new_id(e.timestamp)}) for e in events]
        return Decision(events, {s: expected.get(s) for s in _in_order(e.stream_id for e in events)})

    def commit(self, decision: Decision) -> list[int]:
        """Append a decision's events, each stream at its expected version, all or nothing.

        Raises ConcurrencyError (and appends nothing) if another writer appended to one of its
        streams since `prepare` read it."""
        store = self.log.store
        runs = _runs(decision.events)
        if len(runs) == 1:
            return store.append(runs[0], expected_version=decision.expected[runs[0][0].stream_id])
        positions: list[int] = []
        with store.transaction():
            for run in runs:
                positions += store.append(run, expected_version=decision.expected[run[0].stream_id])
        return positions

    def execute(self, command: Command) -> list[Event]:
        """Decide and append; returns the events appended (none for a harmless repeat)."""
        decision = self.prepare(command)
        if decision.events:
            self.commit(decision)
        return decision.events

    # -- commands as methods ------------------------------------------------------------------

    def _at(self, at: datetime | None) -> datetime:
        return self._clock() if at is None else at

    def new_id(self, at: datetime | None = None) -> str:
        """A fresh id (for a task or a tool call) from the coordinator's id source."""
        return new_event_id() if self._new_id is None else self._new_id(self._at(at))

    def register_agent(self, agent_id: str, name: str, capabilities: Iterable[str] = (), *,
                       persona_id: str | None = None, at: datetime | None = None) -> list[Event]:
        """agent.joined; a repeat with the same profile is a no-op."""
        return self.execute(RegisterAgent(agent_id=agent_id, name=name, capabilities=tuple(capabilities),
                                          persona_id=persona_id, at=self._at(at), source=self.source))

    def remove_agent(self, agent_id: str, reason: str, *, at: datetime | None = None) -> list[Event]:
        """agent.left, and task.failed (same reason) for the task it was assigned or running."""
        return self.execute(RemoveAgent(agent_id=agent_id, reason=reason, at=self._at(at),
                                        source=self.source))

    def post_task(self, description: str, *, task_id: str | None = None,
                  required_capabilities: Iterable[str] = (), window_seconds: float = 60.0,
                  at: datetime | None = None) -> str:
        """task.created and task.bidding; returns the task id."""
        at = self._at(at)
        task_id = task_id or self.new_id(at)
        self.execute(PostTask(task_id=task_id, description=description,
                              required_capabilities=tuple(required_capabilities),
                              window_seconds=window_seconds, at=at, source=self.source))
        return task_id

    def submit_bid(self, task_id: str, agent_id: str, bid_sats: int, *,
                   at: datetime | None = None) -> list[Event]:
        """bid.submitted: a task open for bidding, an online agent with its capabilities, one bid."""
        return self.execute(SubmitBid(task_id=task_id, agent_id=agent_id, bid_sats=bid_sats,
                                      at=self._at(at), source=self.source))

    def close_bidding(self, task_id: str, *, at: datetime | None = None) -> str | None:
        """auction.closed, then task.assigned to the winner (returned) or task.failed (None)."""
        events = self.execute(CloseBidding(task_id=task_id, at=self._at(at), source=self.source))
        return events[-1].agent_id if events[-1].event_type is _T.TASK_ASSIGNED else None  # type: ignore[attr-defined]

    def start_task(self, task_id: str, *, agent_id: str | None = None,
                   at: datetime | None = None) -> list[Event]:
        """task.started by the assigned agent."""
        return self.execute(StartTask(task_id=task_id, agent_id=agent_id, at=self._at(at),
                                      source=self.source))

    def complete_task(self, task_id: str, result: Any = None, *,
                      at: datetime | None = None) -> list[Event]:
        """task.completed by the agent running it."""
        return self.execute(CompleteTask(task_id=task_id, result=result, at=self._at(at),
                                         source=self.source))

    def fail_task(self, task_id: str, reason: str, *, at: datetime | None = None) -> list[Event]:
        """task.failed, from any open status."""
        return self.execute(FailTask(task_id=task_id, reason=reason, at=self._at(at),
                                     source=self.source))

    def record_tool_call(self, agent_id: str, tool: str, arguments: Mapping[str, Any] | None = None,
                         *, task_id: str | None = None, call_id: str | None = None,
                         at: datetime | None = None) -> str:
        """tool.called by an online agent (on its running task, if one is named); returns the call id."""
        at = self._at(at)
        call_id = call_id or self.new_id(at)
        self.execute(CallTool(agent_id=agent_id, tool=tool, call_id=call_id,
                              arguments=dict(arguments or {}), task_id=task_id, at=at,
                              source=self.source))
        return call_id

    def record_tool_result(self, agent_id: str, call_id: str, *, tool: str, duration_ms: float,
                           result: Any = None, error: str | None = None, task_id: str | None = None,
                           at: datetime | None = None) -> list[Event]:
        """tool.completed, or tool.failed when `error` is given, for the agent's open call."""
        return self.execute(FinishTool(agent_id=agent_id, call_id=call_id, tool=tool,
                                       duration_ms=duration_ms, result=result, error=error,
                                       task_id=task_id, at=self._at(at), source=self.source))

    def record_error(self, message: str, *, error_type: str | None = None, detail: Any = None,
                     task_id: str | None = None, agent_id: str | None = None,
                     at: datetime | None = None) -> list[Event]:
        """system.error: never refused."""
        return self.execute(RecordError(message=message, error_type=error_type, detail=detail,
                                        task_id=task_id, agent_id=agent_id, at=self._at(at),
                                        source=self.source))


def _in_order(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _runs(events: Sequence[Event]) -> list[list[Event]]:
    """Consecutive events of one stream, in order (each run is one append)."""
    runs: list[list[Event]] = []
    for event in events:
        if runs and runs[-1][0].stream_id == event.stream_id:
            runs[-1].append(event)
        else:
            runs.append([event])
    return runs
