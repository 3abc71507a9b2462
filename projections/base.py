"""The projection abstraction, the anomaly record, and helpers the three read models share.

A projection is a deterministic, total fold: `apply(state, recorded)` never raises on anything the
store can hold. An event that breaks the lifecycle is not refused (it is already a fact in the
log); it is noted as an `Anomaly` on the read model it touches and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import orjson

from domain.codec import decode_view
from domain.events import EventType
from domain.lifecycle import TASK_TRANSITIONS, TaskStatus
from store.base import Recorded, StoredRow

S = TypeVar("S")

#: Anomalies kept per task or agent (the newest); their counts stay exact.
MAX_ANOMALIES = 20
#: Anomalies kept per read model for events that touch no single task or agent.
MAX_UNATTRIBUTED_ANOMALIES = 100


class Anomaly(NamedTuple):
    """An event the lifecycle did not expect: where it is in the log, its type, and why."""

    position: int
    event_type: str
    reason: str


class Projection(Protocol[S]):
    """A read model: a named, versioned, deterministic fold of the log into a JSON-able state."""

    #: Unique among the projections of one runner; names the snapshots.
    name: str
    #: Bump whenever `apply` (or the shape of the state) changes: older snapshots are then ignored.
    version: int

    def initial(self) -> S:
        """The state of an empty log."""
        ...

    def apply(self, state: S, recorded: Recorded) -> S:
        """Fold one event into `state` (it may be mutated) and return the new state. Never raises."""
        ...

    def dump(self, state: S) -> str:
        """The state as JSON text, such that `load(dump(s)) == s`."""
        ...

    def load(self, text: str) -> S:
        """The state a `dump` wrote."""
        ...


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


V = TypeVar("V")


class Tiered(dict[str, V]):
    """Entries by key: those in memory (this dict: every open one, and those changed since the
    last snapshot) over those in the store (`cold`, as of that snapshot). A fold looks in memory
    with `get` and, on a miss, `recall`s the entry from the store into memory; `merged` is every
    entry, and equality compares every entry. A projection with two such maps gives them two
    `prefix`es, which their keys carry in the store."""

    __slots__ = ("_parse", "_prefix", "cold")

    def __init__(self, parse: Callable[[str], V], entries: Iterable[tuple[str, V]] = (), *,
                 prefix: str = "") -> None:
        super().__init__(entries)
        self._parse = parse
        self._prefix = prefix
        self.cold: Cold | None = None

    def recall(self, key: str) -> V | None:
        """The entry, moved into memory from the store if it was there (None: no such entry)."""
        entry = self.get(key)
        if entry is None and self.cold is not None:
            text = self.cold.get(self._prefix + key)
            if text is not None:
                entry = self[key] = self._parse(text)
        return entry

    def peek(self, key: str) -> V | None:
        """The entry, read from the store if it is there, without moving it into memory."""
        entry = self.get(key)
        if entry is None and self.cold is not None:
            text = self.cold.get(self._prefix + key)
            entry = None if text is None else self._parse(text)
        return entry

    def merged(self) -> dict[str, V]:
        """Every entry: those in memory, then those only in the store (in key order)."""
        every = dict(self)
        if self.cold is not None:
            skip = len(self._prefix)
            for key, text in self.cold.items(self._prefix):
                if key[skip:] not in every:
                    every[key[skip:]] = self._parse(text)
        return every

    def split(self, closed: Callable[[V], bool],
              dump: Callable[[V], str]) -> tuple[dict[str, V], list[tuple[str, str]]]:
        """The entries in memory, parted for a snapshot: those that stay in it (by key), and
        the `closed` ones as snapshot items, (key, text)."""
        kept: dict[str, V] = {}
        items: list[tuple[str, str]] = []
        for key, entry in self.items():
            if closed(entry):
                items.append((self._prefix + key, dump(entry)))
            else:
                kept[key] = entry
        return kept, items

    def attach(self, cold: Cold, closed: Callable[[V], bool]) -> None:
        """After a snapshot stored the `closed` entries as items: drop them from memory, and read
        entries that are not in memory from `cold` (that snapshot's items) from now on."""
        for key in [key for key, entry in self.items() if closed(entry)]:
            del self[key]
        self.cold = cold

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Tiered):
            return self.merged() == other.merged()
        return isinstance(other, dict) and self.merged() == other

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None


S_contra = TypeVar("S_contra", contravariant=True)


@runtime_checkable
class TieredProjection(Protocol[S_contra]):
    """A projection whose closed entries leave memory at each snapshot (see `Tiered`)."""

    def split(self, state: S_contra) -> tuple[str, list[tuple[str, str]]]:
        """The snapshot of `state`: its JSON text without the closed entries (`load` reads it
        like a `dump`), and those entries as items, (key, JSON text)."""
        ...

    def attach(self, state: S_contra, cold: Cold) -> None:
        """After the snapshot `split` made is stored: drop its items from memory, and read
        entries from `cold` from now on."""
        ...


def stored_form(projection: Projection[Any], state: Any) -> tuple[str, list[tuple[str, str]]]:
    """What a snapshot of `state` stores: its text and its items."""
    if isinstance(projection, TieredProjection):
        return projection.split(state)
    return projection.dump(state), []


def attach(projection: Projection[Any], state: Any, cold: Cold) -> None:
    """Point a state at the items of the snapshot it was loaded from or just saved as."""
    if isinstance(projection, TieredProjection):
        projection.attach(state, cold)


_new_tuple = tuple.__new__


def views(rows: Iterable[StoredRow]) -> Iterator[Recorded]:
    """Stored rows as records for a bulk fold (a rebuild, a prune): each row whose checksum
    shows it is as swarmlog wrote it becomes a light `EventView`, any other row a typed event
    validated in full (see `domain.codec.decode_view`). Folds read both alike."""
    for position, id_, kind, source, task, agent, data, ts, stream, version, schema, crc in rows:
        event = decode_view(position, id_, kind, source, task, agent, data, ts, schema, crc)
        # A NamedTuple built with tuple.__new__: the same object, without the Python __new__.
        yield _new_tuple(Recorded, (position, stream, version, event))


def fold(projection: Projection[S], records: Iterable[Recorded], state: S | None = None) -> S:
    """Fold `records` into `state` (the initial state if None): rebuild is this `reduce`."""
    current = projection.initial() if state is None else state
    apply = projection.apply
    for recorded in records:
        current = apply(current, recorded)
    return current


def apply_many(projection: Projection[S], state: S, records: Iterable[Recorded]) -> S:
    """Fold several events: the projection's own `apply_many` if it has one (the same result as
    `apply` one by one, minus a call per event), else `apply` one by one."""
    many = getattr(projection, "apply_many", None)
    if many is not None:
        return many(state, records)
    return fold(projection, records, state)


Handler = Callable[[Any, int, Any], None]


class DispatchingFold:
    """`apply` and `apply_many` of a fold whose handlers mutate the state: each event goes to
    the handler of its type, `(state, position, event)`; `plain=True` takes `_PLAIN` (the test
    oracle, without fast paths) instead of `_FAST`."""

    _FAST: dict[EventType, Handler]
    _PLAIN: dict[EventType, Handler]

    def __init__(self, *, plain: bool = False) -> None:
        self._handlers = self._PLAIN if plain else self._FAST

    def apply(self, state: S, recorded: Recorded) -> S:
        event: Any = recorded[3]
        handler = self._handlers.get(event.event_type)
        if handler is not None:
            handler(state, recorded[0], event)
        return state

    def apply_many(self, state: S, records: Iterable[Recorded]) -> S:
        return dispatch_many(self._handlers, state, records)


def dispatch_many(handlers: dict[EventType, Handler], state: S, records: Iterable[Recorded]) -> S:
    """The loop of a fold that mutates its state: each event to the handler of its type."""
    get = handlers.get
    for recorded in records:
        event: Any = recorded[3]
        handler = get(event.event_type)
        if handler is not None:
            handler(state, recorded[0], event)
    return state


class Noted(Protocol):
    """Something that keeps its anomalies: a task, an agent, or a whole read model."""

    anomalies: list[Anomaly]
    anomaly_count: int


def note(model: Noted, entity: Noted | None, position: int, event: Any, reason: str) -> None:
    """Record an anomaly on `entity` (or on the read model when it touches no single entity)."""
    model.anomaly_count += 1
    anomaly = Anomaly(position, event.event_type.value, reason)
    if entity is None:
        _keep(model.anomalies, anomaly, MAX_UNATTRIBUTED_ANOMALIES)
    else:
        entity.anomaly_count += 1
        _keep(entity.anomalies, anomaly, MAX_ANOMALIES)


def _keep(anomalies: list[Anomaly], anomaly: Anomaly, cap: int) -> None:
    anomalies.append(anomaly)
    if len(anomalies) > cap:
        del anomalies[0]


# -- the task lifecycle as every fold applies it ---------------------------------------------

_ASSIGNED = EventType.TASK_ASSIGNED
_BID = EventType.BID_SUBMITTED


# Folds take events as `Any`: the payload (`data`) and `event_type` are declared on each member
# of the event union, not on the `Event` base.


def missing_field(event: Any) -> str | None:
    """The field a task event lacks that the fold needs to apply it (None when complete)."""
    kind = event.event_type
    if kind is _ASSIGNED or kind is _BID:
        if event.agent_id is None:
            return "agent_id"
        if kind is _BID and event.data.bid_sats is None:
            return "data.bid_sats"
    return None


def advance_task(status: TaskStatus | None, event: Any) -> tuple[TaskStatus, bool]:
    """(the task's status after `event`, whether the event was applied) for an event of one of
    `TASK_EVENT_TYPES` that has a task_id. Every fold uses this so that they agree.

    A task first seen through a later event (its task.created lost or logged without a task_id,
    as the seed's callers do) is taken as created, so the rest of its lifecycle still folds. An
    event the table refuses, or one lacking the agent or bid it needs, changes nothing.
    """
    kind = event.event_type
    if status is None and kind is not EventType.TASK_CREATED:
        status = TaskStatus.CREATED
    after = TASK_TRANSITIONS[status].get(kind)
    if after is None or ((kind is _ASSIGNED or kind is _BID) and missing_field(event)):
        # Only task.created leaves `status` None, and the table always accepts it.
        return status or TaskStatus.CREATED, False
    return after, True


def moves_on(kind: EventType) -> dict[TaskStatus, TaskStatus]:
    """status -> next status on `kind`, for the statuses of an existing task that allow it: the
    table, sliced for the fast paths of the folds (a miss sends them to the plain path)."""
    return {
        status: moves[kind]
        for status, moves in TASK_TRANSITIONS.items()
        if status is not None and kind in moves
    }


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


def parse_anomalies(items: list[list[Any]]) -> list[Anomaly]:
    """Anomalies that `dumps` wrote."""
    return [_new_tuple(Anomaly, item) for item in items]  # (a NamedTuple, minus its __new__)


#: Events folded a page at a time (between two releases of a runner's state lock, and two
#: progress reports).
#: Small on purpose: decoded events held in a page outlive the collector's young generation and
#: get promoted, and full collections then walk the whole read model; at 500 a 1M-event rebuild
#: spent 11 of its 25 s in 86 full collections, at 50 it runs 8 (profiled).
PAGE_SIZE = 50


def fold_page(projections: Sequence[Projection[Any]], states: list[Any], positions: list[int],
               page: list[Recorded]) -> None:
    """Fold one page into each projection, skipping the events at or before its position."""
    first, last = page[0].position, page[-1].position
    for i, projection in enumerate(projections):
        at = positions[i]
        if at >= last:
            continue
        todo = page if at < first else [r for r in page if r.position > at]
        states[i] = apply_many(projection, states[i], todo)
        positions[i] = last
