"""What the coordinator may be asked to do: one frozen class per command.

A command carries the time it happens (`at`) and who records it (`source`); the deciders
(`domain.task`, `domain.agent`, composed in `domain.swarm`) turn it into events or refuse it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.codec import build_event
from domain.errors import InvalidEvent
from domain.events import Event, EventType

#: The `source` of the coordinator's events unless told otherwise.
SOURCE = "coordinator"


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    """What every command carries: when it happens and who records it."""

    at: datetime
    source: str = SOURCE


# -- the task's commands ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskCommand(Command):
    """A command about one task."""

    task_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PostTask(TaskCommand):
    """Create a task and open it for bidding."""

    description: str
    required_capabilities: tuple[str, ...] = ()
    window_seconds: float = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class SubmitBid(TaskCommand):
    """An agent offers to do a task for `bid_sats`."""

    agent_id: str
    bid_sats: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseBidding(TaskCommand):
    """Close the auction: assign the task to the winner, or fail it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StartTask(TaskCommand):
    """The assigned agent starts; `agent_id`, if given, must be that agent."""

    agent_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CompleteTask(TaskCommand):
    """The running task finished successfully."""

    result: Any = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FailTask(TaskCommand):
    """An open task failed."""

    reason: str


# -- the agent's commands -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentCommand(Command):
    """A command about one agent."""

    agent_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RegisterAgent(AgentCommand):
    """An agent joins the swarm (or rejoins it)."""

    name: str
    capabilities: tuple[str, ...] = ()
    persona_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RemoveAgent(AgentCommand):
    """An agent leaves the swarm; the task it holds fails with it."""

    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallTool(AgentCommand):
    """An online agent starts a tool call (for its running task, if `task_id` is given)."""

    tool: str
    call_id: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    task_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FinishTool(AgentCommand):
    """A tool call of the agent's finished: completed, or failed when `error` is given."""

    call_id: str
    tool: str
    duration_ms: float
    result: Any = None
    error: str | None = None


# -- the system's -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordError(Command):
    """A system error happened: recorded, never refused."""

    message: str
    error_type: str | None = None
    detail: Any = None
    task_id: str | None = None
    agent_id: str | None = None


def emit(command: Command, kind: EventType, task_id: str | None, agent_id: str | None,
         **data: Any) -> Event:
    """The event of `kind` a command produces, at its time and from its source (payload fields
    that are None are left out)."""
    payload = {k: v for k, v in data.items() if v is not None}
    return build_event(kind, command.source, task_id, agent_id, payload, timestamp=command.at)


def text(name: str, value: object) -> str:
    """`value` if it is a non-empty string, else InvalidEvent naming the argument."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(name, f"must be a non-empty string, got {value!r}")
    return value
