"""The projection abstraction, the anomaly record, and helpers the three read models share.

A projection is a deterministic, total fold: `apply(state, recorded)` never raises on anything the
store can hold. An event that breaks the lifecycle is not refused (it is already a fact in the
log); it is noted as an `Anomaly` on the read model it touches and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

import orjson

from domain.events import EventType
from domain.lifecycle import TASK_TRANSITIONS, TaskStatus
from store.base import Recorded

S = TypeVar("S")

#: Anomalies kept per task or agent (the newest); their counts stay exact.
MAX_ANOMALIES = 20
#: Anomalies kept per read model for events that touch no single task or agent.
MAX_UNATTRIBUTED_ANOMALIES = 100


class Anomaly(NamedTuple):
    """An event the lifecycle did not expect: where it is in the log, its type, and why."""

    position: int
    event_type: str
    reason: str


class Projection(Protocol[S]):
    """A read model: a named, versioned, deterministic fold of the log into a JSON-able state."""

    #: Unique among the projections of one runner; names the snapshots.
    name: str
    #: Bump whenever `apply` (or the shape of the state) changes: older snapshots are then ignored.
    version: int

    def initial(self) -> S:
        """The state of an empty log."""
        ...

    def apply(self, state: S, recorded: Recorded) -> S:
        """Fold one event into `state` (it may be mutated) and return the new state. Never raises."""
        ...

    def dump(self, state: S) -> str:
        """The state as JSON text, such that `load(dump(s)) == s`."""
        ...

    def load(self, text: str) -> S:
        """The state a `dump` wrote."""
        ...


def fold(projection: Projection[S], records: Iterable[Recorded], state: S | None = None) -> S:
    """Fold `records` into `state` (the initial state if None): rebuild is this `reduce`."""
    current = projection.initial() if state is None else state
    apply = projection.apply
    for recorded in records:
        current = apply(current, recorded)
    return current


def apply_many(projection: Projection[S], state: S, records: Iterable[Recorded]) -> S:
    """Fold several events: the projection's own `apply_many` if it has one (the same result as
    `apply` one by one, minus a call per event), else `apply` one by one."""
    many = getattr(projection, "apply_many", None)
    if many is not None:
        return many(state, records)
    return fold(projection, records, state)


Handler = Callable[[Any, int, Any], None]


def dispatch_many(handlers: dict[EventType, Handler], state: S, records: Iterable[Recorded]) -> S:
    """The loop of a fold that mutates its state: each event to the handler of its type."""
    get = handlers.get
    for recorded in records:
        event: Any = recorded[3]
        handler = get(event.event_type)
        if handler is not None:
            handler(state, recorded[0], event)
    return state


class Noted(Protocol):
    """Something that keeps its anomalies: a task, an agent, or a whole read model."""

    anomalies: list[Anomaly]
    anomaly_count: int


def note(model: Noted, entity: Noted | None, position: int, event: Any, reason: str) -> None:
    """Record an anomaly on `entity` (or on the read model when it touches no single entity)."""
    model.anomaly_count += 1
    anomaly = Anomaly(position, event.event_type.value, reason)
    if entity is None:
        _keep(model.anomalies, anomaly, MAX_UNATTRIBUTED_ANOMALIES)
    else:
        entity.anomaly_count += 1
        _keep(entity.anomalies, anomaly, MAX_ANOMALIES)


def _keep(anomalies: list[Anomaly], anomaly: Anomaly, cap: int) -> None:
    anomalies.append(anomaly)
    if len(anomalies) > cap:
        del anomalies[0]


# -- the task lifecycle as every fold applies it ---------------------------------------------

_ASSIGNED = EventType.TASK_ASSIGNED
_BID = EventType.BID_SUBMITTED


# Folds take events as `Any`: the payload (`data`) and `event_type` are declared on each member
# of the event union, not on the `Event` base.


def missing_field(event: Any) -> str | None:
    """The field a task event lacks that the fold needs to apply it (None when complete)."""
    kind = event.event_type
    if kind is _ASSIGNED or kind is _BID:
        if event.agent_id is None:
            return "agent_id"
        if kind is _BID and event.data.bid_sats is None:
            return "data.bid_sats"
    return None


def advance_task(status: TaskStatus | None, event: Any) -> tuple[TaskStatus, bool]:
    """(the task's status after `event`, whether the event was applied) for an event of one of
    `TASK_EVENT_TYPES` that has a task_id. Every fold uses this so that they agree.

    A task first seen through a later event (its task.created lost or logged without a task_id,
    as the seed's callers do) is taken as created, so the rest of its lifecycle still folds. An
    event the table refuses, or one lacking the agent or bid it needs, changes nothing.
    """
    kind = event.event_type
    if status is None and kind is not EventType.TASK_CREATED:
        status = TaskStatus.CREATED
    after = TASK_TRANSITIONS[status].get(kind)
    if after is None or ((kind is _ASSIGNED or kind is _BID) and missing_field(event)):
        # Only task.created leaves `status` None, and the table always accepts it.
        return status or TaskStatus.CREATED, False
    return after, True


def moves_on(kind: EventType) -> dict[TaskStatus, TaskStatus]:
    """status -> next status on `kind`, for the statuses of an existing task that allow it: the
    table, sliced for the fast paths of the folds (a miss sends them to the plain path)."""
    return {
        status: moves[kind]
        for status, moves in TASK_TRANSITIONS.items()
        if status is not None and kind in moves
    }


# -- JSON ---------------------------------------------------------------------------------------


def _tuple_as_list(value: Any) -> Any:
    if isinstance(value, tuple):  # Anomaly and other NamedTuples
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def dumps(value: Any) -> str:
    """JSON text of a state made of dataclasses, dicts, lists, enums, datetimes and tuples."""
    return orjson.dumps(value, default=_tuple_as_list, option=orjson.OPT_NON_STR_KEYS).decode()


def parse_time(text: str | None) -> datetime | None:
    """A datetime that `dumps` wrote (or None)."""
    return None if text is None else datetime.fromisoformat(text)


def parse_anomalies(items: list[list[Any]]) -> list[Anomaly]:
    """Anomalies that `dumps` wrote."""
    return [Anomaly(*item) for item in items]


#: Events folded a page at a time (between two releases of a runner's state lock, and two
#: progress reports).
#: Small on purpose: decoded events held in a page outlive the collector's young generation and
#: get promoted, and full collections then walk the whole read model; at 500 a 1M-event rebuild
#: spent 11 of its 25 s in 86 full collections, at 50 it runs 8 (profiled).
PAGE_SIZE = 50


def fold_page(projections: Sequence[Projection[Any]], states: list[Any], positions: list[int],
               page: list[Recorded]) -> None:
    """Fold one page into each projection, skipping the events at or before its position."""
    first, last = page[0].position, page[-1].position
    for i, projection in enumerate(projections):
        at = positions[i]
        if at >= last:
            continue
        todo = page if at < first else [r for r in page if r.position > at]
        states[i] = apply_many(projection, states[i], todo)
        positions[i] = last
