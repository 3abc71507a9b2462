"""The SQL both database backends share: reads, queries, snapshots and prunes, written once.

A backend subclasses `SQLStore` and supplies its connection and transactions (`_fetch`,
`_execute`, `transaction`), its `Dialect`, `append`, migrations and waiting. Every read streams in
keyset pages (a fresh statement per page, keyed on the last position), so no statement or
connection is held between pages and memory is one page.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.codec import FoldRow, StoredEvent, timestamp_text
from domain.errors import StoreError
from domain.ids import utc_now
from store.base import (
    EVERYTHING,
    ChainEpoch,
    DataCondition,
    EventFilter,
    PruneRecord,
    SnapshotRecord,
    refuse_overlap,
)
from store.chain import GENESIS, KEY_FILE_VARIABLE, Chain, prune_hash

_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__ (the read hot path)
_PAGE = 2000
#: The columns of a `FoldRow`.
FOLD_COLUMNS = ("seq, event_type, source, task_id, agent_id, data, timestamp, schema_version, "
                "conforms")
_CHUNK = 500  # bound variables per IN (...) list


_SNAPSHOT = "id, projection, version, position, state, created_at, chain_hash, digest"


def _snapshot(row: tuple[Any, ...]) -> SnapshotRecord:
    return SnapshotRecord(*row[:6], *(None if h is None else bytes(h) for h in row[6:]))


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL of two backends."""

    #: The driver's placeholder: `?` (sqlite3) or `%s` (psycopg).
    mark: str
    #: The columns of a `StoredEvent`, as selected.
    columns: str
    #: The statement that gives the head.
    head: str
    #: SQLite's planner needs telling which index to walk (`INDEXED BY`, `+column`).
    index_hints: bool
    #: How a payload field is read: PostgreSQL's jsonb operators, else SQLite's JSON functions.
    jsonb: bool = False
    #: The columns of a `FoldRow`, as selected.
    fold_columns: str = FOLD_COLUMNS

    def key_prefix(self, prefix: str) -> tuple[str, list[Any]]:
        """A condition that `key` starts with `prefix`: a range of the primary key where text
        compares as bytes (SQLite), `starts_with` where it follows a collation (PostgreSQL)."""
        if self.index_hints:
            return f"key >= {self.mark} AND key < {self.mark}", [prefix, prefix + "\U0010ffff"]
        return f"starts_with(key, {self.mark})", [prefix]

    def data_condition(self, condition: DataCondition) -> tuple[str, list[Any]]:
        """The SQL of `DataCondition.holds` (which says what each operator means). Only a row
        that conforms is looked into: another may hold text that is not JSON, and reading it
        as JSON would fail the whole query. Nested CASEs, because neither database promises
        the order in which it evaluates the terms of an AND."""
        m, number, value = self.mark, condition.number, condition.value
        if self.jsonb:
            path: Any = list(condition.path)
            kind, text = f"jsonb_typeof(data::jsonb #> {m})", f"(data::jsonb #>> {m})"
            numeric, bound, no = f"{text}::numeric", f"{m}::numeric", "false"
            number_param: Any = None if number is None else value
        else:
            path = "$" + "".join(f'."{key}"' for key in condition.path)
            kind, text = f"json_type(data, {m})", f"json_extract(data, {m})"
            numeric, bound, no = text, m, "0"
            number_param = number
        if condition.op in (">", "<"):
            numeric_kind = f"{kind} = 'number'" if self.jsonb else f"{kind} IN ('integer', 'real')"
            return (f"(CASE WHEN conforms THEN CASE WHEN {numeric_kind} THEN {numeric} "
                    f"{condition.op} {bound} ELSE {no} END ELSE {no} END)",
                    [path, path, number_param])
        params: list[Any] = [path, path, value]
        if self.jsonb:
            whens = [f"WHEN 'string' THEN {text} = {m}"]
            if number is not None:
                whens.append(f"WHEN 'number' THEN {numeric} = {bound}")
                params += [path, number_param]
            whens.append(f"WHEN 'boolean' THEN {text} = {m}")
            params += [path, value]
        else:
            whens = [f"WHEN 'text' THEN {text} = {m}"]
            if number is not None:
                whens += [f"WHEN 'integer' THEN {numeric} = {bound}",
                          f"WHEN 'real' THEN {numeric} = {bound}"]
                params += [path, number_param, path, number_param]
            whens += [f"WHEN 'true' THEN {int(value == 'true')}",
                      f"WHEN 'false' THEN {int(value == 'false')}"]
        whens.append(f"WHEN 'null' THEN {'true' if value == 'null' else 'false'}"
                     if self.jsonb else f"WHEN 'null' THEN {int(value == 'null')}")
        equal = (f"(CASE WHEN conforms THEN CASE {kind} {' '.join(whens)} ELSE {no} END "
                 f"ELSE {no} END)")
        return (equal if condition.op == "=" else f"(NOT {equal})"), params


class SQLStore:
    """Reads, queries, snapshots and prunes over a `Dialect`; see the module docstring."""

    dialect: Dialect
    location: str
    #: How this store makes the hashes of what it appends (its key, if any).
    chain: Chain

    # -- what a backend supplies ----------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write statement in the current transaction; returns its row count."""
        raise NotImplementedError

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _insert_returning_id(self, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    def _open_prune_gate(self, opened: bool) -> None:
        """Let the prune primitive's DELETE through the append-only guard (or close it)."""
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    # -- the integrity chain --------------------------------------------------------------

    def hash_at(self, position: int) -> bytes | None:
        """The chain hash at a position: the row's while it is stored; the cut hash of the prune
        that ended there; the hash the chain started from there (the genesis at 0); else None."""
        m = self.dialect.mark
        if position <= 0:
            return GENESIS
        found = self._fetch(f"SELECT hash FROM event_log WHERE seq = {m}", (position,))
        if found and found[0][0] is not None:
            return bytes(found[0][0])
        if found:
            return self._hash_through(position)
        found = self._fetch(f"SELECT cut_hash FROM swarmlog_prunes WHERE last_position = {m} "
                            "AND cut_hash IS NOT NULL ORDER BY id DESC LIMIT 1", (position,))
        if found:
            return bytes(found[0][0])
        found = self._fetch(f"SELECT previous FROM swarmlog_chain WHERE start = {m}",
                            (position + 1,))
        return bytes(found[0][0]) if found else None

    def _hash_through(self, position: int) -> bytes | None:
        """The chain hash at a stored row without one (another client's): the link of its
        content, and of the hashless rows before it, from the last hash stored before them. So
        one foreign row does not stop every append after it, and a snapshot or a prune at it is
        bound to the chain all the same (`verify` still names the row)."""
        m = self.dialect.mark
        found = self._fetch(f"SELECT max(seq) FROM event_log WHERE seq < {m} AND hash IS NOT NULL",
                            (position,))[0][0]
        if found is None:  # no hashed row before it: from the hash before the stored log
            found = int(self._fetch("SELECT min(seq) FROM event_log")[0][0]) - 1
        base = self.hash_at(found)
        if base is None:
            return None
        return self.chain.hashes(base, list(self.read(found, position)))[-1]

    def epochs(self) -> list[ChainEpoch]:
        """Where the chain starts, and each later change of algorithm or key, in order."""
        return [ChainEpoch(start, algorithm, key_id, bytes(previous)) for start, algorithm,
                key_id, previous in self._fetch(
                    "SELECT start, algorithm, key_id, previous FROM swarmlog_chain ORDER BY start")]

    def _chain_from(self, head: int) -> bytes:
        """The hash the next row (after `head`) follows, in the chain's current epoch; starts
        a new epoch when this store's key is not the one the chain was last made with. Called
        inside the append's transaction."""
        m = self.dialect.mark
        last = self._fetch("SELECT key_id FROM swarmlog_chain ORDER BY start DESC LIMIT 1")
        previous = self.hash_at(head)
        if previous is None:
            raise StoreError(f"cannot append to {self.location}: the chain hash at position "
                             f"{head} is missing (the log was changed behind swarmlog's back; "
                             "see `swarmlog verify`)")
        if not last or last[0][0] != self.chain.key_id:
            if last and last[0][0] is not None and self.chain.key is None:
                raise StoreError(
                    f"cannot append to {self.location}: its chain is made with a key (id "
                    f"{last[0][0]}); give that key file with ${KEY_FILE_VARIABLE}")
            self._execute(f"INSERT INTO swarmlog_chain (start, algorithm, key_id, previous) "
                          f"VALUES ({m}, {m}, {m}, {m})",
                          (head + 1, self.chain.algorithm, self.chain.key_id, previous))
        return previous

    def _chain_stored_rows(self) -> None:
        """Chain the rows a log held before it had a chain (its migration), from the first
        one still stored: the chain starts there (`epochs`)."""
        if self._fetch("SELECT 1 FROM swarmlog_chain LIMIT 1"):
            return
        start = (self._fetch("SELECT min(seq) FROM event_log")[0][0] or self.head() + 1)
        m = self.dialect.mark
        self._execute(f"INSERT INTO swarmlog_chain (start, algorithm, key_id, previous) "
                      f"VALUES ({m}, {m}, {m}, {m})",
                      (start, self.chain.algorithm, self.chain.key_id, GENESIS))
        previous, after = GENESIS, 0
        with self._updates_allowed():
            while True:
                page = list(self.query(after=after, limit=_PAGE))
                if not page:
                    return
                hashes = self.chain.hashes(previous, page)
                self._executemany(f"UPDATE event_log SET hash = {m} WHERE seq = {m}",
                                  [(h, r.position) for h, r in zip(hashes, page, strict=True)])
                previous, after = hashes[-1], page[-1].position

    def _updates_allowed(self) -> AbstractContextManager[None]:
        """Lift the append-only guard against UPDATE for this transaction (a migration)."""
        raise NotImplementedError

    # -- reading --------------------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any]) -> list[StoredEvent]:
        return [_new_tuple(StoredEvent, row) for row in self._fetch(sql, params)]

    def read(self, after: int = 0, until: int | None = None) -> Iterator[StoredEvent]:
        m = self.dialect.mark
        if until is not None and until <= after:
            return
        while True:
            # No `seq <= until` in the SQL: on a table without statistics (a fresh or bulk-loaded
            # PostgreSQL log) the planner reads the whole range (after, until] and sorts it for
            # every page, so a rebuild was quadratic (200k rows: 8.5 s against 1.6 s, measured).
            # The last page is cut here instead.
            rows = self._rows(f"SELECT {self.dialect.columns} FROM event_log WHERE seq > {m}"
                              f" ORDER BY seq LIMIT {_PAGE}", (after,))
            if until is not None and rows and rows[-1].position > until:
                yield from (r for r in rows if r.position <= until)
                return
            yield from rows
            if len(rows) < _PAGE:
                return
            after = rows[-1].position

    def scan(self, after: int = 0, until: int | None = None) -> Iterator[list[FoldRow]]:
        m = self.dialect.mark
        if until is not None and until <= after:
            return
        while True:
            # Only the columns a fold reads, as the driver gives them (no row object per row):
            # a fifth of a rebuild's time went to reading and wrapping the others.
            page: list[FoldRow] = self._fetch(
                f"SELECT {self.dialect.fold_columns} FROM event_log WHERE seq > {m} ORDER BY seq "
                f"LIMIT {_PAGE}", (after,))
            full = len(page) == _PAGE
            if until is not None and page and page[-1][0] > until:
                page, full = [r for r in page if r[0] <= until], False
            if page:
                yield page
            if not full:
                return
            after = page[-1][0]

    def query(self, where: EventFilter = EVERYTHING, *, after: int = 0, before: int | None = None,
              limit: int | None = None, newest_first: bool = False,
              offset: int = 0) -> Iterator[StoredEvent]:
        if where.types is not None and not where.types:
            return
        conditions, params, index = self._conditions(where)
        hint = f" INDEXED BY idx_event_log_{index}" if index and self.dialect.index_hints else ""
        if index == "timestamp" and self.dialect.index_hints:
            if limit is None or where.until is not None:
                # The planner would walk the whole log in position order for a time range: find
                # the range's positions on the timestamp index (ints only), then fetch by those.
                yield from self._by_positions(conditions, params, after, before, limit,
                                              newest_first, offset)
                return
            # "The first (or newest) few since T": walk the log in position order from that end
            # and stop at the first matches (the cut of a prune costs its old prefix, not the
            # young log; the newest events since T are at the newest end).
            conditions = ["+" + c for c in conditions]
            hint = " NOT INDEXED"
        m = self.dialect.mark
        order = "DESC" if newest_first else "ASC"
        left = limit
        skip = offset  # the first page skips `offset` matches; the pages after it are keyed
        while left is None or left > 0:
            size = _PAGE if left is None else min(_PAGE, left)
            window = [f"seq > {m}"] + ([] if before is None else [f"seq < {m}"])
            sql = (f"SELECT {self.dialect.columns} FROM event_log{hint} WHERE "
                   + " AND ".join(window + conditions) + f" ORDER BY seq {order} LIMIT {size}"
                   + (f" OFFSET {int(skip)}" if skip else ""))
            rows = self._rows(sql, [after, *([] if before is None else [before]), *params])
            skip = 0
            yield from rows
            if len(rows) < size:
                return
            if newest_first:
                before = rows[-1].position
            else:
                after = rows[-1].position
            if left is not None:
                left -= len(rows)

    def _conditions(self, where: EventFilter) -> tuple[list[str], list[Any], str | None]:
        """(conditions, parameters, the index to walk): the index of the most selective filter
        (a task's or an agent's events are few; a time range is narrow next to the log; one type
        keeps position order); every other condition is written `+column` on SQLite so that the
        planner cannot switch to its index (without statistics it picked the event_type index
        over the task's: 123 ms)."""
        m = self.dialect.mark
        found: list[tuple[str, str, list[Any]]] = []  # (index, condition, parameters)
        if where.task_id is not None:
            found.append(("task_id", f"task_id = {m}", [where.task_id]))
        if where.agent_id is not None:
            found.append(("agent_id", f"agent_id = {m}", [where.agent_id]))
        if where.since is not None:
            found.append(("timestamp", f"timestamp >= {m}", [timestamp_text(where.since)]))
        if where.until is not None:
            found.append(("timestamp", f"timestamp < {m}", [timestamp_text(where.until)]))
        if where.types is not None:
            kinds = sorted(where.types)
            # One type walks its index in position order; several would be sorted: walk the log.
            walk = "event_type" if len(kinds) == 1 else ""
            found.append((walk, f"event_type IN ({','.join([m] * len(kinds))})", kinds))
        if where.source is not None:
            found.append(("", f"source = {m}", [where.source]))
        for wanted in where.data:
            sql, values = self.dialect.data_condition(wanted)
            found.append(("", sql, values))
        index = next((ix for ix, _, _ in found if ix), None)
        conditions: list[str] = []
        params: list[Any] = []
        for ix, condition, values in found:
            hinted = self.dialect.index_hints and ix != index
            conditions.append("+" + condition if hinted else condition)
            params += values
        return conditions, params, index

    def _by_positions(self, conditions: list[str], params: list[Any], after: int,
                      before: int | None, limit: int | None, newest_first: bool, offset: int
                      ) -> Iterator[StoredEvent]:
        m = self.dialect.mark
        window = [f"seq > {m}"] + ([] if before is None else [f"seq < {m}"])
        found = self._fetch(
            "SELECT seq FROM event_log INDEXED BY idx_event_log_timestamp WHERE "
            + " AND ".join(conditions + window),
            [*params, after, *([] if before is None else [before])])
        positions = sorted((seq for (seq,) in found), reverse=newest_first)
        positions = positions[offset:][:limit]
        for i in range(0, len(positions), _CHUNK):
            chunk = positions[i : i + _CHUNK]
            rows = self._rows(f"SELECT {self.dialect.columns} FROM event_log WHERE seq IN "
                              f"({','.join([m] * len(chunk))})", chunk)
            yield from sorted(rows, reverse=newest_first)

    def get(self, event_id: str) -> StoredEvent | None:
        rows = self._rows(f"SELECT {self.dialect.columns} FROM event_log WHERE id = "
                          f"{self.dialect.mark}", (event_id,))
        return rows[0] if rows else None

    def count_by_type(self, since: datetime | None = None,
                      until: datetime | None = None) -> dict[str, int]:
        conditions, params, _ = self._conditions(EventFilter(since=since, until=until))
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        # `+event_type` keeps SQLite's planner on the timestamp index (473 ms -> 0.2 ms at 1M).
        group = "+event_type" if self.dialect.index_hints and conditions else "event_type"
        return dict(self._fetch(f"SELECT event_type, count(*) FROM event_log{where} "
                                f"GROUP BY {group}", params))

    def head(self) -> int:
        rows = self._fetch(self.dialect.head)
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def stream_versions(self, streams: Collection[str]) -> dict[str, int]:
        versions = dict.fromkeys(streams, 0)
        names = list(versions)
        m = self.dialect.mark
        for i in range(0, len(names), _CHUNK):
            chunk = names[i : i + _CHUNK]
            versions.update(self._fetch(
                f"SELECT stream_id, version FROM swarmlog_streams WHERE stream_id IN "
                f"({','.join([m] * len(chunk))})", chunk))
        return versions

    # -- snapshots ------------------------------------------------------------------------

    def save_snapshot(self, projection: str, version: int, position: int, state: str,
                      items: Iterable[tuple[str, str]] = ()) -> int:
        m = self.dialect.mark
        with self.transaction():
            bound = self.hash_at(position)
            digest = None if bound is None else self.chain.digest(bound, projection, version,
                                                                  position, state)
            snapshot_id = self._insert_returning_id(
                "INSERT INTO swarmlog_snapshots (projection, version, position, state, created_at, "
                f"chain_hash, digest) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m})",
                (projection, version, position, state, timestamp_text(utc_now()), bound, digest))
            self.save_snapshot_items(projection, version, position, items)
            return snapshot_id

    def save_snapshot_items(self, projection: str, version: int, position: int,
                            items: Iterable[tuple[str, str]]) -> None:
        m = self.dialect.mark
        with self.transaction():
            bound = self.hash_at(position)
            chain = self.chain
            self._executemany(
                "INSERT INTO swarmlog_snapshot_items (projection, version, key, position, state, "
                f"digest) VALUES ({m}, {m}, {m}, {m}, {m}, {m}) ON CONFLICT (projection, version, "
                "key, position) DO UPDATE SET state = excluded.state, digest = excluded.digest",
                ((projection, version, key, position, text,
                  None if bound is None else chain.digest(bound, projection, version, key,
                                                          position, text))
                 for key, text in items))

    def latest_snapshot(self, projection: str, version: int,
                        upto: int | None = None) -> SnapshotRecord | None:
        m = self.dialect.mark
        rows = self._fetch(
            f"SELECT {_SNAPSHOT} FROM swarmlog_snapshots "
            f"WHERE projection = {m} AND version = {m} AND position <= {m} "
            "ORDER BY position DESC, id DESC LIMIT 1",
            (projection, version, 2**63 - 1 if upto is None else upto))
        return _snapshot(rows[0]) if rows else None

    def snapshots(self, *, with_state: bool = True) -> list[SnapshotRecord]:
        columns = _SNAPSHOT if with_state else _SNAPSHOT.replace("state", "''")
        rows = self._fetch(f"SELECT {columns} FROM swarmlog_snapshots ORDER BY id")
        return [_snapshot(r) for r in rows]

    def delete_snapshots(self, ids: Collection[int]) -> int:
        if not ids:
            return 0
        with self.transaction():
            listed = list(ids)
            return self._execute("DELETE FROM swarmlog_snapshots WHERE id IN "
                                 f"({','.join([self.dialect.mark] * len(listed))})", listed)

    def snapshot_item(self, projection: str, version: int, key: str, upto: int) -> str | None:
        m = self.dialect.mark
        rows = self._fetch(
            f"SELECT state FROM swarmlog_snapshot_items WHERE projection = {m} AND version = {m} AND "
            f"key = {m} AND position <= {m} ORDER BY position DESC LIMIT 1",
            (projection, version, key, upto))
        return rows[0][0] if rows else None

    def snapshot_item_digests(self, projection: str, version: int, position: int
                              ) -> list[tuple[str, str, bytes | None]]:
        m = self.dialect.mark
        rows = self._fetch(
            "SELECT key, state, digest FROM swarmlog_snapshot_items WHERE projection = "
            f"{m} AND version = {m} AND position = {m} ORDER BY key", (projection, version, position))
        return [(key, state, None if digest is None else bytes(digest)) for key, state, digest in rows]

    def snapshot_items(self, projection: str, version: int, upto: int,
                       prefix: str = "") -> list[tuple[str, str]]:
        m = self.dialect.mark
        starts, values = self.dialect.key_prefix(prefix)
        # Each key's newest item at or before `upto`.
        rows = self._fetch(
            f"SELECT key, state FROM swarmlog_snapshot_items i WHERE projection = {m} AND version = {m} "
            f"AND {starts} AND position = (SELECT max(position) FROM swarmlog_snapshot_items j WHERE "
            "j.projection = i.projection AND j.version = i.version AND j.key = i.key AND "
            f"j.position <= {m}) ORDER BY key", (projection, version, *values, upto))
        return [(key, state) for key, state in rows]

    # -- pruning --------------------------------------------------------------------------

    def prunes(self) -> list[PruneRecord]:
        rows = self._fetch(
            "SELECT id, first_position, last_position, count, cutoff, pruned_at, archive_path, "
            "archive_sha256, cut_hash, record_hash FROM swarmlog_prunes ORDER BY id")
        return [PruneRecord(*r[:8], *(None if h is None else bytes(h) for h in r[8:]))
                for r in rows]

    def record_prune(self, first: int, last: int, cutoff: str, archive_path: str | None,
                     archive_sha256: str | None) -> PruneRecord:
        m = self.dialect.mark
        with self.transaction():
            # (Positions are gapless from the oldest stored row: its end and its start tell.)
            lowest, highest, pruned = self._fetch(
                "SELECT (SELECT min(seq) FROM event_log), "
                f"(SELECT max(seq) FROM event_log WHERE seq <= {m}), "
                "(SELECT max(last_position) FROM swarmlog_prunes)", (last,))[0]
            refuse_overlap(self.location, first, last, lowest, highest, pruned)
            count = last - first + 1
            cut_hash = self.hash_at(last)
            earlier = self._fetch("SELECT record_hash FROM swarmlog_prunes ORDER BY id DESC LIMIT 1")
            previous = bytes(earlier[0][0]) if earlier and earlier[0][0] is not None else GENESIS
            pruned_at = timestamp_text(utc_now())
            record = PruneRecord(0, first, last, count, cutoff, pruned_at, archive_path,
                                 archive_sha256, cut_hash)
            record = record._replace(record_hash=prune_hash(self.chain, previous, record))
            record_id = self._insert_returning_id(
                "INSERT INTO swarmlog_prunes (first_position, last_position, count, cutoff, "
                "pruned_at, archive_path, archive_sha256, cut_hash, record_hash) VALUES "
                f"({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})", record[1:])
            return record._replace(id=record_id)

    def delete_pruned(self, limit: int) -> int:
        m = self.dialect.mark
        with self.transaction():
            lowest, through = self._fetch(
                "SELECT (SELECT min(seq) FROM event_log), "
                "(SELECT max(last_position) FROM swarmlog_prunes)")[0]
            if lowest is None or through is None or lowest > through:
                return 0
            self._open_prune_gate(True)
            removed = self._execute(f"DELETE FROM event_log WHERE seq <= {m}",
                                    (min(through, lowest + limit - 1),))
            self._open_prune_gate(False)
            return removed
