"""A real in-memory `EventStore` (not a mock): the fast oracle for tests and throwaway logs.

It keeps encoded rows, exactly as a database would, so what it reads back is what SQLite and
PostgreSQL read back.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from domain.codec import Row, decode, row_checksum, timestamp_text
from domain.errors import ConcurrencyError
from domain.events import Event, EventType
from domain.ids import utc_now
from store.base import PruneRecord, Recorded, SnapshotRecord, StoredRow, encode_batch


class MemoryEventStore:
    """An `EventStore` held in this process's memory."""

    def __init__(self) -> None:
        self.location = ":memory:"
        self._lock = threading.RLock()
        self._appended = threading.Condition(self._lock)
        self._depth = 0
        self._rows: dict[int, tuple[Row, int, int]] = {}  # position -> (row, stream version, checksum)
        self._by_id: dict[str, int] = {}
        self._streams: dict[str, int] = {}
        self._head = 0
        self._snapshots: list[SnapshotRecord] = []
        self._last_snapshot_id = 0  # ids are never reused, as in the SQL stores
        #: (projection, version, key) -> position -> state
        self._items: dict[tuple[str, int, str], dict[int, str]] = {}
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
            saved = copy.copy(self.__dict__)
            saved = {k: copy.copy(v) for k, v in saved.items() if k not in ("_lock", "_appended")}
            self._depth = 1
            try:
                yield
            except BaseException:
                self.__dict__.update(saved)
                raise
            finally:
                self._depth = 0

    def append(self, events: Sequence[Event], expected_version: int | None = None) -> list[int]:
        rows = encode_batch(events, expected_version)  # bad input refused before any I/O
        if not rows:
            return []
        with self.transaction():
            fresh = [r for r in dict.fromkeys(r[0] for r in rows) if r not in self._by_id]
            if fresh and expected_version is not None:
                actual = self._streams.get(rows[0][7], 0)
                if actual != expected_version:
                    raise ConcurrencyError(rows[0][7], expected_version, actual)
            new = set(fresh)
            for r in rows:
                if r[0] in new:
                    new.discard(r[0])
                    version = self._streams.get(r[7], 0) + 1
                    self._streams[r[7]] = version
                    self._head += 1
                    self._rows[self._head] = (r, version, row_checksum(r))
                    self._by_id[r[0]] = self._head
            self._appended.notify_all()
            return [self._by_id[r[0]] for r in rows]

    def _stored(self, position: int) -> StoredRow:
        row, version, checksum = self._rows[position]
        id_, kind, source, task, agent, data, ts, stream, schema = row
        return position, id_, kind, source, task, agent, data, ts, stream, version, schema, checksum

    def _recorded(self, position: int) -> Recorded:
        row, version, _ = self._rows[position]
        id_, kind, source, task, agent, data, ts, stream, schema = row
        return Recorded(position, stream, version,
                        decode(position, id_, kind, source, task, agent, data, ts, schema))

    def _select(self, keep: Any, after: int = 0) -> Iterator[Recorded]:
        with self._lock:
            positions = [p for p, (row, _, _) in self._rows.items() if p > after and keep(row)]
        for p in positions:
            with self._lock:
                if p not in self._rows:
                    continue
                rec = self._recorded(p)
            yield rec

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[Recorded]:
        for n, rec in enumerate(self._select(lambda row: True, after)):
            if limit is not None and n >= limit:
                return
            yield rec

    def read_rows(self, after: int = 0, limit: int | None = None) -> Iterator[StoredRow]:
        with self._lock:
            positions = sorted(p for p in self._rows if p > after)[:limit]
        for p in positions:
            with self._lock:
                if p not in self._rows:
                    continue
                stored = self._stored(p)
            yield stored

    def read_task(self, task_id: str) -> Iterator[Recorded]:
        return self._select(lambda row: row[3] == task_id)

    def read_agent(self, agent_id: str) -> Iterator[Recorded]:
        return self._select(lambda row: row[4] == agent_id)

    @staticmethod
    def _matcher(since: datetime | None, until: datetime | None,
                 **equal: Any) -> Any:
        lo = timestamp_text(since) if since else None
        hi = timestamp_text(until) if until else None
        columns = {"event_type": 1, "source": 2, "task_id": 3, "agent_id": 4}
        checks = [(columns[k], v.value if isinstance(v, EventType) else v)
                  for k, v in equal.items() if v is not None]

        def keep(row: Row) -> bool:
            return ((lo is None or row[6] >= lo) and (hi is None or row[6] < hi)
                    and all(row[i] == v for i, v in checks))
        return keep

    def read_range(self, since: datetime | None = None, until: datetime | None = None,
                   types: Collection[EventType] | None = None) -> Iterator[Recorded]:
        in_range = self._matcher(since, until)
        wanted = None if types is None else {EventType(t).value for t in types}
        return self._select(lambda row: in_range(row) and (wanted is None or row[1] in wanted))

    def query(self, **filters: Any) -> list[Recorded]:
        with self._lock:
            return [self._recorded(p) for p in self._query(**filters)]

    def query_rows(self, **filters: Any) -> list[StoredRow]:
        with self._lock:
            return [self._stored(p) for p in self._query(**filters)]

    def _query(self, *, event_type: EventType | None = None, task_id: str | None = None,
               agent_id: str | None = None, source: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               limit: int | None = None, offset: int = 0, newest_first: bool = True) -> list[int]:
        keep = self._matcher(since, until, event_type=event_type, task_id=task_id,
                             agent_id=agent_id, source=source)
        positions = sorted((p for p, (row, _, _) in self._rows.items() if keep(row)),
                           reverse=newest_first)
        end = None if limit is None else offset + limit
        return positions[offset:end]

    def get(self, event_id: str) -> Recorded | None:
        with self._lock:
            position = self._by_id.get(event_id)
            return None if position is None or position not in self._rows else self._recorded(position)

    def count_by_type(self, since: datetime | None = None) -> dict[str, int]:
        keep = self._matcher(since, None)
        counts: dict[str, int] = {}
        with self._lock:
            for row, _, _ in self._rows.values():
                if keep(row):
                    counts[row[1]] = counts.get(row[1], 0) + 1
        return counts

    def count(self) -> int:
        return len(self._rows)

    def prefix_end(self, cutoff: datetime) -> int:
        limit = timestamp_text(cutoff)
        with self._lock:
            young = [p for p, (row, _, _) in self._rows.items() if row[6] >= limit]
            return min(young) - 1 if young else self._head

    def size_bytes(self) -> int | None:
        return None

    def head(self) -> int:
        return self._head

    def stream_version(self, stream_id: str) -> int:
        return self._streams.get(stream_id, 0)

    def wait_for_append(self, after: int, timeout: float) -> bool:
        with self._appended:
            return self._appended.wait_for(lambda: self._head > after, timeout)

    def save_snapshot(self, projection: str, version: int, position: int, state: str,
                      items: Iterable[tuple[str, str]] = ()) -> int:
        with self.transaction():
            self._last_snapshot_id += 1
            record = SnapshotRecord(self._last_snapshot_id, projection, version, position, state,
                                    timestamp_text(utc_now()))
            self._snapshots.append(record)
            for key, text in items:  # a new dict each time: a rollback restores a shallow copy
                saved = self._items.get((projection, version, key), {})
                self._items[(projection, version, key)] = {**saved, position: text}
            return record.id

    def snapshot_item(self, projection: str, version: int, key: str, upto: int) -> str | None:
        saved = self._items.get((projection, version, key), {})
        at = max((p for p in saved if p <= upto), default=None)
        return None if at is None else saved[at]

    def snapshot_items(self, projection: str, version: int, upto: int,
                       prefix: str = "") -> list[tuple[str, str]]:
        found = []
        for (name, v, key), _ in sorted(self._items.items()):
            wanted = (name, v) == (projection, version) and key.startswith(prefix)
            text = self.snapshot_item(name, v, key, upto) if wanted else None
            if text is not None:
                found.append((key, text))
        return found

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

    def delete_through(self, position: int) -> int:
        with self.transaction():
            doomed = [p for p in self._rows if p <= position]
            for p in doomed:
                del self._by_id[self._rows.pop(p)[0][0]]
            return len(doomed)

    def record_prune(self, first_position: int, last_position: int, count: int, cutoff: str,
                     archive_path: str | None, archive_sha256: str | None) -> int:
        with self.transaction():
            record = PruneRecord(len(self._prunes) + 1, first_position, last_position, count, cutoff,
                                 timestamp_text(utc_now()), archive_path, archive_sha256)
            self._prunes.append(record)
            return record.id

    def prunes(self) -> list[PruneRecord]:
        return list(self._prunes)

    def close(self) -> None:
        pass
