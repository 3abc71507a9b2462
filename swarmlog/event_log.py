"""The drop-in replacement for the seed's `swarm.event_log` module (ADR 017).

Code written against the seed keeps working unchanged::

    from swarmlog.event_log import log_event, EventType, get_task_events, get_event_summary
    log_event(EventType.TASK_ASSIGNED, "coordinator", task_id="t1", agent_id="a1",
              data={"bid_sats": 120})
    get_task_events("t1")           # newest first
    get_event_summary(minutes=60)   # {"task.assigned": 1}

A host whose own `swarm` package holds the seed's module adopts this one with a two-line
`swarm/event_log.py`, so that `swarm.event_log` *is* this module (and patching
`swarm.event_log.DB_PATH` or `swarm.event_log.log_event` reaches it)::

    import sys, swarmlog.event_log
    sys.modules[__name__] = swarmlog.event_log

Every call goes to one `EventLog` on `DB_PATH`, read at call time (patch it to redirect every
function); by default `$SWARMLOG_DB`, else `data/swarm.db`, the seed's file, beside the host's
own tables. Like the seed's module, `log_event` refuses nothing it could store: an event that
does not fit its type's schema is stored as given and flagged (`EventLogEntry.conforms`), and
every listing returns every stored row. `EventLog(path_or_url)` is the non-global, typed way.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from reprlib import repr as shown
from typing import Any

from domain.codec import StoredEvent, decode
from domain.errors import InvalidArgument, SwarmlogError
from domain.events import Event, EventType
from domain.ids import new_event_id, utc_now
from domain.lenient import encode_as_given, nonconformity
from store import EventFilter, is_url
from swarmlog.log import EventLog, default_location
from swarmlog.timeparse import MAX_WINDOW_MINUTES

__all__ = [
    "DB_PATH",
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
    "subscribe",
]

log = logging.getLogger("swarmlog")


def _default_path() -> Path | str:
    location = default_location()
    return location if is_url(location) else Path(location)


#: The database every function uses, read at each call: patch it to redirect them all. A path
#: (SQLite), or a `postgresql://` URL. Unpatched, it follows `$SWARMLOG_DB` as it is at the call.
DB_PATH: Path | str = _default_path()
_UNPATCHED = DB_PATH


@dataclass(eq=True)
class EventLogEntry:
    """A logged event, as the seed's module returned it (`id`, `event_type`, `source`, `task_id`,
    `agent_id`, `data` as the JSON text it was given or None, `timestamp` as ISO-8601 text), plus
    its `position` in the log and whether it `conforms` to its type's schema (None: written by
    another client, unchecked). `event` is the typed event; `problem` says why it is not one."""

    id: str = field(default_factory=new_event_id)
    event_type: EventType | str = EventType.SYSTEM_INFO  # (text for a type swarmlog does not know)
    source: str = ""
    task_id: str | None = None
    agent_id: str | None = None
    data: str | None = None
    timestamp: str = field(default_factory=lambda: utc_now().isoformat())
    position: int = 0
    conforms: bool | None = None

    @classmethod
    def of(cls, row: StoredEvent) -> EventLogEntry:
        """The entry of a stored row, as it is stored (nothing is validated here)."""
        kind = EventType._value2member_map_.get(row.event_type, row.event_type)
        conforms = None if row.conforms is None else bool(row.conforms)
        return cls(row.id, kind, row.source, row.task_id, row.agent_id, row.data,  # type: ignore[arg-type]
                   row.timestamp, row.position, conforms)

    def _row(self) -> StoredEvent:
        task, agent = self.task_id, self.agent_id
        stream = f"task-{task}" if task is not None else f"agent-{agent}" if agent else "system"
        kind = self.event_type.value if isinstance(self.event_type, EventType) else self.event_type
        return StoredEvent(self.position, self.id, kind, self.source, task, agent, self.data,
                           self.timestamp, stream, 0, 1, self.conforms, None)

    @property
    def event(self) -> Event:
        """The typed event (CorruptEvent naming its position if the entry does not conform)."""
        return decode(self._row())

    @property
    def problem(self) -> str | None:
        """Why the entry is not a typed event of its type (None: it is one)."""
        return nonconformity(self._row())


# -- the log and its subscribers ----------------------------------------------------------------

_lock = threading.RLock()
_open: tuple[str, EventLog] | None = None  # (the location asked for, the log opened there)
_subscribers: list[Callable[[EventLogEntry], None]] = []


def _location() -> str:
    return default_location() if DB_PATH is _UNPATCHED else str(DB_PATH)


def _log() -> EventLog:
    """The module's log, (re)opened when `DB_PATH` (or `$SWARMLOG_DB`) names another one."""
    global _open
    with _lock:
        location = _location()
        if _open is None or _open[0] != location:
            if _open is not None:
                _open[1].close()
            _open = (location, EventLog(location))
        return _open[1]


def subscribe(callback: Callable[[EventLogEntry], None]) -> Callable[[], None]:
    """Call `callback(entry)` for every event `log_event` stores, after it is committed, in
    the order stored (in this process). A callback that raises is logged and changes nothing.
    Returns the function that unsubscribes it."""
    if not callable(callback):
        raise InvalidArgument("callback", f"must be callable, got {type(callback).__name__}")
    with _lock:
        _subscribers.append(callback)

    def unsubscribe() -> None:
        with _lock, contextlib.suppress(ValueError):
            _subscribers.remove(callback)

    return unsubscribe


_BROADCASTER = "infrastructure.events.broadcaster"
_no_broadcaster = False  # the host has none (looked for once)


def _seed_broadcaster(entry: EventLogEntry) -> None:
    """What the seed's module did after each entry: hand it to the host's WebSocket broadcaster
    (`infrastructure.events.broadcaster.event_broadcaster`), if the host has one."""
    global _no_broadcaster
    module = sys.modules.get(_BROADCASTER)
    if module is None:
        if _no_broadcaster:
            return
        try:
            module = importlib.import_module(_BROADCASTER)
        except ImportError:
            _no_broadcaster = True
            return
    broadcaster = getattr(module, "event_broadcaster", None)
    if broadcaster is not None:
        broadcaster.broadcast_sync(entry)


_subscribers.append(_seed_broadcaster)


def _announce(entry: EventLogEntry) -> None:
    for callback in list(_subscribers):
        try:
            callback(entry)
        except Exception:  # the append stands: a subscriber never loses or fails it
            log.exception("a subscriber of swarmlog.event_log failed on event %s", entry.id)


# -- the seed's functions -----------------------------------------------------------------------


def log_event(event_type: EventType | str, source: str, task_id: str | None = None,
              agent_id: str | None = None, data: dict[str, Any] | None = None) -> EventLogEntry:
    """Store one event and return it. What the seed's module stored is stored, exactly: an event
    that does not fit its type's schema is flagged (`conforms` False), not refused. Data that is
    not JSON raises InvalidArgument, a TypeError and a ValueError as well (the seed's module
    raised one of those, from `json.dumps`); an unknown event type or a missing source raises
    InvalidEvent. An event it stored is never reported as failed: when the answer to the commit
    is lost it asks again with the same id (see `EventLog.record`); only if the log stays out of
    reach does it raise CommitInDoubt, whose `event_ids` say what to look for (`get_event`) once
    it is back."""
    for name, value in (("source", source), ("task_id", task_id), ("agent_id", agent_id)):
        if isinstance(value, str):
            _utf8(name, value)
    try:
        row = encode_as_given(event_type, source, task_id, agent_id, data)
    except SwarmlogError:
        raise
    except (TypeError, ValueError, RecursionError) as e:  # json.dumps: not JSON, or too deep
        raise InvalidArgument("data", f"is not JSON: {e}") from e
    with _lock:
        (stored,) = _log().record([row])
    entry = EventLogEntry.of(stored)
    _announce(entry)
    return entry


def get_event(event_id: str) -> EventLogEntry | None:
    """The event with this id, or None."""
    if not isinstance(event_id, str):
        raise InvalidArgument("event_id", f"must be text, got {type(event_id).__name__}")
    found = _log().get(_utf8("event_id", event_id))
    return None if found is None else EventLogEntry.of(found)


def _utf8(name: str, value: str) -> str:
    """`value`, if it is text the database can hold (no lone surrogate)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidArgument(name, f"{shown(value)} is not UTF-8 text (a lone surrogate)") from None
    return value


def _text(name: str, value: object) -> str | None:
    """A filter as the seed read it: "" (or None) is no filter."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(name, f"must be text, got {type(value).__name__}")
    return _utf8(name, value)


def _count(name: str, value: object, *, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value < 2**63:
        raise InvalidArgument(name, f"must be a whole number from {least} to 2**63-1, got {shown(value)}")
    return value


def list_events(event_type: EventType | str | None = None, task_id: str | None = None,
                agent_id: str | None = None, source: str | None = None, limit: int = 100,
                offset: int = 0) -> list[EventLogEntry]:
    """Events matching every given filter ("" or None: any), newest first, `limit` of them
    after the first `offset`."""
    kind = _text("event_type", event_type.value if isinstance(event_type, EventType)
                 else event_type)
    where = EventFilter(types=None if kind is None else frozenset({kind}),
                        task_id=_text("task_id", task_id), agent_id=_text("agent_id", agent_id),
                        source=_text("source", source))
    found = _log().store.query(where, newest_first=True, limit=_count("limit", limit, least=0),
                               offset=_count("offset", offset, least=0))
    return [EventLogEntry.of(r) for r in found]


def _named(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(name, f"must be a non-empty id, got {shown(value)}")
    return _utf8(name, value)


def get_task_events(task_id: str) -> list[EventLogEntry]:
    """Every stored event of a task, newest first (pruned events are gone from here)."""
    return _listed(EventFilter(task_id=_named("task_id", task_id)))


def get_agent_events(agent_id: str) -> list[EventLogEntry]:
    """Every stored event that names an agent, newest first."""
    return _listed(EventFilter(agent_id=_named("agent_id", agent_id)))


def _window(minutes: object) -> timedelta:
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) \
            or not 0 < minutes < MAX_WINDOW_MINUTES:
        raise InvalidArgument("minutes", f"must be a number of minutes above 0 and below "
                                         f"{MAX_WINDOW_MINUTES:,}, got {shown(minutes)}")
    return timedelta(minutes=minutes)


def get_recent_events(minutes: int = 60) -> list[EventLogEntry]:
    """Events of the last `minutes` minutes (stamped between then and now), newest first."""
    now = utc_now()
    return _listed(EventFilter(since=now - _window(minutes), until=now))


def get_event_summary(minutes: int = 60) -> dict[str, int]:
    """Event counts of the last `minutes` minutes by event-type value, largest first."""
    now = utc_now()
    counts = _log().store.count_by_type(now - _window(minutes), now)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _listed(where: EventFilter) -> list[EventLogEntry]:
    return [EventLogEntry.of(r) for r in _log().store.query(where, newest_first=True)]


def prune_events(older_than_days: int = 30) -> int:
    """Remove events older than `older_than_days` days (after snapshotting the read models);
    returns how many were removed."""
    days = older_than_days
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days < 10**6:
        raise InvalidArgument("older_than_days", f"must be a number of days >= 0, got {shown(days)}")
    try:
        cutoff = utc_now() - timedelta(days=days)
    except OverflowError:
        raise InvalidArgument("older_than_days", f"{shown(days)} days ago is before year 1") from None
    return _log().prune(before=cutoff).removed
