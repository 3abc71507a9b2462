"""The event catalogue: one frozen class per `EventType`, and the union over them.

Every event carries the envelope of ADR 017 (id, event_type, source, task_id, agent_id, timestamp)
plus `schema_version` and a typed `data` payload. Each payload class declares the fields its type
carries and validates them whenever they are present; keys it does not declare are kept as JSON
values and round-trip unchanged, because an audit log never drops a fact it was told. Ids are
optional here (the seed's callers log `task.created` without a task id); the coordinator requires
them and the projections count their absence as an anomaly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from domain.ids import new_event_id, utc_now


class EventType(StrEnum):
    """What kind of fact an event records (ADR 017's twelve, and eight its callers also use)."""

    TASK_CREATED = "task.created"
    TASK_BIDDING = "task.bidding"
    TASK_ASSIGNED = "task.assigned"
    TASK_STARTED = "task.started"
    TASK_COMPLETED = "task.completed"
    TASK_FAILED = "task.failed"
    AGENT_JOINED = "agent.joined"
    AGENT_LEFT = "agent.left"
    AGENT_STATUS_CHANGED = "agent.status_changed"
    BID_SUBMITTED = "bid.submitted"
    AUCTION_CLOSED = "auction.closed"
    TOOL_CALLED = "tool.called"
    TOOL_COMPLETED = "tool.completed"
    TOOL_FAILED = "tool.failed"
    SYSTEM_ERROR = "system.error"
    SYSTEM_WARNING = "system.warning"
    SYSTEM_INFO = "system.info"
    TIMMY_THOUGHT = "timmy.thought"
    ERROR_CAPTURED = "error.captured"
    BUG_REPORT_CREATED = "bug_report.created"


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} cannot be expressed in UTC") from None


# Lone surrogates are refused by pydantic's own str validation; a NUL character (which
# PostgreSQL cannot store) by a pattern, checked in Rust: no Python call per field.
_NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(pattern=_NO_NUL)]
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=_NO_NUL)]
Sats = Annotated[int, Field(strict=True, ge=0)]
Count = Annotated[int, Field(strict=True, ge=0)]
Millis = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Payload(BaseModel):
    """Base of every payload: declared fields are optional but typed; other keys are kept."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    __pydantic_extra__: dict[str, JsonValue] = Field(init=False)


class TaskCreatedData(Payload):
    description: Text | None = None
    required_capabilities: list[Text] | None = None


class TaskBiddingData(Payload):
    window_seconds: Seconds | None = None


class TaskAssignedData(Payload):
    bid_sats: Sats | None = None


class TaskStartedData(Payload):
    pass


class TaskCompletedData(Payload):
    result: JsonValue = None


class TaskFailedData(Payload):
    reason: Text | None = None


class AgentJoinedData(Payload):
    name: Text | None = None
    capabilities: list[Text] | None = None
    persona_id: Text | None = None


class AgentLeftData(Payload):
    reason: Text | None = None


class AgentStatusChangedData(Payload):
    status: Text | None = None
    task: Text | None = None  # the task a "busy" or "idle" status is about


class BidSubmittedData(Payload):
    bid_sats: Sats | None = None


class AuctionClosedData(Payload):
    winner: Text | None = None
    winning_bid: Sats | None = None
    bid_count: Count | None = None


class ToolCalledData(Payload):
    tool: Text | None = None
    call_id: Text | None = None
    arguments: dict[str, JsonValue] | None = None


class ToolCompletedData(Payload):
    tool: Text | None = None
    call_id: Text | None = None
    duration_ms: Millis | None = None
    result: JsonValue = None


class ToolFailedData(Payload):
    tool: Text | None = None
    call_id: Text | None = None
    duration_ms: Millis | None = None
    error: Text | None = None


class SystemErrorData(Payload):
    message: Text | None = None
    error_type: Text | None = None
    detail: JsonValue = None


class SystemMessageData(Payload):
    message: Text | None = None


class TimmyThoughtData(Payload):
    thought_id: Text | None = None
    content: Text | None = None


class ErrorCapturedData(Payload):
    error_type: Text | None = None
    message: Text | None = None
    hash: Text | None = None
    file: Text | None = None
    line: Annotated[int, Field(strict=True)] | None = None
    git_branch: Text | None = None
    git_commit: Text | None = None


class BugReportCreatedData(Payload):
    error_hash: Text | None = None
    title: Text | None = None


class Event(BaseModel):
    """The envelope every event shares. Subclasses fix `event_type`, `schema_version` and the
    payload class."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    event_type: EventType
    schema_version: int
    data: Payload
    id: Id = Field(default_factory=new_event_id)
    source: Annotated[str, Field(min_length=1, max_length=256, pattern=_NO_NUL)]
    task_id: Id | None = None
    agent_id: Id | None = None
    timestamp: Annotated[AwareDatetime, AfterValidator(_to_utc)] = Field(default_factory=utc_now)

    @property
    def stream_id(self) -> str:
        """`task-<id>` if the event has a task, else `agent-<id>`, else `system`."""
        if self.task_id is not None:
            return f"task-{self.task_id}"
        if self.agent_id is not None:
            return f"agent-{self.agent_id}"
        return "system"


class TaskCreated(Event):
    """A task was posted."""

    event_type: Literal[EventType.TASK_CREATED] = EventType.TASK_CREATED
    schema_version: Literal[1] = 1
    data: TaskCreatedData = TaskCreatedData()


class TaskBiddingOpened(Event):
    """A task was opened for bidding."""

    event_type: Literal[EventType.TASK_BIDDING] = EventType.TASK_BIDDING
    schema_version: Literal[1] = 1
    data: TaskBiddingData = TaskBiddingData()


class TaskAssigned(Event):
    """A task was assigned to the agent with the winning bid."""

    event_type: Literal[EventType.TASK_ASSIGNED] = EventType.TASK_ASSIGNED
    schema_version: Literal[1] = 1
    data: TaskAssignedData = TaskAssignedData()


class TaskStarted(Event):
    """The assigned agent started working on a task."""

    event_type: Literal[EventType.TASK_STARTED] = EventType.TASK_STARTED
    schema_version: Literal[1] = 1
    data: TaskStartedData = TaskStartedData()


class TaskCompleted(Event):
    """A task finished successfully."""

    event_type: Literal[EventType.TASK_COMPLETED] = EventType.TASK_COMPLETED
    schema_version: Literal[1] = 1
    data: TaskCompletedData = TaskCompletedData()


class TaskFailed(Event):
    """A task failed (no bids, its agent left, or its work failed)."""

    event_type: Literal[EventType.TASK_FAILED] = EventType.TASK_FAILED
    schema_version: Literal[1] = 1
    data: TaskFailedData = TaskFailedData()


class AgentJoined(Event):
    """An agent registered with the swarm."""

    event_type: Literal[EventType.AGENT_JOINED] = EventType.AGENT_JOINED
    schema_version: Literal[1] = 1
    data: AgentJoinedData = AgentJoinedData()


class AgentLeft(Event):
    """An agent deregistered."""

    event_type: Literal[EventType.AGENT_LEFT] = EventType.AGENT_LEFT
    schema_version: Literal[1] = 1
    data: AgentLeftData = AgentLeftData()


class AgentStatusChanged(Event):
    """An agent reported a new status."""

    event_type: Literal[EventType.AGENT_STATUS_CHANGED] = EventType.AGENT_STATUS_CHANGED
    schema_version: Literal[1] = 1
    data: AgentStatusChangedData = AgentStatusChangedData()


class BidSubmitted(Event):
    """An agent bid (in sats) on a task open for bidding."""

    event_type: Literal[EventType.BID_SUBMITTED] = EventType.BID_SUBMITTED
    schema_version: Literal[1] = 1
    data: BidSubmittedData = BidSubmittedData()


class AuctionClosed(Event):
    """Bidding on a task closed, with its winner (if any)."""

    event_type: Literal[EventType.AUCTION_CLOSED] = EventType.AUCTION_CLOSED
    schema_version: Literal[1] = 1
    data: AuctionClosedData = AuctionClosedData()


class ToolCalled(Event):
    """An agent started a tool call."""

    event_type: Literal[EventType.TOOL_CALLED] = EventType.TOOL_CALLED
    schema_version: Literal[1] = 1
    data: ToolCalledData = ToolCalledData()


class ToolCompleted(Event):
    """A tool call finished. Version 2: `duration_ms` replaced v1's `duration` (seconds)."""

    event_type: Literal[EventType.TOOL_COMPLETED] = EventType.TOOL_COMPLETED
    schema_version: Literal[2] = 2
    data: ToolCompletedData = ToolCompletedData()


class ToolFailed(Event):
    """A tool call failed."""

    event_type: Literal[EventType.TOOL_FAILED] = EventType.TOOL_FAILED
    schema_version: Literal[1] = 1
    data: ToolFailedData = ToolFailedData()


class SystemErrorLogged(Event):
    """A system error occurred."""

    event_type: Literal[EventType.SYSTEM_ERROR] = EventType.SYSTEM_ERROR
    schema_version: Literal[1] = 1
    data: SystemErrorData = SystemErrorData()


class SystemWarningLogged(Event):
    """A system warning was raised."""

    event_type: Literal[EventType.SYSTEM_WARNING] = EventType.SYSTEM_WARNING
    schema_version: Literal[1] = 1
    data: SystemMessageData = SystemMessageData()


class SystemInfoLogged(Event):
    """A system notice was recorded."""

    event_type: Literal[EventType.SYSTEM_INFO] = EventType.SYSTEM_INFO
    schema_version: Literal[1] = 1
    data: SystemMessageData = SystemMessageData()


class TimmyThoughtRecorded(Event):
    """An agent recorded a thought."""

    event_type: Literal[EventType.TIMMY_THOUGHT] = EventType.TIMMY_THOUGHT
    schema_version: Literal[1] = 1
    data: TimmyThoughtData = TimmyThoughtData()


class ErrorCaptured(Event):
    """An exception was captured, with where it happened (file, line, git branch and commit)."""

    event_type: Literal[EventType.ERROR_CAPTURED] = EventType.ERROR_CAPTURED
    schema_version: Literal[1] = 1
    data: ErrorCapturedData = ErrorCapturedData()


class BugReportCreated(Event):
    """A bug report was filed (for a captured error)."""

    event_type: Literal[EventType.BUG_REPORT_CREATED] = EventType.BUG_REPORT_CREATED
    schema_version: Literal[1] = 1
    data: BugReportCreatedData = BugReportCreatedData()


AnyEvent = Annotated[
    TaskCreated
    | TaskBiddingOpened
    | TaskAssigned
    | TaskStarted
    | TaskCompleted
    | TaskFailed
    | AgentJoined
    | AgentLeft
    | AgentStatusChanged
    | BidSubmitted
    | AuctionClosed
    | ToolCalled
    | ToolCompleted
    | ToolFailed
    | SystemErrorLogged
    | SystemWarningLogged
    | SystemInfoLogged
    | TimmyThoughtRecorded
    | ErrorCaptured
    | BugReportCreated,
    Field(discriminator="event_type"),
]

EVENT_CLASSES: dict[EventType, type[Event]] = {
    cls.model_fields["event_type"].default: cls
    for cls in Event.__subclasses__()
}
