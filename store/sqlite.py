"""The embedded SQLite event store: WAL, a busy timeout, BEGIN IMMEDIATE writes.

The hot paths use the connection's own `executemany` and cursors (sqlite-utils' `insert_all`
ran at a third of the speed); sqlite-utils serves the schema, its migrations and ad-hoc queries.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from domain.codec import Row, decode, row_checksum, timestamp_text
from domain.errors import ConcurrencyError, StoreError
from domain.events import Event, EventType
from domain.ids import utc_now
from store.base import PruneRecord, Recorded, SnapshotRecord, StoredRow, encode_batch
from store.schema import SCHEMA_VERSION, migrations
from store.sql import filters, keyset_pages

_COLUMNS = (
    "seq, id, event_type, source, task_id, agent_id, data, timestamp, "
    "stream_id, stream_version, schema_version"
)
_INSERT = (
    "INSERT INTO event_log (id, event_type, source, task_id, agent_id, data, timestamp, "
    "stream_id, schema_version, stream_version, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_UPSERT_HEAD = (
    "INSERT INTO streams (stream_id, version) VALUES (?, ?) "
    "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version"
)
_PAGE = 2000
_POLL_SECONDS = 0.05  # how often a waiting reader looks at the head
_CHUNK = 500  # bound variables per IN (...) lookup


# `Recorded` is a NamedTuple: building it with tuple.__new__ skips its Python-level __new__
# (a tenth of the per-row glue on the read path, profiled); the result is the same object.
_new_tuple = tuple.__new__


def _recorded(row: tuple[Any, ...]) -> Recorded:
    seq, id_, kind, source, task, agent, data, ts, stream, version, schema = row
    return _new_tuple(Recorded, (seq, stream, version,
                                 decode(seq, id_, kind, source, task, agent, data, ts, schema)))


class SQLiteEventStore:
    """An `EventStore` in one SQLite file (or ':memory:')."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0,
                 create: bool = True) -> None:
        self.location = str(path)
        memory = self.location == ":memory:"
        try:
            found = memory or Path(self.location).exists()
            # A file this process may not write is opened read-only: reads work, appends are
            # refused with a StoreError (instead of failing to open at all).
            self.read_only = found and not memory and not os.access(self.location, os.W_OK)
        except OSError as e:
            raise StoreError(f"cannot open {self.location}: {e.strerror}") from e
        if not create and not found:
            raise StoreError(f"no swarmlog database at {self.location}")
        self._lock = threading.RLock()
        self._depth = 0
        self._busy_timeout = busy_timeout
        try:
            if self.read_only:
                target = Path(self.location).resolve().as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(target, uri=True, isolation_level=None,
                                             check_same_thread=False, timeout=busy_timeout)
            else:
                self._conn = sqlite3.connect(self.location, isolation_level=None,
                                             check_same_thread=False, timeout=busy_timeout)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            self._db = Database(self._conn)
            self._migrate()
        except sqlite3.Error as e:
            raise self._error("open", e) from e

    # -- plumbing -------------------------------------------------------------------------

    def _error(self, doing: str, e: sqlite3.Error) -> StoreError:
        text = str(e)
        if "locked" in text or "busy" in text:
            text = f"the database stayed locked by another writer for {self._busy_timeout:g}s"
        elif "not a database" in text or "malformed" in text:
            text = f"{text} (is {self.location} a swarmlog SQLite file?)"
        return StoreError(f"cannot {doing} {self.location}: {text}")

    def _migrate(self) -> None:
        found = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"{self.location} has schema version {found}, newer than this swarmlog "
                f"understands ({SCHEMA_VERSION}); upgrade swarmlog"
            )
        if found == SCHEMA_VERSION:
            return
        if self.read_only:
            raise StoreError(f"{self.location} is read-only and needs a schema upgrade "
                             f"(version {found} to {SCHEMA_VERSION}): open it writable once")
        with self.transaction():  # one writer migrates; a racing opener waits, then finds it done
            migrations.apply(self._db)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise self._error("write to", e) from e
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise self._error("commit to", e) from e

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise self._error("read", e) from e

    def _pages(self, where: str, params: Sequence[Any], *, after: int = 0,
               limit: int | None = None) -> Iterator[list[tuple[Any, ...]]]:
        """Stream rows in position order, a page at a time, holding no statement open between."""
        return keyset_pages(self._fetch, f"SELECT {_COLUMNS} FROM event_log", where, params,
                            "?", page=_PAGE, after=after, limit=limit)

    def _paged(self, where: str, params: Sequence[Any], *, after: int = 0,
               limit: int | None = None) -> Iterator[Recorded]:
        for rows in self._pages(where, params, after=after, limit=limit):
            # _recorded inlined: this loop is the rebuild's hot path. One row at a time, so the
            # events before a corrupt row are still yielded before its CorruptEvent.
            for seq, id_, kind, source, task, agent, data, ts, stream, version, schema in rows:
                yield _new_tuple(Recorded, (seq, stream, version, decode(
                    seq, id_, kind, source, task, agent, data, ts, schema)))

    def read_rows(self, after: int = 0, limit: int | None = None) -> Iterator[StoredRow]:
        for rows in keyset_pages(self._fetch, f"SELECT {_COLUMNS}, checksum FROM event_log", "",
                                 (), "?", page=_PAGE, after=after, limit=limit):
            yield from rows

    # -- appending ------------------------------------------------------------------------

    def append(self, events: Sequence[Event], expected_version: int | None = None) -> list[int]:
        rows = encode_batch(events, expected_version)  # bad input refused before any I/O
        if not rows:
            return []
        try:
            with self.transaction():
                if self._depth == 1:
                    # Our own transaction (every append not inside a caller's): its start is the
                    # rollback point, so no savepoint. A savepoint copies each page the append
                    # dirties to a sub-journal: -10% on 1,000-event batches, -12% on one-event
                    # appends (measured). A retry (ids already stored) or a conflict starts the
                    # transaction over and takes the careful path below.
                    try:
                        return self._insert(rows, expected_version)
                    except (sqlite3.IntegrityError, ConcurrencyError):
                        self._conn.execute("ROLLBACK")
                        self._conn.execute("BEGIN IMMEDIATE")
                # A savepoint, so that a failed append inside a caller's transaction takes back
                # only its own rows, and the retry below never touches the caller's work.
                self._conn.execute("SAVEPOINT swarmlog_append")
                try:
                    positions = self._insert_or_skip_stored(rows, expected_version)
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK TO swarmlog_append")
                        self._conn.execute("RELEASE swarmlog_append")
                    raise
                self._conn.execute("RELEASE swarmlog_append")
                return positions
        except sqlite3.Error as e:
            raise self._error("append to", e) from e

    def _insert_or_skip_stored(self, rows: list[Row], expected_version: int | None) -> list[int]:
        try:
            return self._insert(rows, expected_version)
        except sqlite3.IntegrityError as e:
            if "event_log.id" not in str(e):
                raise
        except ConcurrencyError:
            if expected_version is None:
                raise
        # Some ids may be stored already (a retry): start over, skipping them; only the events
        # not yet stored are held to the expected version.
        self._conn.execute("ROLLBACK TO swarmlog_append")
        return self._insert_new(rows, expected_version)

    def _insert_new(self, rows: list[Row], expected_version: int | None) -> list[int]:
        stored: dict[str, int] = {}
        ids = list({r[0] for r in rows})
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            stored.update(self._conn.execute(
                f"SELECT id, seq FROM event_log WHERE id IN ({marks})", chunk).fetchall())
        fresh: list[Row] = []
        seen: set[str] = set()
        for r in rows:
            if r[0] not in stored and r[0] not in seen:
                seen.add(r[0])
                fresh.append(r)
        if fresh:
            stored.update(zip([r[0] for r in fresh], self._insert(fresh, expected_version), strict=True))
        return [stored[r[0]] for r in rows]

    def _insert(self, rows: list[Row], expected_version: int | None) -> list[int]:
        if len(rows) == 1:
            return self._insert_one(rows[0], expected_version)
        streams = list({r[7] for r in rows})
        heads: dict[str, int] = {}
        for i in range(0, len(streams), _CHUNK):
            chunk = streams[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            heads.update(self._conn.execute(
                f"SELECT stream_id, version FROM streams WHERE stream_id IN ({marks})", chunk))
        if expected_version is not None:
            actual = heads.get(streams[0], 0)
            if actual != expected_version:
                raise ConcurrencyError(streams[0], expected_version, actual)
        params = []
        for r in rows:
            version = heads.get(r[7], 0) + 1
            heads[r[7]] = version
            params.append((*r, version, row_checksum(r)))
        self._conn.executemany(_INSERT, params)
        self._conn.executemany(_UPSERT_HEAD, list(heads.items()))
        # Under BEGIN IMMEDIATE with AUTOINCREMENT, one executemany gets consecutive positions.
        last = self._conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'event_log'").fetchone()[0]
        return list(range(last - len(rows) + 1, last + 1))

    def _insert_one(self, row: Row, expected_version: int | None) -> list[int]:
        """`_insert` of one row (a command's or `log_event`'s append), as plain SQLite does it:
        no IN list, no executemany, and the position from the cursor (seq is the rowid)."""
        stream = row[7]
        found = self._conn.execute("SELECT version FROM streams WHERE stream_id = ?",
                                   (stream,)).fetchone()
        actual = found[0] if found else 0
        if expected_version is not None and actual != expected_version:
            raise ConcurrencyError(stream, expected_version, actual)
        seq = self._conn.execute(_INSERT, (*row, actual + 1, row_checksum(row))).lastrowid
        self._conn.execute(_UPSERT_HEAD, (stream, actual + 1))
        return [int(seq or 0)]

    # -- reading --------------------------------------------------------------------------

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[Recorded]:
        return self._paged("", (), after=after, limit=limit)

    def read_task(self, task_id: str) -> Iterator[Recorded]:
        return self._paged("AND task_id = ?", (task_id,))

    def read_agent(self, agent_id: str) -> Iterator[Recorded]:
        return self._paged("AND agent_id = ?", (agent_id,))

    def read_range(self, since: datetime | None = None, until: datetime | None = None,
                   types: Collection[EventType] | None = None) -> Iterator[Recorded]:
        kinds = None if types is None else [EventType(t).value for t in types]
        if kinds == []:
            return iter(())
        if since is None and until is None:
            where = "" if kinds is None else f" AND event_type IN ({','.join('?' * len(kinds))})"
            return self._paged(where, kinds or ())
        return self._by_positions(self._positions_in_range(since, until, kinds))

    def _positions_in_range(self, since: datetime | None, until: datetime | None,
                            kinds: list[str] | None) -> list[int]:
        """The positions of a time range, found on the timestamp index (the planner would rather
        walk the whole table in position order), sorted: ints only, however long the range."""
        where, params = filters("?", since=since, until=until)
        if kinds is not None:
            where.append(f"+event_type IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        rows = self._fetch("SELECT seq FROM event_log INDEXED BY idx_event_log_timestamp WHERE "
                           + " AND ".join(where), params)
        return sorted(seq for (seq,) in rows)

    def _by_positions(self, positions: list[int]) -> Iterator[Recorded]:
        for i in range(0, len(positions), _CHUNK):
            chunk = positions[i : i + _CHUNK]
            rows = self._fetch(f"SELECT {_COLUMNS} FROM event_log WHERE seq IN "
                               f"({','.join('?' * len(chunk))}) ORDER BY seq", chunk)
            for row in rows:
                yield _recorded(row)

    #: The index a filtered query walks, by the first filter given: a task's or an agent's
    #: events are few; a time range is narrow next to the log; a type keeps position order.
    _DRIVING_INDEX = (("task_id", "idx_event_log_task_id"), ("agent_id", "idx_event_log_agent_id"),
                      ("since", "idx_event_log_timestamp"), ("until", "idx_event_log_timestamp"),
                      ("event_type", "idx_event_log_event_type"))

    def query(self, **filters: Any) -> list[Recorded]:
        return [_recorded(row[:11]) for row in self.query_rows(**filters)]

    def query_rows(self, *, event_type: EventType | None = None, task_id: str | None = None,
                   agent_id: str | None = None, source: str | None = None,
                   since: datetime | None = None, until: datetime | None = None,
                   limit: int | None = None, offset: int = 0,
                   newest_first: bool = True) -> list[StoredRow]:
        given = {"event_type": event_type, "task_id": task_id, "agent_id": agent_id,
                 "source": source, "since": since, "until": until}
        index = next((ix for name, ix in self._DRIVING_INDEX if given[name] is not None), None)
        where, params = filters("?", **given)
        # Every other condition is written `+column` so that the planner cannot switch to its
        # index (without statistics it picked the event_type index over the task's: 123 ms).
        column = index.removeprefix("idx_event_log_") if index else None
        where = [w if w.split()[0] == column else "+" + w for w in where]
        sql = f"SELECT {_COLUMNS}, checksum FROM event_log"
        if index is not None:
            sql += f" INDEXED BY {index}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
        return self._fetch(sql, params)

    def get(self, event_id: str) -> Recorded | None:
        rows = self._fetch(f"SELECT {_COLUMNS} FROM event_log WHERE id = ?", (event_id,))
        return _recorded(rows[0]) if rows else None

    def count_by_type(self, since: datetime | None = None) -> dict[str, int]:
        if since is None:
            rows = self._fetch("SELECT event_type, count(*) FROM event_log GROUP BY event_type")
        else:
            # `+event_type` keeps the planner on the timestamp index (473 ms -> 0.2 ms at 1M rows).
            rows = self._fetch(
                "SELECT event_type, count(*) FROM event_log WHERE timestamp >= ? "
                "GROUP BY +event_type", (timestamp_text(since),))
        return dict(rows)

    def prefix_end(self, cutoff: datetime) -> int:
        # min(seq) walks the log from its oldest row and stops at the first young one: the
        # cost is the prefix's, with no sort of every young row (as ORDER BY seq LIMIT 1 did).
        (first_young,) = self._fetch("SELECT min(seq) FROM event_log WHERE timestamp >= ?",
                                     (timestamp_text(cutoff),))[0]
        return self.head() if first_young is None else first_young - 1

    def size_bytes(self) -> int | None:
        pages, size = self._fetch("SELECT * FROM pragma_page_count(), pragma_page_size()")[0]
        return int(pages * size)

    def head(self) -> int:
        rows = self._fetch("SELECT seq FROM sqlite_sequence WHERE name = 'event_log'")
        return rows[0][0] if rows else 0

    def count(self) -> int:
        pruned = self._fetch("SELECT coalesce(sum(count), 0) FROM prunes")[0][0]
        return self.head() - pruned

    def stream_version(self, stream_id: str) -> int:
        rows = self._fetch("SELECT version FROM streams WHERE stream_id = ?", (stream_id,))
        return rows[0][0] if rows else 0

    def wait_for_append(self, after: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.head() > after:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL_SECONDS, left))

    # -- snapshots and pruning ------------------------------------------------------------

    def save_snapshot(self, projection: str, version: int, position: int, state: str,
                      items: Iterable[tuple[str, str]] = ()) -> int:
        try:
            with self.transaction():
                cur = self._conn.execute(
                    "INSERT INTO snapshots (projection, version, position, state, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (projection, version, position, state, timestamp_text(utc_now())))
                self._conn.executemany(
                    "INSERT OR REPLACE INTO snapshot_items (projection, version, key, position, "
                    "state) VALUES (?, ?, ?, ?, ?)",
                    ((projection, version, key, position, text) for key, text in items))
                return int(cur.lastrowid or 0)
        except sqlite3.Error as e:
            raise self._error("save a snapshot to", e) from e

    def snapshot_item(self, projection: str, version: int, key: str, upto: int) -> str | None:
        rows = self._fetch(
            "SELECT state FROM snapshot_items WHERE projection = ? AND version = ? AND key = ? "
            "AND position <= ? ORDER BY position DESC LIMIT 1", (projection, version, key, upto))
        return rows[0][0] if rows else None

    def snapshot_items(self, projection: str, version: int, upto: int,
                       prefix: str = "") -> list[tuple[str, str]]:
        # SQLite's bare columns: with max(), `state` comes from the row holding the maximum.
        # The prefix is a range of the primary key (text compares as UTF-8 bytes).
        rows = self._fetch(
            "SELECT key, state, max(position) FROM snapshot_items WHERE projection = ? AND "
            "version = ? AND position <= ? AND key >= ? AND key < ? GROUP BY key ORDER BY key",
            (projection, version, upto, prefix, prefix + "\U0010ffff"))
        return [(key, state) for key, state, _ in rows]

    def latest_snapshot(self, projection: str, version: int,
                        upto: int | None = None) -> SnapshotRecord | None:
        rows = self._fetch(
            "SELECT id, projection, version, position, state, created_at FROM snapshots "
            "WHERE projection = ? AND version = ? AND position <= ? "
            "ORDER BY position DESC, id DESC LIMIT 1",
            (projection, version, 2**63 - 1 if upto is None else upto))
        return SnapshotRecord(*rows[0]) if rows else None

    def snapshots(self, *, with_state: bool = True) -> list[SnapshotRecord]:
        state = "state" if with_state else "''"
        rows = self._fetch(
            f"SELECT id, projection, version, position, {state}, created_at FROM snapshots "
            "ORDER BY id")
        return [SnapshotRecord(*r) for r in rows]

    def delete_snapshots(self, ids: Collection[int]) -> int:
        if not ids:
            return 0
        try:
            with self.transaction():
                marks = ",".join("?" * len(ids))
                return self._conn.execute(f"DELETE FROM snapshots WHERE id IN ({marks})",
                                          list(ids)).rowcount
        except sqlite3.Error as e:
            raise self._error("delete snapshots from", e) from e

    def delete_through(self, position: int) -> int:
        try:
            with self.transaction():
                self._conn.execute("UPDATE prune_gate SET open = 1")
                cur = self._conn.execute("DELETE FROM event_log WHERE seq <= ?", (position,))
                self._conn.execute("UPDATE prune_gate SET open = 0")
                return cur.rowcount
        except sqlite3.Error as e:
            raise self._error("prune", e) from e

    def record_prune(self, first_position: int, last_position: int, count: int, cutoff: str,
                     archive_path: str | None, archive_sha256: str | None) -> int:
        try:
            with self.transaction():
                cur = self._conn.execute(
                    "INSERT INTO prunes (first_position, last_position, count, cutoff, pruned_at, "
                    "archive_path, archive_sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (first_position, last_position, count, cutoff, timestamp_text(utc_now()),
                     archive_path, archive_sha256))
                return int(cur.lastrowid or 0)
        except sqlite3.Error as e:
            raise self._error("record a prune in", e) from e

    def prunes(self) -> list[PruneRecord]:
        rows = self._fetch(
            "SELECT id, first_position, last_position, count, cutoff, pruned_at, archive_path, "
            "archive_sha256 FROM prunes ORDER BY id")
        return [PruneRecord(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
