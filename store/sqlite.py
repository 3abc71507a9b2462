"""The embedded SQLite store: WAL, `synchronous=NORMAL`, a busy timeout, BEGIN IMMEDIATE writes.

The append path uses the connection's own `executemany` (sqlite-utils' `insert_all` ran at a
third of its speed); sqlite-utils serves the schema and its migrations (`store/schema.py`).
Reads, queries, snapshots and prunes are the shared SQL of `store/sql.py`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from domain.codec import StoredEvent
from domain.errors import ConcurrencyError, StoreError
from store.chain import Chain, configured_chain
from store.schema import NAMES, NO_UPDATE, migrations
from store.sql import FOLD_COLUMNS, Dialect, SQLStore


def _as_text(columns: str) -> str:
    """Each text column cast to text: SQLite keeps whatever another client stored in a column
    (a BLOB stays a BLOB), and a stored row's text is text everywhere after the store."""
    return ", ".join(f"CAST({c} AS TEXT)" if c in _TEXT_COLUMNS else c
                     for c in columns.split(", "))


_TEXT_COLUMNS = {"id", "event_type", "source", "task_id", "agent_id", "data", "timestamp",
                 "stream_id"}
_DIALECT = Dialect(
    mark="?",
    columns=_as_text("seq, id, event_type, source, task_id, agent_id, data, timestamp, "
                     "stream_id, stream_version, schema_version, conforms, hash"),
    head="SELECT seq FROM sqlite_sequence WHERE name = 'event_log'",
    index_hints=True,
    fold_columns=_as_text(FOLD_COLUMNS),
)
_INSERT = (
    "INSERT INTO event_log (seq, id, event_type, source, task_id, agent_id, data, timestamp, "
    "stream_id, stream_version, schema_version, conforms, hash) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_UPSERT_HEAD = (
    "INSERT INTO swarmlog_streams (stream_id, version) VALUES (?, ?) "
    "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version"
)
_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__
_POLL_SECONDS = 0.05  # how often a waiting reader looks at the head
_CHUNK = 500
log = logging.getLogger("swarmlog.store")

try:
    import fcntl
except ImportError:  # (not on Windows: there, prunes are serialised within one process only)
    fcntl = None  # type: ignore[assignment]


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class SQLiteStore(SQLStore):
    """A `Store` in one SQLite file (or ':memory:')."""

    dialect = _DIALECT

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0,
                 create: bool = True, read_only: bool = False, chain: Chain | None = None) -> None:
        self.location = str(path)
        self.chain = configured_chain() if chain is None else chain
        self._pruning = False
        memory = self.location == ":memory:"
        try:
            found = memory or Path(self.location).exists()
            # Opened read-only when asked (a reader never creates, migrates or writes anything),
            # and when this process may not write the file: reads work, appends are refused
            # with a StoreError (instead of failing to open at all).
            self.read_only = read_only or (found and not memory
                                           and not os.access(self.location, os.W_OK))
        except OSError as e:
            raise StoreError(f"cannot open {self.location}: {e.strerror}") from e
        except (UnicodeError, ValueError) as e:  # (a lone surrogate, a NUL character)
            raise StoreError(f"cannot open {self.location!r}: no file can have that name") from e
        if (read_only or not create) and not found:
            raise StoreError(f"no swarmlog database at {self.location}")
        if not found:
            try:  # (the default, data/swarm.db, is in a folder of its own)
                Path(self.location).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create {self.location}: {e.strerror}") from e
        self._lock = threading.RLock()
        self._memory_prune_lock = threading.Lock()
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
        except sqlite3.Error as e:
            raise self._error("open", e) from e
        except (UnicodeError, ValueError) as e:  # (a lone surrogate, a NUL character)
            raise StoreError(f"cannot open {self.location!r}: no file can have that name") from e
        try:
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            # Before anything is written (WAL mode included): is this a log to open?
            applied = self._applied(create=create)
            if not self.read_only:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            # The DELETE guard asks this; only swarmlog's own connections define it.
            self._conn.create_function("swarmlog_pruning", 0, lambda: int(self._pruning),
                                       deterministic=False)
            self._migrate(applied)
        except BaseException as e:
            self._conn.close()
            if isinstance(e, sqlite3.Error):
                raise self._error("open", e) from e
            raise

    # -- plumbing -------------------------------------------------------------------------

    def _error(self, doing: str, e: sqlite3.Error) -> StoreError:
        text = str(e)
        if "locked" in text or "busy" in text:
            text = f"the database stayed locked by another writer for {self._busy_timeout:g}s"
        elif "not a database" in text or "malformed" in text:
            text = f"{text} (is {self.location} a swarmlog SQLite file?)"
        return StoreError(f"cannot {doing} {self.location}: {text}")

    def _applied(self, *, create: bool) -> list[str]:
        """The swarmlog migrations the file has applied, or StoreError when it is not a log to
        open: from a newer swarmlog; not a swarmlog log at all (unless `create`: then it
        becomes one, beside whatever tables it holds); in need of an upgrade when read-only."""
        # swarmlog's schema version is the list of its migrations applied (in sqlite-utils'
        # `_sqlite_migrations`), never `PRAGMA user_version`: that is the host's, in a shared file.
        db = Database(self._conn)
        applied = [m.name for m in migrations.applied(db)]
        unknown = [name for name in applied if name not in NAMES]
        if unknown:
            raise StoreError(
                f"{self.location} has swarmlog migrations this swarmlog does not know "
                f"({', '.join(unknown)}): it was written by a newer swarmlog; upgrade swarmlog")
        if applied or self.location == ":memory:":
            if self.read_only and len(applied) < len(NAMES):
                raise StoreError(
                    f"{self.location} needs a schema upgrade ({len(NAMES) - len(applied)} "
                    "migrations) and is opened read-only: open it for writing once")
            return applied
        if not db["event_log"].exists():
            if self.read_only or not create:
                raise StoreError(f"{self.location} is not a swarmlog log (it has no event_log "
                                 "table); nothing was changed")
        elif self.read_only:
            raise StoreError(f"{self.location} holds an event log swarmlog has not upgraded yet, "
                             "and is opened read-only: open it for writing once (a writing "
                             "command, or the library) to upgrade it in place")
        return applied

    def _migrate(self, applied: list[str]) -> None:
        if len(applied) == len(NAMES):
            return
        with self.transaction():  # one writer migrates; a racing opener waits, then finds it done
            pending = [name for name in NAMES if name not in set(applied)]
            migrations.apply(Database(self._conn))
            self._chain_stored_rows()
        log.info("migrated %s: %s", self.location, ", ".join(pending))

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
            except sqlite3.OperationalError as e:
                if "decode" not in str(e):
                    raise self._error("read", e) from e
            except sqlite3.Error as e:
                raise self._error("read", e) from e
            # Text that is not UTF-8 (any client can store it): read again, such text with the
            # replacement character (its row no longer matches its hash: `verify` names it).
            self._conn.text_factory = _lenient_text
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise self._error("read", e) from e
            finally:
                self._conn.text_factory = str

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.Error as e:
            raise self._error("write to", e) from e

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as e:
            raise self._error("write to", e) from e

    def _insert_returning_id(self, sql: str, params: Sequence[Any]) -> int:
        try:
            return int(self._conn.execute(sql, params).lastrowid or 0)
        except sqlite3.Error as e:
            raise self._error("write to", e) from e

    def _open_prune_gate(self, opened: bool) -> None:
        self._pruning = opened  # what `swarmlog_pruning()`, which the DELETE guard asks, says

    @contextmanager
    def _updates_allowed(self) -> Iterator[None]:
        self._conn.execute("DROP TRIGGER event_log_no_update")
        try:
            yield
        finally:
            self._conn.execute(NO_UPDATE)

    # -- appending ------------------------------------------------------------------------

    def append(self, rows: Sequence[StoredEvent],
               expected: Mapping[str, int] | None = None) -> list[int]:
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
                        return self._insert(rows, expected)
                    except (sqlite3.IntegrityError, ConcurrencyError):
                        self._conn.execute("ROLLBACK")
                        self._conn.execute("BEGIN IMMEDIATE")
                # A savepoint, so that a failed append inside a caller's transaction takes back
                # only its own rows, and the retry below never touches the caller's work.
                self._conn.execute("SAVEPOINT swarmlog_append")
                try:
                    positions = self._insert_new(rows, expected)
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK TO swarmlog_append")
                        self._conn.execute("RELEASE swarmlog_append")
                    raise
                self._conn.execute("RELEASE swarmlog_append")
                return positions
        except sqlite3.Error as e:
            raise self._error("append to", e) from e

    def _insert_new(self, rows: Sequence[StoredEvent],
                    expected: Mapping[str, int] | None) -> list[int]:
        """Append the rows whose ids are not stored yet; a batch stored whole is a retry."""
        stored: dict[str, int] = {}
        ids = list({r.id for r in rows})
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            stored.update(self._conn.execute(
                f"SELECT id, seq FROM event_log WHERE id IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
        firsts: dict[str, StoredEvent] = {}
        for r in rows:  # an id repeated in the batch keeps its first row
            firsts.setdefault(r.id, r)
        fresh = [r for r in firsts.values() if r.id not in stored]
        if fresh:
            stored.update(zip([r.id for r in fresh], self._insert(fresh, expected), strict=True))
        return [stored[r.id] for r in rows]

    def _insert(self, rows: Sequence[StoredEvent], expected: Mapping[str, int] | None) -> list[int]:
        """Insert rows at the next positions (under BEGIN IMMEDIATE nobody else appends),
        each with its stream version and its link in the chain."""
        if len(rows) == 1:
            r = rows[0]
            found = self._conn.execute("SELECT version FROM swarmlog_streams WHERE stream_id = ?",
                                       (r.stream_id,)).fetchone()
            heads = {r.stream_id: found[0] if found else 0}  # (no IN list for one row)
            if expected:
                heads = self.stream_versions(set(expected) | {r.stream_id})
        else:
            heads = self.stream_versions({r.stream_id for r in rows} | set(expected or ()))
        for stream, version in (expected or {}).items():
            if heads[stream] != version:
                raise ConcurrencyError(stream, version, heads[stream])
        head = self.head()
        previous = self._chain_from(head)
        link = self.chain.link
        params = []
        position = head
        for r in rows:
            position += 1
            version = heads[r.stream_id] = heads[r.stream_id] + 1
            stored = _new_tuple(StoredEvent, (position, r.id, r.event_type, r.source, r.task_id,
                                              r.agent_id, r.data, r.timestamp, r.stream_id,
                                              version, r.schema_version, r.conforms, None))
            previous = link(previous, stored)
            params.append((position, *stored[1:12], previous))
        if len(params) == 1:
            self._conn.execute(_INSERT, params[0])
        else:
            self._conn.executemany(_INSERT, params)
        touched = {r.stream_id for r in rows}
        self._conn.executemany(_UPSERT_HEAD, [(s, v) for s, v in heads.items() if s in touched])
        return list(range(head + 1, position + 1))

    # -- the prune lock --------------------------------------------------------------------

    @contextmanager
    def prune_lock(self) -> Iterator[None]:
        """An exclusive `flock` on `<database>-prunelock`, beside the database (never the
        database itself: SQLite's own locks are `fcntl` locks, which some file systems merge
        with `flock`'s). The file is made once and left in place (removing a lock file races
        whoever opens it meanwhile); the lock dies with its process. `:memory:` (one connection,
        this store's) takes a lock in this process."""
        if self.location == ":memory:" or fcntl is None:
            if not self._memory_prune_lock.acquire(blocking=False):
                raise self._pruning_elsewhere()
            try:
                yield
            finally:
                self._memory_prune_lock.release()
            return
        path = self.location + "-prunelock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except PermissionError:  # (a folder this process cannot write: an existing file will do)
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError as e:
                raise StoreError(f"cannot prune {self.location}: cannot open its lock file "
                                 f"{path}: {e.strerror}") from e
        except OSError as e:
            raise StoreError(f"cannot prune {self.location}: cannot open its lock file "
                             f"{path}: {e.strerror}") from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._pruning_elsewhere() from None
            except OSError as e:
                raise StoreError(f"cannot prune {self.location}: cannot lock {path}: "
                                 f"{e.strerror}") from e
            yield
        finally:
            os.close(fd)  # (lets go of the lock)

    def _pruning_elsewhere(self) -> StoreError:
        return StoreError(f"cannot prune {self.location}: another prune of it is running; "
                          "try again when it is done")

    # -- waiting and size -----------------------------------------------------------------

    def wait_for_append(self, after: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.head() > after:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL_SECONDS, left))

    def size_bytes(self) -> int | None:
        pages, size = self._fetch("SELECT * FROM pragma_page_count(), pragma_page_size()")[0]
        return int(pages * size)

    def define_view(self, name: str, select: str) -> bool:
        sql = f"CREATE VIEW {name} AS {select}"
        look = "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?"
        if self._fetch(look, (name,)) == [(sql,)]:
            return False
        with self.transaction():
            if self._fetch(look, (name,)) == [(sql,)]:  # another process was quicker
                return False
            self._execute(f"DROP VIEW IF EXISTS {name}")
            self._execute(sql)
        log.info("defined the view %s in %s", name, self.location)
        return True

    def vacuum(self) -> None:
        # VACUUM rewrites the file through the WAL; the checkpoint then truncates both, so the
        # space is back on disk when this returns (unless a reader holds the WAL meanwhile).
        with self._lock:
            try:
                self._conn.execute("VACUUM")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                raise self._error("vacuum", e) from e

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
