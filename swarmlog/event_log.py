"""The drop-in replacement for the seed's `swarmlog.event_log` module (ADR 017).

Code written against the seed keeps working unchanged::

    from swarmlog.event_log import log_event, EventType, get_task_events, get_event_summary
    log_event(EventType.TASK_ASSIGNED, "coordinator", task_id="t1", agent_id="a1",
              data={"bid_sats": 120})
    get_task_events("t1")           # newest first
    get_event_summary(minutes=60)   # {"task.assigned": 1}

Every call validates through the typed event classes and goes to one `EventLog` on the database
named by `$SWARMLOG_DB` (default `./swarmlog.db`). `EventLog(path_or_url)` is the non-global way.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from domain.codec import StoredEvent, decode, row_checksum
from domain.events import Event, EventType
from domain.ids import utc_now
from store import EventFilter
from swarmlog.log import EventLog, default_location

__all__ = [
    "EventLog",
    "EventLogEntry",
    "EventType",
    "get_agent_events",
    "get_event",
    "get_event_summary",
    "get_recent_events",
    "get_task_events",
    "list_events",
    "log_event",
    "prune_events",
]


class EventLogEntry:
    """One logged event with the seed's attributes (`id`, `event_type`, `source`, `task_id`,
    `agent_id`, `data` as JSON text or None, `timestamp` as ISO-8601 text), plus its `position`
    and the typed `event` (made when asked for)."""

    __slots__ = ("row",)

    def __init__(self, row: StoredEvent) -> None:
        self.row = row

    @property
    def position(self) -> int:
        return self.row.position

    @property
    def event(self) -> Event:
        return self.row.event

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def event_type(self) -> EventType:
        return _TYPE_OF[self.row.event_type]

    @property
    def source(self) -> str:
        return self.row.source

    @property
    def task_id(self) -> str | None:
        return self.row.task_id

    @property
    def agent_id(self) -> str | None:
        return self.row.agent_id

    @property
    def data(self) -> str | None:
        """The payload as stored: JSON text, None when there was none."""
        return self.row.data

    @property
    def timestamp(self) -> str:
        """ISO-8601 in UTC, with microseconds (the stored form)."""
        return self.row.timestamp

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventLogEntry):
            return NotImplemented
        return self.row == other.row

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventLogEntry({self.row!r})"


_TYPE_OF = {t.value: t for t in EventType}
_lock = threading.Lock()
_open: tuple[str, EventLog] | None = None  # (the location asked for, the log opened there)


def _log() -> EventLog:
    """The module's log, (re)opened when `$SWARMLOG_DB` names another database."""
    global _open
    with _lock:
        location = default_location()
        if _open is None or _open[0] != location:
            if _open is not None:
                _open[1].close()
            _open = (location, EventLog(location))
        return _open[1]


def log_event(event_type: EventType | str, source: str, task_id: str | None = None,
              agent_id: str | None = None, data: dict[str, Any] | None = None) -> EventLogEntry:
    """Validate and append one event; raises `InvalidEvent` (and stores nothing) on bad input."""
    return EventLogEntry(_log().log(event_type, source, task_id, agent_id, data))


def get_event(event_id: str) -> EventLogEntry | None:
    """The event with this id, or None."""
    found = _log().get(event_id)
    return None if found is None else _entry(found)


def list_events(event_type: EventType | str | None = None, task_id: str | None = None,
                agent_id: str | None = None, source: str | None = None, limit: int = 100,
                offset: int = 0) -> list[EventLogEntry]:
    """Events matching every given filter, newest first, `limit` at a time from `offset`."""
    kinds = None if event_type is None else frozenset({EventType(event_type).value})
    where = EventFilter(types=kinds, task_id=task_id, agent_id=agent_id, source=source)
    found = _log().store.query(where, newest_first=True, limit=limit + offset)
    return [_entry(r) for r in list(found)[offset:]]


def get_task_events(task_id: str) -> list[EventLogEntry]:
    """Every stored event of a task, newest first (pruned events are gone from here)."""
    return _listed(EventFilter(task_id=task_id))


def get_agent_events(agent_id: str) -> list[EventLogEntry]:
    """Every stored event that names an agent, newest first."""
    return _listed(EventFilter(agent_id=agent_id))


def get_recent_events(minutes: int = 60) -> list[EventLogEntry]:
    """Events of the last `minutes` minutes, newest first."""
    return _listed(EventFilter(since=utc_now() - timedelta(minutes=minutes)))


def get_event_summary(minutes: int = 60) -> dict[str, int]:
    """Event counts of the last `minutes` minutes by event-type value, largest first."""
    counts = _log().store.count_by_type(utc_now() - timedelta(minutes=minutes))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _listed(where: EventFilter) -> list[EventLogEntry]:
    return [_entry(r) for r in _log().store.query(where, newest_first=True)]


def _entry(row: StoredEvent) -> EventLogEntry:
    """A row read back: as stored if its checksum vouches for it (decoded when `event` is asked
    for); any other row (changed since, or written by another client) is validated now, so a
    corrupt one raises CorruptEvent here rather than hand its text to the caller."""
    if row.checksum is None or row.checksum != row_checksum(row):
        decode(row)
    return EventLogEntry(row)


def prune_events(older_than_days: int = 30) -> int:
    """Remove events older than `older_than_days` days (after snapshotting the read models);
    returns how many were removed."""
    return _log().prune(older_than=timedelta(days=older_than_days)).removed
