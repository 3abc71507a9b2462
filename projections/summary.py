"""Summary counts: totals by type and source, tasks by status, agents online, and per-minute counts.

Totals are kept since the beginning of time, so they survive pruning (they live in the snapshot).
"Events in the last N minutes" is answered from per-minute buckets: exact for a window that starts
on a minute boundary, and for the newest `MINUTE_BUCKETS` minutes of the log (counted back from
its newest event, not from the wall clock, so that the fold stays deterministic).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from domain.errors import ProjectionError
from domain.events import EventType
from domain.lifecycle import TASK_EVENT_TYPES, TERMINAL_STATUSES, TaskStatus
from projections.base import Cold, Tiered, advance_task, dumps, missing_field, moves_on
from store.base import Recorded

_T = EventType
#: A bucket counts the event types in this order (see `SummaryState.minutes`).
_TYPES: tuple[EventType, ...] = tuple(EventType)
_SLOT: dict[EventType, int] = {t: i for i, t in enumerate(_TYPES)}
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
    by_type: dict[EventType, int] = field(default_factory=lambda: dict.fromkeys(EventType, 0))
    by_source: dict[str, int] = field(default_factory=dict)
    tasks_by_status: dict[TaskStatus, int] = field(
        default_factory=lambda: dict.fromkeys(TaskStatus, 0)
    )
    online: set[str] = field(default_factory=set)  # the ids of the agents online
    #: Each task's status, to move tasks_by_status (in memory: the open tasks and those closed
    #: since the last snapshot, see `Tiered`).
    task_status: Tiered[TaskStatus] = field(default_factory=lambda: Tiered(TaskStatus))
    #: minute since the epoch (UTC) -> the count of each event type (in `EventType` order), for
    #: the newest MINUTE_BUCKETS minutes (older buckets linger until the next sweep; they are
    #: exact while they last). Lists, so that a snapshot's day of buckets loads as it is.
    minutes: dict[int, list[int]] = field(default_factory=dict)
    newest_minute: int | None = None
    #: The newest minute some of whose events are in no bucket (None: every event is).
    dropped_through: int | None = None
    # A cache of the current minute's bucket [_lo, _hi): derived, so neither compared nor stored.
    # It starts as an empty range.
    _lo: datetime = field(default=datetime.max.replace(tzinfo=UTC), compare=False, repr=False)
    _hi: datetime = field(default=datetime.min.replace(tzinfo=UTC), compare=False, repr=False)
    _bucket: list[int] = field(default_factory=list, compare=False, repr=False)

    @property
    def agents_online(self) -> int:
        return len(self.online)

    @property
    def task_failures(self) -> int:
        """task.failed events (tasks now failed: `tasks_by_status[TaskStatus.FAILED]`)."""
        return self.by_type.get(_T.TASK_FAILED, 0)

    @property
    def tool_failures(self) -> int:
        return self.by_type.get(_T.TOOL_FAILED, 0)

    @property
    def errors(self) -> int:
        return self.by_type.get(_T.SYSTEM_ERROR, 0)

    @property
    def warnings(self) -> int:
        return self.by_type.get(_T.SYSTEM_WARNING, 0)


class SummaryProjection:
    """The summary-counts read model. `plain=True` folds without the fast paths (the oracle)."""

    name = "summary"
    version = 3

    def __init__(self, *, plain: bool = False, minute_buckets: int = MINUTE_BUCKETS) -> None:
        self._plain = plain
        self._handlers = _PLAIN_HANDLERS if plain else _HANDLERS
        self._minute_buckets = minute_buckets  # other values than the default are for tests

    def initial(self) -> SummaryState:
        return SummaryState(minute_buckets=self._minute_buckets)

    def apply(self, state: SummaryState, recorded: Recorded) -> SummaryState:
        return self.apply_many(state, (recorded,))

    def apply_many(self, state: SummaryState, records: Iterable[Recorded]) -> SummaryState:
        by_type = state.by_type
        by_source = state.by_source
        handler_of = self._handlers.get
        plain = self._plain
        for recorded in records:
            event: Any = recorded[3]
            kind = event.event_type
            state.total += 1
            by_type[kind] += 1
            source = event.source
            by_source[source] = by_source.get(source, 0) + 1
            # Consecutive events mostly share a minute: two comparisons instead of a division.
            stamp = event.timestamp
            if state._lo <= stamp < state._hi and not plain:
                bucket: list[int] | None = state._bucket
            else:
                bucket = _bucket_of(state, stamp)
            if bucket is not None:
                bucket[_SLOT[kind]] += 1
            handler = handler_of(kind)
            if handler is not None:
                handler(state, event)
        return state

    def dump(self, state: SummaryState) -> str:
        return self._dump(state, state.task_status.merged())

    def split(self, state: SummaryState) -> tuple[str, list[tuple[str, str]]]:
        open_, items = state.task_status.split(_is_closed, str)
        return self._dump(state, open_), items

    def attach(self, state: SummaryState, cold: Cold) -> None:
        state.task_status.attach(cold, _is_closed)

    def _dump(self, state: SummaryState, task_status: dict[str, TaskStatus]) -> str:
        return dumps(
            {
                "minute_buckets": state.minute_buckets,
                "total": state.total,
                "by_type": state.by_type,
                "by_source": state.by_source,
                "tasks_by_status": state.tasks_by_status,
                "online": sorted(state.online),
                "task_status": dict(sorted(task_status.items())),
                "minutes": list(state.minutes.items()),  # [[minute, counts], ...]
                "newest_minute": state.newest_minute,
                "dropped_through": state.dropped_through,
            }
        )

    def load(self, text: str) -> SummaryState:
        raw = orjson.loads(text)
        return SummaryState(
            minute_buckets=raw["minute_buckets"],
            total=raw["total"],
            by_type={EventType(k): n for k, n in raw["by_type"].items()},
            by_source=raw["by_source"],
            tasks_by_status={TaskStatus(k): n for k, n in raw["tasks_by_status"].items()},
            online=set(raw["online"]),
            task_status=Tiered(TaskStatus,
                               ((t, TaskStatus(s)) for t, s in raw["task_status"].items())),
            minutes=dict(raw["minutes"]),
            newest_minute=raw["newest_minute"],
            dropped_through=raw["dropped_through"],
        )


def _is_closed(status: TaskStatus) -> bool:
    return status in TERMINAL_STATUSES


def _on_task_event(state: SummaryState, event: Any) -> None:
    task_id = event.task_id
    if task_id is None:
        return
    before = state.task_status.recall(task_id)
    after, applied = advance_task(before, event)
    if before is None:  # first sight: created, or taken as created (as the task model does)
        state.task_status[task_id] = after
        state.tasks_by_status[after] += 1
    elif applied and after is not before:
        _move(state, task_id, before, after)


def _move(state: SummaryState, task_id: str, before: TaskStatus, after: TaskStatus) -> None:
    state.task_status[task_id] = after
    state.tasks_by_status[before] -= 1
    state.tasks_by_status[after] += 1


def _first_sight(state: SummaryState, event: Any) -> None:
    """For a bid or an auction close: the table never moves a known task on those, so only the
    first sight of a task counts."""
    if event.task_id not in state.task_status:  # not in memory: perhaps in the store
        _on_task_event(state, event)


def _fast_path(kind: EventType) -> Callable[[SummaryState, Any], None]:
    """The common case (a known task, a move the table allows) inline; else the plain path."""
    moves = moves_on(kind)
    if all(after is before for before, after in moves.items()):
        return _first_sight
    checked = kind is _T.BID_SUBMITTED or kind is _T.TASK_ASSIGNED

    def handle(state: SummaryState, event: Any) -> None:
        before = state.task_status.get(event.task_id)
        if before is None:
            _on_task_event(state, event)
            return
        after = moves.get(before)
        if after is not None and after is not before and not (checked and missing_field(event)):
            _move(state, event.task_id, before, after)

    return handle


def _joined(state: SummaryState, event: Any) -> None:
    if event.agent_id is not None:
        state.online.add(event.agent_id)


def _left(state: SummaryState, event: Any) -> None:
    state.online.discard(event.agent_id)


_Handler = Callable[[SummaryState, Any], None]
_AGENTS: dict[EventType, _Handler] = {_T.AGENT_JOINED: _joined, _T.AGENT_LEFT: _left}
_PLAIN_HANDLERS: dict[EventType, _Handler] = {
    **dict.fromkeys(TASK_EVENT_TYPES, _on_task_event),
    **_AGENTS,
}
_HANDLERS: dict[EventType, _Handler] = {
    **{kind: _fast_path(kind) for kind in TASK_EVENT_TYPES},
    **_AGENTS,
}


def minute_of(moment: datetime) -> int:
    """The minute (since the Unix epoch, UTC) a timezone-aware moment falls in."""
    return (moment - _EPOCH) // _MINUTE


def _bucket_of(state: SummaryState, stamp: datetime) -> list[int] | None:
    """The bucket of `stamp`'s minute (made if needed), or None if that minute is out of range."""
    minute = minute_of(stamp)
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
        bucket = state.minutes[minute] = [0] * len(_TYPES)
    state._lo = _EPOCH + minute * _MINUTE
    state._hi = state._lo + _MINUTE
    state._bucket = bucket
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
    """Events per type value whose minute is at or after the minute of `now - minutes`.

    Equals `store.count_by_type(since=<that minute's start>)` on an unpruned log (the buckets
    outlive pruning): exact at minute granularity, the window widened back to a whole minute.
    Raises ProjectionError if some events of the window were dropped from the buckets (a window
    reaching further back than `minute_buckets` minutes before the newest event): ask the log.
    """
    if now.tzinfo is None:
        raise ValueError(f"now={now.isoformat()} is naive; give a timezone")
    start = minute_of(now - timedelta(minutes=minutes))
    if state.dropped_through is not None and start <= state.dropped_through:
        since = _EPOCH + (state.dropped_through + 1) * _MINUTE
        raise ProjectionError(
            f"the summary has per-minute counts only from {since.isoformat()} (it keeps the "
            f"newest {state.minute_buckets} minutes of the log); {minutes} minutes before "
            f"{now.isoformat()} is earlier: count from the log (store.count_by_type) instead"
        )
    found: dict[str, int] = {}
    for minute, bucket in state.minutes.items():
        if minute >= start:
            for kind, n in zip(_TYPES, bucket, strict=True):
                if n:
                    found[kind.value] = found.get(kind.value, 0) + n
    return found


def counts(state: SummaryState) -> dict[str, Any]:
    """The summary as plain data (what a dashboard or `--json` shows)."""
    return {
        "total": state.total,
        "by_type": {k.value: n for k, n in state.by_type.items()},
        "by_source": dict(state.by_source),
        "tasks_by_status": {k.value: n for k, n in state.tasks_by_status.items()},
        "agents_online": state.agents_online,
        "task_failures": state.task_failures,
        "tool_failures": state.tool_failures,
        "errors": state.errors,
        "warnings": state.warnings,
    }
