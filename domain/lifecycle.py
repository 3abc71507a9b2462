"""The lifecycle rules of tasks and agents: the one transition table both sides use.

The coordinator asks `require_task_transition` / `require_agent_transition` before it appends an
event (and refuses the command with `InvalidTransition`); the projections ask `task_transition` /
`agent_transition` while folding and count what the table refuses as an anomaly. Keeping one table
is what makes "the projections say what the coordinator believed" true.

Task:  created -> bidding -> assigned -> running -> completed | failed, and failed from any open
status (no bids, agent left, given up). Bids and the (informational) auction close happen only
while bidding. Terminal statuses are absorbing.
Agent: joined -> online -> left -> offline -> joined again (may rejoin). Work (bids, tool calls,
starting or completing a task, thoughts, status reports) is only expected from an online agent.
"""

from __future__ import annotations

from enum import StrEnum

from domain.errors import InvalidTransition
from domain.events import EventType

_T = EventType


class TaskStatus(StrEnum):
    """Where a task is in its lifecycle."""

    CREATED = "created"
    BIDDING = "bidding"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class AgentPresence(StrEnum):
    """Whether an agent is registered with the swarm right now."""

    ONLINE = "online"
    OFFLINE = "offline"


_S = TaskStatus

#: status -> {event type -> next status}. `None` is "no such task yet". A pair that is not listed
#: is not allowed. Bids and the auction close keep the task in bidding.
TASK_TRANSITIONS: dict[TaskStatus | None, dict[EventType, TaskStatus]] = {
    None: {_T.TASK_CREATED: _S.CREATED},
    _S.CREATED: {_T.TASK_BIDDING: _S.BIDDING, _T.TASK_FAILED: _S.FAILED},
    _S.BIDDING: {
        _T.BID_SUBMITTED: _S.BIDDING,
        _T.AUCTION_CLOSED: _S.BIDDING,
        _T.TASK_ASSIGNED: _S.ASSIGNED,
        _T.TASK_FAILED: _S.FAILED,
    },
    _S.ASSIGNED: {_T.TASK_STARTED: _S.RUNNING, _T.TASK_FAILED: _S.FAILED},
    _S.RUNNING: {_T.TASK_COMPLETED: _S.COMPLETED, _T.TASK_FAILED: _S.FAILED},
    _S.COMPLETED: {},
    _S.FAILED: {},
}

#: The event types the task table speaks about (they need a task_id).
TASK_EVENT_TYPES: frozenset[EventType] = frozenset(
    t for moves in TASK_TRANSITIONS.values() for t in moves
)
TERMINAL_STATUSES: frozenset[TaskStatus] = frozenset({_S.COMPLETED, _S.FAILED})
OPEN_STATUSES: frozenset[TaskStatus] = frozenset(TaskStatus) - TERMINAL_STATUSES

#: What an agent does (as opposed to what is done to it): expected only while it is online.
#: task.failed is not here: the coordinator fails the task of an agent that has already left.
AGENT_ACTIVITY_TYPES: frozenset[EventType] = frozenset(
    {
        _T.AGENT_STATUS_CHANGED,
        _T.BID_SUBMITTED,
        _T.TASK_STARTED,
        _T.TASK_COMPLETED,
        _T.TOOL_CALLED,
        _T.TOOL_COMPLETED,
        _T.TOOL_FAILED,
        _T.TIMMY_THOUGHT,
    }
)

_P = AgentPresence
#: presence -> {event type -> next presence}; `None` is "never seen". Assignment is not activity
#: but still needs an online agent.
AGENT_TRANSITIONS: dict[AgentPresence | None, dict[EventType, AgentPresence]] = {
    None: {_T.AGENT_JOINED: _P.ONLINE},
    _P.OFFLINE: {_T.AGENT_JOINED: _P.ONLINE},
    _P.ONLINE: {
        _T.AGENT_LEFT: _P.OFFLINE,
        _T.TASK_ASSIGNED: _P.ONLINE,
        **{t: _P.ONLINE for t in AGENT_ACTIVITY_TYPES},
    },
}

# The verb of `InvalidTransition.attempted`: "cannot <verb> 't1': it is <status>".
_VERBS: dict[EventType, str] = {
    _T.TASK_CREATED: "create",
    _T.TASK_BIDDING: "open bidding on",
    _T.TASK_ASSIGNED: "assign",
    _T.TASK_STARTED: "start",
    _T.TASK_COMPLETED: "complete",
    _T.TASK_FAILED: "fail",
    _T.BID_SUBMITTED: "bid on",
    _T.AUCTION_CLOSED: "close the auction of",
    _T.AGENT_JOINED: "register",
    _T.AGENT_LEFT: "deregister",
    _T.AGENT_STATUS_CHANGED: "report a status for",
    _T.TOOL_CALLED: "call a tool as",
    _T.TOOL_COMPLETED: "complete a tool call as",
    _T.TOOL_FAILED: "fail a tool call as",
    _T.TIMMY_THOUGHT: "record a thought of",
}


def task_transition(status: TaskStatus | None, event_type: EventType) -> TaskStatus | None:
    """The status after `event_type` happens to a task in `status` (None: not allowed)."""
    return TASK_TRANSITIONS[status].get(event_type)


def allowed_task_events(status: TaskStatus | None) -> frozenset[EventType]:
    """The task event types the table allows from `status`."""
    return frozenset(TASK_TRANSITIONS[status])


def is_terminal(status: TaskStatus | None) -> bool:
    """Whether a task in `status` is finished for good (completed or failed)."""
    return status in TERMINAL_STATUSES


def verb(event_type: EventType) -> str:
    """How `InvalidTransition` names the attempted change (e.g. "start" for task.started)."""
    return _VERBS.get(event_type, f"record {event_type.value} for")


def require_task_transition(
    task_id: str, status: TaskStatus | None, event_type: EventType
) -> TaskStatus:
    """The status after `event_type`, or InvalidTransition(task_id, current, attempted)."""
    after = task_transition(status, event_type)
    if after is None:
        raise InvalidTransition(task_id, status.value if status else "unknown", verb(event_type))
    return after


def agent_transition(
    presence: AgentPresence | None, event_type: EventType
) -> AgentPresence | None:
    """The presence after `event_type` involves an agent in `presence` (None: not allowed).

    Only the types in `AGENT_TRANSITIONS` are agent transitions; any other type (task.failed,
    system.*) gives None, so do not ask about those.
    """
    return AGENT_TRANSITIONS[presence].get(event_type)


def require_agent_transition(
    agent_id: str, presence: AgentPresence | None, event_type: EventType
) -> AgentPresence:
    """The presence after `event_type`, or InvalidTransition(agent_id, current, attempted)."""
    after = agent_transition(presence, event_type)
    if after is None:
        current = presence.value if presence else "unknown"
        raise InvalidTransition(agent_id, current, verb(event_type))
    return after
