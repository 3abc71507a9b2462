"""A real in-memory `Store` (not a mock): the fast oracle for tests and throwaway logs.

It keeps the rows it is given, exactly as a database would, so what it reads back is what SQLite
and PostgreSQL read back.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import islice, takewhile

from domain.codec import FoldRow, StoredEvent, fold_row, timestamp_text
from domain.errors import ConcurrencyError, StoreError
from domain.ids import utc_now
from store.base import (
    EVERYTHING,
    ChainEpoch,
    EventFilter,
    PruneRecord,
    SnapshotRecord,
    refuse_overlap,
)
from store.chain import GENESIS, Chain, prune_hash

_SCAN_PAGE = 2000


class MemoryStore:
    """A `Store` held in this process's memory."""

    def __init__(self, chain: Chain | None = None) -> None:
        self.location = ":memory:"
        self.chain = Chain() if chain is None else chain
        self._epochs: list[ChainEpoch] = []
        self._lock = threading.RLock()
        self._prune_lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        self._depth = 0
        self._rows: dict[int, StoredEvent] = {}  # position -> row, in position order
        self._by_id: dict[str, int] = {}
        self._streams: dict[str, int] = {}
        self._head = 0
        self._snapshots: list[SnapshotRecord] = []
        self._last_snapshot_id = 0  # ids are never reused, as in the SQL stores
        #: (name, version, key) -> position -> (state, digest)
        self._items: dict[tuple[str, int, str], dict[int, tuple[str, bytes | None]]] = {}
        self._prunes: list[PruneRecord] = []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            saved = {k: copy.copy(v) for k, v in self.__dict__.items()
                     if k not in ("_lock", "_appended", "_prune_lock")}
            self._depth = 1
            try:
                yield
            except BaseException:
                self.__dict__.update(saved)
                raise
            finally:
                self._depth = 0

    # -- the event log --------------------------------------------------------------------

    def append(self, rows: Sequence[StoredEvent],
               expected: Mapping[str, int] | None = None) -> list[int]:
        if not rows:
            return []
        with self.transaction():
            firsts: dict[str, StoredEvent] = {}
            for r in rows:  # an id repeated in the batch keeps its first row, as in SQL
                firsts.setdefault(r.id, r)
            fresh = [r for r in firsts.values() if r.id not in self._by_id]
            if fresh:
                for stream, version in (expected or {}).items():
                    actual = self._streams.get(stream, 0)
                    if actual != version:
                        raise ConcurrencyError(stream, version, actual)
            previous = self._chain_from(self._head) if fresh else GENESIS
            for r in fresh:
                version = self._streams[r.stream_id] = self._streams.get(r.stream_id, 0) + 1
                self._head += 1
                row = r._replace(position=self._head, stream_version=version, hash=None)
                previous = self.chain.link(previous, row)
                self._rows[self._head] = row._replace(hash=previous)
                self._by_id[r.id] = self._head
            self._appended.notify_all()
            return [self._by_id[r.id] for r in rows]

    def read(self, after: int = 0, until: int | None = None) -> Iterator[StoredEvent]:
        return self.query(after=after, before=None if until is None else until + 1)

    def scan(self, after: int = 0, until: int | None = None) -> Iterator[list[FoldRow]]:
        rows = [fold_row(r) for r in self.read(after, until)]
        for i in range(0, len(rows), _SCAN_PAGE):
            yield rows[i : i + _SCAN_PAGE]

    def query(self, where: EventFilter = EVERYTHING, *, after: int = 0, before: int | None = None,
              limit: int | None = None, newest_first: bool = False,
              offset: int = 0) -> Iterator[StoredEvent]:
        with self._lock:
            found = [row for p, row in self._rows.items()
                     if after < p and (before is None or p < before) and where.matches(row)]
        if newest_first:
            found.reverse()
        return iter(found[offset:][:limit])

    def get(self, event_id: str) -> StoredEvent | None:
        with self._lock:
            position = self._by_id.get(event_id)
            return None if position is None else self._rows.get(position)

    def count_by_type(self, since: datetime | None = None,
                      until: datetime | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.query(EventFilter(since=since, until=until)):
            counts[row.event_type] = counts.get(row.event_type, 0) + 1
        return counts

    def head(self) -> int:
        return self._head

    def stream_versions(self, streams: Collection[str]) -> dict[str, int]:
        return {s: self._streams.get(s, 0) for s in streams}

    def wait_for_append(self, after: int, timeout: float) -> bool:
        with self._appended:
            return self._appended.wait_for(lambda: self._head > after, timeout)

    def size_bytes(self) -> int | None:
        return None

    # -- the integrity chain --------------------------------------------------------------

    def hash_at(self, position: int) -> bytes | None:
        if position <= 0:
            return GENESIS
        row = self._rows.get(position)
        if row is not None and row.hash is None:  # (see `SQLStore._hash_through`)
            before = self.hash_at(position - 1)
            return None if before is None else self.chain.link(before, row)
        if row is not None:
            return row.hash
        cut = [p.cut_hash for p in self._prunes if p.last_position == position and p.cut_hash]
        if cut:
            return cut[-1]
        return next((e.previous for e in self._epochs if e.start == position + 1), None)

    def epochs(self) -> list[ChainEpoch]:
        return list(self._epochs)

    def _chain_from(self, head: int) -> bytes:
        previous = self.hash_at(head)
        if previous is None:
            raise StoreError(f"the chain hash at position {head} is missing")
        if not self._epochs or self._epochs[-1].key_id != self.chain.key_id:
            self._epochs = [*self._epochs, ChainEpoch(head + 1, self.chain.algorithm,
                                                      self.chain.key_id, previous)]
        return previous

    def vacuum(self) -> None:
        pass  # nothing is left behind in memory

    # -- snapshots and prunes -------------------------------------------------------------

    def save_snapshot(self, projection: str, version: int, position: int, state: str,
                      items: Iterable[tuple[str, str]] = ()) -> int:
        with self.transaction():
            self._last_snapshot_id += 1
            bound = self.hash_at(position)
            digest = None if bound is None else self.chain.digest(bound, projection, version,
                                                                  position, state)
            self._snapshots.append(SnapshotRecord(self._last_snapshot_id, projection, version,
                                                  position, state, timestamp_text(utc_now()),
                                                  bound, digest))
            self.save_snapshot_items(projection, version, position, items)
            return self._last_snapshot_id

    def save_snapshot_items(self, projection: str, version: int, position: int,
                            items: Iterable[tuple[str, str]]) -> None:
        with self.transaction():
            bound = self.hash_at(position)
            for key, text in items:  # a new dict each time: a rollback restores a shallow copy
                saved = self._items.get((projection, version, key), {})
                item = None if bound is None else self.chain.digest(bound, projection, version,
                                                                    key, position, text)
                self._items[(projection, version, key)] = {**saved, position: (text, item)}

    def latest_snapshot(self, projection: str, version: int,
                        upto: int | None = None) -> SnapshotRecord | None:
        matching = [s for s in self._snapshots if (s.projection, s.version) == (projection, version)
                    and (upto is None or s.position <= upto)]
        return max(matching, key=lambda s: (s.position, s.id), default=None)

    def snapshots(self, *, with_state: bool = True) -> list[SnapshotRecord]:
        return [s if with_state else s._replace(state="") for s in self._snapshots]

    def delete_snapshots(self, ids: Collection[int]) -> int:
        with self.transaction():
            kept = [s for s in self._snapshots if s.id not in ids]
            deleted, self._snapshots = len(self._snapshots) - len(kept), kept
            return deleted

    def snapshot_item(self, projection: str, version: int, key: str, upto: int) -> str | None:
        saved = self._items.get((projection, version, key), {})
        at = max((p for p in saved if p <= upto), default=None)
        return None if at is None else saved[at][0]

    def snapshot_item_digests(self, projection: str, version: int, position: int
                              ) -> list[tuple[str, str, bytes | None]]:
        return [(key, saved[position][0], saved[position][1])
                for (name, v, key), saved in sorted(self._items.items())
                if (name, v) == (projection, version) and position in saved]

    def snapshot_items(self, projection: str, version: int, upto: int,
                       prefix: str = "") -> list[tuple[str, str]]:
        found = []
        for name, v, key in sorted(self._items):
            if (name, v) == (projection, version) and key.startswith(prefix):
                text = self.snapshot_item(name, v, key, upto)
                if text is not None:
                    found.append((key, text))
        return found

    def prunes(self) -> list[PruneRecord]:
        return list(self._prunes)

    @contextmanager
    def prune_lock(self) -> Iterator[None]:
        if not self._prune_lock.acquire(blocking=False):
            raise StoreError(f"cannot prune {self.location}: another prune of it is running; "
                             "try again when it is done")
        try:
            yield
        finally:
            self._prune_lock.release()

    def record_prune(self, first: int, last: int, cutoff: str, archive_path: str | None,
                     archive_sha256: str | None) -> PruneRecord:
        with self.transaction():
            kept = [p for p in self._rows if p <= last]
            refuse_overlap(self.location, first, last, min(kept, default=None),
                           max(kept, default=None),
                           max((p.last_position for p in self._prunes), default=None))
            previous = (self._prunes[-1].record_hash if self._prunes else None) or GENESIS
            record = PruneRecord(len(self._prunes) + 1, first, last, len(kept), cutoff,
                                 timestamp_text(utc_now()), archive_path, archive_sha256,
                                 self.hash_at(last))
            record = record._replace(record_hash=prune_hash(self.chain, previous, record))
            self._prunes = [*self._prunes, record]
            return record

    def delete_pruned(self, limit: int) -> int:
        with self.transaction():
            through = max((p.last_position for p in self._prunes), default=0)
            doomed = list(islice(takewhile(lambda p: p <= through, self._rows), limit))
            for p in doomed:
                del self._by_id[self._rows.pop(p).id]
            return len(doomed)

    def close(self) -> None:
        pass
