"""The web view's reads of the log: one page of events by position, and the recent failures.

Every listing is a keyset page (positions below `before`, or above `after`), and each picks the
cheapest exact way through the store's `query`:

- several types, nothing more selective: one walk of the type index per type, merged (a walk of
  the whole log would read every row of the other types);
- a time range the log holds few events in (estimated from the summary's per-minute counts):
  the timestamp index over that range (the store's range path, given both ends);
- a wide time range: a walk from the newest end that checks the times row by row, and stops
  at the page's last match (the range's newest events are where the walk starts).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice

from domain.codec import StoredEvent, timestamp_text
from projections.summary import SummaryState, minute_of
from store import EventFilter, Store

#: A time range holding at most this many events (estimated) is read through the timestamp index.
NARROW = 50_000
#: The upper end given to a range that has none, so that the store takes its range path.
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of events, newest first, and where the pages beside it start."""

    rows: list[StoredEvent]
    older: int | None  # `before=` of the next older page (None: this is the oldest)
    newer: int | None  # `after=` of the next newer page (None: this is the newest)


def matches(row: StoredEvent, where: EventFilter) -> bool:
    """Whether a stored row passes a filter (as the store's query would have it)."""
    if where.types is not None and row.event_type not in where.types:
        return False
    if where.task_id is not None and row.task_id != where.task_id:
        return False
    if where.agent_id is not None and row.agent_id != where.agent_id:
        return False
    if where.source is not None and row.source != where.source:
        return False
    if where.since is not None and row.timestamp < timestamp_text(where.since):
        return False
    return where.until is None or row.timestamp < timestamp_text(where.until)


def rate_per_minute(summary: SummaryState) -> float:
    """The log's recent rate, events a minute, from the summary's per-minute counts (0: none)."""
    if not summary.minutes or summary.newest_minute is None:
        return 0.0
    span = summary.newest_minute - min(summary.minutes) + 1
    return sum(sum(bucket) for bucket in summary.minutes.values()) / span


def _estimated(where: EventFilter, rate: float, now: datetime) -> float:
    """Events the time range of `where` holds at `rate` a minute."""
    start = where.since or datetime(1970, 1, 1, tzinfo=UTC)
    end = min(where.until or now, now)
    return max((end - start) / timedelta(minutes=1), 1.0) * rate


def _walk(store: Store, where: EventFilter, after: int, before: int | None,
          newest_first: bool, want: int) -> Iterator[StoredEvent]:
    """The matches in position order, walking the most selective index without the time range
    in the SQL (the rows are checked here), so that the walk stops when the caller has `want`."""
    loose = replace(where, since=None, until=None)
    timed = where.since is not None or where.until is not None
    walks = [store.query(replace(loose, types=t), after=after, before=before,
                         newest_first=newest_first, limit=None if timed else want)
             for t in _split_types(where)]
    merged: Iterable[StoredEvent] = walks[0] if len(walks) == 1 else heapq.merge(
        *walks, key=lambda r: r.position, reverse=newest_first)
    return (r for r in merged if not timed or matches(r, where))


def _split_types(where: EventFilter) -> list[frozenset[str] | None]:
    """One walk per type when several are wanted and no task or agent narrows the walk."""
    if where.types is None or len(where.types) < 2 or where.task_id or where.agent_id:
        return [where.types]
    return [frozenset({t}) for t in sorted(where.types)]


def events(store: Store, where: EventFilter, *, limit: int, before: int | None = None,
           after: int | None = None, rate: Callable[[], float] = lambda: 0.0,
           now: datetime | None = None) -> Page:
    """The page of `limit` events matching `where`: the newest below `before` (or the newest of
    all), or, given `after`, the oldest above it; newest first either way. `rate()` is the log's
    events a minute (asked only when a time range is given)."""
    newest_first = after is None
    timed = where.since is not None or where.until is not None
    indexed = where.task_id is not None or where.agent_id is not None
    if timed and not indexed and _estimated(where, rate(), now or datetime.now(UTC)) <= NARROW:
        # A narrow range: the timestamp index, both ends given (the store's range path).
        ranged = where if where.until is not None else replace(where, until=_FAR_FUTURE)
        found = list(store.query(ranged, after=after or 0, before=before, limit=limit + 1,
                                 newest_first=newest_first))
    else:
        found = list(islice(_walk(store, where, after or 0, before, newest_first, limit + 1),
                            limit + 1))
    more = len(found) > limit
    rows = found[:limit]
    if not rows:
        return Page(rows, None, None)
    if newest_first:
        return Page(rows, rows[-1].position if more else None,
                    None if before is None else rows[0].position)
    rows.reverse()
    return Page(rows, rows[-1].position, rows[0].position if more else None)


def recent(store: Store, where: EventFilter, since: datetime, limit: int,
           rate: Callable[[], float]) -> list[StoredEvent]:
    """The newest `limit` events matching `where` at or after `since`, newest first."""
    return events(store, replace(where, since=since), limit=limit, rate=rate).rows


def minute_counts(summary: SummaryState, minutes: int, now: datetime
                  ) -> tuple[int, list[tuple[int, list[int]]]]:
    """The per-minute counts (by type, in `projections.summary.TYPES` order) of the `minutes`
    minutes up to `now`, oldest first, as (minute, counts); when the log was quiet all that time,
    of its last `minutes` minutes before `now` instead (never of minutes after it: an event
    stamped ahead of the clock is not recent yet). Returns (the last minute, the minutes)."""
    end = minute_of(now)
    if not any(m > end - minutes for m in summary.minutes if m <= end):
        end = max((m for m in summary.minutes if m <= end), default=end)
    end = max(end, minutes - 1)  # (from the epoch on: a minute near year 1 has no time before it)
    empty = [0] * len(next(iter(summary.minutes.values()), []))
    return end, [(m, list(summary.minutes.get(m, empty))) for m in range(end - minutes + 1, end + 1)]
