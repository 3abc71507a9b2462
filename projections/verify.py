"""`verify`: the whole log checked end to end against its integrity chain.

It walks the chain of prune records and every archive segment (the rows each prune removed,
rechained from the cut before it to the hash recorded at its cut), then every stored row (each
one's hash over its predecessor's, positions and stream versions gapless), then every snapshot
and item (bound to the chain hash at their position, their digests), and names each finding:
where (the table and the position) and what (`Finding.kind`). It never raises for what it finds.

What it can and cannot see: without a key, someone with write access to the file can rewrite a
row and recompute every hash after it, and nothing inside the file tells; with a key (HMAC) they
cannot recompute any hash; a witness (`swarmlog.witness`) holds signed checkpoints outside the
file, against which a truncated or rewritten history fails even without a key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.codec import StoredEvent, check_timestamp
from domain.errors import InvalidEvent, StoreError, SwarmlogError
from domain.ids import utc_now
from domain.lenient import nonconformity
from projections.base import Cold, Projection
from store.archive import read_segment, sha256_of
from store.base import PruneRecord, Store, first_stored
from store.chain import GENESIS, Chain, prune_hash

#: Findings reported in full; beyond this only the count grows.
MAX_FINDINGS = 200

#: What a finding says happened.
KINDS = {
    "changed": "a row's content no longer matches its hash",
    "inserted": "a row swarmlog did not append (no hash, or no place in the chain)",
    "removed": "rows missing between two positions",
    "reordered": "a row that belongs at another position",
    "truncated": "the log ends before a position it had",
    "forged prune": "a prune record that does not fit the chain of prune records",
    "changed archive": "an archive segment that does not hold what its prune removed",
    "missing archive": "an archive segment that is not where its prune put it",
    "changed snapshot": "a snapshot or snapshot item that does not match its digest or chain",
    "invalid": "a row, or a snapshot, that cannot be read as what it says it is",
    "downgraded": "the chain made without a key after it was made with one",
}


@dataclass(frozen=True)
class Finding:
    """One problem: what happened (`kind`), in which table, at which position, in words."""

    kind: str
    table: str
    position: int | None
    detail: str

    def __str__(self) -> str:
        where = self.table if self.position is None else f"{self.table} at position {self.position}"
        return f"{self.kind}: {where}: {self.detail}"


class KeyRequired(SwarmlogError):
    """The chain (or part of it) is made with a key this verifier was not given."""


@dataclass
class VerifyReport:
    """What `verify` checked, and every finding (`ok` when there is none)."""

    events: int = 0
    streams: int = 0
    snapshots: int = 0
    archives: int = 0
    #: From where the chain covers the log (earlier rows were pruned before it existed).
    chain_start: int = 1
    #: Rows stored flagged as not conforming to their type's schema (the ADR 017 facade):
    #: not a problem, but each is named in `notes`.
    nonconforming: int = 0
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    finding_count: int = 0
    #: The chain hash at the positions a caller asked to see (`verify(..., remember=...)`).
    hashes: dict[int, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.finding_count == 0

    @property
    def problems(self) -> list[str]:
        return [str(f) for f in self.findings]

    def find(self, kind: str, table: str, position: int | None, detail: str) -> None:
        self.finding_count += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(kind, table, position, detail))

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_FINDINGS:
            self.notes.append(text)


def verify(store: Store, projections: Sequence[Projection[Any]], *, deep: bool = False,
           remember: Iterable[int] = (),
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check the whole log (see the module docstring); `deep` also refolds the read models from
    the archives and the log and compares them with every stored snapshot. Raises KeyRequired if
    the chain was made with a key other than the store's."""
    remember = list(remember)
    for _ in range(_ATTEMPTS - 1):
        try:
            return _verify(store, projections, deep, remember, progress)
        except _PrunedMeanwhile:  # the prune records are read again, and so is everything
            continue
    return _verify(store, projections, deep, remember, progress, last_attempt=True)


#: How often `verify` starts over when a prune deleted rows ahead of its read.
_ATTEMPTS = 5


class _PrunedMeanwhile(Exception):
    """Rows vanished ahead of `verify`'s read, and a prune recorded now covers them."""


def _verify(store: Store, projections: Sequence[Projection[Any]], deep: bool,
            remember: Iterable[int], progress: Callable[[int, int], None] | None,
            last_attempt: bool = False) -> VerifyReport:
    report = VerifyReport()
    report.hashes = dict.fromkeys(remember, b"")
    epochs = store.epochs()
    _check_keys(store.chain, epochs, report)
    report.chain_start = epochs[0].start if epochs else 1
    cut = _check_prunes(store, report)
    _check_rows(store, cut, report, progress, last_attempt)
    _check_snapshots(store, projections, report)
    if deep:
        _refold(store, projections, report)
    report.hashes = {p: h for p, h in report.hashes.items() if h}
    return report


def _check_keys(chain: Chain, epochs: Sequence[Any], report: VerifyReport) -> None:
    keyed = False
    for epoch in epochs:
        if epoch.key_id is not None and epoch.key_id != chain.key_id:
            raise KeyRequired(
                f"positions from {epoch.start} are chained with the key whose id is "
                f"{epoch.key_id}: give that key file with $SWARMLOG_KEY_FILE to verify them")
        if keyed and epoch.key_id is None:
            report.find("downgraded", "swarmlog_chain", epoch.start,
                        "the chain is made without a key from here, after it was made with one")
        keyed = keyed or epoch.key_id is not None


# -- prunes and their archives -------------------------------------------------------------------


def _check_prunes(store: Store, report: VerifyReport) -> bytes:
    """Check the prune records and their archives; returns the chain hash at the last cut (the
    hash the first stored row must follow)."""
    expected_first, previous_record, cut = 1, GENESIS, GENESIS
    start = report.chain_start
    for prune in store.prunes():
        where = (prune.first_position, prune.last_position)
        if prune.first_position != expected_first:
            report.find("forged prune", "swarmlog_prunes", prune.first_position,
                        f"prune {prune.id} removed {where[0]}..{where[1]}, but the one before "
                        f"it ended at {expected_first - 1}")
        if prune.removed != prune.last_position - prune.first_position + 1:
            report.find("forged prune", "swarmlog_prunes", prune.first_position,
                        f"prune {prune.id} records {prune.removed} events for "
                        f"{where[0]}..{where[1]}")
        expected_first = prune.last_position + 1
        if prune.record_hash is None:  # pruned before the log had a chain
            report.note(f"prune {prune.id} ({where[0]}..{where[1]}) was made before the log "
                        "had an integrity chain: only its archive's SHA-256 vouches for it")
        else:
            if prune_hash(store.chain, previous_record, prune) != prune.record_hash:
                report.find("forged prune", "swarmlog_prunes", prune.first_position,
                            f"prune {prune.id} ({where[0]}..{where[1]}) does not match its link "
                            "in the chain of prune records")
            previous_record = prune.record_hash
        _check_archive(store, prune, cut if prune.first_position >= start else None, report)
        if prune.cut_hash is not None:
            cut = prune.cut_hash
            if prune.last_position in report.hashes:
                report.hashes[prune.last_position] = cut
    return cut


def _check_archive(store: Store, prune: PruneRecord, follows: bytes | None,
                   report: VerifyReport) -> None:
    """An archive segment: there, with its SHA-256, and (when the chain covers it) holding the
    rows whose hashes lead from `follows` to the prune's cut hash."""
    if prune.archive_path is None:
        return
    report.archives += 1
    if not os.path.exists(prune.archive_path):
        report.find("missing archive", "archive", prune.first_position,
                    f"the archive of prune {prune.id} is missing: {prune.archive_path}")
        return
    if sha256_of(prune.archive_path) != prune.archive_sha256:
        report.find("changed archive", "archive", prune.first_position,
                    f"{prune.archive_path} does not match its recorded SHA-256")
    if follows is None or prune.cut_hash is None:
        return
    previous, expected = follows, prune.first_position
    try:
        for row in read_segment(prune.archive_path):
            if row.position != expected:
                report.find("changed archive", "archive", row.position,
                            f"{prune.archive_path} skips from {expected - 1} to {row.position}")
                return
            previous = store.chain.link(previous, row)
            if row.hash is None:  # another client's row, pruned: chained by its content
                report.find("inserted", "archive", row.position,
                            f"the row at {row.position} in {prune.archive_path} has no hash: "
                            "swarmlog did not append it")
            elif row.hash != previous:
                report.find("changed archive", "archive", row.position,
                            f"the row at {row.position} in {prune.archive_path} does not match "
                            "the chain")
                return
            if row.position in report.hashes:
                report.hashes[row.position] = previous
            expected += 1
    except (StoreError, SwarmlogError) as e:
        report.find("changed archive", "archive", prune.first_position, str(e))
        return
    if expected - 1 != prune.last_position or previous != prune.cut_hash:
        report.find("changed archive", "archive", prune.last_position,
                    f"{prune.archive_path} does not end at the hash recorded at the cut of "
                    f"prune {prune.id}")


# -- stored rows ---------------------------------------------------------------------------------


def _check_rows(store: Store, cut: bytes, report: VerifyReport,
                progress: Callable[[int, int], None] | None, last_attempt: bool = True) -> None:
    expected = first_stored(store)
    head = store.head()
    now = utc_now()
    epochs = {e.start: e.previous for e in store.epochs()}
    previous: bytes | None = cut if expected > 1 else GENESIS
    prunes = store.prunes()
    latest = prunes[-1] if prunes else None
    deleting = latest is not None and expected <= latest.last_position
    if deleting:  # a prune was stopped while deleting its rows: the rest of them are stored
        assert latest is not None
        previous = _hash_before(latest, expected)
        report.note(f"prune {latest.id} was interrupted: events {expected}..{latest.last_position} "
                    "it recorded are still stored (the next prune deletes them)"
                    + ("" if previous is not None else
                       f"; without its archive, event {expected} is checked only against "
                       "those after it"))
    if expected in epochs:
        previous = epochs[expected]
    versions: dict[str, int] = {}
    pruned = expected > 1  # after a prune, a stream's versions start wherever they survived
    unlinked: list[tuple[StoredEvent, bytes]] = []  # rows whose hash does not follow the stored
    # hash before them (and that hash)
    gap_before = False
    for row in store.read(after=expected - 1):
        report.events += 1
        if row.position != expected:
            if not last_attempt and _pruned_meanwhile(store, expected, row.position):
                raise _PrunedMeanwhile
            report.find("removed", "event_log", expected,
                        f"positions {expected}..{row.position - 1} are missing")
            gap_before = True
        if row.position in epochs and previous != epochs[row.position]:
            report.find("changed", "swarmlog_chain", row.position,
                        "the chain's epoch does not start from the hash before it")
        if row.hash is None:
            report.find("inserted", "event_log", row.position,
                        "the row has no hash: swarmlog did not append it")
        elif previous is not None and store.chain.link(previous, row) != row.hash \
                and not gap_before:  # (a gap explains it: named above)
            unlinked.append((row, previous))
        _check_content(row, report, now)
        last = versions.get(row.stream_id, None if pruned else 0)
        if last is not None and row.stream_version != last + 1:
            report.find("reordered" if row.stream_version <= (last or 0) else "removed",
                        "event_log", row.position,
                        f"stream {row.stream_id} goes from version {last} to {row.stream_version}")
        versions[row.stream_id] = row.stream_version
        # A row without a hash (named above) is chained as appends chain it: by its content.
        current = row.hash if row.hash is not None or previous is None \
            else store.chain.link(previous, row)
        if deleting and latest is not None and row.position == latest.last_position \
                and current != latest.cut_hash:
            report.find("changed", "event_log", row.position,
                        f"the row's hash is not the one prune {latest.id} recorded at its cut")
        if row.position in report.hashes:
            report.hashes[row.position] = current or b""
        previous, gap_before, expected = current, False, row.position + 1
        if progress is not None and report.events % 10_000 == 0:
            progress(report.events, head - first_stored(store) + 1)
    _name_unlinked(store.chain, unlinked, report)
    if expected - 1 < head and not last_attempt and _pruned_meanwhile(store, expected, head + 1):
        raise _PrunedMeanwhile
    if expected - 1 < head:
        report.find("removed", "event_log", expected,
                    f"the log ends at position {expected - 1}, but its head is {head}")
    report.streams = len(versions)
    heads = store.stream_versions(list(versions))
    for stream, version in versions.items():
        if heads[stream] != version:
            report.find("removed", "swarmlog_streams", None,
                        f"stream {stream} ends at version {version}, but its head says "
                        f"{heads[stream]}")


def _pruned_meanwhile(store: Store, expected: int, found: int) -> bool:
    """Whether rows expected..found-1, missing from the read, were pruned since it began: the
    log now starts after them (a prune deletes oldest first) and a recorded prune covers them.
    Rows missing from the middle, or not covered by a prune, are a finding."""
    return (first_stored(store) > expected
            and max((p.last_position for p in store.prunes()), default=0) >= found - 1)


def _hash_before(prune: PruneRecord, position: int) -> bytes | None:
    """The chain hash at `position - 1` in a prune's archive (None: no readable archive)."""
    if prune.archive_path is None or not os.path.exists(prune.archive_path):
        return None
    try:
        for row in read_segment(prune.archive_path, prune.archive_sha256):
            if row.position == position - 1:
                return row.hash
    except StoreError:  # (named by the archive's own check)
        return None
    return None


def _check_content(row: StoredEvent, report: VerifyReport, now: datetime) -> None:
    # Validated in full, whatever it says of itself; and stamped in the range an append accepts.
    problem = nonconformity(row) or _out_of_range(row.timestamp, now)
    if row.conforms is not None and not row.conforms:
        report.nonconforming += 1
        report.note(f"the event at position {row.position} ({row.event_type}) was stored "
                    "flagged as not conforming to its type's schema: "
                    f"{problem or 'it conforms now'}")
    elif problem is not None:
        report.find("invalid", "event_log", row.position,
                    f"the row says it conforms to {row.event_type}'s schema, but {problem}")


def _out_of_range(stamp: str, now: datetime) -> str | None:
    """Why a stored timestamp is outside the range an append accepts at `now` (None: it is in
    it, or is spelt in a way only the full validation reads)."""
    try:
        check_timestamp(datetime.fromisoformat(stamp), now)
    except InvalidEvent as e:
        return str(e).removeprefix("invalid event: ")
    except (TypeError, ValueError):
        pass
    return None


#: Up to how many rows that do not link are told apart (moved or changed); beyond, each is named
#: changed (telling them apart compares every pair).
_SORTED_OUT = 200


def _name_unlinked(chain: Chain, unlinked: list[tuple[StoredEvent, bytes]],
                   report: VerifyReport) -> None:
    """Name each row whose hash does not follow the stored hash before it. A row that follows
    the hash of a row moved elsewhere is sound (its predecessor moved); a row whose own hash is
    the link at another of these positions was moved there from (reordered, hash and all); any
    other row is changed."""
    if len(unlinked) > _SORTED_OUT:
        for row, _ in unlinked:
            report.find("changed", "event_log", row.position, "the row does not match its hash")
        return
    moved_hashes = {row.hash for row, _ in unlinked if row.hash is not None}
    befores = {row.position: before for row, before in unlinked}
    for row, _ in unlinked:
        if any(chain.link(h, row) == row.hash for h in moved_hashes if h != row.hash):
            continue  # its predecessor was moved: it is sound
        home = next((q for q, before in befores.items() if q != row.position and any(
            chain.link(p, row._replace(position=q)) == row.hash
            for p in {before, *moved_hashes} if p != row.hash)), None)
        if home is not None:
            report.find("reordered", "event_log", row.position,
                        f"the row belongs at position {home}")
        else:
            report.find("changed", "event_log", row.position, "the row does not match its hash")


# -- snapshots -----------------------------------------------------------------------------------


def _check_snapshots(store: Store, projections: Sequence[Projection[Any]],
                     report: VerifyReport) -> None:
    by_name = {p.name: p for p in projections}
    head = store.head()
    for snap in store.snapshots():
        report.snapshots += 1
        if snap.position > head:
            report.find("invalid", "swarmlog_snapshots", snap.position,
                        f"snapshot {snap.id} ({snap.projection}) is past the head {head}: the "
                        "database was restored from an older copy")
            continue
        if snap.digest is None:
            report.note(f"snapshot {snap.id} was taken before the log had an integrity chain")
        else:
            at = store.hash_at(snap.position) or report.hashes.get(snap.position)
            if at is not None and snap.chain_hash != at:
                report.find("changed snapshot", "swarmlog_snapshots", snap.position,
                            f"snapshot {snap.id} is not bound to the chain at its position")
            elif store.chain.digest(snap.chain_hash or b"", snap.projection, snap.version,
                                    snap.position, snap.state) != snap.digest:
                report.find("changed snapshot", "swarmlog_snapshots", snap.position,
                            f"snapshot {snap.id} ({snap.projection}) does not match its digest")
            for key, state, digest in store.snapshot_item_digests(snap.projection, snap.version,
                                                                  snap.position):
                if digest != store.chain.digest(snap.chain_hash or b"", snap.projection,
                                                snap.version, key, snap.position, state):
                    report.find("changed snapshot", "swarmlog_snapshot_items", snap.position,
                                f"item {key!r} of snapshot {snap.id} does not match its digest")
        projection = by_name.get(snap.projection)
        if projection is not None and projection.version == snap.version:
            try:
                projection.load(snap.state)
            except (ValueError, TypeError, KeyError, SwarmlogError) as e:
                report.find("invalid", "swarmlog_snapshots", snap.position,
                            f"snapshot {snap.id} ({snap.projection} v{snap.version}) does not "
                            f"load: {e}")


def _refold(store: Store, projections: Sequence[Projection[Any]], report: VerifyReport) -> None:
    """Fold every projection from the start (the archives, then the log) and compare its state
    at each stored snapshot with the snapshot."""
    for projection in projections:
        snaps = sorted((s for s in store.snapshots() if (s.projection, s.version) ==
                        (projection.name, projection.version)), key=lambda s: s.position)
        if not snaps:
            continue
        every = _every_row(store)
        if every is None:
            report.note(f"the read models could not be refolded from the start: the archive of "
                        f"a prune is missing ({projection.name}'s snapshots were not compared)")
            continue
        rows, state = iter(every), projection.initial()
        ahead: StoredEvent | None = None  # the first row past the last snapshot compared
        for snap in snaps:
            page: list[StoredEvent] = []
            while True:
                row = ahead if ahead is not None else next(rows, None)
                ahead = None
                if row is None:
                    break
                if row.position > snap.position:
                    ahead = row
                    break
                page.append(row)
                if len(page) >= 1000:
                    state, page = projection.fold_rows(state, page), []
            state = projection.fold_rows(state, page)
            stored = projection.load(snap.state)
            projection.attach(stored, Cold(store, projection.name, projection.version,
                                           snap.position))
            if projection.dump(stored) != projection.dump(state):
                report.find("changed snapshot", "swarmlog_snapshots", snap.position,
                            f"snapshot {snap.id} ({projection.name}) differs from the read models "
                            "refolded from the archives and the log")


def _every_row(store: Store) -> Iterable[StoredEvent] | None:
    """Every row from position 1: the archived ones, then the stored ones; None when an archive
    is missing (or a prune wrote none)."""
    prunes = store.prunes()
    if any(p.archive_path is None or not os.path.exists(p.archive_path) for p in prunes):
        return None

    def rows() -> Iterable[StoredEvent]:
        for prune in prunes:
            yield from read_segment(prune.archive_path or "")
        yield from store.read(max((p.last_position for p in prunes), default=0))

    return iter(rows())
