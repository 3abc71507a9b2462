"""The PostgreSQL event store (psycopg 3): the SQLite store's contract on a shared server.

No reader ever misses an event. With a sequence, a transaction takes its positions when it
inserts but becomes visible when it commits, so one holding position 7 can commit after one
holding 8, and a reader that has already tailed past 8 (`read(after=8)`) never sees 7 (and a
rollback leaves a hole). Here every write transaction starts by locking the single row of
`log_head` (`SELECT ... FOR UPDATE`, held to commit) and takes its positions from that counter,
updated in the same transaction. So:

- write transactions run one at a time and commit in position order; PostgreSQL makes a
  transaction visible before it releases its locks, so a reader that sees position N also sees
  every position below it;
- positions are gapless: a rollback undoes the counter along with the rows.

The cost is SQLite's: one writer at a time. Appenders queue on the row lock (at most
`lock_timeout` seconds, then StoreError), so a transaction held open inside `store.transaction()`
stalls every appender meanwhile, and appends do not scale with more writers. Readers never wait.
Under the lock an append is two statements: one looks up the batch's ids (idempotent retries)
and stream heads, one INSERT stores the rows, stream heads and counter and NOTIFYs; no database
error is used as control flow, so a ConcurrencyError leaves the caller's transaction usable.

`wait_for_append` LISTENs on `swarmlog_events` (every append NOTIFYs its new head at commit) and
falls back to polling `head()` where LISTEN is refused or the listening connection dies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from domain.codec import StoredEvent
from domain.errors import CommitInDoubt, ConcurrencyError, StoreError
from store.chain import Chain, configured_chain
from store.location import passwords, redact, scrub, url_problem
from store.postgres_schema import MIGRATION_LOCK, MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE
from store.sql import Dialect, SQLStore

#: The channel every append NOTIFYs with its new head.
CHANNEL = "swarmlog_events"

_DIALECT = Dialect(
    mark="%s",
    columns="seq, id, event_type, source, task_id, agent_id, data, timestamp, stream_id, "
            "stream_version, schema_version, conforms, hash",
    head="SELECT head FROM swarmlog_head",
    index_hints=False,
    jsonb=True,
)
# One statement stores a batch: the rows, the new stream heads, the counter and the NOTIFY.
# Columns travel as binary arrays (`%b`): 6x faster than text arrays, faster than COPY.
_INSERT = f"""
WITH rows AS (
    INSERT INTO event_log (seq, id, event_type, source, task_id, agent_id, data, timestamp,
                           stream_id, stream_version, schema_version, conforms, hash)
    SELECT r.seq, r.id, r.event_type, r.source, r.task_id, r.agent_id, r.data, r.timestamp,
           r.stream_id, r.stream_version, r.schema_version, r.conforms, r.hash
    FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                %b::text[], %b::text[], %b::text[], %b::bigint[], %b::int[], %b::bool[],
                %b::bytea[])
         AS r(seq, id, event_type, source, task_id, agent_id, data, timestamp,
              stream_id, stream_version, schema_version, conforms, hash)
), heads AS (
    INSERT INTO swarmlog_streams (stream_id, version)
    SELECT * FROM unnest(%b::text[], %b::bigint[])
    ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version
), counter AS (
    UPDATE swarmlog_head SET head = %s
)
SELECT pg_notify('{CHANNEL}', %s)
"""
_PAGE = 2000
#: The high half of the prune lock's advisory key ("swlp"); the low half is the oid of the
#: log's `event_log`, so that logs in other schemas of the database prune independently.
_PRUNE_LOCK = 0x7377_6C70
log = logging.getLogger("swarmlog.store")
#: Swarmlog's tables whose rows a prune or a snapshot retirement deletes.
_VACUUMED = ("event_log", "swarmlog_snapshots", "swarmlog_snapshot_items")
_POLL = 0.05  # seconds between polls when LISTEN is unavailable
_SAFETY_POLL = 1.0  # while listening, still look at the head this often


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _head_of(payload: str) -> int:
    try:
        return int(payload)
    except ValueError:  # not ours: look at the head anyway
        return 2**63 - 1



class _OneLine(logging.Filter):
    """Makes what psycopg and its pool log one line, without any password a store was opened
    with: during an outage the pool warns of every failed reconnection, in libpq's words,
    which span lines ("Connection refused / Is the server running...")."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        cleaned = scrub(" ".join(lines), sorted(self.secrets, key=len, reverse=True))
        if cleaned != text:
            record.msg, record.args = cleaned, None
        return True


_one_line_logs = _OneLine()
for _name in ("psycopg", "psycopg.pool"):
    logging.getLogger(_name).addFilter(_one_line_logs)


class _Transaction:
    """The write transaction open on this thread: its connection, nesting depth and head."""

    __slots__ = ("conn", "depth", "head")

    def __init__(self, conn: psycopg.Connection[Any], head: int) -> None:
        self.conn = conn
        self.depth = 1
        self.head = head


class PostgresStore(SQLStore):
    """A `Store` in a PostgreSQL database, safe to share between threads and processes."""

    dialect = _DIALECT

    def __init__(self, url: str, *, lock_timeout: float = 10.0, connect_timeout: float = 10.0,
                 max_connections: int = 8, read_only: bool = False,
                 chain: Chain | None = None) -> None:
        self.location = redact(url)
        self.read_only = read_only
        self.chain = configured_chain() if chain is None else chain
        self._lock_timeout = lock_timeout
        self._url, self._connect_timeout = url, connect_timeout  # (the prune lock's connection)
        self._local = threading.local()
        problem = url_problem(url)
        if problem is not None:
            raise StoreError(f"cannot open {self.location}: the URL has {problem}")
        self._secrets = passwords(url)
        _one_line_logs.secrets.update(self._secrets)
        try:
            with psycopg.connect(url, autocommit=True,
                                 connect_timeout=max(1, round(connect_timeout))) as conn:
                self._migrate(conn)
        except psycopg.Error as e:
            raise self._error("open", e) from e
        self._pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, timeout=connect_timeout,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(connect_timeout))},
            configure=self._configure, num_workers=1, name=f"swarmlog {self.location}",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout as e:
            self._pool.close()
            raise StoreError(f"cannot connect to {self.location}: {e}") from e
        if not read_only:
            with self.transaction():  # (the rows a log held before it had a chain)
                self._chain_stored_rows()

    # -- plumbing -------------------------------------------------------------------------

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        # READ COMMITTED whatever the server's default: each statement after the writer lock
        # must see what the previous writer committed.
        conn.execute("SET default_transaction_isolation = 'read committed'")
        if self.read_only:  # the server refuses any write of this store's connections
            conn.execute("SET default_transaction_read_only = on")
        conn.execute("SELECT set_config('lock_timeout', %s, false)",
                     (f"{int(self._lock_timeout * 1000)}ms",))

    def _error(self, doing: str, e: Exception) -> StoreError:
        if isinstance(e, pg_errors.LockNotAvailable):
            text = f"the log stayed locked by another writer for {self._lock_timeout:g}s"
        elif isinstance(e, PoolTimeout):
            text = f"no connection to the server ({e})"
        else:
            text = _first_line(e)
        return StoreError(f"cannot {doing} {self.location}: {scrub(text, self._secrets)}")

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # One opener migrates; a racing opener waits here, then finds the work done.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            tables = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL, to_regclass('event_log') IS NOT NULL",
                (VERSION_TABLE,)).fetchone()
            assert tables is not None
            if tables[0]:
                found = conn.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}"
                                     ).fetchone()[0]  # type: ignore[index]
            elif tables[1]:
                raise StoreError(f"{self.location} has an event_log table that swarmlog did not "
                                 "create; use another database or schema")
            else:
                found = 0
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.location} has schema version {found}, newer than this swarmlog "
                    f"understands ({SCHEMA_VERSION}); upgrade swarmlog")
            if self.read_only and not found:
                raise StoreError(f"{self.location} is not a swarmlog log (it has no swarmlog "
                                 "tables); nothing was changed")
            if self.read_only and found < SCHEMA_VERSION:
                raise StoreError(
                    f"{self.location} needs a schema upgrade (version {found} to "
                    f"{SCHEMA_VERSION}) and is opened read-only: open it for writing once")
            for version, name, sql in MIGRATIONS:
                if version > found:
                    conn.execute(sql.encode())  # several statements: no parameters
                    conn.execute(f"INSERT INTO {VERSION_TABLE} (version, name) VALUES (%s, %s)",
                                 (version, name))
                    log.info("migrated %s: %s", self.location, name)

    def _current(self) -> _Transaction | None:
        tx: _Transaction | None = getattr(self._local, "tx", None)
        return tx

    @contextmanager
    def _writing(self, doing: str) -> Iterator[_Transaction]:
        """Join this thread's write transaction, or begin one holding the writer lock."""
        tx = self._current()
        if tx is not None:
            tx.depth += 1
            try:
                yield tx
            finally:
                tx.depth -= 1
            return
        committing = False
        try:
            with self._pool.connection() as conn:
                try:
                    with conn.transaction():
                        row = conn.execute("SELECT head FROM swarmlog_head FOR UPDATE").fetchone()
                        assert row is not None
                        tx = _Transaction(conn, row[0])
                        self._local.tx = tx
                        try:
                            yield tx
                        finally:
                            self._local.tx = None
                        committing = True
                except psycopg.OperationalError as e:
                    if committing and conn.broken:  # COMMIT went out; its answer never came
                        raise CommitInDoubt(
                            f"cannot tell whether the write to {self.location} was committed: "
                            f"the connection was lost while committing ({_first_line(e)})"
                        ) from e
                    raise
        except (psycopg.Error, PoolTimeout) as e:
            raise self._error(doing, e) from e

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._writing("write to"):
            yield

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's transaction connection, or one from the pool (autocommit)."""
        tx = self._current()
        if tx is not None:
            yield tx.conn
        else:
            with self._pool.connection() as conn:
                yield conn

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._connection() as conn:
                return conn.execute(sql, params, binary=True).fetchall()
        except (psycopg.Error, PoolTimeout) as e:
            raise self._error("read", e) from e

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._writing("write to") as tx:
            return tx.conn.execute(sql, params).rowcount

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._writing("write to") as tx, tx.conn.cursor() as cur:
            cur.executemany(sql, list(rows))

    def _insert_returning_id(self, sql: str, params: Sequence[Any]) -> int:
        with self._writing("write to") as tx:
            row = tx.conn.execute(sql + " RETURNING id", params).fetchone()
            assert row is not None
            return int(row[0])

    def _open_prune_gate(self, opened: bool) -> None:
        self._execute("SELECT set_config('swarmlog.prune', %s, true)", ("on" if opened else "off",))

    @contextmanager
    def _updates_allowed(self) -> Iterator[None]:
        self._execute("ALTER TABLE event_log DISABLE TRIGGER event_log_no_update")
        try:
            yield
        finally:
            self._execute("ALTER TABLE event_log ENABLE TRIGGER event_log_no_update")

    def raw(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one raw statement in this thread's transaction (or autocommit): a test hook."""
        with self._connection() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    # -- appending ------------------------------------------------------------------------

    def append(self, rows: Sequence[StoredEvent],
               expected: Mapping[str, int] | None = None) -> list[int]:
        if not rows:
            return []
        with self._writing("append to") as tx:
            return self._append(tx, rows, expected or {})

    def _append(self, tx: _Transaction, rows: Sequence[StoredEvent],
                expected: Mapping[str, int]) -> list[int]:
        streams = list(dict.fromkeys([r.stream_id for r in rows] + list(expected)))
        # Under the writer lock nobody else changes these between this look-up and the insert.
        found = tx.conn.execute(
            "SELECT false, stream_id, version FROM swarmlog_streams WHERE stream_id = ANY(%b) "
            "UNION ALL SELECT true, id, seq FROM event_log WHERE id = ANY(%b)",
            (streams, [r.id for r in rows]), binary=True).fetchall()
        heads = dict.fromkeys(streams, 0)
        heads.update({key: value for is_id, key, value in found if not is_id})
        stored = {key: value for is_id, key, value in found if is_id}
        fresh: list[StoredEvent] = []
        for r in rows:
            if r.id not in stored:
                stored[r.id] = 0  # claimed: a repeat inside the batch is not stored twice
                fresh.append(r)
        if not fresh:
            return [stored[r.id] for r in rows]
        for stream, version in expected.items():
            if heads[stream] != version:
                raise ConcurrencyError(stream, version, heads[stream])
        head = tx.head
        previous = self._chain_from(head)
        link = self.chain.link
        params = []
        for r in fresh:
            head += 1
            version = heads[r.stream_id] = heads[r.stream_id] + 1
            stored[r.id] = head
            row = StoredEvent(head, r.id, r.event_type, r.source, r.task_id, r.agent_id, r.data,
                              r.timestamp, r.stream_id, version, r.schema_version,
                              None if r.conforms is None else bool(r.conforms), None)
            previous = link(previous, row)
            params.append((*row[:12], previous))
        columns = [list(column) for column in zip(*params, strict=True)]
        touched = {r.stream_id for r in fresh}
        new_heads = [(s, v) for s, v in heads.items() if s in touched]
        tx.conn.execute(_INSERT, (*columns, [s for s, _ in new_heads], [v for _, v in new_heads],
                                  head, str(head)))
        tx.head = head
        return [stored[r.id] for r in rows]

    @contextmanager
    def prune_lock(self) -> Iterator[None]:
        """A session advisory lock, keyed on this log's `event_log` table, held by a connection
        of its own (outside the pool, which would hand it on still locked): the server lets go
        when the connection ends, the prune's process killed included."""
        try:
            conn = psycopg.connect(self._url, autocommit=True,
                                   connect_timeout=max(1, round(self._connect_timeout)))
        except psycopg.Error as e:
            raise self._error("prune", e) from e
        with conn:
            try:
                row = conn.execute("SELECT pg_try_advisory_lock((%s::bigint << 32) | "
                                   "'event_log'::regclass::oid::bigint)",
                                   (_PRUNE_LOCK,)).fetchone()
            except psycopg.Error as e:
                raise self._error("prune", e) from e
            if not row or not row[0]:
                raise StoreError(f"cannot prune {self.location}: another prune of it is "
                                 "running; try again when it is done")
            yield  # (closing the connection lets go of the lock)

    def wait_for_append(self, after: int, timeout: float) -> bool:
        """Block until the head passes `after` (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            with self._pool.connection() as conn:
                try:
                    conn.execute(f"LISTEN {CHANNEL}")
                    listening = True
                except psycopg.Error:  # e.g. a hot standby or a transaction-mode pooler
                    listening = False
                try:
                    # Listening before looking: an append committed from here on is notified.
                    if self.head() > after:
                        return True
                    while (remaining := deadline - time.monotonic()) > 0:
                        if listening:
                            try:
                                for note in conn.notifies(timeout=min(remaining, _SAFETY_POLL)):
                                    # The payload is a hint: the channel is per database, and
                                    # another schema's log may share it. The head decides.
                                    if _head_of(note.payload) > after and self.head() > after:
                                        return True
                            except psycopg.OperationalError:  # the listener died: poll instead
                                listening = False
                        else:
                            time.sleep(min(remaining, _POLL))
                        if self.head() > after:
                            return True
                    return False
                finally:
                    if listening:
                        conn.execute(f"UNLISTEN {CHANNEL}")
        except (psycopg.Error, PoolTimeout) as e:
            raise self._error("wait on", e) from e

    def size_bytes(self) -> int | None:
        rows = self._fetch("SELECT pg_total_relation_size('event_log')")
        return int(rows[0][0])

    def vacuum(self) -> None:
        # Plain VACUUM (not FULL): it takes no lock that stops readers or writers, makes the
        # deleted rows' space reusable, and gives back the pages at the end of each table.
        try:
            with self._pool.connection() as conn:  # autocommit: VACUUM runs outside a transaction
                conn.execute(f"VACUUM (ANALYZE) {', '.join(_VACUUMED)}")
        except (psycopg.Error, PoolTimeout) as e:
            raise self._error("vacuum", e) from e

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
