"""The agent roster: per agent its profile, presence, current task, earnings and tool use.

Presence follows `domain.lifecycle.AGENT_TRANSITIONS`; work by an agent that never joined or has
left is still counted (it is in the log) and noted as an anomaly on that agent. Task outcomes are
credited to the agent the task was assigned to, using the same `advance_task` as the task read
model, so that sats earned always equal the winning bids of the completed tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from domain.events import EventType
from domain.lifecycle import (
    AGENT_TRANSITIONS,
    TASK_EVENT_TYPES,
    TERMINAL_STATUSES,
    AgentPresence,
    TaskStatus,
)
from projections.base import (
    Anomaly,
    Cold,
    DispatchingFold,
    Tiered,
    advance_task,
    dumps,
    missing_field,
    moves_on,
    note,
    parse_anomalies,
    parse_time,
)

_T = EventType
_ONLINE = AgentPresence.ONLINE
_OFFLINE = AgentPresence.OFFLINE


@dataclass(slots=True)
class AgentView:
    """What is known about one agent."""

    agent_id: str
    presence: AgentPresence = _OFFLINE
    name: str | None = None
    capabilities: list[str] = field(default_factory=list)
    persona_id: str | None = None
    status: str | None = None  # as last reported by agent.status_changed
    current_task: str | None = None  # assigned or running
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
        return self.presence is _ONLINE and self.current_task is None


@dataclass(slots=True)
class TaskLink:
    """What the roster must remember of a task to credit its agent."""

    status: TaskStatus = TaskStatus.CREATED
    agent_id: str | None = None
    winning_bid: int | None = None
    bids: dict[str, int] = field(default_factory=dict)  # while bidding: agent -> latest bid


def _roster(entries: Iterable[tuple[str, AgentView]] = ()) -> Tiered[AgentView]:
    return Tiered(_parse_agent, entries, prefix="agent:")


def _links(entries: Iterable[tuple[str, TaskLink]] = ()) -> Tiered[TaskLink]:
    return Tiered(_parse_link, entries, prefix="task:")


def _parse_link(text: str) -> TaskLink:
    return _link(orjson.loads(text))


def _link(fields: dict[str, Any]) -> TaskLink:
    fields["status"] = TaskStatus(fields["status"])
    return TaskLink(**fields)


def _is_closed(link: TaskLink) -> bool:
    return link.status in TERMINAL_STATUSES


def _parse_agent(text: str) -> AgentView:
    return _agent(orjson.loads(text))


def _agent(fields: dict[str, Any]) -> AgentView:
    """An agent that `dumps` wrote."""
    fields["presence"] = _PRESENCE[fields["presence"]]
    fields["joined_at"] = parse_time(fields["joined_at"])
    fields["left_at"] = parse_time(fields["left_at"])
    fields["anomalies"] = parse_anomalies(fields["anomalies"])
    return AgentView(**fields)


def _is_offline(agent: AgentView) -> bool:
    return agent.presence is _OFFLINE


_PRESENCE = {p.value: p for p in AgentPresence}


@dataclass(slots=True)
class AgentsState:
    """Every agent by id, and the bookkeeping the fold needs. In memory (see `Tiered`): the
    agents online and the open tasks, and those that went offline or closed since the last
    snapshot; `all_agents`, `get_agent` and the other queries see every agent."""

    agents: Tiered[AgentView] = field(default_factory=lambda: _roster())
    tasks: Tiered[TaskLink] = field(default_factory=lambda: _links())
    open_calls: dict[str, str] = field(default_factory=dict)  # call_id -> calling agent
    anomalies: list[Anomaly] = field(default_factory=list)
    anomaly_count: int = 0  # every anomaly, those noted on agents included


class AgentsProjection(DispatchingFold):
    """The agent-roster read model. `plain=True` folds without the fast paths (the test oracle)."""

    name = "agents"
    version = 3

    def initial(self) -> AgentsState:
        return AgentsState()

    def dump(self, state: AgentsState) -> str:
        return self._dump(state, state.agents.merged(), state.tasks.merged())

    def split(self, state: AgentsState) -> tuple[str, list[tuple[str, str]]]:
        online, offline = state.agents.split(_is_offline, dumps)
        open_, closed = state.tasks.split(_is_closed, dumps)
        return self._dump(state, online, open_), offline + closed

    def attach(self, state: AgentsState, cold: Cold) -> None:
        state.agents.attach(cold, _is_offline)
        state.tasks.attach(cold, _is_closed)

    def _dump(self, state: AgentsState, agents: dict[str, AgentView],
              tasks: dict[str, TaskLink]) -> str:
        by_position = sorted(agents.items(), key=lambda kv: kv[1].first_position)
        return dumps({"agents": dict(by_position), "tasks": dict(sorted(tasks.items())),
                      "open_calls": state.open_calls, "anomalies": state.anomalies,
                      "anomaly_count": state.anomaly_count})

    def load(self, text: str) -> AgentsState:
        raw = orjson.loads(text)
        agents = _roster((k, _agent(fields)) for k, fields in raw["agents"].items())
        tasks = _links((k, _link(fields)) for k, fields in raw["tasks"].items())
        return AgentsState(
            agents, tasks, raw["open_calls"], parse_anomalies(raw["anomalies"]),
            raw["anomaly_count"],
        )


# -- the fold ---------------------------------------------------------------------------------


def _actor(state: AgentsState, position: int, event: Any, kind: EventType) -> AgentView | None:
    """The agent an event names, checked against the presence table (noting what it refuses)."""
    agent_id = event.agent_id
    if agent_id is None:
        return None
    agent = state.agents.recall(agent_id)
    if agent is None:
        agent = state.agents[agent_id] = AgentView(agent_id, first_position=position)
    # One that never joined is unknown to the table, whatever it did before.
    presence = None if agent.joined_at is None else agent.presence
    if AGENT_TRANSITIONS[presence].get(kind) is None:
        if presence is None:
            why = "unknown agent (it never joined)"
        else:
            why = "agent is online already" if agent.online else "agent is offline (it left)"
        note(state, agent, position, event, why)
    return agent


def _required_actor(state: AgentsState, position: int, event: Any) -> AgentView | None:
    if event.agent_id is None:
        note(state, None, position, event, "no agent_id")
        return None
    return _actor(state, position, event, event.event_type)


def _joined(state: AgentsState, position: int, event: Any) -> None:
    agent = _required_actor(state, position, event)
    if agent is None:
        return
    data = event.data
    # A repeated join (already online) is an anomaly, but its profile is the newest word.
    if data.name is not None:
        agent.name = data.name
    if data.capabilities is not None:
        agent.capabilities = list(data.capabilities)
    if data.persona_id is not None:
        agent.persona_id = data.persona_id
    if agent.presence is not _ONLINE:
        agent.presence = _ONLINE
        agent.joined_at = event.timestamp


def _left(state: AgentsState, position: int, event: Any) -> None:
    agent = _required_actor(state, position, event)
    if agent is not None and agent.presence is _ONLINE:
        # Its current task stays until the coordinator's task.failed for it arrives.
        agent.presence = _OFFLINE
        agent.left_at = event.timestamp
        agent.left_reason = event.data.reason


def _status_changed(state: AgentsState, position: int, event: Any) -> None:
    agent = _required_actor(state, position, event)
    if agent is not None:
        agent.status = event.data.status


def _thought(state: AgentsState, position: int, event: Any) -> None:
    agent = _required_actor(state, position, event)
    if agent is not None:
        agent.thoughts += 1


def _able(kind: EventType) -> frozenset[AgentPresence]:
    """The presences in which the table expects an agent to do `kind` (for the fast paths)."""
    return frozenset(p for p, moves in AGENT_TRANSITIONS.items() if p and kind in moves)


_CAN_CALL = _able(_T.TOOL_CALLED)
_CAN_FINISH = _able(_T.TOOL_COMPLETED) & _able(_T.TOOL_FAILED)


def _tool_called(state: AgentsState, position: int, event: Any) -> None:
    agent = state.agents.get(event.agent_id)
    if agent is None or agent.presence not in _CAN_CALL:  # the plain path notes what is wrong
        agent = _required_actor(state, position, event)
    if agent is not None:
        agent.tool_calls += 1
    call_id = event.data.call_id
    if call_id is not None:
        if call_id in state.open_calls:
            note(state, agent, position, event, f"call_id {call_id!r} is already open")
        state.open_calls[call_id] = event.agent_id


def _tool_finished(state: AgentsState, position: int, event: Any) -> None:
    agent = state.agents.get(event.agent_id)
    if agent is None or agent.presence not in _CAN_FINISH:
        agent = _required_actor(state, position, event)
    if agent is not None and event.event_type is _T.TOOL_FAILED:
        agent.tool_failures += 1
    call_id = event.data.call_id
    if call_id is None:
        note(state, agent, position, event, "no call_id to match a tool.called")
    elif call_id not in state.open_calls:
        note(state, agent, position, event, f"no open tool.called with call_id {call_id!r}")
    elif (caller := state.open_calls.pop(call_id)) != event.agent_id:
        note(state, agent, position, event, f"call {call_id!r} was made by {caller!r}")


# The task events that need an online agent (bid, assigned, started, completed); not task.failed,
# since the coordinator fails the task of an agent that has left.
_AGENT_WORK = frozenset(TASK_EVENT_TYPES & AGENT_TRANSITIONS[_ONLINE].keys())


def _on_task_event(state: AgentsState, position: int, event: Any) -> None:
    task_id = event.task_id
    if task_id is None:  # noted by the task read model
        return
    kind = event.event_type
    actor = _actor(state, position, event, kind) if kind in _AGENT_WORK else None
    link = state.tasks.recall(task_id)
    if link is None:
        link = state.tasks[task_id] = TaskLink()
        before = None
    else:
        before = link.status
    link.status, applied = advance_task(before, event)
    if not applied:
        return
    if kind is _T.BID_SUBMITTED:
        link.bids[event.agent_id] = event.data.bid_sats
        if actor is not None:
            actor.bids += 1
    elif kind is _T.TASK_ASSIGNED:
        _assigned(state, position, event, link, actor)
    elif kind is _T.TASK_COMPLETED or kind is _T.TASK_FAILED:
        _finished(state, position, task_id, link, kind)


def _assigned(
    state: AgentsState, position: int, event: Any, link: TaskLink, agent: AgentView | None
) -> None:
    sats = event.data.bid_sats
    link.agent_id = event.agent_id
    link.winning_bid = link.bids.get(event.agent_id) if sats is None else sats
    link.bids = {}  # only needed to find the winning bid
    if agent is None:  # unreachable: an assignment without agent_id is not applied
        return
    if agent.current_task is not None:
        note(state, agent, position, event, f"still on task {agent.current_task!r}")
    agent.current_task = event.task_id
    agent.tasks_won += 1


def _finished(state: AgentsState, position: int, task_id: str, link: TaskLink,
              kind: EventType) -> None:
    link.bids = {}
    if link.agent_id is None:  # failed before anyone won it
        return
    agent = state.agents.recall(link.agent_id)
    if agent is None:  # unreachable: the assignment created it; but a fold never raises
        agent = state.agents[link.agent_id] = AgentView(link.agent_id, first_position=position)
    if kind is _T.TASK_COMPLETED:
        agent.tasks_completed += 1
        agent.sats_earned += link.winning_bid or 0
    else:
        agent.tasks_failed += 1
    if agent.current_task == task_id:
        agent.current_task = None


_Handler = Callable[[AgentsState, int, Any], None]


def _fast_path(kind: EventType) -> _Handler:
    """The handler of a task event other than a bid or a creation: the common case (a known
    task, a move the table allows, an online agent where one is needed) inline; anything else,
    anomalies included, through the plain `_on_task_event`."""
    moves = moves_on(kind)
    able = _able(kind) if kind in _AGENT_WORK else None
    checked = kind is _T.TASK_ASSIGNED
    finishes = kind is _T.TASK_COMPLETED or kind is _T.TASK_FAILED

    def handle(state: AgentsState, position: int, event: Any) -> None:
        link = state.tasks.get(event.task_id)
        if link is not None:
            after = moves.get(link.status)
            if after is not None and not (checked and missing_field(event)):
                agent = None
                if able is not None:
                    agent = state.agents.get(event.agent_id)
                    if agent is None or agent.joined_at is None or agent.presence not in able:
                        _on_task_event(state, position, event)  # it notes what is wrong
                        return
                link.status = after
                if checked:
                    _assigned(state, position, event, link, agent)
                elif finishes:
                    _finished(state, position, event.task_id, link, kind)
                return
        _on_task_event(state, position, event)

    return handle


_BID_MOVES = moves_on(_T.BID_SUBMITTED)
_CAN_BID = _able(_T.BID_SUBMITTED)


def _fast_bid(state: AgentsState, position: int, event: Any) -> None:
    """A bid by an online agent on a task open for bidding, inline; anything else: plain path."""
    link = state.tasks.get(event.task_id)
    agent_id = event.agent_id
    agent = state.agents.get(agent_id)
    sats = event.data.bid_sats
    if link is not None and agent is not None and agent.presence in _CAN_BID and sats is not None:
        after = _BID_MOVES.get(link.status)
        if after is not None:
            link.status = after
            link.bids[agent_id] = sats
            agent.bids += 1
            return
    _on_task_event(state, position, event)


_PLAIN_HANDLERS: dict[EventType, _Handler] = {
    _T.AGENT_JOINED: _joined,
    _T.AGENT_LEFT: _left,
    _T.AGENT_STATUS_CHANGED: _status_changed,
    _T.TIMMY_THOUGHT: _thought,
    _T.TOOL_CALLED: _tool_called,
    _T.TOOL_COMPLETED: _tool_finished,
    _T.TOOL_FAILED: _tool_finished,
    **dict.fromkeys(TASK_EVENT_TYPES, _on_task_event),
}
_HANDLERS: dict[EventType, _Handler] = {
    **_PLAIN_HANDLERS,
    **{kind: _fast_path(kind) for kind in TASK_EVENT_TYPES
       if kind not in (_T.TASK_CREATED, _T.BID_SUBMITTED)},
    _T.BID_SUBMITTED: _fast_bid,
}
AgentsProjection._FAST, AgentsProjection._PLAIN = _HANDLERS, _PLAIN_HANDLERS


# -- queries (they return copies, safe to keep after the runner's lock is released) ----------


def _copy(agent: AgentView) -> AgentView:
    return replace(agent, capabilities=list(agent.capabilities), anomalies=list(agent.anomalies))


def get_agent(state: AgentsState, agent_id: str) -> AgentView | None:
    """One agent, or None if the log never named it."""
    agent = state.agents.peek(agent_id)
    return None if agent is None else _copy(agent)


def _by_position(agents: Iterable[AgentView]) -> list[AgentView]:
    return sorted(agents, key=lambda a: a.first_position)


def all_agents(state: AgentsState) -> list[AgentView]:
    """Every agent, in order of first appearance (offline ones are read from the store)."""
    return [_copy(a) for a in _by_position(state.agents.merged().values())]


def online_agents(state: AgentsState) -> list[AgentView]:
    """The agents registered right now, in order of first appearance (all are in memory)."""
    return [_copy(a) for a in _by_position(state.agents.values()) if a.presence is _ONLINE]


def idle_agents(state: AgentsState) -> list[AgentView]:
    """The online agents without a current task."""
    return [_copy(a) for a in _by_position(state.agents.values()) if a.idle]
