"""Events as JSON lines: the export format, and an import that validates every line first.

A line is the stored envelope and payload of one event::

    {"id": "...", "event_type": "bid.submitted", "source": "coordinator", "task_id": "t1",
     "agent_id": "a1", "timestamp": "2025-01-01T10:00:00.000000+00:00", "schema_version": 1,
     "data": {"bid_sats": 120}}

Positions and stream versions are not exported: the importing log assigns its own. Ids are kept,
so importing a file twice stores its events once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import IO, Any, NamedTuple

import orjson

from domain.codec import CURRENT_VERSION, build_event, encode, upcast
from domain.errors import InvalidEvent
from domain.events import Event, EventType
from store.base import EventStore, Recorded

_REQUIRED = ("id", "event_type", "source", "timestamp")
_OPTIONAL = ("task_id", "agent_id", "schema_version", "data")
_IGNORED = ("position", "stream_id", "stream_version")  # harmless extras of other tools' exports
_BATCH = 2000


def export_line(recorded: Recorded) -> bytes:
    """One event as a line of the export format."""
    row = encode(recorded.event)
    event: Any = recorded.event
    return orjson.dumps({
        "id": row[0], "event_type": row[1], "source": row[2], "task_id": row[3],
        "agent_id": row[4], "timestamp": row[6], "schema_version": event.schema_version,
        "data": orjson.Fragment(row[5] or "{}"),
    }) + b"\n"


def export_events(records: Iterable[Recorded], out: IO[bytes]) -> int:
    """Write `records` to `out` as JSON lines; returns how many."""
    buffer: list[bytes] = []
    count = 0
    for recorded in records:
        buffer.append(export_line(recorded))
        if len(buffer) >= 1000:
            out.write(b"".join(buffer))
            count += len(buffer)
            buffer.clear()
    out.write(b"".join(buffer))
    out.flush()
    return count + len(buffer)


def parse_line(text: str | bytes, where: str) -> Event:
    """The event on one line, or InvalidEvent naming `where` (e.g. "events.jsonl line 7")."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise InvalidEvent(where, f"not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise InvalidEvent(where, f"is a JSON {type(raw).__name__}, not an object")
    missing = [k for k in _REQUIRED if raw.get(k) is None]
    if missing:
        raise InvalidEvent(where, f"missing {', '.join(missing)}")
    unknown = sorted(set(raw) - {*_REQUIRED, *_OPTIONAL, *_IGNORED})
    if unknown:
        raise InvalidEvent(where, f"unknown keys {', '.join(unknown)}; an event line has "
                                  f"{', '.join((*_REQUIRED, *_OPTIONAL))}")
    try:
        stamp = raw["timestamp"]
        if not isinstance(stamp, str):
            raise InvalidEvent("timestamp", f"must be ISO-8601 text, got {stamp!r}")
        try:
            moment = datetime.fromisoformat(stamp)
        except ValueError:
            raise InvalidEvent("timestamp", f"{stamp!r} is not ISO-8601") from None
        data = raw.get("data")
        version = raw.get("schema_version")
        kind = EventType._value2member_map_.get(raw["event_type"])
        if isinstance(kind, EventType) and isinstance(data, dict) and version is not None \
                and version != CURRENT_VERSION[kind]:
            try:
                data = upcast(kind, version, data)
            except ValueError as e:
                raise InvalidEvent("schema_version", str(e)) from None
        return build_event(raw["event_type"], raw["source"], raw.get("task_id"), raw.get("agent_id"),
                           data, timestamp=moment, id=raw["id"])
    except InvalidEvent as e:
        raise InvalidEvent(where, str(e).removeprefix("invalid event: ")) from None


class ImportReport(NamedTuple):
    """How many events a file held, how many were added, and how many were stored already."""

    events: int
    added: int
    present: int


class JsonLines:
    """A JSON-lines file of events ("-": standard input, read once and kept)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = "<stdin>" if path == "-" else path
        self._cached = sys.stdin.buffer.readlines() if path == "-" else None

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        if self._cached is not None:
            yield from enumerate(self._cached, start=1)
            return
        with open(self.path, "rb") as handle:
            yield from enumerate(handle, start=1)

    def events(self) -> Iterator[Event]:
        """Every event, in file order (blank lines skipped); InvalidEvent names a bad line."""
        for number, line in self._lines():
            if line.strip():
                yield parse_line(line, f"{self.name} line {number}")

    def validate(self) -> int:
        """Check every line without keeping the events; returns how many there are."""
        return sum(1 for _ in self.events())


def import_events(store: EventStore, source: JsonLines, *, validated: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Validate every line of `source` (unless `validated`, its count, says that was done), then
    append its events in order, in batches.

    A bad line raises InvalidEvent naming its line number before anything is stored. Events whose
    id is already stored are skipped, so importing a file twice is harmless.
    """
    total = source.validate() if validated is None else validated
    added = done = 0
    batch: list[Event] = []

    def flush() -> None:
        nonlocal added, done
        before = store.head()
        added += sum(1 for p in store.append(batch) if p > before)
        done += len(batch)
        batch.clear()
        if progress is not None:
            progress(done, total)

    for event in source.events():
        batch.append(event)
        if len(batch) >= _BATCH:
            flush()
    if batch:
        flush()
    return ImportReport(total, added, total - added)
