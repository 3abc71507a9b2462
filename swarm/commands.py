"""The coordinator's commands and its pure core, `decide(command, facts) -> events`.

A Decider: each command is a frozen dataclass carrying its time (`at`) and source; `decide` looks
only at the command and `Facts` (copies of the read-model entries the command names) and returns
the events to append, `[]` for a harmless repeat, or raises `InvalidTransition` (`InvalidEvent` for
a malformed argument). The lifecycle rules come from the one table in `domain.lifecycle`; what is
added here is the auction (the lowest bid of an online, idle bidder wins; ties go to the earliest
bid) and who may act (the assigned agent, the caller of a tool). No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.codec import build_event
from domain.errors import InvalidEvent, InvalidTransition
from domain.events import Event, EventType
from domain.lifecycle import (
    AgentPresence,
    TaskStatus,
    agent_transition,
    require_agent_transition,
    require_task_transition,
    verb,
)
from projections.agents import AgentView
from projections.tasks import TaskView

__all__ = [
    "SOURCE",
    "CallTool",
    "CloseBidding",
    "Command",
    "CompleteTask",
    "Facts",
    "FailTask",
    "FinishTool",
    "PostTask",
    "RecordError",
    "RegisterAgent",
    "RemoveAgent",
    "StartTask",
    "SubmitBid",
    "auction_winner",
    "decide",
]

_T = EventType
#: The `source` of the coordinator's events unless told otherwise.
SOURCE = "coordinator"

# -- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    """What every command carries: when it happens and who records it."""

    at: datetime
    source: str = SOURCE


@dataclass(frozen=True, kw_only=True, slots=True)
class RegisterAgent(Command):
    agent_id: str
    name: str
    capabilities: tuple[str, ...] = ()
    persona_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RemoveAgent(Command):
    agent_id: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PostTask(Command):
    task_id: str
    description: str
    required_capabilities: tuple[str, ...] = ()
    window_seconds: float = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class SubmitBid(Command):
    task_id: str
    agent_id: str
    bid_sats: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseBidding(Command):
    task_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StartTask(Command):
    task_id: str
    agent_id: str | None = None  # if given, it must be the assigned agent


@dataclass(frozen=True, kw_only=True, slots=True)
class CompleteTask(Command):
    task_id: str
    result: Any = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FailTask(Command):
    task_id: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallTool(Command):
    agent_id: str
    tool: str
    call_id: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    task_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FinishTool(Command):
    agent_id: str
    call_id: str
    tool: str
    duration_ms: float
    result: Any = None
    error: str | None = None  # given: the call failed (tool.failed)
    task_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordError(Command):
    message: str
    error_type: str | None = None
    detail: Any = None
    task_id: str | None = None
    agent_id: str | None = None


# -- the pure core ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    """What `decide` may look at: copies of the read-model entries a command names."""

    task: TaskView | None = None
    agents: Mapping[str, AgentView] = field(default_factory=dict)
    call_owner: str | None = None  # for a tool result: the agent whose call is open, if any


def decide(command: Command, facts: Facts) -> list[Event]:
    """The events `command` produces given `facts`; InvalidTransition (or InvalidEvent) if none may."""
    match command:
        case RegisterAgent():
            return _register(command, facts)
        case RemoveAgent():
            return _remove(command, facts)
        case PostTask():
            return _post(command, facts)
        case SubmitBid():
            return _bid(command, facts)
        case CloseBidding():
            return _close(command, facts)
        case StartTask() | CompleteTask():
            return _work(command, facts)
        case FailTask():
            return _fail(command, facts)
        case CallTool():
            return _call_tool(command, facts)
        case FinishTool():
            return _finish_tool(command, facts)
        case RecordError():
            return [_event(command, _T.SYSTEM_ERROR, command.task_id, command.agent_id,
                           message=_text("message", command.message), error_type=command.error_type,
                           detail=command.detail)]
    raise TypeError(f"not a coordinator command: {command!r}")


def _event(command: Command, kind: EventType, task_id: str | None, agent_id: str | None,
           **data: Any) -> Event:
    payload = {k: v for k, v in data.items() if v is not None}
    return build_event(kind, command.source, task_id, agent_id, payload, timestamp=command.at)


def _text(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(name, f"must be a non-empty string, got {value!r}")
    return value


def _presence(agent: AgentView | None) -> AgentPresence | None:
    """The agent's presence for the table: None if it never joined."""
    return None if agent is None or agent.joined_at is None else agent.presence


def _status(task: TaskView | None) -> TaskStatus | None:
    return None if task is None else task.status


def _require_actor(facts: Facts, agent_id: str, kind: EventType, task_id: str | None) -> AgentView:
    """The agent, if the table lets it do `kind` (it must be online); else InvalidTransition."""
    agent = facts.agents.get(agent_id)
    presence = _presence(agent)
    if agent is None or agent_transition(presence, kind) is None:
        doing = verb(kind) if task_id is None else f"{verb(kind)} {task_id!r} as"
        raise InvalidTransition(agent_id, presence.value if presence else "unknown", doing)
    return agent


def _register(c: RegisterAgent, facts: Facts) -> list[Event]:
    agent = facts.agents.get(c.agent_id)
    presence = _presence(agent)
    capabilities = list(c.capabilities)
    if (agent is not None and presence is AgentPresence.ONLINE and agent.name == c.name
            and agent.capabilities == capabilities):
        return []  # a harmless repeat
    require_agent_transition(c.agent_id, presence, _T.AGENT_JOINED)
    return [_event(c, _T.AGENT_JOINED, None, c.agent_id, name=_text("name", c.name),
                   capabilities=capabilities, persona_id=c.persona_id)]


def _remove(c: RemoveAgent, facts: Facts) -> list[Event]:
    agent = facts.agents.get(c.agent_id)
    presence = _presence(agent)
    if presence is AgentPresence.OFFLINE:
        return []  # it left already
    require_agent_transition(c.agent_id, presence, _T.AGENT_LEFT)
    events = [_event(c, _T.AGENT_LEFT, None, c.agent_id, reason=_text("reason", c.reason))]
    task = facts.task
    if agent is not None and agent.current_task is not None and task is not None \
            and task.task_id == agent.current_task and task.is_open:
        # Its work cannot go on without it: the task fails in the same call, for the same reason.
        require_task_transition(task.task_id, task.status, _T.TASK_FAILED)
        events.append(_event(c, _T.TASK_FAILED, task.task_id, c.agent_id, reason=c.reason))
    return events


def _post(c: PostTask, facts: Facts) -> list[Event]:
    status = require_task_transition(c.task_id, _status(facts.task), _T.TASK_CREATED)
    require_task_transition(c.task_id, status, _T.TASK_BIDDING)
    return [
        _event(c, _T.TASK_CREATED, c.task_id, None, description=_text("description", c.description),
               required_capabilities=list(c.required_capabilities) or None),
        _event(c, _T.TASK_BIDDING, c.task_id, None, window_seconds=c.window_seconds),
    ]


def _bid(c: SubmitBid, facts: Facts) -> list[Event]:
    task = facts.task
    require_task_transition(c.task_id, _status(task), _T.BID_SUBMITTED)
    assert task is not None  # the table allows bids only on a known task
    agent = _require_actor(facts, c.agent_id, _T.BID_SUBMITTED, c.task_id)
    missing = [cap for cap in task.required_capabilities or () if cap not in agent.capabilities]
    if missing:
        raise InvalidTransition(c.task_id, f"bidding, but {c.agent_id!r} lacks {', '.join(missing)}",
                                "bid on")
    previous = task.bids.get(c.agent_id)
    if previous is not None:
        if previous == c.bid_sats:
            return []  # the same bid again
        raise InvalidTransition(c.task_id, f"bidding, and {c.agent_id!r} already bid {previous} sats",
                                "bid on")
    return [_event(c, _T.BID_SUBMITTED, c.task_id, c.agent_id, bid_sats=c.bid_sats)]


def auction_winner(task: TaskView, agents: Mapping[str, AgentView]) -> tuple[str, int] | None:
    """(agent, bid) of the lowest bid by an online agent without a current task; ties go to the
    earliest bid (`TaskView.bids` keeps bids in the order they were made)."""
    best: tuple[str, int] | None = None
    for agent_id, sats in task.bids.items():
        agent = agents.get(agent_id)
        if agent is None or _presence(agent) is not AgentPresence.ONLINE or agent.current_task:
            continue
        if best is None or sats < best[1]:
            best = (agent_id, sats)
    return best


def _close(c: CloseBidding, facts: Facts) -> list[Event]:
    task = facts.task
    status = require_task_transition(c.task_id, _status(task), _T.AUCTION_CLOSED)
    assert task is not None
    won = auction_winner(task, facts.agents)
    if won is None:
        require_task_transition(c.task_id, status, _T.TASK_FAILED)
        reason = "no bids" if not task.bids else "no eligible bids (every bidder left or is busy)"
        return [_event(c, _T.AUCTION_CLOSED, c.task_id, None, bid_count=task.bid_count),
                _event(c, _T.TASK_FAILED, c.task_id, None, reason=reason)]
    winner, sats = won
    require_task_transition(c.task_id, status, _T.TASK_ASSIGNED)
    return [
        _event(c, _T.AUCTION_CLOSED, c.task_id, None, winner=winner, winning_bid=sats,
               bid_count=task.bid_count),
        _event(c, _T.TASK_ASSIGNED, c.task_id, winner, bid_sats=sats),
    ]


def _work(c: StartTask | CompleteTask, facts: Facts) -> list[Event]:
    kind = _T.TASK_STARTED if isinstance(c, StartTask) else _T.TASK_COMPLETED
    task = facts.task
    require_task_transition(c.task_id, _status(task), kind)
    assert task is not None and task.agent_id is not None  # assigned or running
    if isinstance(c, StartTask) and c.agent_id is not None and c.agent_id != task.agent_id:
        raise InvalidTransition(c.task_id, f"assigned to {task.agent_id!r}, not {c.agent_id!r}",
                                verb(kind))
    _require_actor(facts, task.agent_id, kind, c.task_id)
    if isinstance(c, StartTask):
        return [_event(c, kind, c.task_id, task.agent_id)]
    return [_event(c, kind, c.task_id, task.agent_id, result=c.result)]


def _fail(c: FailTask, facts: Facts) -> list[Event]:
    task = facts.task
    require_task_transition(c.task_id, _status(task), _T.TASK_FAILED)
    assert task is not None
    return [_event(c, _T.TASK_FAILED, c.task_id, task.agent_id, reason=_text("reason", c.reason))]


def _call_tool(c: CallTool, facts: Facts) -> list[Event]:
    _require_actor(facts, c.agent_id, _T.TOOL_CALLED, c.task_id)
    if c.task_id is not None:
        task = facts.task
        if task is None or task.status is not TaskStatus.RUNNING or task.agent_id != c.agent_id:
            current = "unknown" if task is None else task.status.value
            if task is not None and task.agent_id not in (None, c.agent_id):
                current += f" by {task.agent_id!r}"
            raise InvalidTransition(c.task_id, current, f"call a tool as {c.agent_id!r} for")
    if facts.call_owner is not None:
        raise InvalidTransition(c.call_id, f"open already (called by {facts.call_owner!r})",
                                "start the tool call")
    return [_event(c, _T.TOOL_CALLED, c.task_id, c.agent_id, tool=_text("tool", c.tool),
                   call_id=c.call_id, arguments=dict(c.arguments))]


def _finish_tool(c: FinishTool, facts: Facts) -> list[Event]:
    kind = _T.TOOL_COMPLETED if c.error is None else _T.TOOL_FAILED
    _require_actor(facts, c.agent_id, kind, c.task_id)
    if facts.call_owner != c.agent_id:
        current = "not open" if facts.call_owner is None else f"a call of {facts.call_owner!r}"
        raise InvalidTransition(c.call_id, current, f"finish (as {c.agent_id!r}) the tool call")
    if c.error is None:
        return [_event(c, kind, c.task_id, c.agent_id, tool=c.tool, call_id=c.call_id,
                       duration_ms=c.duration_ms, result=c.result)]
    return [_event(c, kind, c.task_id, c.agent_id, tool=c.tool, call_id=c.call_id,
                   duration_ms=c.duration_ms, error=_text("error", c.error))]
