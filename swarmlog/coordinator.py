"""The coordinator: the imperative shell around the swarm's decider (`domain.swarm`).

For each command it loads the state of every task and agent the decision reads
(`domain.swarm.wanted`), reading each one's stream version *before* its state (so the state is
at least as new as the version), decides, and appends the events in one atomic append that
expects each of those streams at the version read. If another coordinator appended to any of them
meanwhile — decided on the same task, or claimed the same agent — the append raises
`ConcurrencyError` and nothing is appended: two coordinators can never both assign one task, nor
assign one agent to two tasks (an assignment writes the winner's claim to its own stream).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from domain.agent import AgentState
from domain.commands import (
    SOURCE,
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
from domain.events import Event, EventType
from domain.ids import new_event_id, utc_now
from domain.swarm import Situation, decide, wanted
from projections.agents import get_agent
from projections.tasks import get_task
from swarmlog.log import EventLog

__all__ = ["Coordinator", "Decision"]


class Decision(NamedTuple):
    """The events a command produced, and the version of every stream it read, as read before
    the states were."""

    events: list[Event]
    expected: dict[str, int]


def _streams(task_id: str | None, agent_ids: Iterable[str]) -> set[str]:
    return ({f"task-{task_id}"} if task_id else set()) | {f"agent-{a}" for a in agent_ids}


class Coordinator:
    """Turns commands into validated events appended to an `EventLog`.

    `at` defaults to now (UTC); `new_id(at)` makes event, task and call ids (default: UUIDv7).
    """

    def __init__(self, log: EventLog, *, source: str = SOURCE,
                 new_id: Callable[[datetime], str] | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.log = log
        self.source = source
        self._new_id = new_id
        self._clock = clock

    # -- the two halves of every command ------------------------------------------------------

    def situation(self, command: Command) -> tuple[Situation, dict[str, int]]:
        """The states `command` reads, caught up to the log's head, and the version of each
        one's stream as read before them."""
        seen, loaded = Situation(), None
        expected: dict[str, int] = {}
        while True:
            task_id, agent_ids = wanted(command, seen)
            streams = _streams(task_id, agent_ids)
            if (task_id, agent_ids) == loaded and streams <= set(expected):
                return seen, expected
            expected.update(self.log.store.stream_versions(streams - set(expected)))
            loaded = (task_id, agent_ids)
            tasks, roster = self.log.tasks, self.log.agents  # caught up after the versions
            task = None if task_id is None else get_task(tasks, task_id)
            agents: dict[str, AgentState] = {
                a: found for a in agent_ids if (found := get_agent(roster, a)) is not None}
            seen = Situation(task, agents)

    def prepare(self, command: Command) -> Decision:
        """Decide `command` against the current read models, appending nothing."""
        situation, expected = self.situation(command)
        events = decide(command, situation)
        if self._new_id is not None:
            events = [e.model_copy(update={"id": self._new_id(e.timestamp)}) for e in events]
        return Decision(events, expected)

    def commit(self, decision: Decision) -> list[int]:
        """Append a decision's events, each stream it read at its expected version, all or
        nothing. Raises ConcurrencyError (and appends nothing) if another writer appended to
        one of them since `prepare` read it."""
        return self.log.append(decision.events, decision.expected)

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
        return self.execute(RegisterAgent(agent_id=agent_id, name=name,
                                          capabilities=tuple(capabilities), persona_id=persona_id,
                                          at=self._at(at), source=self.source))

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
        assigned = [e for e in events if e.event_type is EventType.TASK_ASSIGNED]
        return assigned[0].agent_id if assigned else None

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
        """tool.called by an online agent (on its running task, if one is named); returns the
        call id."""
        at = self._at(at)
        call_id = call_id or self.new_id(at)
        self.execute(CallTool(agent_id=agent_id, tool=tool, call_id=call_id,
                              arguments=dict(arguments or {}), task_id=task_id, at=at,
                              source=self.source))
        return call_id

    def record_tool_result(self, agent_id: str, call_id: str, *, tool: str, duration_ms: float,
                           result: Any = None, error: str | None = None,
                           at: datetime | None = None) -> list[Event]:
        """tool.completed, or tool.failed when `error` is given, for the agent's open call (in
        the stream of the call: its task's, if it was made for one)."""
        return self.execute(FinishTool(agent_id=agent_id, call_id=call_id, tool=tool,
                                       duration_ms=duration_ms, result=result, error=error,
                                       at=self._at(at), source=self.source))

    def record_error(self, message: str, *, error_type: str | None = None, detail: Any = None,
                     task_id: str | None = None, agent_id: str | None = None,
                     at: datetime | None = None) -> list[Event]:
        """system.error: never refused."""
        return self.execute(RecordError(message=message, error_type=error_type, detail=detail,
                                        task_id=task_id, agent_id=agent_id, at=self._at(at),
                                        source=self.source))
