"""The drop-in replacement for the seed's `swarm.event_log` module (ADR 017).

Code written against the seed keeps working unchanged::

    from swarm.event_log import log_event, EventType, get_task_events, get_event_summary
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

from domain.codec import decode, encode, timestamp_text, vouched_for
from domain.events import Event, EventType
from domain.ids import utc_now
from store.base import Recorded, StoredRow
from swarm.log import EventLog, default_location

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
    and the typed `event`.

    A listing reads rows as stored: a row its checksum vouches for (as swarmlog encoded it from
    a validated event) gives its text attributes as they are and becomes a typed event only when
    `event` is asked for; any other row is validated when listed (a corrupt one raises there)."""

    __slots__ = ("_event", "_row", "position")

    def __init__(self, position: int, event: Event | None = None,
                 row: StoredRow | None = None) -> None:
        self.position = position
        self._event = event
        self._row = row

    @classmethod
    def of(cls, recorded: Recorded) -> EventLogEntry:
        return cls(recorded.position, recorded.event)

    @classmethod
    def of_row(cls, row: StoredRow) -> EventLogEntry:
        position, id_, kind, source, task, agent, data, ts, _, _, schema, crc = row
        if vouched_for(id_, kind, source, task, agent, data, ts, schema, crc):
            return cls(position, row=row)
        return cls(position, decode(position, id_, kind, source, task, agent, data, ts, schema))

    @property
    def event(self) -> Event:
        if self._event is None:
            position, id_, kind, source, task, agent, data, ts, _, _, schema, _ = self._row  # type: ignore[misc]
            self._event = decode(position, id_, kind, source, task, agent, data, ts, schema)
        return self._event

    @property
    def id(self) -> str:
        return self._row[1] if self._row else self.event.id

    @property
    def event_type(self) -> EventType:
        if self._row:
            return _TYPE_OF[self._row[2]]
        return self.event.event_type  # type: ignore[attr-defined, no-any-return]

    @property
    def source(self) -> str:
        return self._row[3] if self._row else self.event.source

    @property
    def task_id(self) -> str | None:
        return self._row[4] if self._row else self.event.task_id

    @property
    def agent_id(self) -> str | None:
        return self._row[5] if self._row else self.event.agent_id

    @property
    def data(self) -> str | None:
        """The payload as stored: compact JSON text, None when there was none."""
        return self._row[6] if self._row else encode(self.event)[5]

    @property
    def timestamp(self) -> str:
        """ISO-8601 in UTC, with microseconds (the stored form)."""
        return self._row[7] if self._row else timestamp_text(self.event.timestamp)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventLogEntry):
            return NotImplemented
        return (self.position, self.event) == (other.position, other.event)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventLogEntry(position={self.position}, event={self.event!r})"


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
    return EventLogEntry.of(_log().log(event_type, source, task_id, agent_id, data))


def get_event(event_id: str) -> EventLogEntry | None:
    """The event with this id, or None."""
    found = _log().get(event_id)
    return None if found is None else EventLogEntry.of(found)


def list_events(event_type: EventType | str | None = None, task_id: str | None = None,
                agent_id: str | None = None, source: str | None = None, limit: int = 100,
                offset: int = 0) -> list[EventLogEntry]:
    """Events matching every given filter, newest first, `limit` at a time from `offset`."""
    kind = None if event_type is None else EventType(event_type)
    found = _log().store.query_rows(event_type=kind, task_id=task_id, agent_id=agent_id,
                                    source=source, limit=limit, offset=offset)
    return [EventLogEntry.of_row(r) for r in found]


def get_task_events(task_id: str) -> list[EventLogEntry]:
    """Every stored event of a task, newest first (pruned events are gone from here)."""
    return [EventLogEntry.of_row(r) for r in _log().store.query_rows(task_id=task_id)]


def get_agent_events(agent_id: str) -> list[EventLogEntry]:
    """Every stored event that names an agent, newest first."""
    return [EventLogEntry.of_row(r) for r in _log().store.query_rows(agent_id=agent_id)]


def get_recent_events(minutes: int = 60) -> list[EventLogEntry]:
    """Events of the last `minutes` minutes, newest first."""
    since = utc_now() - timedelta(minutes=minutes)
    return [EventLogEntry.of_row(r) for r in _log().store.query_rows(since=since)]


def get_event_summary(minutes: int = 60) -> dict[str, int]:
    """Event counts of the last `minutes` minutes by event-type value, largest first."""
    counts = _log().store.count_by_type(utc_now() - timedelta(minutes=minutes))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def prune_events(older_than_days: int = 30) -> int:
    """Remove events older than `older_than_days` days (after snapshotting the read models);
    returns how many were removed."""
    return _log().prune(older_than=timedelta(days=older_than_days)).removed
