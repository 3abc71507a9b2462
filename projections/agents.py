"""The agent roster: per agent its decider state (`domain.agent`), earnings and tool use.

Presence follows `domain.agent`: work by an agent that never joined or has left is still counted
(it is in the log) and noted as an anomaly on that agent. Task outcomes come from the task read
model's `TaskChange`: the winner of an assignment, and the agent credited when its task completes
or fails, are the task's own, so sats earned always equal the winning bids of completed tasks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from domain import agent
from domain.agent import AgentState, Presence
from domain.events import AgentJoined, AgentLeft, Event, EventType, ToolCalled
from projections.base import Anomaly, Cold, Tiered, dumps, note, parse_anomalies, parse_time
from projections.tasks import TaskChange

_T = EventType
_ONLINE = Presence.ONLINE


@dataclass(slots=True, kw_only=True)
class AgentView(AgentState):
    """What is known about one agent: the decider's state, and what the log says besides."""

    joined_at: datetime | None = None  # the latest join; None: it never joined
    left_at: datetime | None = None  # the latest departure
    left_reason: str | None = None
    bids: int = 0
    tasks_won: int = 0
    tasks_completed: int = 0
    tasks_failed: int = 0
    sats_earned: int = 0  # the winning bids of its completed tasks
    tool_calls: int = 0
    tool_failures: int = 0
    thoughts: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    anomaly_count: int = 0
    first_position: int = 0  # the position of the first event that named it

    @property
    def online(self) -> bool:
        return self.presence is _ONLINE

    @property
    def idle(self) -> bool:
        """Online and not working on a task."""
        return agent.is_available(self)


def _parse_agent(text: str) -> AgentView:
    return _agent(orjson.loads(text))


def _agent(fields: dict[str, Any]) -> AgentView:
    """An agent that `dumps` wrote."""
    presence = fields["presence"]
    fields["presence"] = None if presence is None else Presence(presence)
    fields["joined_at"] = parse_time(fields["joined_at"])
    fields["left_at"] = parse_time(fields["left_at"])
    fields["anomalies"] = parse_anomalies(fields["anomalies"])
    return AgentView(**fields)


def is_gone(view: AgentView) -> bool:
    """Not online: it may leave memory at the next snapshot."""
    return view.presence is not _ONLINE


def _roster(entries: Iterable[tuple[str, AgentView]] = ()) -> Tiered[AgentView]:
    return Tiered(_parse_agent, entries, prefix="agent:")


@dataclass(slots=True)
class AgentsState:
    """Every agent by id. In memory (see `Tiered`): the agents online, and those that went
    offline since the last snapshot; `all_agents`, `get_agent` and the other queries see every
    agent."""

    agents: Tiered[AgentView] = field(default_factory=_roster)
    anomalies: list[Anomaly] = field(default_factory=list)
    anomaly_count: int = 0  # every anomaly, those noted on agents included

    def dump(self, agents: dict[str, AgentView]) -> dict[str, Any]:
        in_order = sorted(agents.items(), key=lambda kv: kv[1].first_position)
        return {"agents": dict(in_order), "anomalies": self.anomalies,
                "anomaly_count": self.anomaly_count}

    @classmethod
    def load(cls, raw: dict[str, Any]) -> AgentsState:
        agents = _roster((k, _agent(v)) for k, v in raw["agents"].items())
        return cls(agents, parse_anomalies(raw["anomalies"]), raw["anomaly_count"])

    def split(self) -> tuple[dict[str, Any], Iterable[tuple[str, str]]]:
        kept, items = self.agents.split(is_gone, dumps)
        return self.dump(kept), items

    def spill(self) -> None:
        self.agents.spill(is_gone, dumps)

    def attach(self, cold: Cold) -> None:
        self.agents.attach(cold, is_gone)


# -- the fold (plain: the oracle of `projections.fast`) ------------------------------------------

#: Events whose agent is held to the presence table (work by it, or its assignment).
_CHECKED = agent.AGENT_EVENT_TYPES
#: Agent events that mean nothing without an agent_id (task events without one are noted by the
#: task read model).
_NEEDS_AGENT = frozenset({_T.AGENT_JOINED, _T.AGENT_LEFT, _T.AGENT_STATUS_CHANGED,
                          _T.TIMMY_THOUGHT, _T.TOOL_CALLED, _T.TOOL_COMPLETED, _T.TOOL_FAILED})


def _view(state: AgentsState, agent_id: str, position: int) -> AgentView:
    view = state.agents.recall(agent_id)
    if view is None:
        view = state.agents[agent_id] = AgentView(agent_id=agent_id, first_position=position)
    return view


def evolve_agents(state: AgentsState, position: int, event: Event,
                  change: TaskChange | None) -> None:
    """Fold one event (and what it did to a task) into the roster."""
    kind = event.event_type
    agent_id = event.agent_id
    if agent_id is None:
        if kind in _NEEDS_AGENT:
            note(state, None, position, kind.value, "no agent_id")
    elif kind in _CHECKED:
        _own(state, _view(state, agent_id, position), position, event)
    if change is not None and change.applied:
        _task_outcome(state, position, event, change)


def _own(state: AgentsState, view: AgentView, position: int, event: Event) -> None:
    """An event by (or about) the agent itself: checked against the presence table, then
    folded through the agent's decider."""
    kind = event.event_type
    refused = agent.refusal(view, event)
    if refused is not None:
        note(state, view, position, kind.value, refused)
    _check_call(state, view, position, event)
    was_online = view.presence is _ONLINE
    after = agent.evolve(view, event)
    assert isinstance(after, AgentView)  # `evolve` keeps the class of what it is given
    state.agents[view.agent_id] = after
    match event:
        case AgentJoined() if not was_online:
            after.joined_at = event.timestamp
        case AgentLeft(data=data) if was_online:
            after.left_at, after.left_reason = event.timestamp, data.reason
    if kind is _T.TIMMY_THOUGHT:
        after.thoughts += 1
    elif kind is _T.TOOL_CALLED:
        after.tool_calls += 1
    elif kind is _T.TOOL_FAILED:
        after.tool_failures += 1


def _check_call(state: AgentsState, view: AgentView, position: int, event: Event) -> None:
    kind = event.event_type
    if kind not in (_T.TOOL_CALLED, _T.TOOL_COMPLETED, _T.TOOL_FAILED):
        return
    call_id: str | None = event.data.call_id  # type: ignore[attr-defined]
    if isinstance(event, ToolCalled):
        if call_id is not None and call_id in view.open_calls:
            note(state, view, position, kind.value, f"call_id {call_id!r} is already open")
    elif call_id is None:
        note(state, view, position, kind.value, "no call_id to match a tool.called")
    elif call_id not in view.open_calls:
        note(state, view, position, kind.value, f"no open tool.called with call_id {call_id!r}")


def _task_outcome(state: AgentsState, position: int, event: Event, change: TaskChange) -> None:
    """An applied task event: a bid counted, the winner's task, or its worker credited."""
    kind = event.event_type
    agent_id = event.agent_id
    if kind is _T.BID_SUBMITTED and agent_id is not None:
        _view(state, agent_id, position).bids += 1
    elif kind is _T.TASK_ASSIGNED and agent_id is not None:
        winner = _view(state, agent_id, position)
        if winner.current_task is not None:
            note(state, winner, position, kind.value, f"still on task {winner.current_task!r}")
        _follow(state, winner, change.task.task_id, assigned=True).tasks_won += 1
    elif kind in (_T.TASK_COMPLETED, _T.TASK_FAILED) and change.task.agent_id is not None:
        worker = _follow(state, _view(state, change.task.agent_id, position),
                         change.task.task_id, assigned=False)
        if kind is _T.TASK_COMPLETED:
            worker.tasks_completed += 1
            worker.sats_earned += change.task.winning_bid or 0
        else:
            worker.tasks_failed += 1


def _follow(state: AgentsState, view: AgentView, task_id: str, *, assigned: bool) -> AgentView:
    after = agent.follow_task(view, task_id, assigned=assigned)
    assert isinstance(after, AgentView)
    state.agents[view.agent_id] = after
    return after


# -- queries (they return copies, safe to keep after the runner's lock is released) ----------


def _copy(view: AgentView) -> AgentView:
    return replace(view, capabilities=list(view.capabilities), anomalies=list(view.anomalies),
                   open_calls=dict(view.open_calls))


def _in_order(agents: Iterable[AgentView]) -> list[AgentView]:
    return sorted(agents, key=lambda a: a.first_position)


def get_agent(state: AgentsState, agent_id: str) -> AgentView | None:
    """One agent, or None if the log never named it."""
    view = state.agents.peek(agent_id)
    return None if view is None else _copy(view)


def all_agents(state: AgentsState) -> list[AgentView]:
    """Every agent, in order of first appearance (offline ones are read from the store)."""
    return [_copy(a) for a in _in_order(state.agents.merged().values())]


def online_agents(state: AgentsState) -> list[AgentView]:
    """The agents registered right now, in order of first appearance (all are in memory)."""
    return [_copy(a) for a in _in_order(state.agents.values()) if a.presence is _ONLINE]


def idle_agents(state: AgentsState) -> list[AgentView]:
    """The online agents without a current task."""
    return [_copy(a) for a in _in_order(state.agents.values()) if a.idle]


def agents_online(state: AgentsState) -> int:
    """How many agents are online (all of them are in memory)."""
    return sum(1 for a in state.agents.values() if a.presence is _ONLINE)
