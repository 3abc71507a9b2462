"""The projection runner: load snapshots, fold the tail, catch up, follow, snapshot, rebuild.

Every fold streams: rows come from `store.scan(after)` a page at a time, only the columns a fold
reads (a row taken the typed way is read whole, with its page: `PageRows`), and closed entries
leave memory as they pile up (`Tiered.spill`), so memory is bounded by what is open and one page,
never by the length of the log. All projections share one read pass; each skips what its
snapshot already holds. Rows swarmlog validated when it appended them are folded without being
validated again (see `projections.fast`); any other row is.

Threads: one lock guards the states. The folding thread takes it per page (so queries never wait
long) and a query takes it for its duration (`query`), so a `follow()` in one thread and queries
in another never see a half-applied event. A second lock keeps two folds from interleaving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from domain.codec import FoldRow, StoredEvent
from domain.errors import ProjectionError
from projections.base import PAGE_SIZE, Cold, PageRows, Projection, RowsVanished, fold_page
from projections.models import ReadModelsProjection
from projections.pruning import restore, store_snapshot
from store.base import Store, first_stored, stored_count

R = TypeVar("R")


Progress = Callable[[int, int], None]
OnRow = Callable[[StoredEvent], None]


def default_projections() -> list[Projection[Any]]:
    """The read models every swarmlog keeps: tasks, agents and summary, folded together."""
    return [ReadModelsProjection()]


class ProjectionRunner:
    """Keeps projections folded up to the end of a store's log."""

    def __init__(
        self,
        store: Store,
        projections: Sequence[Projection[Any]] | None = None,
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.store = store
        self.projections = list(default_projections() if projections is None else projections)
        names = [p.name for p in self.projections]
        if len(set(names)) != len(names):
            raise ValueError(f"projection names must be unique, got {names}")
        self._index = {name: i for i, name in enumerate(names)}
        self._page_size = page_size
        self._states: list[Any] = [p.initial() for p in self.projections]
        self._positions = [0] * len(self.projections)
        self._started = False
        self.lock = threading.RLock()  # guards the states; hold it while reading them
        self._folding = threading.RLock()  # one fold at a time

    # -- reading the states -------------------------------------------------------------------

    @property
    def position(self) -> int:
        """The position every projection has folded through."""
        with self.lock:
            return min(self._positions, default=0)

    def positions(self) -> dict[str, int]:
        """Each projection's position."""
        with self.lock:
            return {p.name: pos for p, pos in zip(self.projections, self._positions, strict=True)}

    def state(self, name: str) -> Any:
        """A projection's live state. It changes as the runner folds: from another thread than
        the folding one, read it under `runner.lock` or through `query`."""
        with self.lock:
            return self._states[self._slot(name)]

    def query(self, name: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """`fn(state, *args, **kwargs)` on a projection's state, under the lock, e.g.
        `runner.query("tasks", open_tasks)`."""
        with self.lock:
            return fn(self._states[self._slot(name)], *args, **kwargs)

    def _slot(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ProjectionError(
                f"no projection named {name!r}; this runner has: {', '.join(self._index)}"
            ) from None

    # -- folding --------------------------------------------------------------------------------

    def start(self, progress: Progress | None = None) -> int:
        """Restore each projection (by default from its newest snapshot of its current version:
        older versions are ignored, so a changed fold refolds) and fold the events after them in
        one pass from the lowest position any of them needs; returns how many were read. Raises
        ProjectionError if events a projection needs were pruned. `progress(done, total)` is
        called after each page, in positions folded through of those to fold."""
        with self._folding:
            self._load_snapshots(upto=None)
            return self._fold(progress=progress)

    def catch_up(self, on_event: OnRow | None = None, progress: Progress | None = None) -> int:
        """Fold the events appended since the last fold (starting first if needed); returns how
        many were read. `on_event` sees each event once it is folded; `progress` as in `start`."""
        with self._folding:
            if not self._started:
                self._load_snapshots(upto=None)
            return self._fold(on_event=on_event, progress=progress)

    def fold_to(self, position: int) -> int:
        """Fold every projection to exactly `position` (the end of a prefix about to be pruned):
        from snapshots at or before it if not started yet. Raises ProjectionError if a
        projection is already past it (folds do not run backwards: use a fresh runner)."""
        with self._folding:
            head = self.store.head()
            if position > head:
                raise ProjectionError(f"cannot fold to position {position}: the log ends at {head}")
            if not self._started:
                self._load_snapshots(upto=position)
            ahead = {p.name: at for p, at in zip(self.projections, self._positions, strict=True)
                     if at > position}
            if ahead:
                raise ProjectionError(
                    f"cannot fold back to position {position}: already at {ahead}; "
                    "fold to it with a fresh ProjectionRunner"
                )
            return self._fold(until=position)

    def follow(
        self,
        stop: threading.Event | None = None,
        poll_interval: float = 0.2,
        on_event: OnRow | None = None,
    ) -> None:
        """Keep folding as other processes or threads append, until `stop` is set (forever if
        None). `on_event` sees each event once it is folded (in this thread)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            self.catch_up(on_event)
            # Returns early when something is appended: polling on SQLite, notified on Postgres.
            self.store.wait_for_append(self.position, poll_interval)

    def rebuild(self, progress: Progress | None = None) -> int:
        """Discard every state and refold the whole log (to its head when called); returns how
        many events were read. `progress(done, total)` is called after each page. The old states
        stay readable until the new ones replace them."""
        with self._folding:
            # From nothing, or across pruned history from its archive (never from snapshots).
            restored = [restore(self.store, p, use_snapshots=False) for p in self.projections]
            states, positions = [s for s, _ in restored], [at for _, at in restored]
            done = 0
            head, total = self.store.head(), stored_count(self.store)
            expected = min(positions, default=0) + 1
            # Whole store pages: these states are this fold's own until they replace the old.
            for page in self.store.scan(expected - 1, head):
                if page[0][0] != expected and self._pruned_before(page[0][0], expected):
                    return done + self.rebuild(progress)  # (see `_fold`): start over
                try:
                    fold_page(self.projections, states, positions, page,
                              PageRows(self.store, page))
                except RowsVanished:
                    return done + self.rebuild(progress)
                expected = page[-1][0] + 1
                done += len(page)
                if progress is not None:
                    progress(done, total)
            with self.lock:
                self._states, self._positions = states, [head] * len(states)
                self._started = True
            return done

    def snapshot(self) -> list[int]:
        """Store every projection's state at its position (each in short write steps, see
        `projections.pruning.store_snapshot`); returns the ids."""
        with self._folding:  # no fold moves the states between the dump and the save
            if not self._started:
                self.start()  # a snapshot of unloaded initial states could shadow real ones
            # Without the lock (queries need not wait for disk): no fold runs meanwhile.
            ids = [store_snapshot(self.store, p, at, state) for p, state, at in
                   zip(self.projections, self._states, self._positions, strict=True)]
            with self.lock:  # stored: what the snapshots hold as items leaves memory
                for p, state, at in zip(self.projections, self._states, self._positions,
                                        strict=True):
                    p.attach(state, Cold(self.store, p.name, p.version, at))
            return ids

    # -- internals ------------------------------------------------------------------------------

    def _load_snapshots(self, upto: int | None) -> None:
        restored = [restore(self.store, p, upto) for p in self.projections]
        states, positions = [s for s, _ in restored], [at for _, at in restored]
        head = self.store.head()
        if max(positions, default=0) > head:
            raise ProjectionError(
                f"a snapshot is at position {max(positions)} but the log ends at {head}: the "
                "database was restored from an older copy; delete the newer snapshots"
            )
        with self.lock:
            self._states, self._positions = states, positions
            self._started = True

    def _fold(self, until: int | None = None, on_event: OnRow | None = None,
              progress: Progress | None = None) -> int:
        """Fold every event after the lowest position (through `until`) into the projections
        that have not seen it; returns how many events were read. Positions are gapless, so a
        page that does not start where the last one ended means rows vanished under the read:
        a prune deleted them (a prune deletes oldest first), and the fold starts again from the
        snapshots it stored."""
        after, read = self.position, 0
        total = (self.store.head() if until is None else until) - after
        expected = after + 1
        for page in _pages(self.store.scan(after, until), self._page_size):
            if page[0][0] != expected and self._pruned_before(page[0][0], expected):
                return read + self._fold_over_gap(until, on_event, progress)
            full = PageRows(self.store, page)
            try:
                if on_event is not None:  # the listener's whole rows, read before the fold
                    full(page[0][0])  # (a prune deletes oldest first: the first tells)
            except RowsVanished:
                return read + self._fold_over_gap(until, on_event, progress)
            try:
                with self.lock:
                    try:
                        fold_page(self.projections, self._states, self._positions, page, full)
                    except RowsVanished:  # pruned between its scan and its whole read
                        self._load_snapshots(upto=until)  # (under the lock: no half page seen)
                        raise
            except RowsVanished:
                return read + self._fold(until, on_event, progress)
            except Exception as e:  # a bug in a fold: reload from snapshots on the next call
                self._started = False
                raise ProjectionError(
                    f"a projection failed to fold events {page[0][0]}..{page[-1][0]}: "
                    f"{e!r} (a fold must never raise; this is a bug in it)"
                ) from e
            read += len(page)
            expected = page[-1][0] + 1
            if on_event is not None:
                for row in page:
                    on_event(full(row[0]))
            if progress is not None:
                progress(min(page[-1][0] - after, total), total)
        if read == 0 and (until is None or until > after) and self._pruned_after(after):
            return self._fold_over_gap(until, on_event, progress)
        return read

    def _pruned_before(self, found: int, expected: int) -> bool:
        """Whether the rows expected..found-1, missing from a read, were pruned: the log now
        starts after them. (Rows missing from the middle of the log were deleted behind
        swarmlog's back: `verify` names them; the fold goes on past them.)"""
        return expected < found and first_stored(self.store) > expected

    def _pruned_after(self, after: int) -> bool:
        """Whether the events right after `after` are gone (pruned since this runner folded)."""
        if self.store.head() <= after:
            return False
        following = next(self.store.query(after=after, limit=1), None)  # (an append may race)
        return following is None or following.position > after + 1

    def _fold_over_gap(self, until: int | None, on_event: OnRow | None,
                       progress: Progress | None) -> int:
        """Someone pruned events this runner had not folded yet: start again from the snapshots
        the prune stored (or fail, if there are none to start from)."""
        self._load_snapshots(upto=until)
        return self._fold(until, on_event, progress)


def _pages(scanned: Iterator[list[FoldRow]], size: int) -> Iterable[list[FoldRow]]:
    """The store's pages cut to lists of up to `size` rows."""
    for page in scanned:
        for i in range(0, len(page), size):
            yield page[i : i + size]
