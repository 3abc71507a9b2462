"""The agent as a Decider: its state, the presence table, `evolve`, `decide`.

An agent joins (online), leaves (offline) and may join again. What it does (bids, work on its
task, tool calls, thoughts, status reports) is expected only while it is online. Its current task
follows the lifecycle of the task it was assigned (`follow_task`): the task read model calls it
on each assignment and finish, whether or not the event names the agent. Open tool calls are its
own; leaving drops them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from domain.commands import AgentCommand, CallTool, FinishTool, RegisterAgent, RemoveAgent, emit, text
from domain.errors import InvalidTransition
from domain.events import (
    AgentJoined,
    AgentLeft,
    AgentStatusChanged,
    Event,
    EventType,
    ToolCalled,
    ToolCompleted,
    ToolFailed,
)

_T = EventType


class Presence(StrEnum):
    """Whether an agent is registered with the swarm right now."""

    ONLINE = "online"
    OFFLINE = "offline"


#: What an agent does (as opposed to what is done to it): expected only while it is online.
#: task.failed is not here: the coordinator fails the task of an agent that has already left.
ACTIVITY_TYPES: frozenset[EventType] = frozenset({
    _T.AGENT_STATUS_CHANGED, _T.BID_SUBMITTED, _T.TASK_STARTED, _T.TASK_COMPLETED,
    _T.TOOL_CALLED, _T.TOOL_COMPLETED, _T.TOOL_FAILED, _T.TIMMY_THOUGHT,
})

#: presence -> {event type -> next presence}; None is "never joined". An assignment is not
#: activity of the agent's, but it too needs the agent online.
TRANSITIONS: dict[Presence | None, dict[EventType, Presence]] = {
    None: {_T.AGENT_JOINED: Presence.ONLINE},
    Presence.OFFLINE: {_T.AGENT_JOINED: Presence.ONLINE},
    Presence.ONLINE: {
        _T.AGENT_LEFT: Presence.OFFLINE,
        _T.TASK_ASSIGNED: Presence.ONLINE,
        **dict.fromkeys(ACTIVITY_TYPES, Presence.ONLINE),
    },
}

#: The event types the presence table speaks about.
AGENT_EVENT_TYPES: frozenset[EventType] = frozenset(
    kind for moves in TRANSITIONS.values() for kind in moves)

# How `InvalidTransition.attempted` names an agent's command.
_VERBS = {
    _T.AGENT_JOINED: "register", _T.AGENT_LEFT: "deregister", _T.TOOL_CALLED: "call a tool as",
    _T.TOOL_COMPLETED: "complete a tool call as", _T.TOOL_FAILED: "fail a tool call as",
}


@dataclass(slots=True, kw_only=True)
class AgentState:
    """What a decision about an agent needs to know of it."""

    agent_id: str
    presence: Presence | None = None  # None: it never joined
    name: str | None = None
    capabilities: list[str] = field(default_factory=list)
    persona_id: str | None = None
    status: str | None = None  # as last reported by agent.status_changed
    current_task: str | None = None  # assigned or running
    open_calls: dict[str, str | None] = field(default_factory=dict)  # call id -> its task


def initial(agent_id: str) -> AgentState:
    """An agent the log has not named yet."""
    return AgentState(agent_id=agent_id)


def is_terminal(state: AgentState) -> bool:
    """Never: an agent that left may join again."""
    return False


def is_available(state: AgentState) -> bool:
    """Online and without a current task: it may win an auction."""
    return state.presence is Presence.ONLINE and state.current_task is None


def refusal(state: AgentState, event: Event) -> str | None:
    """Why the presence table does not expect `event` by this agent now (None: it does, or the
    table says nothing about its type)."""
    kind = event.event_type
    if kind not in AGENT_EVENT_TYPES or kind in TRANSITIONS[state.presence]:
        return None
    if state.presence is None:
        return "unknown agent (it never joined)"
    return "agent is online already" if state.presence is Presence.ONLINE else \
        "agent is offline (it left)"


def evolve(state: AgentState, event: Event) -> AgentState:
    """The agent after an event that names it (it is not changed in place). Work by an agent
    that is not online still counts: it is in the log (the read model notes it as an anomaly)."""
    match event:
        case AgentJoined(data=data):
            # A repeated join is an anomaly, but its profile is the newest word.
            return replace(
                state, presence=Presence.ONLINE,
                name=state.name if data.name is None else data.name,
                capabilities=state.capabilities if data.capabilities is None
                else list(data.capabilities),
                persona_id=state.persona_id if data.persona_id is None else data.persona_id)
        case AgentLeft():
            if state.presence is not Presence.ONLINE:
                return state
            # Its current task stays until the task fails; its open calls end with it.
            return replace(state, presence=Presence.OFFLINE, open_calls={})
        case AgentStatusChanged(data=data):
            return replace(state, status=data.status)
        case ToolCalled(data=data) if data.call_id is not None:
            return replace(state, open_calls={**state.open_calls, data.call_id: event.task_id})
        case ToolCompleted(data=data) | ToolFailed(data=data) if data.call_id in state.open_calls:
            calls = dict(state.open_calls)
            del calls[data.call_id]
            return replace(state, open_calls=calls)
    return state


def follow_task(state: AgentState, task_id: str, *, assigned: bool) -> AgentState:
    """The agent after the task `task_id` was assigned to it (`assigned`) or finished."""
    if assigned:
        return replace(state, current_task=task_id)
    if state.current_task == task_id:
        return replace(state, current_task=None)
    return state


# -- decisions ----------------------------------------------------------------------------------


def require(state: AgentState, kind: EventType, doing: str) -> None:
    """InvalidTransition unless the table lets this agent do `kind` now; `doing` names the
    attempt ("bid on 't1' as")."""
    if kind not in TRANSITIONS[state.presence]:
        current = state.presence.value if state.presence else "unknown"
        raise InvalidTransition(state.agent_id, current, doing)


def decide(command: AgentCommand, state: AgentState) -> list[Event]:
    """The events an agent's command produces, `[]` for a harmless repeat, or InvalidTransition.
    (What a leaving agent's task does is the swarm decider's: `domain.swarm`.)"""
    c = command
    match c:
        case RegisterAgent():
            capabilities = list(c.capabilities)
            if state.presence is Presence.ONLINE and state.name == c.name \
                    and state.capabilities == capabilities and c.persona_id in (None, state.persona_id):
                return []
            require(state, _T.AGENT_JOINED, _VERBS[_T.AGENT_JOINED])
            return [emit(c, _T.AGENT_JOINED, None, c.agent_id, name=text("name", c.name),
                         capabilities=capabilities, persona_id=c.persona_id)]
        case RemoveAgent():
            if state.presence is Presence.OFFLINE:
                return []  # it left already
            require(state, _T.AGENT_LEFT, _VERBS[_T.AGENT_LEFT])
            return [emit(c, _T.AGENT_LEFT, None, c.agent_id, reason=text("reason", c.reason))]
        case CallTool():
            doing = _VERBS[_T.TOOL_CALLED]
            require(state, _T.TOOL_CALLED, doing if c.task_id is None else
                    f"call a tool for {c.task_id!r} as")
            if c.call_id in state.open_calls:
                raise InvalidTransition(c.call_id, f"open already (called by {c.agent_id!r})",
                                        "start the tool call")
            return [emit(c, _T.TOOL_CALLED, c.task_id, c.agent_id, tool=text("tool", c.tool),
                         call_id=c.call_id, arguments=dict(c.arguments))]
        case FinishTool():
            kind = _T.TOOL_COMPLETED if c.error is None else _T.TOOL_FAILED
            require(state, kind, _VERBS[kind])
            if c.call_id not in state.open_calls:
                raise InvalidTransition(c.call_id, f"not open for {c.agent_id!r}",
                                        "finish the tool call")
            task_id = state.open_calls[c.call_id]  # the call's stream: the same as its start
            if c.error is None:
                return [emit(c, kind, task_id, c.agent_id, tool=c.tool, call_id=c.call_id,
                             duration_ms=c.duration_ms, result=c.result)]
            return [emit(c, kind, task_id, c.agent_id, tool=c.tool, call_id=c.call_id,
                         duration_ms=c.duration_ms, error=text("error", c.error))]
    raise TypeError(f"not an agent command: {command!r}")
