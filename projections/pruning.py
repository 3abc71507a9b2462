"""Retention that loses no state: snapshot every projection at the cut, archive, then delete.

`prune` finds the cut P (the end of the longest stored prefix older than the cutoff: an
out-of-order young event stops it), folds every projection to exactly P and, in the same pass,
optionally writes events first..P to a compressed archive segment (fsynced, its SHA-256
recorded). None of that needs the write lock: no writer changes rows older than its appends.
Then, each in write transactions of bounded length (`STEP_SECONDS`), so that appends never wait
long: the snapshots at P (their items in steps, then the snapshot that makes them one), the
prune record (chained; refused if another prune ran meanwhile), and the deletion of the rows,
oldest first, a step at a time.

A prune holds the store's prune lock (`Store.prune_lock`) from start to end, so prunes never
interleave; a second one is refused at once. The prune still checks what the lock promises (the
rows it reads are gapless; `record_prune` refuses a range a recorded prune reaches), against a
prune that does not take the lock.

A crash leaves the log as it was before, or with the prune recorded and a prefix of its rows
still stored: they are read as ever (positions stay gapless from the first stored one) and the
next prune deletes them first (`finish_deleting`). A segment is written under a temporary name
and renamed into place; a snapshot without its prune is a snapshot like any other.

`restore` is the other half: the state of a projection at the newest position its snapshots and
the archive can reach. A projection whose version changed after a prune has no snapshot at the cut;
it is refolded from the archive segments, and without them it fails with `ProjectionError` rather
than silently starting from a partial log.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from domain.codec import StoredEvent, fold_row, timestamp_text
from domain.errors import ProjectionError, StoreError
from projections.base import Cold, Projection, fold_page, whole
from store.archive import read_segment, segment_name, tidy_segments, to_line, write_segment
from store.base import PruneRecord, SnapshotRecord, Store, first_stored, prefix_end


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed (or, with `dry_run`, would remove)."""

    removed: int
    first_position: int | None
    last_position: int | None
    cutoff: datetime
    snapshot_ids: list[int] = field(default_factory=list)
    archive_path: str | None = None
    archive_sha256: str | None = None
    dry_run: bool = False
    #: Rows a killed prune had recorded as pruned, deleted first.
    resumed: int = 0
    #: What killed prunes left in the archive folder, removed (one line each).
    archive_cleanup: list[str] = field(default_factory=list)


#: The snapshots each projection keeps (see `retire`), besides the one at the latest prune's cut.
KEEP_SNAPSHOTS = 3


def retire(store: Store, projections: Sequence[Projection[Any]],
           keep: int = KEEP_SNAPSHOTS) -> int:
    """Delete the snapshots of these projections (at their versions) that nothing needs: all but
    each one's newest `keep`, and those at the latest prune's cut (where a start-up after the
    prune, or a rebuild without the archive, begins). An older snapshot would only shorten a
    prune's fold to a cut before it. Other versions' snapshots are left alone (another swarmlog
    version may read them). Returns how many were deleted."""
    cut = max((p.last_position for p in store.prunes()), default=None)
    listed = store.snapshots(with_state=False)
    doomed: list[int] = []
    for projection in projections:
        mine = sorted((s for s in listed
                       if (s.projection, s.version) == (projection.name, projection.version)),
                      key=lambda s: (s.position, s.id), reverse=True)
        doomed += [s.id for s in mine[keep:] if s.position != cut]
    return store.delete_snapshots(doomed)


def _segments(prunes: Sequence[PruneRecord], after: int, through: int) -> list[PruneRecord]:
    """The archived prunes covering positions (after, through], in order, or ProjectionError."""
    needed, covering = after + 1, []
    for prune in sorted(prunes, key=lambda p: p.first_position):
        if prune.last_position < needed:
            continue
        if prune.first_position > needed or prune.archive_path is None \
                or not os.path.exists(prune.archive_path):
            where = prune.archive_path or "no archive was written"
            raise ProjectionError(
                f"events {needed}..{through} were pruned and their archive is missing ({where}): "
                "the read model cannot be refolded. Restore the archive segment to that "
                "path, or keep to the swarmlog version whose projection versions match the "
                "stored snapshots"
            )
        covering.append(prune)
        needed = prune.last_position + 1
        if needed > through:
            return covering
    if needed <= through:
        raise ProjectionError(f"events {needed}..{through} are neither stored nor archived")
    return covering


def _load(store: Store, projection: Projection[Any], snap: SnapshotRecord) -> Any:
    try:
        state = projection.load(snap.state)
        projection.attach(state, Cold(store, projection.name, projection.version, snap.position))
        return state
    except Exception as e:  # a snapshot this code cannot read is not guessed around
        raise ProjectionError(
            f"snapshot {snap.id} of {projection.name!r} v{projection.version} (position "
            f"{snap.position}) cannot be loaded: {e}; delete it, or rebuild"
        ) from e


def snapshot_problem(store: Store, snap: SnapshotRecord) -> str | None:
    """Why a snapshot may not be trusted (None: it is bound to the chain at its position and
    matches its digest). One without a digest is trusted only before the chain began."""
    if snap.digest is None:
        start = min((e.start for e in store.epochs()), default=1)
        return None if snap.position < start else "it has no digest"
    at = store.hash_at(snap.position)
    if at is not None and at != snap.chain_hash:
        return "it is not bound to the chain at its position"
    if store.chain.digest(snap.chain_hash or b"", snap.projection, snap.version, snap.position,
                          snap.state) != snap.digest:
        return "it does not match its digest"
    return None


def _bound_snapshot(store: Store, projection: Projection[Any],
                    upto: int | None) -> SnapshotRecord | None:
    """The newest snapshot at or before `upto` that is bound to the chain; one that is not
    (changed behind swarmlog's back) is passed over, and said so in the log."""
    snap = store.latest_snapshot(projection.name, projection.version, upto)
    while snap is not None:
        problem = snapshot_problem(store, snap)
        if problem is None:
            return snap
        logging.getLogger("swarmlog").warning(
            "snapshot %d of %s at position %d is passed over: %s (see `swarmlog verify`)",
            snap.id, snap.projection, snap.position, problem)
        snap = store.latest_snapshot(projection.name, projection.version, snap.position - 1)
    return None


def restore(store: Store, projection: Projection[Any], upto: int | None = None, *,
            use_snapshots: bool = True) -> tuple[Any, int]:
    """(state, position): the projection at the newest point at or before `upto` from which the
    stored events continue — its newest snapshot of its current version (older versions are
    ignored, so a changed fold refolds), refolded from the archive across any pruned gap; the
    initial state at 0 on an unpruned log. The caller folds the stored events after `position`.

    Without snapshots (a rebuild) the pruned history is refolded from the archive, or, where there
    is none, taken from the snapshot the last prune stored at the cut."""
    gap_end = first_stored(store) - 1
    snap = _bound_snapshot(store, projection, upto) if use_snapshots else None
    if snap is not None and snap.position >= gap_end:
        return _load(store, projection, snap), snap.position
    state, position = ((_load(store, projection, snap), snap.position) if snap
                       else (projection.initial(), 0))
    if position >= gap_end:
        return state, position
    try:
        segments = _segments(store.prunes(), position, gap_end)
    except ProjectionError:
        # A rebuild without the archive starts where the stored log does: from the snapshot the
        # prune took there (the fold of everything before it), if this version has one.
        cut = max((p.last_position for p in store.prunes()), default=gap_end)
        at_cut = _bound_snapshot(store, projection, cut)
        if use_snapshots or at_cut is None or at_cut.position != cut:
            raise
        return _load(store, projection, at_cut), cut
    for prune in segments:
        archived = read_segment(prune.archive_path or "", prune.archive_sha256)
        state = projection.fold_rows(state, (r for r in archived
                                             if position < r.position <= gap_end))
    return state, gap_end


def prune(store: Store, projections: Sequence[Projection[Any]], cutoff: datetime,
          archive: str | os.PathLike[str] | None = None, dry_run: bool = False,
          progress: Callable[[int, int], None] | None = None) -> PruneReport:
    """Delete the longest stored prefix older than `cutoff`, snapshotting every projection at
    its end first (see the module docstring for the steps), under the store's prune lock: one
    prune at a time (StoreError at once when another holds it). `progress(done, total)` hears
    of the fold (and archive) of the prefix, page by page."""
    if dry_run:
        first, end = first_stored(store), prefix_end(store, cutoff)
        if end < first:
            return PruneReport(0, None, None, cutoff, dry_run=True)
        path = None if archive is None else str(Path(archive) / segment_name(first, end))
        return PruneReport(end - first + 1, first, end, cutoff, archive_path=path, dry_run=True)
    with store.prune_lock():
        return _prune(store, projections, cutoff, archive, progress)


def _prune(store: Store, projections: Sequence[Projection[Any]], cutoff: datetime,
           archive: str | os.PathLike[str] | None,
           progress: Callable[[int, int], None] | None) -> PruneReport:
    resumed = finish_deleting(store)
    cutoff_text = timestamp_text(cutoff)
    first, end = first_stored(store), prefix_end(store, cutoff)
    if end < first:
        return PruneReport(0, None, None, cutoff, resumed=resumed)
    tidied = [] if archive is None else tidy_segments(archive, store)
    bases = [restore(store, p, upto=end) for p in projections]
    states = [state for state, _ in bases]
    positions = [position for _, position in bases]
    # From the oldest projection's position, and when archiving from the first stored row
    # (a snapshot inside the prefix must not shorten its segment).
    start = min(positions, default=end)
    if archive is not None:
        start = min(start, first - 1)

    def fold_and_pass_on() -> Iterator[bytes]:
        # One pass over the rows (which no writer changes: they are older than every append):
        # folded a page at a time, archived as they are stored (no re-encoding).
        page: list[StoredEvent] = []
        expected = start + 1
        for row in store.read(start, end):
            if row.position != expected:  # (the prune lock keeps other prunes out; this is
                _vanished(store, expected, row.position)  # for one that does not take it)
            expected += 1
            page.append(row)
            if len(page) == _FOLD_PAGE:
                fold_page(projections, states, positions, [fold_row(r) for r in page],
                          whole(page))
                page = []
                if progress is not None:
                    progress(row.position - start, end - start)
            if row.position >= first:
                yield to_line(row)
        if expected != end + 1:
            _vanished(store, expected, None)
        if page:
            fold_page(projections, states, positions, [fold_row(r) for r in page], whole(page))

    path = digest = None
    if archive is not None:
        path, digest = write_segment(archive, first, end, fold_and_pass_on())
    else:
        for _ in fold_and_pass_on():
            pass
    ids = [store_snapshot(store, p, end, s) for p, s in zip(projections, states, strict=True)]
    store.record_prune(first, end, cutoff_text, path, digest)
    removed = _in_steps(store.delete_pruned)
    retire(store, projections)
    return PruneReport(removed, first, end, cutoff, ids, path, digest, resumed=resumed,
                       archive_cleanup=tidied)


def _vanished(store: Store, expected: int, found: int | None) -> None:
    """Rows of the prefix vanished while the prune read it: what it folded is not the prefix,
    so nothing of it may be stored (StoreError)."""
    instead = "the log ends" if found is None else f"the next stored row is {found}"
    raise StoreError(f"cannot prune {store.location}: event {expected} vanished while the prune "
                     f"read it ({instead}); another prune ran meanwhile")


def finish_deleting(store: Store) -> int:
    """Delete the rows a prune recorded but did not get to delete (it was killed); returns how
    many. Until then they are stored and read as ever, and the prune's snapshots stand."""
    left = _in_steps(store.delete_pruned)
    if left:
        logging.getLogger("swarmlog").warning(
            "deleted %d events that an interrupted prune had recorded as pruned", left)
    return left


def store_snapshot(store: Store, projection: Projection[Any], position: int, state: Any) -> int:
    """Store a snapshot of `state` at `position`: the items it keeps out of memory first, in
    steps of bounded length, then the snapshot (which makes them part of it); returns its id."""
    text, items = projection.split(state)
    pending = iter(items)

    def save(limit: int) -> int:
        chunk = list(islice(pending, limit))
        if chunk:
            store.save_snapshot_items(projection.name, projection.version, position, chunk)
        return len(chunk)

    _in_steps(save)
    return store.save_snapshot(projection.name, projection.version, position, text)


#: How long one write step of a prune or a snapshot should hold the database's write lock,
#: seconds; it then rests as long, so that appends waiting for the lock get it in between.
STEP_SECONDS = 0.01
#: Rows folded at a time by a prune.
_FOLD_PAGE = 1000


def _in_steps(step: Callable[[int], int]) -> int:
    """Call `step(limit)` (one write transaction doing up to `limit` things; it returns how
    many it did: 0 when nothing is left) until it does nothing; returns the total. Each limit is
    sized from the last step's pace to take about `STEP_SECONDS`."""
    limit, total = 200, 0
    while True:
        started = time.perf_counter()
        done = step(limit)
        if not done:
            return total
        total += done
        took = time.perf_counter() - started
        limit = max(50, min(int(limit * STEP_SECONDS / max(took, 1e-4)), 4 * limit, 100_000))
        time.sleep(min(took, 2 * STEP_SECONDS) / 2)
