"""Summary counts: totals by type and source, tasks by status, and per-minute counts.

Totals are kept since the beginning of time, so they survive pruning (they live in the snapshot).
Tasks by status follow the task read model's `TaskChange`s; agents online are the roster's.
"Events in the last N minutes" (up to now: an event stamped later is not recent yet) is answered
from per-minute buckets: exact for a window of whole minutes, and for the newest `MINUTE_BUCKETS`
minutes of the log (counted back from its newest event, not from the wall clock, so that the fold
stays deterministic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.codec import StoredEvent, as_text
from domain.errors import InvalidEvent, ProjectionError
from domain.events import Event, EventType
from domain.task import TaskStatus
from projections.base import Anomaly, note, parse_anomalies
from projections.tasks import TaskChange

_T = EventType
#: A bucket counts the event types in this order (see `SummaryState.minutes`).
TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
SLOT: dict[str, int] = {t: i for i, t in enumerate(TYPES)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)

#: How many minutes of per-minute counts are kept, back from the newest event's minute. An event
#: older than that when it arrives (out of order) is counted in the totals but in no bucket.
MINUTE_BUCKETS = 24 * 60


@dataclass(slots=True)
class SummaryState:
    """Counts over the whole log."""

    #: How many minutes of buckets this state keeps (see MINUTE_BUCKETS).
    minute_buckets: int = MINUTE_BUCKETS
    total: int = 0
    by_type: dict[str, int] = field(default_factory=dict)  # event-type text -> count
    by_source: dict[str, int] = field(default_factory=dict)
    tasks_by_status: dict[TaskStatus, int] = field(
        default_factory=lambda: dict.fromkeys(TaskStatus, 0))
    #: minute since the epoch (UTC) -> the count of each event type (in `TYPES` order), for the
    #: newest `minute_buckets` minutes (older buckets linger until the next sweep; they are exact
    #: while they last). Lists, so that a snapshot's day of buckets loads as it is.
    minutes: dict[int, list[int]] = field(default_factory=dict)
    newest_minute: int | None = None
    #: The newest minute some of whose events are in no bucket (None: every event is).
    dropped_through: int | None = None
    #: Rows that do not conform to their type's schema (see `domain.lenient`), as anomalies of
    #: the log: their position, type and why.
    anomalies: list[Anomaly] = field(default_factory=list)
    anomaly_count: int = 0

    def dump(self) -> dict[str, Any]:
        return {"minute_buckets": self.minute_buckets, "total": self.total,
                "by_type": self.by_type, "by_source": self.by_source,
                "tasks_by_status": self.tasks_by_status,
                "minutes": list(self.minutes.items()),  # [[minute, counts], ...]
                "newest_minute": self.newest_minute, "dropped_through": self.dropped_through,
                "anomalies": self.anomalies, "anomaly_count": self.anomaly_count}

    @classmethod
    def load(cls, raw: dict[str, Any]) -> SummaryState:
        return cls(raw["minute_buckets"], raw["total"], raw["by_type"], raw["by_source"],
                   {TaskStatus(k): n for k, n in raw["tasks_by_status"].items()},
                   dict(raw["minutes"]), raw["newest_minute"], raw["dropped_through"],
                   parse_anomalies(raw["anomalies"]), raw["anomaly_count"])


# -- the fold (plain: the oracle of `projections.fast`) ------------------------------------------


def evolve_summary(state: SummaryState, position: int, event: Event,
                   change: TaskChange | None) -> None:
    """Fold one event (and what it did to a task) into the counts."""
    kind = event.event_type.value
    state.total += 1
    state.by_type[kind] = state.by_type.get(kind, 0) + 1
    state.by_source[event.source] = state.by_source.get(event.source, 0) + 1
    bucket = bucket_of(state, minute_of(event.timestamp))
    if bucket is not None:
        bucket[SLOT[kind]] += 1
    if change is not None:
        count_task(state, change)


def nonconforming(state: SummaryState, row: StoredEvent, reason: str, readable: bool) -> None:
    """Note a row that does not conform to its type's schema; one that cannot be read as its
    type at all (`readable` False: an unknown type, a timestamp that is not a time) is counted
    here too, since no fold will see it."""
    kind = as_text(row.event_type)  # (another client may have stored a BLOB, or a number)
    note(state, None, row.position, kind, f"does not conform: {reason}")
    if not readable:
        source = as_text(row.source)
        state.total += 1
        state.by_type[kind] = state.by_type.get(kind, 0) + 1
        state.by_source[source] = state.by_source.get(source, 0) + 1


def count_task(state: SummaryState, change: TaskChange) -> None:
    """Move a task between the status counts (or count it, when first seen)."""
    after = change.task.status
    assert after is not None  # a task the read model has seen has a status
    if change.before is None:
        state.tasks_by_status[after] += 1
    elif after is not change.before:
        state.tasks_by_status[change.before] -= 1
        state.tasks_by_status[after] += 1


def minute_of(moment: datetime) -> int:
    """The minute (since the Unix epoch, UTC) a timezone-aware moment falls in."""
    return (moment - _EPOCH) // _MINUTE


def bucket_of(state: SummaryState, minute: int) -> list[int] | None:
    """The bucket of `minute` (made if needed), or None if that minute is out of range."""
    newest = state.newest_minute
    if newest is None or minute > newest:
        state.newest_minute = newest = minute
        # Sweep only when twice the range is held, so sweeping costs O(1) per minute.
        if len(state.minutes) >= 2 * state.minute_buckets:
            _sweep(state, newest - state.minute_buckets)
    elif minute <= newest - state.minute_buckets:
        if state.dropped_through is None or minute > state.dropped_through:
            state.dropped_through = minute
        return None
    bucket = state.minutes.get(minute)
    if bucket is None:
        bucket = state.minutes[minute] = [0] * len(TYPES)
    return bucket


def _sweep(state: SummaryState, through: int) -> None:
    old = [m for m in state.minutes if m <= through]
    for m in old:
        del state.minutes[m]
    if old:
        newest_dropped = max(old)
        if state.dropped_through is None or newest_dropped > state.dropped_through:
            state.dropped_through = newest_dropped


# -- queries ------------------------------------------------------------------------------------


def events_since(state: SummaryState, minutes: float, now: datetime) -> dict[str, int]:
    """Events per type stamped in the last `minutes` minutes up to `now`: from the minute of
    `now - minutes` through the minute of `now` (an event stamped later is not recent yet).

    Equals `store.count_by_type(<the first minute's start>, <the end of now's minute>)` on an
    unpruned log (the buckets outlive pruning): exact at minute granularity, the window widened
    to whole minutes. Raises ProjectionError if some events of the window were dropped from the
    buckets (a window reaching further back than `minute_buckets` minutes before the newest
    event): ask the log.
    """
    if now.tzinfo is None:
        raise InvalidEvent("now", f"{now.isoformat()} is naive; give a timezone")
    if not 0 <= minutes < math.inf:  # (NaN too)
        raise InvalidEvent("minutes", f"must be a number of minutes >= 0, got {minutes!r}")
    end = minute_of(now)
    try:
        start: int | None = minute_of(now - timedelta(minutes=minutes))
    except OverflowError:  # before the first year a datetime has: every minute counts
        start = None
    if state.dropped_through is not None and (start is None or start <= state.dropped_through):
        dropped = _EPOCH + state.dropped_through * _MINUTE  # (its start: always a datetime)
        raise ProjectionError(
            f"the summary has per-minute counts only after the minute of {dropped.isoformat()} "
            f"(it keeps the newest {state.minute_buckets} minutes of the log); {minutes} "
            f"minutes before {now.isoformat()} is earlier: count from the log "
            "(store.count_by_type) instead")
    found: dict[str, int] = {}
    for minute, bucket in state.minutes.items():
        if (start is None or minute >= start) and minute <= end:
            for kind, n in zip(TYPES, bucket, strict=True):
                if n:
                    found[kind] = found.get(kind, 0) + n
    return found
