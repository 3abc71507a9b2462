"""The projection abstraction, the anomaly record, and what the read models share.

A projection is a deterministic, total fold: `apply(state, position, event)` never raises on
anything the store can hold. An event that breaks the lifecycle is not refused (it is already a
fact in the log); it is noted as an `Anomaly` on the read model it touches and counted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import chain
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, cast

import orjson

from domain.codec import FoldRow, StoredEvent, decode, fold_row
from domain.errors import CorruptEvent, ProjectionError
from domain.events import Event
from domain.lenient import nonconformity, salvage
from store.base import EventLogStore

S = TypeVar("S")
V = TypeVar("V")

#: Anomalies kept per task or agent (the newest); their counts stay exact.
MAX_ANOMALIES = 20
#: Anomalies kept per read model for events that touch no single task or agent.
MAX_UNATTRIBUTED_ANOMALIES = 100


class Projection(Generic[S]):
    """A read model: a named, versioned, deterministic fold of the log into a JSON-able state.

    Subclasses give `name`, `version`, `initial`, `apply`, `dump` and `load`; `fold_rows` folds
    stored rows (decoding each to its typed event) and may be replaced by a faster fold that
    gives the same state. A projection whose closed entries leave memory at each snapshot also
    overrides `split` and `attach` (see `Tiered`)."""

    #: Unique among the projections of one runner; names the snapshots.
    name: str
    #: Bump whenever `apply` (or the shape of the state) changes: older snapshots are then ignored.
    version: int

    def initial(self) -> S:
        """The state of an empty log."""
        raise NotImplementedError

    def apply(self, state: S, position: int, event: Event) -> S:
        """Fold one event into `state` (it may be changed in place); never raises."""
        raise NotImplementedError

    def fold_scan(self, state: S, rows: Sequence[FoldRow],
                  full: Callable[[int], StoredEvent]) -> S:
        """Fold rows as a store's `scan` reads them, in position order: the one fold of stored
        rows (rebuilds, start-ups, catch-ups, prunes). `full(position)` is the whole row, for a
        row taken the typed way. By default every row is: `fold_row` of its whole row."""
        for row in rows:
            state = self.fold_row(state, full(row[0]))
        return state

    def fold_rows(self, state: S, rows: Iterable[StoredEvent]) -> S:
        """Fold whole rows (an archive segment, a page already read whole) through
        `fold_scan`, a page at a time."""
        page: list[StoredEvent] = []
        for row in rows:
            page.append(row)
            if len(page) == _WHOLE_PAGE:
                state = self._fold_whole(state, page)
                page = []
        return self._fold_whole(state, page) if page else state

    def _fold_whole(self, state: S, page: list[StoredEvent]) -> S:
        state = self.fold_scan(state, [fold_row(r) for r in page], whole(page))
        self.spill(state)
        return state

    def fold_row(self, state: S, row: StoredEvent) -> S:
        """Fold one stored row: `apply` of its typed event. A row that does not decode (stored
        as the ADR 017 module accepted it, or written by another client) is never fatal: it is
        passed to `nonconforming`, and what in it conforms (`domain.lenient.salvage`) is applied."""
        try:
            event: Event | None = decode(row)
            if row.conforms is not None and not row.conforms:  # flagged when it was stored
                reason = nonconformity(row) or "flagged as not conforming when stored"
                state = self.nonconforming(state, row, reason, event)
        except CorruptEvent as e:
            event = salvage(row)
            state = self.nonconforming(state, row, e.reason, event)
        return state if event is None else self.apply(state, row.position, event)

    def nonconforming(self, state: S, row: StoredEvent, reason: str, salvaged: Event | None) -> S:
        """Take note of a row that does not decode (`salvaged`: what `apply` is given next, if
        anything). By default nothing."""
        return state

    def dump(self, state: S) -> str:
        """The state as JSON text, such that `load(dump(s)) == s`."""
        raise NotImplementedError

    def load(self, text: str) -> S:
        """The state a `dump` (or `split`) wrote."""
        raise NotImplementedError

    def split(self, state: S) -> tuple[str, Iterable[tuple[str, str]]]:
        """What a snapshot of `state` stores: its text, and the entries it keeps out of memory
        as items, (key, JSON text). By default everything is in the text."""
        return self.dump(state), []

    def spill(self, state: S) -> None:
        """Move entries a fold no longer needs in memory out of it, if there are many (called
        after each page of a fold; see `Tiered.spill`). By default nothing."""

    def attach(self, state: S, cold: Cold) -> None:
        """After a snapshot `split` made is stored (or loaded): drop its items from memory and
        read entries that are not in memory from `cold` from now on. By default nothing."""


class Anomaly(NamedTuple):
    """An event the lifecycle did not expect: where it is in the log, its type, and why."""

    position: int
    event_type: str
    reason: str


class Noted(Protocol):
    """Something that keeps its anomalies: a task, an agent, or a whole read model."""

    anomalies: list[Anomaly]
    anomaly_count: int


def note(model: Noted, entity: Noted | None, position: int, kind: str, reason: str) -> None:
    """Record an anomaly on `entity` (or on the read model when it touches no single entity)."""
    model.anomaly_count += 1
    anomaly = Anomaly(position, kind, reason)
    if entity is None:
        _keep(model.anomalies, anomaly, MAX_UNATTRIBUTED_ANOMALIES)
    else:
        entity.anomaly_count += 1
        _keep(entity.anomalies, anomaly, MAX_ANOMALIES)


def _keep(anomalies: list[Anomaly], anomaly: Anomaly, cap: int) -> None:
    anomalies.append(anomaly)
    if len(anomalies) > cap:
        del anomalies[0]


# -- entries kept out of memory ------------------------------------------------------------------
#
# A read model that keeps an entry per task would grow with every task ever seen, and so would
# its snapshots and every start-up's load. Closed tasks hardly change again (terminal statuses
# are absorbing; only anomalies and tool counts may still land on them), and agents that left
# may never come back, so at each snapshot they leave memory: they are saved beside it as
# snapshot items, one per entry, and read back one at a time when an event names them (and kept
# in memory from then on, until the next snapshot). A snapshot then holds what is open, and
# start-up costs what is open, not what the log has ever held.


class SnapshotItems(Protocol):
    """What a cold tier reads: the store's snapshot items."""

    def snapshot_item(self, projection: str, version: int, key: str, upto: int) -> str | None: ...

    def snapshot_items(self, projection: str, version: int, upto: int,
                       prefix: str = "") -> list[tuple[str, str]]: ...


class Cold(NamedTuple):
    """The entries of a projection kept in the store, as of its snapshot at `position`."""

    store: SnapshotItems
    projection: str
    version: int
    position: int

    def get(self, key: str) -> str | None:
        return self.store.snapshot_item(self.projection, self.version, key, self.position)

    def items(self, prefix: str = "") -> list[tuple[str, str]]:
        return self.store.snapshot_items(self.projection, self.version, self.position, prefix)


#: Entries a `Tiered` map holds in memory before a fold moves its closed ones to a `Spill`.
SPILL_AT = 2_000
#: Rows a `Spill` reads at a time when a snapshot takes its entries.
_SPILL_PAGE = 1_000
#: The bits of a `Spill`'s filter of the keys it holds, less one (1 MiB: one key in ~300 not
#: there is looked up anyway, at 200k keys).
_BITS = (1 << 23) - 1


class Spill:
    """Closed entries a long fold moved out of memory since the last snapshot, over the tier
    they were read from before (`under`: the snapshot's items, or nothing). They are kept in a
    private temporary SQLite database (deleted when it is closed or collected), so a rebuild or
    a start-up without snapshots holds what is open, not what the log has ever held; the next
    snapshot stores them as its items and the spill is dropped."""

    def __init__(self, under: Cold | None) -> None:
        self.under = under
        # A Bloom filter of the keys spilled here (two bits each): a key a fold meets for the
        # first time (every new task) is mostly not looked up at all.
        self._seen = bytearray((_BITS + 1) >> 3)
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for pragma in ("cache_size = -2048",  # 2 MiB of pages; the rest on disk
                       "journal_mode = OFF", "synchronous = OFF"):  # scratch: nothing to recover
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE spilled (key TEXT PRIMARY KEY, state TEXT NOT NULL)"
                         " WITHOUT ROWID")

    def put(self, items: Sequence[tuple[str, str]]) -> None:
        seen = self._seen
        for key, _ in items:
            h = hash(key)
            seen[(h & _BITS) >> 3] |= 1 << (h & 7)
            seen[((h >> 24) & _BITS) >> 3] |= 1 << ((h >> 24) & 7)
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO spilled VALUES (?, ?)", items)
        self._db.execute("COMMIT")

    def get(self, key: str) -> str | None:
        h = hash(key)
        seen = self._seen
        if seen[(h & _BITS) >> 3] & (1 << (h & 7)) and \
                seen[((h >> 24) & _BITS) >> 3] & (1 << ((h >> 24) & 7)):
            found = self._db.execute("SELECT state FROM spilled WHERE key = ?", (key,)).fetchone()
            if found is not None:
                return cast(str, found[0])
        return None if self.under is None else self.under.get(key)

    def items(self, prefix: str = "") -> list[tuple[str, str]]:
        every = dict(self.under.items(prefix)) if self.under is not None else {}
        every.update(self.own(prefix))
        return sorted(every.items())

    def own(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """The entries spilled here (not those under them), in key order, a page at a time."""
        after = ""
        while True:
            page = self._db.execute(
                "SELECT key, state FROM spilled WHERE key > ? AND substr(key, 1, ?) = ? "
                "ORDER BY key LIMIT ?", (after, len(prefix), prefix, _SPILL_PAGE)).fetchall()
            yield from page
            if len(page) < _SPILL_PAGE:
                return
            after = page[-1][0]


class Tiered(dict[str, V]):
    """Entries by key: those in memory (this dict: every open one, and those changed since the
    last snapshot) over those out of it (`cold`: the store's items as of that snapshot, under
    what a long fold spilled since). A fold looks in memory with `get` and, on a miss, `recall`s
    the entry into memory; `merged` is every entry, and equality compares every entry. A
    projection with two such maps gives them two `prefix`es, which their keys carry in the
    store."""

    __slots__ = ("_limit", "_parse", "_prefix", "cold")

    def __init__(self, parse: Callable[[str], V], entries: Iterable[tuple[str, V]] = (), *,
                 prefix: str = "") -> None:
        super().__init__(entries)
        self._parse = parse
        self._prefix = prefix
        self._limit = SPILL_AT
        self.cold: Cold | Spill | None = None

    def recall(self, key: str) -> V | None:
        """The entry, moved into memory if it was out of it (None: no such entry)."""
        entry = self.get(key)
        if entry is None and self.cold is not None:
            text = self.cold.get(self._prefix + key)
            if text is not None:
                entry = self[key] = self._parse(text)
        return entry

    def peek(self, key: str) -> V | None:
        """The entry, read from out of memory if it is there, without moving it into memory."""
        entry = self.get(key)
        if entry is None and self.cold is not None:
            text = self.cold.get(self._prefix + key)
            entry = None if text is None else self._parse(text)
        return entry

    def merged(self) -> dict[str, V]:
        """Every entry: those in memory, then those only out of it (in key order)."""
        every = dict(self)
        if self.cold is not None:
            skip = len(self._prefix)
            for key, text in self.cold.items(self._prefix):
                if key[skip:] not in every:
                    every[key[skip:]] = self._parse(text)
        return every

    def spill(self, closed: Callable[[V], bool], dump: Callable[[V], str]) -> None:
        """When more entries than `SPILL_AT` (or twice those that stayed the last time) are in
        memory, move the `closed` ones to a `Spill`. A recalled entry is in both until it is
        spilled again (memory wins; see `split`)."""
        if len(self) <= self._limit:
            return
        out = [(key, entry) for key, entry in self.items() if closed(entry)]
        if out:
            spill = self.cold if isinstance(self.cold, Spill) else Spill(self.cold)
            spill.put([(self._prefix + key, dump(entry)) for key, entry in out])
            for key, _ in out:
                del self[key]
            self.cold = spill
        self._limit = max(SPILL_AT, 2 * len(self))

    def split(self, closed: Callable[[V], bool], dump: Callable[[V], str]
              ) -> tuple[dict[str, V], Iterable[tuple[str, str]]]:
        """The entries, parted for a snapshot: those that stay in memory (by key), and the rest
        as snapshot items, (key, text): the `closed` ones in memory, then those spilled since
        the last snapshot (read as the snapshot is stored)."""
        kept: dict[str, V] = {}
        items: list[tuple[str, str]] = []
        for key, entry in self.items():
            if closed(entry):
                items.append((self._prefix + key, dump(entry)))
            else:
                kept[key] = entry
        if not isinstance(self.cold, Spill):
            return kept, items
        skip = len(self._prefix)
        spilled = ((key, text) for key, text in self.cold.own(self._prefix)
                   if key[skip:] not in self)
        return kept, chain(items, spilled)

    def attach(self, cold: Cold, closed: Callable[[V], bool]) -> None:
        """After a snapshot stored the `closed` entries (and any spilled ones) as items: drop
        them from memory, and read entries that are not in memory from `cold` (that snapshot's
        items) from now on."""
        for key in [key for key, entry in self.items() if closed(entry)]:
            del self[key]
        self.cold = cold
        self._limit = max(SPILL_AT, 2 * len(self))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Tiered):
            return self.merged() == other.merged()
        return isinstance(other, dict) and self.merged() == other

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None


# -- JSON ---------------------------------------------------------------------------------------


def _tuple_as_list(value: Any) -> Any:
    if isinstance(value, tuple):  # Anomaly and other NamedTuples
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def dumps(value: Any) -> str:
    """JSON text of a state made of dataclasses, dicts, lists, enums, datetimes and tuples."""
    return orjson.dumps(value, default=_tuple_as_list, option=orjson.OPT_NON_STR_KEYS).decode()


def parse_time(text: str | None) -> datetime | None:
    """A datetime that `dumps` wrote (or None)."""
    return None if text is None else datetime.fromisoformat(text)


_new_tuple = tuple.__new__


def parse_anomalies(items: list[list[Any]]) -> list[Anomaly]:
    """Anomalies that `dumps` wrote."""
    return [_new_tuple(Anomaly, item) for item in items]  # (a NamedTuple, minus its __new__)


#: Events a runner folds at a time into the read models it serves (between two releases of its
#: state lock: a query waits for at most this many).
PAGE_SIZE = 50
#: Whole rows `fold_rows` hands on at a time.
_WHOLE_PAGE = 1000


def whole(rows: Sequence[StoredEvent]) -> Callable[[int], StoredEvent]:
    """The whole row at a position, among rows already read whole."""
    return {row.position: row for row in rows}.__getitem__


class PageRows:
    """The whole rows of a page of `FoldRow`s, read from the store the first time one is asked
    for (a fold takes few rows the typed way, and most pages none)."""

    __slots__ = ("_first", "_last", "_rows", "_store")

    def __init__(self, store: EventLogStore, page: Sequence[FoldRow]) -> None:
        self._store = store
        self._first, self._last = page[0][0], page[-1][0]
        self._rows: dict[int, StoredEvent] | None = None

    def __call__(self, position: int) -> StoredEvent:
        if self._rows is None:
            self._rows = {r.position: r for r in self._store.read(self._first - 1, self._last)}
        row = self._rows.get(position)
        if row is None:
            raise RowsVanished(position)
        return row


class RowsVanished(ProjectionError):
    """A row a fold had scanned was gone when it was read whole: pruned meanwhile."""

    def __init__(self, position: int) -> None:
        super().__init__(f"event {position} was pruned while it was being folded")
        self.position = position


def fold_page(projections: Sequence[Projection[Any]], states: list[Any], positions: list[int],
              page: Sequence[FoldRow], full: Callable[[int], StoredEvent]) -> None:
    """Fold one page into each projection, skipping the rows at or before its position, and
    let each spill what it no longer needs in memory."""
    first, last = page[0][0], page[-1][0]
    for i, projection in enumerate(projections):
        at = positions[i]
        if at >= last:
            continue
        todo = page if at < first else [r for r in page if r[0] > at]
        states[i] = projection.fold_scan(states[i], todo, full)
        positions[i] = last
        projection.spill(states[i])
