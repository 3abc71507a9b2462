"""`EventLog`: one object that opens a store by path or URL and offers the typed API."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.codec import StoredEvent, build_event, check_timestamp, encode
from domain.errors import CommitInDoubt, InvalidArgument, InvalidEvent, StoreError
from domain.events import Event, EventType
from domain.ids import utc_now
from projections import pruning
from projections.agents import AgentsState
from projections.base import Projection
from projections.models import ReadModels
from projections.pruning import PruneReport
from projections.runner import ProjectionRunner, default_projections
from projections.summary import SummaryState
from projections.tasks import TasksState
from projections.verify import VerifyReport, verify
from store import (
    EVERYTHING,
    EventFilter,
    Store,
    ViewStore,
    first_stored,
    is_url,
    open_store,
    stored_count,
)
from swarmlog.views import read_model_views
from swarmlog.witness import Checkpoint, check_witness, checkpoint, read_witness
from swarmlog.witness import configured as configured_witness

#: Once the read models have folded this many events since their snapshots (at start-up, or
#: while a long-running log catches up), a new snapshot is stored: the next start-up folds at
#: most this many, and closed tasks leave memory (see `projections.base.Tiered`). The older
#: snapshots are retired (`projections.pruning.retire`): each read model keeps its newest few.
SNAPSHOT_AFTER = 10_000

#: Where the log lives when nobody says, relative to the working directory: the seed's own file,
#: shared with the host's other tables.
DEFAULT_DB = "data/swarm.db"

Subscriber = Callable[[StoredEvent], None]
Progress = Callable[[int, int], None]
log = logging.getLogger("swarmlog")
#: An operation that takes longer than this many seconds is logged (at INFO; quicker: DEBUG).
SLOW_SECONDS = 1.0


@contextlib.contextmanager
def _timed(what: Callable[[], str]) -> Iterator[None]:
    """Log `what()` with the time it took: at INFO when slow, else at DEBUG."""
    began = time.perf_counter()
    yield
    took = time.perf_counter() - began
    level = logging.INFO if took >= SLOW_SECONDS else logging.DEBUG
    if log.isEnabledFor(level):
        log.log(level, "%s in %.2fs", what(), took)


@dataclass(frozen=True)
class VacuumReport:
    """The database's size before and after a vacuum (None where it has no size)."""

    before_bytes: int | None
    after_bytes: int | None
    seconds: float


def default_location() -> str:
    """The database `EventLog()`, the facade and the CLI use when none is given:
    `$SWARMLOG_DB`, else a PostgreSQL `$DATABASE_URL` (as many PostgreSQL tools read it), else
    `data/swarm.db`."""
    given = os.environ.get("SWARMLOG_DB")
    if given:
        return given
    url = os.environ.get("DATABASE_URL", "")
    return url if is_url(url) else DEFAULT_DB


def _moment(row: StoredEvent) -> datetime:
    """The time a row to append is stamped with (its text as `encode` wrote it)."""
    try:
        moment = datetime.fromisoformat(row.timestamp)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidEvent("timestamp", f"{row.timestamp!r} is not a time with a timezone")
    return moment


def _cutoff(older_than: object, before: object) -> datetime:
    """The cutoff of a prune, in UTC: `before`, or `older_than` (an age, 0 or more) ago;
    InvalidArgument for anything else (a negative age would prune the young events too)."""
    if (older_than is None) == (before is None):
        raise InvalidArgument("prune", "give exactly one of older_than= or before=")
    if before is not None:
        if not isinstance(before, datetime):
            raise InvalidArgument("before", f"must be a datetime, got {type(before).__name__}")
        if before.utcoffset() is None:
            raise InvalidArgument("before", f"{before.isoformat()} is naive; give a timezone")
        try:
            return before.astimezone(UTC)
        except OverflowError:
            raise InvalidArgument("before", f"{before.isoformat()} is before year 1 in UTC") from None
    if not isinstance(older_than, timedelta):
        raise InvalidArgument("older_than", f"must be a timedelta, got {type(older_than).__name__}")
    if older_than < timedelta(0):
        raise InvalidArgument("older_than", f"{older_than} is negative: an age is 0 or more")
    try:
        return utc_now() - older_than
    except OverflowError:
        raise InvalidArgument("older_than", f"{older_than.days} days ago is before year 1") from None


class EventLog:
    """An open swarmlog: append typed events, query them, read the projections.

    The read models (`models`, or `tasks`, `agents`, `summary`) are folded on first use — from
    the newest snapshot, then the events after it — and caught up on every access after that.
    """

    def __init__(self, location: str | os.PathLike[str] | Store | None = None, *,
                 create: bool = True, read_only: bool = False,
                 projections: Sequence[Projection[Any]] | None = None) -> None:
        if location is None:
            location = default_location()
        if isinstance(location, str | os.PathLike):
            self.store: Store = open_store(location, create=create, read_only=read_only)
        else:
            self.store = location
        self.location = self.store.location
        self.read_only = read_only
        self.projections = list(default_projections() if projections is None else projections)
        self.runner = ProjectionRunner(self.store, self.projections)
        self._started = False
        self._snapshot_at = 0  # where the read models' newest snapshot (loaded or stored) is
        self._subscribers: list[Subscriber] = []
        self._pending: list[StoredEvent] = []  # appended in a transaction not yet committed
        self._depth = 0
        self._lock = threading.RLock()

    # -- writing --------------------------------------------------------------------------

    def append(self, events: Event | Sequence[Event],
               expected: Mapping[str, int] | None = None) -> list[int]:
        """Append one event or a batch atomically (every event validated first); returns their
        positions. `expected` maps streams to the versions they must be at (see `Store.append`)."""
        batch = [events] if isinstance(events, Event) else list(events)
        return [r.position for r in self.record([encode(e) for e in batch], expected)]

    def record(self, rows: Sequence[StoredEvent],
               expected: Mapping[str, int] | None = None) -> list[StoredEvent]:
        """Append encoded rows atomically and return them as stored (positioned), in order; the
        subscribers hear of the new ones once they are committed. A row stamped outside the
        accepted range (`domain.codec.check_timestamp`) is refused, and nothing is appended.

        When the answer to the commit is lost (`CommitInDoubt`: the connection dropped), the rows
        are appended once more: the same ids, so what was committed is found and not stored
        twice. Only if the log cannot be asked again does CommitInDoubt reach the caller, naming
        the events; appending them again then stores each once."""
        now = utc_now()
        for r in rows:
            check_timestamp(_moment(r), now)
        listening = bool(self._subscribers) and bool(rows)
        before = self.store.head() if listening else 0
        try:
            positions = self.store.append(rows, expected)
        except CommitInDoubt as doubt:
            positions = self._append_again(rows, expected, doubt)
        stored = [r._replace(position=p) for r, p in zip(rows, positions, strict=True)]
        if listening:
            with self._lock:
                self._pending += self._as_stored([r for r in stored if r.position > before])
                if not self._depth:
                    self._publish()
        return stored

    def _append_again(self, rows: Sequence[StoredEvent], expected: Mapping[str, int] | None,
                      doubt: CommitInDoubt) -> list[int]:
        try:
            return self.store.append(rows, expected)
        except StoreError as e:
            ids = tuple(r.id for r in rows)
            named = f"event {ids[0]}" if len(ids) == 1 else \
                f"events {ids[0]} and {len(ids) - 1} more"
            raise CommitInDoubt(f"{doubt}, and asked again: {e}. So {named} may or may not be "
                                "stored: append the same events again to store each once",
                                ids) from e

    def _as_stored(self, new: list[StoredEvent]) -> list[StoredEvent]:
        """New rows as the store holds them (with their stream versions), each once, in position
        order; a row it cannot read back (pruned meanwhile) as it was given."""
        wanted = {r.position: r for r in new}
        if not wanted:
            return []
        found: dict[int, StoredEvent] = {}
        with contextlib.suppress(StoreError):  # committed already: tell what is known
            found = {r.position: r for r in self.store.read(min(wanted) - 1, max(wanted))
                     if r.position in wanted}
        return [found.get(p, r) for p, r in sorted(wanted.items())]

    def _publish(self) -> None:
        rows, self._pending = self._pending, []
        for row in rows:
            for subscriber in list(self._subscribers):
                try:
                    subscriber(row)
                except Exception:  # a subscriber never loses or fails an append
                    log.exception("a subscriber of %s failed on the event at position %d",
                                  self.location, row.position)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(row)` for every event this log appends, after it is committed, in
        append order (this process's appends only: other processes' are seen by `tail -f`
        and `runner.follow`). A callback that raises is logged and changes nothing. Returns
        the function that unsubscribes it."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction around several appends (all or nothing); subscribers hear of
        them once it commits."""
        with self._lock:
            self._depth += 1
            try:
                with self.store.transaction():
                    yield
            except BaseException:
                if self._depth == 1:
                    self._pending = []
                raise
            finally:
                self._depth -= 1
            if not self._depth:
                self._publish()

    def log(self, event_type: EventType | str, source: str, task_id: str | None = None,
            agent_id: str | None = None, data: Mapping[str, Any] | None = None, *,
            timestamp: datetime | None = None) -> StoredEvent:
        """Validate loose arguments into a typed event, append it, and return it as stored (as
        it was appended, with its position, when it cannot be read back: pruned meanwhile, or
        the connection lost after the commit; it is stored all the same)."""
        event = build_event(event_type, source, task_id, agent_id, data, timestamp=timestamp)
        (row,) = self.record([encode(event)])
        try:
            return self.store.get(event.id) or row
        except StoreError:
            return row

    # -- reading --------------------------------------------------------------------------

    def read(self, after: int = 0, until: int | None = None) -> Iterator[StoredEvent]:
        """Every stored event after a position, oldest first, streamed."""
        return self.store.read(after, until)

    def get(self, event_id: str) -> StoredEvent | None:
        """The stored event with this id, or None."""
        return self.store.get(event_id)

    def query(self, where: EventFilter = EVERYTHING, **options: Any) -> Iterator[StoredEvent]:
        """See `Store.query`: the events matching a filter, streamed."""
        return self.store.query(where, **options)

    def latest(self, where: EventFilter = EVERYTHING, limit: int | None = None,
               before: int | None = None) -> Iterator[StoredEvent]:
        """The newest `limit` events matching `where` (all if None) before position `before`,
        oldest first, streamed: a first pass finds where they begin (holding one row at a
        time), a second reads them."""
        if limit is None:
            return self.store.query(where, before=before)
        first = None
        for row in self.store.query(where, before=before, limit=limit, newest_first=True):
            first = row.position
        if first is None:
            return iter(())
        return self.store.query(where, after=first - 1, before=before, limit=limit)

    def events_of_task(self, task_id: str) -> Iterator[StoredEvent]:
        """The stored events of one task, oldest first."""
        return self.store.query(EventFilter(task_id=task_id))

    # -- read models ----------------------------------------------------------------------

    def start(self) -> int:
        """Fold the read models from their snapshots (idempotent); returns events read. A
        start-up that had to fold many events leaves a snapshot, so the next one is quick."""
        if self._started:
            return 0
        return self.catch_up()

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Fold what was appended since the last look (from the snapshots, the first time);
        returns events read. Every `SNAPSHOT_AFTER` events folded, a snapshot is stored.
        `progress(done, total)` hears of the fold page by page (see `ProjectionRunner.start`)."""
        started = self._started
        with _timed(lambda: f"{'caught up' if started else 'started'}: folded {read} events"):
            read = self._fold(progress)
        if self.runner.position - self._snapshot_at >= SNAPSHOT_AFTER and not self.read_only:
            with contextlib.suppress(StoreError):  # (snapshots only speed things up)
                self._store_snapshot()
            self._snapshot_at = self.runner.position
        return read

    def _fold(self, progress: Callable[[int, int], None] | None = None) -> int:
        if self._started:
            return self.runner.catch_up(progress=progress)
        read = self.runner.start(progress)
        self._started = True
        self._snapshot_at = self.runner.position - read  # where the loaded snapshots are
        return read

    def _store_snapshot(self) -> list[int]:
        """Snapshot every read model, then retire the snapshots nothing needs any more."""
        ids = self.runner.snapshot()
        retired = pruning.retire(self.store, self.projections)
        self._snapshot_at = self.runner.position
        log.info("stored snapshot%s %s of %s at position %d; retired %d older",
                 "s" if len(ids) != 1 else "", ", ".join(map(str, ids)), self.location,
                 self._snapshot_at, retired)
        self._define_views()
        return ids

    def _define_views(self) -> None:
        """The SQL views of the read models (`swarmlog.views`), where the store holds views."""
        if isinstance(self.store, ViewStore):
            for name, select in read_model_views(self.projections).items():
                self.store.define_view(name, select)

    @property
    def models(self) -> ReadModels:
        """The read models, caught up: `tasks`, `agents` and `summary`. They change as the log
        is folded: from another thread than the folding one, read them under `runner.lock`."""
        self.catch_up()
        models: ReadModels = self.runner.state("read_models")
        return models

    @property
    def tasks(self) -> TasksState:
        """Task state: status, bids, assignment, timings, tool calls, anomalies of every task."""
        return self.models.tasks

    @property
    def agents(self) -> AgentsState:
        """The agent roster: presence, current task, wins, sats earned, tool use."""
        return self.models.agents

    @property
    def summary(self) -> SummaryState:
        """Summary counts: totals by type and source, tasks by status, per minute."""
        return self.models.summary

    def snapshot(self) -> list[int]:
        """Store every read model's state at its position; returns the snapshot ids."""
        self._fold()
        ids = self._store_snapshot()
        self._witnessed()
        return ids

    def rebuild(self, progress: Progress | None = None) -> int:
        """Discard the read models and refold them from the whole log; returns events read."""
        read = 0
        with _timed(lambda: f"rebuilt the read models from {read} events"):
            read = self.runner.rebuild(progress)
        self._started = True
        self._snapshot_at = 0  # the rebuilt read models stand on no snapshot
        return read

    # -- retention and checks -------------------------------------------------------------

    def prune(self, older_than: timedelta | None = None, before: datetime | None = None,
              archive: str | os.PathLike[str] | None = None, dry_run: bool = False,
              progress: Progress | None = None) -> PruneReport:
        """Delete the longest prefix of the log older than the cutoff, snapshotting every read
        model at the cut first (and archiving the prefix to `archive`, a directory, if given).
        The cutoff is `before` (timezone-aware) or `older_than` (an age of 0 or more) ago;
        anything else is an InvalidArgument, and nothing is pruned. `progress(done, total)`
        hears of the fold of the prefix. The file does not shrink by itself: see `vacuum`."""
        cutoff = _cutoff(older_than, before)
        began = time.perf_counter()
        report = pruning.prune(self.store, self.projections, cutoff, archive, dry_run, progress)
        if report.removed and not dry_run:
            self._define_views()
            self._witnessed()
            log.info("pruned %d events (positions %s..%s) older than %s from %s in %.2fs%s",
                     report.removed, report.first_position, report.last_position,
                     cutoff.isoformat(), self.location, time.perf_counter() - began,
                     f"; archived to {report.archive_path}" if report.archive_path else "")
        return report

    def vacuum(self) -> VacuumReport:
        """Give back the space deleted rows left behind (after a prune): SQLite rewrites the
        file; PostgreSQL's VACUUM makes the space reusable. Returns the sizes before and after."""
        before, began = self.store.size_bytes(), time.perf_counter()
        self.store.vacuum()
        report = VacuumReport(before, self.store.size_bytes(), time.perf_counter() - began)
        log.info("vacuumed %s: %s bytes before, %s after, in %.2fs", self.location,
                 report.before_bytes, report.after_bytes, report.seconds)
        return report

    def status(self) -> dict[str, Any]:
        """Where the log stands, read from the store without folding anything: head, count,
        size; for each read model its newest snapshot, how many events a reader opening the log
        folds after it (`to_fold`), and, if this log has folded it, its position and lag behind
        the head (None when it has not); the newest snapshots; the prunes."""
        store = self.store
        head = store.head()
        folded = self.runner.positions() if self._started else {}
        count = stored_count(store)
        models = {}
        for p in self.projections:
            snap = store.latest_snapshot(p.name, p.version)
            at = folded.get(p.name)
            models[p.name] = {
                "version": p.version, "folded": at is not None, "position": at,
                "lag": None if at is None else head - at,
                "snapshot_position": None if snap is None else snap.position,
                "to_fold": count if snap is None else head - snap.position}
        snapshots = store.snapshots(with_state=False)
        epochs = store.epochs()
        return {
            "location": self.location, "backend": "postgresql" if is_url(self.location) else
            "memory" if self.location == ":memory:" else "sqlite",
            "head": head, "count": count, "first_position": first_stored(store),
            "chain": {"starts_at": epochs[0].start if epochs else 1,
                      "algorithm": epochs[-1].algorithm if epochs else store.chain.algorithm,
                      "key_id": epochs[-1].key_id if epochs else store.chain.key_id},
            "size_bytes": store.size_bytes(), "projections": models,
            "snapshots": len(snapshots),
            "newest_snapshots": [{"id": s.id, "projection": s.projection, "version": s.version,
                                  "position": s.position, "created_at": s.created_at}
                                 for s in sorted(snapshots, key=lambda s: (s.position, s.id))
                                 [-len(self.projections):]],
            "prunes": [{"first": r.first_position, "last": r.last_position, "removed": r.removed,
                        "cutoff": r.cutoff, "pruned_at": r.pruned_at, "archive": r.archive_path}
                       for r in store.prunes()],
        }

    def verify(self, *, deep: bool = False, witness: str | os.PathLike[str] | None = None,
               public_key: str | None = None, progress: Progress | None = None) -> VerifyReport:
        """Check the whole log end to end against its integrity chain (see
        `projections.verify`); `deep` refolds the read models and compares every snapshot;
        `witness` (a file of signed checkpoints, `swarmlog.witness`) proves the log still
        extends every checkpoint in it; `progress(done, total)` hears how far through the
        stored events it is."""
        points, forged = ([], []) if witness is None else read_witness(witness, public_key)
        with _timed(lambda: f"verified {self.location}"):
            report = verify(self.store, self.projections, deep=deep, progress=progress,
                            remember=[p.position for p in points])
        for problem in forged:
            report.find("invalid", "witness", None, problem)
        check_witness(self.store, points, report)
        return report

    def checkpoint(self, witness: str | os.PathLike[str],
                   signing_key: str | os.PathLike[str]) -> Checkpoint:
        """Append a signed checkpoint of the chain as it stands to a witness file."""
        return checkpoint(self.store, witness, signing_key)

    def _witnessed(self) -> None:
        """After a prune or a snapshot: a checkpoint, when a witness is configured."""
        where = configured_witness()
        if where is not None:
            checkpoint(self.store, *where)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
