"""`EventLog`: one object that opens a store by path or URL and offers the typed API."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from domain.codec import build_event
from domain.errors import InvalidEvent, StoreError
from domain.events import Event, EventType
from domain.ids import utc_now
from store.base import EventStore, Recorded
from store.sqlite import SQLiteEventStore

#: Where the log lives when nobody says: `$SWARMLOG_DB`, else this file in the working directory.
DEFAULT_DB = "swarmlog.db"


def default_location() -> str:
    """The database the facade and the CLI use when none is given."""
    return os.environ.get("SWARMLOG_DB") or DEFAULT_DB


def open_store(location: str | os.PathLike[str], *, create: bool = True) -> EventStore:
    """A store for a file path (SQLite) or a `postgresql://` URL."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        try:
            from store.postgres import PostgresEventStore  # type: ignore[import-not-found]
        except ImportError as e:
            raise StoreError(f"cannot open {text}: the PostgreSQL backend is not available ({e})") from e
        return PostgresEventStore(text)  # type: ignore[no-any-return]
    return SQLiteEventStore(text, create=create)


class PruneReport(NamedTuple):
    """What a prune removed: how many events, which positions, and the cutoff used."""

    removed: int
    first_position: int | None
    last_position: int | None
    cutoff: datetime


class EventLog:
    """An open swarmlog: append typed events, query them, read the projections."""

    def __init__(self, location: str | os.PathLike[str] | EventStore | None = None, *,
                 create: bool = True) -> None:
        if location is None:
            location = default_location()
        if isinstance(location, str | os.PathLike):
            self.store: EventStore = open_store(location, create=create)
        else:
            self.store = location
        self.location = self.store.location

    # -- writing --------------------------------------------------------------------------

    def append(self, events: Event | Sequence[Event], expected_version: int | None = None) -> list[int]:
        """Append one event or a batch atomically; returns positions."""
        batch = [events] if isinstance(events, Event) else list(events)
        return self.store.append(batch, expected_version)

    def log(self, event_type: EventType | str, source: str, task_id: str | None = None,
            agent_id: str | None = None, data: Mapping[str, Any] | None = None, *,
            timestamp: datetime | None = None) -> Recorded:
        """Validate loose arguments into a typed event, append it, and return it as stored."""
        event = build_event(event_type, source, task_id, agent_id, data, timestamp=timestamp)
        self.store.append([event])
        stored = self.store.get(event.id)
        assert stored is not None  # just appended, in this process: it cannot be missing
        return stored

    # -- reading --------------------------------------------------------------------------

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[Recorded]:
        """Every stored event after a position, oldest first, streamed."""
        return self.store.read(after, limit)

    def get(self, event_id: str) -> Recorded | None:
        return self.store.get(event_id)

    def query(self, **filters: Any) -> list[Recorded]:
        """See `EventStore.query`: filters by type, task, agent, source, time; newest first."""
        return self.store.query(**filters)

    def events_of_task(self, task_id: str) -> Iterable[Recorded]:
        return self.store.read_task(task_id)

    # -- retention ------------------------------------------------------------------------

    def prune(self, older_than: timedelta | None = None, before: datetime | None = None) -> PruneReport:
        """Delete the longest prefix of the log older than the cutoff, in one transaction."""
        if (older_than is None) == (before is None):
            raise InvalidEvent("prune", "give exactly one of older_than= or before=")
        cutoff = before if before is not None else utc_now() - older_than  # type: ignore[operator]
        with self.store.transaction():
            end = self.store.prefix_end(cutoff)
            first = self.store.head() - self.store.count() + 1
            if end < first:
                return PruneReport(0, None, None, cutoff)
            removed = self.store.delete_through(end)
            self.store.record_prune(first, end, removed, cutoff.isoformat(), None, None)
            return PruneReport(removed, first, end, cutoff)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
