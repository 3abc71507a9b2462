"""What a store is: the event log and the snapshot store, as two protocols, and their records.

The event log holds rows (`domain.codec.StoredEvent`): appended atomically with optimistic
concurrency per stream, read in position order, queried by filters, waited on. The snapshot
store holds what projections derive from it (snapshots and their items) and the record of what
was pruned. Every backend implements both on one connection, so one transaction spans them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

import orjson

from domain.codec import CLOCK_SKEW, FoldRow, StoredEvent, timestamp_text
from domain.errors import StoreError
from domain.ids import utc_now
from store.chain import Chain

_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_KEY = re.compile(r"[^\s\"'.$\[\]*]+")
#: The comparisons a `DataCondition` makes.
DATA_OPERATORS = ("=", "!=", ">", "<")


@dataclass(frozen=True, slots=True)
class DataCondition:
    """A condition on one field of the payload: `path` (keys, outermost first) `op` `value`.

    `=` holds for a string equal to `value`, a number equal to it (when `value` is a number),
    `true`/`false`/`null` for those JSON literals; `!=` holds exactly where `=` does not (an event
    without the field included); `>` and `<` compare numbers only (`value` must be one). Only
    payloads that conform to their type's schema are looked into (the others may hold text that
    is not JSON): such a row satisfies `!=` and nothing else."""

    path: tuple[str, ...]
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in DATA_OPERATORS:
            raise ValueError(f"operator {self.op!r} is not one of {', '.join(DATA_OPERATORS)}")
        if not self.path or not all(_KEY.fullmatch(key) for key in self.path):
            raise ValueError(f"{'.'.join(self.path)!r} is not a path of keys (letters, digits, "
                             "- and _, joined by dots)")
        if self.op in (">", "<") and self.number is None:
            raise ValueError(f"{self.op} compares numbers, and {self.value!r} is not one")

    @property
    def number(self) -> int | float | None:
        """`value` as a number, if it is one (JSON's spelling)."""
        if not _NUMBER.fullmatch(self.value):
            return None
        if any(c in self.value for c in ".eE") or len(self.value) > 300:
            return float(self.value)  # (inf beyond a double's range)
        whole = int(self.value)
        # Beyond 64 bits the databases hold a number as a double, and compare it as one.
        return whole if -(2**63) <= whole < 2**63 else float(whole)

    def holds(self, row: StoredEvent) -> bool:
        """Whether the row satisfies the condition (the plain definition the SQL follows)."""
        found: Any = _MISSING
        if row.conforms and row.data is not None:
            found = orjson.loads(row.data)
            for key in self.path:
                found = found.get(key, _MISSING) if isinstance(found, dict) else _MISSING
        if self.op in (">", "<"):
            number = self.number
            if isinstance(found, bool) or not isinstance(found, int | float) or number is None:
                return False
            return found > number if self.op == ">" else found < number
        equal = (found == self.value if isinstance(found, str)
                 else self.value == ("true" if found else "false") if isinstance(found, bool)
                 else found == self.number if isinstance(found, int | float)
                 else self.value == "null" if found is None
                 else False)
        return equal if self.op == "=" else not equal


_MISSING = object()


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a query wants: each given condition must hold (None: any).

    `types` are event-type texts; `since <= timestamp < until`; every one of `data` holds."""

    types: frozenset[str] | None = None
    task_id: str | None = None
    agent_id: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    data: tuple[DataCondition, ...] = ()

    def matches(self, row: StoredEvent) -> bool:
        """Whether a row is wanted (the plain definition the stores' queries follow)."""
        lo = None if self.since is None else timestamp_text(self.since)
        hi = None if self.until is None else timestamp_text(self.until)
        return ((self.types is None or row.event_type in self.types)
                and (self.task_id is None or row.task_id == self.task_id)
                and (self.agent_id is None or row.agent_id == self.agent_id)
                and (self.source is None or row.source == self.source)
                and (lo is None or row.timestamp >= lo) and (hi is None or row.timestamp < hi)
                and all(condition.holds(row) for condition in self.data))


EVERYTHING = EventFilter()


class SnapshotRecord(NamedTuple):
    """A projection's state (JSON text) at a position of the log, bound to the log's chain: the
    chain hash at that position, and a digest of the snapshot made with the chain's key."""

    id: int
    projection: str
    version: int
    position: int
    state: str
    created_at: str
    chain_hash: bytes | None = None
    digest: bytes | None = None


class PruneRecord(NamedTuple):
    """One prune: the removed range of positions, its cutoff and its archive segment (if any);
    the chain hash of the last row it removed, and its own link in the chain of prune records."""

    id: int
    first_position: int
    last_position: int
    removed: int
    cutoff: str
    pruned_at: str
    archive_path: str | None
    archive_sha256: str | None
    cut_hash: bytes | None = None
    record_hash: bytes | None = None


class ChainEpoch(NamedTuple):
    """From which position the chain is made with which algorithm and key (by its id), and the
    hash it starts from."""

    start: int
    algorithm: str
    key_id: str | None
    previous: bytes


@runtime_checkable
class EventLogStore(Protocol):
    """An append-only log of rows with global positions and per-stream versions.

    Positions start at 1, are gapless as appended and never reused, even after a prune. Every
    stream (`task-<id>`, `agent-<id>` or `system`) has a gapless version starting at 1.
    """

    #: Where the store lives (a file path, or a URL without its password), for messages.
    location: str

    def append(self, rows: Sequence[StoredEvent],
               expected: Mapping[str, int] | None = None) -> list[int]:
        """Append encoded rows atomically (all or nothing); return each one's position.

        A row whose id is already stored is not stored again: its stored position is returned.
        `expected` maps streams to the version each must be at before the append (0: the stream
        must be new), whether or not a row goes to it; any mismatch raises ConcurrencyError and
        appends nothing (unless every row is stored already: a retry)."""
        ...

    def read(self, after: int = 0, until: int | None = None) -> Iterator[StoredEvent]:
        """Rows with after < position <= until, in position order, streamed page by page."""
        ...

    def scan(self, after: int = 0, until: int | None = None) -> Iterator[list[FoldRow]]:
        """What a fold reads of the rows with after < position <= until (`FoldRow`: the columns
        it needs), in position order, a page at a time: the read path of every fold."""
        ...

    def query(self, where: EventFilter = EVERYTHING, *, after: int = 0, before: int | None = None,
              limit: int | None = None, newest_first: bool = False,
              offset: int = 0) -> Iterator[StoredEvent]:
        """Rows matching `where` with after < position < before, oldest first (newest first if
        asked), skipping the first `offset`, at most `limit`: each query walks the index of its
        most selective filter. Page on with `after` (or `before`): `offset` costs what it skips,
        and is there for callers that number pages (the ADR 017 facade)."""
        ...

    def get(self, event_id: str) -> StoredEvent | None:
        """The row with this id, or None."""
        ...

    def count_by_type(self, since: datetime | None = None,
                      until: datetime | None = None) -> dict[str, int]:
        """Stored rows per event-type text with since <= timestamp < until."""
        ...

    def head(self) -> int:
        """The last position ever assigned (0 for a new log); survives pruning."""
        ...

    def stream_versions(self, streams: Collection[str]) -> dict[str, int]:
        """Each stream's current version (0 if it has no events); survives pruning."""
        ...

    def wait_for_append(self, after: int, timeout: float) -> bool:
        """Block until the head passes `after` or `timeout` seconds pass; True if it did."""
        ...

    def size_bytes(self) -> int | None:
        """How much space the log's database takes (None where that is not a thing)."""
        ...

    def vacuum(self) -> None:
        """Reclaim the space that deleted rows (a prune's) left behind: SQLite rewrites the file
        smaller; PostgreSQL's VACUUM makes the space reusable (and returns what it can)."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction around several calls; nested uses join the outer one."""
        ...

    def close(self) -> None:
        """Release the connection(s)."""
        ...


@runtime_checkable
class SnapshotStore(Protocol):
    """Snapshots of projections (with the entries they keep out of memory) and prune records."""

    def save_snapshot(self, projection: str, version: int, position: int, state: str,
                      items: Iterable[tuple[str, str]] = ()) -> int:
        """Store a projection's state at a position, with the entries it keeps out of memory
        (`items`, (key, JSON text) pairs: see `snapshot_item`); returns the snapshot id."""
        ...

    def latest_snapshot(self, projection: str, version: int,
                        upto: int | None = None) -> SnapshotRecord | None:
        """The newest snapshot of this projection at this version (at a position <= `upto` when
        given), or None."""
        ...

    def snapshots(self, *, with_state: bool = True) -> list[SnapshotRecord]:
        """Every stored snapshot, oldest first (without `with_state`, each `state` is "")."""
        ...

    def delete_snapshots(self, ids: Collection[int]) -> int:
        """Delete these snapshots (their items stay: a newer snapshot may read them)."""
        ...

    def snapshot_item(self, projection: str, version: int, key: str, upto: int) -> str | None:
        """The entry `key` of a projection as of a snapshot at `upto`: its newest item saved at
        a position <= `upto`, or None."""
        ...

    def snapshot_items(self, projection: str, version: int, upto: int,
                       prefix: str = "") -> list[tuple[str, str]]:
        """Every entry (whose key starts with `prefix`) as of a snapshot at `upto`, in key order."""
        ...

    def prunes(self) -> list[PruneRecord]:
        """Every recorded prune, oldest first."""
        ...

    def snapshot_item_digests(self, projection: str, version: int, position: int
                              ) -> list[tuple[str, str, bytes | None]]:
        """The items saved with a snapshot at `position`: (key, state, digest)."""
        ...

    def save_snapshot_items(self, projection: str, version: int, position: int,
                            items: Iterable[tuple[str, str]]) -> None:
        """Save items of a snapshot at `position` ahead of it, in one transaction: a big
        snapshot's items go in several, each short (see `projections.pruning.store_snapshot`)."""
        ...

    def prune_lock(self) -> AbstractContextManager[None]:
        """Hold the log's prune lock for the body: one prune of the log at a time, across
        threads, processes and hosts sharing the database. The lock goes with its holder: when
        it dies (SIGKILL included), its operating system (SQLite: a `flock` on a file beside the
        database) or the server (PostgreSQL: a session advisory lock on a connection of its
        own) lets go. Raises StoreError at once, taking nothing, if another holder has it."""
        ...

    def record_prune(self, first: int, last: int, cutoff: str, archive_path: str | None,
                     archive_sha256: str | None) -> PruneRecord:
        """Record that the rows first..last (every stored row up to `last`) are pruned: the
        record, chained to the prune before it, with the chain hash at the cut. The rows go with
        `delete_pruned`, a bounded step at a time; readers see them until then. Raises
        StoreError if the stored rows up to `last` are not first..last, or a recorded prune
        reaches `first` (another prune ran, or one is not finished)."""
        ...

    def delete_pruned(self, limit: int) -> int:
        """Delete up to `limit` of the oldest stored rows that a recorded prune covers, in one
        transaction; returns how many (0: none is left). The only deletion the append-only
        guards allow."""
        ...


@runtime_checkable
class Store(EventLogStore, SnapshotStore, Protocol):
    """Both halves on one connection, and the integrity chain binding them: what `EventLog`
    opens."""

    #: How this store makes the hashes and digests of what it appends and saves.
    chain: Chain

    def hash_at(self, position: int) -> bytes | None:
        """The chain hash at a position: the row's while it is stored, the cut hash of the prune
        that ended there, or the hash the chain started from there (the genesis at 0)."""
        ...

    def epochs(self) -> list[ChainEpoch]:
        """Where the chain starts, and each later change of algorithm or key, in order."""
        ...


@runtime_checkable
class ViewStore(Protocol):
    """A store that can hold SQL views (SQLite: what Datasette and other clients read)."""

    def define_view(self, name: str, select: str) -> bool:
        """Make view `name` be `select` (left alone if it already is); True if it changed."""
        ...


def refuse_overlap(location: str, first: int, last: int, lowest: int | None,
                   highest: int | None, pruned: int | None) -> None:
    """StoreError unless a prune of first..last may be recorded: the stored rows up to `last`
    are exactly first..last (`lowest`, `highest`), and no recorded prune reaches `first`
    (`pruned`: the last position any recorded prune covers). A prune killed after recording
    itself leaves its rows stored; without the second condition a prune racing it would record
    the same rows again, and the chain of prunes would no longer hold."""
    if (lowest, highest) != (first, last):
        raise StoreError(
            f"cannot record a prune of {first}..{last} in {location}: the rows stored up to "
            f"{last} are {lowest}..{highest}; another prune ran meanwhile, or one is not "
            "finished")
    if pruned is not None and pruned >= first:
        raise StoreError(
            f"cannot record a prune of {first}..{last} in {location}: a recorded prune reaches "
            f"position {pruned}; another prune ran meanwhile, or one is not finished")


def first_stored(store: Store) -> int:
    """The position of the oldest row still stored (head + 1 when none is): everything before
    it was pruned, in the recorded prunes (the last of which may still be deleting)."""
    oldest = next(store.query(limit=1), None)
    return store.head() + 1 if oldest is None else oldest.position


def stored_count(store: Store) -> int:
    """How many rows are stored: positions are gapless from the oldest stored to the head."""
    return store.head() - first_stored(store) + 1


def prefix_end(store: Store, cutoff: datetime, now: datetime | None = None) -> int:
    """The end P of the longest prefix of the stored log older than `cutoff`: the position
    before the first event stamped at or after it (the head if there is none). A row whose
    timestamp is not a time, or a time no append accepts at `now` (later than `CLOCK_SKEW`
    after it: written by another client, or before the range was enforced), does not stop the
    prefix: nothing could ever prune past it."""
    latest = (utc_now() if now is None else now) + CLOCK_SKEW
    after = 0
    while True:
        found = next(store.query(EventFilter(since=cutoff), after=after, limit=1), None)
        if found is None:
            return store.head()
        moment = _time_of(found.timestamp)
        if moment is not None and cutoff <= moment <= latest:
            return found.position - 1
        after = found.position


def _time_of(stamp: object) -> datetime | None:
    """The time a stored timestamp says (one without a timezone taken as UTC, as its text
    compares), or None when it is not one."""
    try:
        moment = datetime.fromisoformat(stamp)  # type: ignore[arg-type]  # (any stored value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        return None
