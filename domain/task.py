"""The task as a Decider: its state, the one transition table, `evolve`, `decide`, the auction.

created -> bidding -> assigned -> running -> completed | failed, and failed from any open status
(no bids, its agent left, given up). Bids and the (informational) auction close happen only while
bidding; terminal statuses are absorbing. The coordinator's decisions and every read model fold
through this module, so the read models show the lifecycle the coordinator would have accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from domain import agent
from domain.commands import (
    CloseBidding,
    CompleteTask,
    FailTask,
    PostTask,
    StartTask,
    SubmitBid,
    TaskCommand,
    emit,
    text,
)
from domain.errors import InvalidTransition
from domain.events import (
    BidSubmitted,
    BidSubmittedData,
    Event,
    EventType,
    TaskAssigned,
    TaskCreated,
)

_T = EventType


class TaskStatus(StrEnum):
    """Where a task is in its lifecycle."""

    CREATED = "created"
    BIDDING = "bidding"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


_S = TaskStatus

#: status -> {event type -> next status}; None is "no such task yet". A pair that is not listed
#: is not allowed. Bids and the auction close keep the task in bidding.
TRANSITIONS: dict[TaskStatus | None, dict[EventType, TaskStatus]] = {
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

#: The event types the table speaks about (they need a task_id).
LIFECYCLE_TYPES: frozenset[EventType] = frozenset(
    kind for moves in TRANSITIONS.values() for kind in moves)
TERMINAL_STATUSES: frozenset[TaskStatus] = frozenset({_S.COMPLETED, _S.FAILED})
OPEN_STATUSES: frozenset[TaskStatus] = frozenset(TaskStatus) - TERMINAL_STATUSES

# The verb of `InvalidTransition.attempted`: "cannot <verb> 't1': it is <status>".
VERBS: dict[EventType, str] = {
    _T.TASK_CREATED: "create", _T.TASK_BIDDING: "open bidding on", _T.TASK_ASSIGNED: "assign",
    _T.TASK_STARTED: "start", _T.TASK_COMPLETED: "complete", _T.TASK_FAILED: "fail",
    _T.BID_SUBMITTED: "bid on", _T.AUCTION_CLOSED: "close the auction of",
}


@dataclass(slots=True, kw_only=True)
class TaskState:
    """What a decision about a task needs to know of it."""

    task_id: str
    status: TaskStatus | None = None  # None: the log has not named it
    required_capabilities: list[str] | None = None
    bids: dict[str, int] = field(default_factory=dict)  # agent -> its latest bid, first bid first
    bid_count: int = 0
    agent_id: str | None = None  # the assigned agent
    winning_bid: int | None = None


def initial(task_id: str) -> TaskState:
    """A task the log has not named yet."""
    return TaskState(task_id=task_id)


def is_terminal(state: TaskState) -> bool:
    """Completed or failed: nothing moves it any more."""
    return state.status in TERMINAL_STATUSES


def _missing(event: Event) -> str | None:
    """The field an event lacks that the lifecycle needs to apply it."""
    kind = event.event_type
    if kind is _T.TASK_ASSIGNED or kind is _T.BID_SUBMITTED:
        if event.agent_id is None:
            return "agent_id"
        if isinstance(event, BidSubmitted) and event.data.bid_sats is None:
            return "data.bid_sats"
    return None


def seen_status(state: TaskState, kind: EventType) -> TaskStatus | None:
    """The status the table starts from: a task first seen through a later event than its
    creation (its task.created lost, or logged without a task_id, as the seed's callers do) is
    taken as created, so that the rest of its lifecycle still folds."""
    if state.status is None and kind is not _T.TASK_CREATED:
        return _S.CREATED
    return state.status


def refusal(state: TaskState, event: Event) -> str | None:
    """Why the lifecycle does not apply `event` (one of `LIFECYCLE_TYPES`) to this task now
    (None: it does)."""
    missing = _missing(event)
    if missing is not None:
        return f"no {missing}"
    status = seen_status(state, event.event_type)
    if event.event_type not in TRANSITIONS[status]:
        return f"not allowed while the task is {status.value if status else 'unknown'}"
    return None


def evolve(state: TaskState, event: Event) -> TaskState:
    """The task after an event of its stream (it is not changed in place). An event the table
    refuses (see `refusal`) changes nothing but a first sight: the task then exists, created."""
    kind = event.event_type
    if kind not in LIFECYCLE_TYPES:
        return state  # a tool call or a note about the task: its lifecycle does not move
    status = seen_status(state, kind)
    after = TRANSITIONS[status].get(kind)
    if after is None or _missing(event) is not None:
        return state if status is state.status else replace(state, status=status)
    match event:
        case TaskCreated(data=data):
            caps = data.required_capabilities
            return replace(state, status=after, required_capabilities=None if caps is None
                           else list(caps))
        case BidSubmitted(agent_id=str(bidder), data=BidSubmittedData(bid_sats=int(sats))):
            bids = {**state.bids, bidder: sats}
            return replace(state, status=after, bids=bids, bid_count=state.bid_count + 1)
        case TaskAssigned(agent_id=str(winner), data=data):
            won = state.bids.get(winner) if data.bid_sats is None else data.bid_sats
            return replace(state, status=after, agent_id=winner, winning_bid=won)
    return replace(state, status=after)


def auction_winner(state: TaskState, agents: Mapping[str, agent.AgentState]) -> tuple[str, int] | None:
    """(agent, bid) of the lowest bid by an available agent (online, no current task); ties go
    to the earliest bidder (`bids` keeps first-bid order)."""
    best: tuple[str, int] | None = None
    for bidder, sats in state.bids.items():
        who = agents.get(bidder)
        if who is None or not agent.is_available(who):
            continue
        if best is None or sats < best[1]:
            best = (bidder, sats)
    return best


# -- decisions ----------------------------------------------------------------------------------


def require(state: TaskState, kind: EventType) -> TaskStatus:
    """The status after `kind`, or InvalidTransition(task_id, current, attempted)."""
    after = TRANSITIONS[state.status].get(kind)
    if after is None:
        current = state.status.value if state.status else "unknown"
        raise InvalidTransition(state.task_id, current, VERBS[kind])
    return after


def decide(command: TaskCommand, state: TaskState,
           agents: Mapping[str, agent.AgentState]) -> list[Event]:
    """The events a task's command produces, `[]` for a harmless repeat, or InvalidTransition
    (InvalidEvent for a malformed argument). `agents` holds the state of every agent the
    decision looks at: the bidder, the bidders of an auction, the assigned agent."""
    c = command
    match c:
        case PostTask():
            require(replace(state, status=require(state, _T.TASK_CREATED)), _T.TASK_BIDDING)
            return [emit(c, _T.TASK_CREATED, c.task_id, None,
                         description=text("description", c.description),
                         required_capabilities=list(c.required_capabilities) or None),
                    emit(c, _T.TASK_BIDDING, c.task_id, None, window_seconds=c.window_seconds)]
        case SubmitBid():
            require(state, _T.BID_SUBMITTED)
            bidder = agents.get(c.agent_id) or agent.initial(c.agent_id)
            agent.require(bidder, _T.BID_SUBMITTED, f"bid on {c.task_id!r} as")
            missing = [cap for cap in state.required_capabilities or ()
                       if cap not in bidder.capabilities]
            if missing:
                raise InvalidTransition(
                    c.task_id, f"bidding, but {c.agent_id!r} lacks {', '.join(missing)}", "bid on")
            previous = state.bids.get(c.agent_id)
            if previous == c.bid_sats:
                return []  # the same bid again
            if previous is not None:
                raise InvalidTransition(
                    c.task_id, f"bidding, and {c.agent_id!r} already bid {previous} sats", "bid on")
            return [emit(c, _T.BID_SUBMITTED, c.task_id, c.agent_id, bid_sats=c.bid_sats)]
        case CloseBidding():
            require(state, _T.AUCTION_CLOSED)
            won = auction_winner(state, agents)
            if won is None:
                reason = "no bids" if not state.bids else \
                    "no eligible bids (every bidder left or is busy)"
                return [emit(c, _T.AUCTION_CLOSED, c.task_id, None, bid_count=state.bid_count),
                        emit(c, _T.TASK_FAILED, c.task_id, None, reason=reason)]
            winner, sats = won
            # The winner's own stream records the claim: two auctions deciding on the same idle
            # agent both expect its stream's version, so only one of them can append.
            return [emit(c, _T.AUCTION_CLOSED, c.task_id, None, winner=winner, winning_bid=sats,
                         bid_count=state.bid_count),
                    emit(c, _T.TASK_ASSIGNED, c.task_id, winner, bid_sats=sats),
                    emit(c, _T.AGENT_STATUS_CHANGED, None, winner, status="busy", task=c.task_id)]
        case StartTask() | CompleteTask():
            kind = _T.TASK_STARTED if isinstance(c, StartTask) else _T.TASK_COMPLETED
            require(state, kind)
            worker = state.agent_id or ""
            if isinstance(c, StartTask) and c.agent_id not in (None, worker):
                raise InvalidTransition(c.task_id, f"assigned to {worker!r}, not {c.agent_id!r}",
                                        VERBS[kind])
            agent.require(agents.get(worker) or agent.initial(worker), kind,
                          f"{VERBS[kind]} {c.task_id!r} as")
            if isinstance(c, StartTask):
                return [emit(c, kind, c.task_id, worker)]
            return [emit(c, kind, c.task_id, worker, result=c.result), *_release(c, worker, agents)]
        case FailTask():
            require(state, _T.TASK_FAILED)
            return [emit(c, _T.TASK_FAILED, c.task_id, state.agent_id,
                         reason=text("reason", c.reason)),
                    *_release(c, state.agent_id, agents)]
    raise TypeError(f"not a task command: {command!r}")


def _release(c: TaskCommand, worker: str | None, agents: Mapping[str, agent.AgentState]) -> list[Event]:
    """The claim's end, in the worker's stream, if it is online to take more work."""
    who = None if worker is None else agents.get(worker)
    if who is None or who.presence is not agent.Presence.ONLINE:
        return []
    return [emit(c, _T.AGENT_STATUS_CHANGED, None, worker, status="idle", task=c.task_id)]
