"""The `EventStore` protocol every backend implements, and the records it returns."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

from domain.codec import Row, encode
from domain.errors import InvalidEvent
from domain.events import Event, EventType


class Recorded(NamedTuple):
    """An event as stored: its global position (`seq`), its stream and version in that stream."""

    position: int
    stream_id: str
    stream_version: int
    #: The typed event (in a bulk fold, an `EventView` of a row its checksum vouches for: see
    #: `projections.base.views`).
    event: Event


#: An event as stored, not yet decoded: (position, id, event_type, source, task_id, agent_id,
#: data, timestamp, stream_id, stream_version, schema_version, checksum). The checksum is the one
#: stored with the row (None for a row written by something other than swarmlog): see
#: `domain.codec.decode_view`.
StoredRow = tuple[int, str, str, str, str | None, str | None, str | None, str, str, int, int,
                  int | None]


class SnapshotRecord(NamedTuple):
    """A projection's state (JSON text) at a position of the log."""

    id: int
    projection: str
    version: int
    position: int
    state: str
    created_at: str


class PruneRecord(NamedTuple):
    """One prune: the removed range of positions, its cutoff and its archive segment (if any)."""

    id: int
    first_position: int
    last_position: int
    removed: int
    cutoff: str
    pruned_at: str
    archive_path: str | None
    archive_sha256: str | None


def encode_batch(events: Sequence[Event] | Event, expected_version: int | None) -> list[Row]:
    """The rows of a batch to append, every event validated before any backend touches its
    database; `expected_version` needs the batch to be in one stream."""
    rows = [encode(events)] if isinstance(events, Event) else [encode(e) for e in events]
    if expected_version is not None and len({r[7] for r in rows}) > 1:
        raise InvalidEvent("expected_version", "applies to one stream; the batch spans several")
    return rows


@runtime_checkable
class EventStore(Protocol):
    """An append-only log of typed events with global positions and per-stream versions.

    Positions (`seq`) start at 1, are gapless as appended and never reused, even after a prune.
    Every stream (`task-<id>`, `agent-<id>` or `system`) has a gapless version starting at 1.
    """

    #: Where the store lives (a file path or a URL), for messages.
    location: str

    def append(self, events: Sequence[Event], expected_version: int | None = None) -> list[int]:
        """Append atomically (all or nothing) and return each event's position.

        An event whose id is already stored is not stored again: its stored position is returned.
        `expected_version` (all events in one stream) is the stream's version before the append;
        0 means the stream must be new. A mismatch raises ConcurrencyError.
        """
        ...

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[Recorded]:
        """Events with position > `after`, in position order, streamed page by page."""
        ...

    def read_rows(self, after: int = 0, limit: int | None = None) -> Iterator[StoredRow]:
        """`read`, undecoded: each row as stored (see `StoredRow`)."""
        ...

    def read_task(self, task_id: str) -> Iterator[Recorded]:
        """The stored events of one task, in position order."""
        ...

    def read_agent(self, agent_id: str) -> Iterator[Recorded]:
        """The stored events that name one agent, in position order."""
        ...

    def read_range(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        types: Collection[EventType] | None = None,
    ) -> Iterator[Recorded]:
        """Events with since <= timestamp < until (either open), optionally of some types."""
        ...

    def query(
        self,
        *,
        event_type: EventType | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[Recorded]:
        """Events matching every given filter, newest first unless told otherwise."""
        ...

    def query_rows(
        self,
        *,
        event_type: EventType | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[StoredRow]:
        """`query`, undecoded: the rows as stored (see `StoredRow`)."""
        ...

    def get(self, event_id: str) -> Recorded | None:
        """The event with this id, or None."""
        ...

    def count_by_type(self, since: datetime | None = None) -> dict[str, int]:
        """Stored events per event-type value, optionally only those at or after `since`."""
        ...

    def count(self) -> int:
        """How many events are stored (the head minus what was pruned)."""
        ...

    def prefix_end(self, cutoff: datetime) -> int:
        """The end P of the longest prefix of the stored log whose timestamps are all < cutoff
        (the position before the first event at or after it; `head()` if there is none)."""
        ...

    def size_bytes(self) -> int | None:
        """How much space the log's database takes (None where that is not a thing)."""
        ...

    def head(self) -> int:
        """The last position ever assigned (0 for a new log); survives pruning."""
        ...

    def stream_version(self, stream_id: str) -> int:
        """A stream's current version (0 if it has no events); survives pruning."""
        ...

    def wait_for_append(self, after: int, timeout: float) -> bool:
        """Block until the head passes `after` (another process or thread appended) or `timeout`
        seconds pass; True if it did. Polls on SQLite; LISTEN/NOTIFY on PostgreSQL."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction around several calls; nested uses join the outer one."""
        ...

    def save_snapshot(self, projection: str, version: int, position: int, state: str,
                      items: Iterable[tuple[str, str]] = ()) -> int:
        """Store a projection's state at a position, with the entries it keeps out of memory
        (`items`, (key, JSON text) pairs: see `snapshot_item`); returns the snapshot id."""
        ...

    def snapshot_item(self, projection: str, version: int, key: str, upto: int) -> str | None:
        """The entry `key` of a projection as of a snapshot at `upto`: its newest item saved at
        a position <= `upto`, or None."""
        ...

    def snapshot_items(self, projection: str, version: int, upto: int,
                       prefix: str = "") -> list[tuple[str, str]]:
        """Every entry of a projection (whose key starts with `prefix`) as of a snapshot at
        `upto`, (key, state) in key order."""
        ...

    def latest_snapshot(self, projection: str, version: int,
                        upto: int | None = None) -> SnapshotRecord | None:
        """The newest snapshot of this projection at this version (at a position <= `upto` when
        given), or None."""
        ...

    def snapshots(self, *, with_state: bool = True) -> list[SnapshotRecord]:
        """Every stored snapshot, oldest first (without `with_state`, each `state` is "": a
        listing that does not read every snapshot's text)."""
        ...

    def delete_snapshots(self, ids: Collection[int]) -> int:
        """Delete these snapshots (their items stay: a newer snapshot may read them); returns
        how many were deleted. Snapshots are derived state: see `projections.pruning.retire`."""
        ...

    def delete_through(self, position: int) -> int:
        """The prune primitive: delete every event with position <= `position`; returns the count.

        The only deletion the append-only guards allow. Callers snapshot first (see pruning).
        """
        ...

    def record_prune(
        self,
        first_position: int,
        last_position: int,
        count: int,
        cutoff: str,
        archive_path: str | None,
        archive_sha256: str | None,
    ) -> int:
        """Record a prune in the `prunes` table; returns its id."""
        ...

    def prunes(self) -> list[PruneRecord]:
        """Every recorded prune, oldest first."""
        ...

    def close(self) -> None:
        """Release the connection(s)."""
        ...
