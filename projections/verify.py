"""An end-to-end check of a log: every row parses and matches its checksum, positions and stream
versions are gapless (allowing the pruned prefixes recorded in `prunes`), snapshots load, archive
hashes match."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.codec import row_checksum
from domain.errors import SwarmlogError
from domain.lenient import nonconformity
from projections.base import Projection
from store.archive import sha256_of
from store.base import Store, first_stored

#: Problems reported in full; beyond this only the count grows.
MAX_PROBLEMS = 50


@dataclass
class VerifyReport:
    """What `verify` checked and every problem it found (`ok` when there is none)."""

    events: int = 0
    streams: int = 0
    snapshots: int = 0
    archives: int = 0
    #: Rows without a checksum (written before swarmlog stored them, or by another client):
    #: not a problem, but only their validation vouches for them.
    unchecksummed: int = 0
    #: Rows stored as the ADR 017 module accepted them, not conforming to their type's schema
    #: (flagged when stored: not a problem, but named in `notes`).
    nonconforming: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_PROBLEMS:
            self.notes.append(text)


def verify(store: Store, projections: Sequence[Projection[Any]]) -> VerifyReport:
    """Check the whole log; never raises for what it finds, only reports it."""
    report = VerifyReport()
    _check_prunes(store, report)
    _check_events(store, report)
    by_name = {p.name: p for p in projections}
    for snap in store.snapshots():
        report.snapshots += 1
        projection = by_name.get(snap.projection)
        if projection is None or projection.version != snap.version:
            continue  # a snapshot of another version is ignored on start-up, not wrong
        if snap.position > store.head():
            report.problem(f"snapshot {snap.id} ({snap.projection}) is at position {snap.position}, "
                           f"past the head {store.head()}")
        try:
            projection.load(snap.state)
        except (ValueError, TypeError, KeyError, SwarmlogError) as e:
            report.problem(f"snapshot {snap.id} ({snap.projection} v{snap.version}) does not load: {e}")
    return report


def _check_prunes(store: Store, report: VerifyReport) -> None:
    expected_first = 1
    for prune in store.prunes():
        if prune.first_position != expected_first:
            report.problem(f"prune {prune.id} starts at {prune.first_position}, expected {expected_first}")
        if prune.removed != prune.last_position - prune.first_position + 1:
            report.problem(f"prune {prune.id} records {prune.removed} events for "
                           f"{prune.first_position}..{prune.last_position}")
        expected_first = prune.last_position + 1
        if prune.archive_path is None:
            continue
        report.archives += 1
        if not os.path.exists(prune.archive_path):
            report.problem(f"archive of prune {prune.id} is missing: {prune.archive_path}")
        elif sha256_of(prune.archive_path) != prune.archive_sha256:
            report.problem(f"archive {prune.archive_path} does not match its recorded SHA-256")
    if expected_first != first_stored(store):
        report.problem(f"the oldest stored event should be at {expected_first} after the recorded "
                       f"prunes, but the log starts at {first_stored(store)}")


def _check_events(store: Store, report: VerifyReport) -> None:
    expected = first_stored(store)
    versions: dict[str, int] = {}
    # Without a prune every stream starts at version 1; after one, at whatever survived.
    pruned = expected > 1
    for row in store.read(after=expected - 1):
        problem = nonconformity(row)  # validated in full, whatever its checksum says
        if row.conforms is not None and not row.conforms:
            report.nonconforming += 1
            report.note(f"the event at position {row.position} ({row.event_type}) was stored "
                        "flagged as not conforming to its type's schema: "
                        f"{problem or 'it conforms now'}")
        elif problem is not None:
            report.problem(f"corrupt event at seq {row.position}: {problem}")
        if row.checksum is None:
            report.unchecksummed += 1
        elif row.checksum != row_checksum(row):
            report.problem(f"the event at position {row.position} was changed after it was "
                           "written (its checksum does not match)")
        _check_one(row.position, expected, row.stream_id, row.stream_version, versions, pruned,
                   report)
        expected = row.position + 1
    if expected - 1 != store.head():
        report.problem(f"the log ends at position {expected - 1}, but its head is {store.head()}")
    report.streams = len(versions)
    heads = store.stream_versions(list(versions))
    for stream, version in versions.items():
        head = heads[stream]
        if head != version:
            report.problem(f"stream {stream} ends at version {version}, but its head says {head}")


def _check_one(position: int, expected: int, stream: str, version: int, versions: dict[str, int],
               pruned: bool, report: VerifyReport) -> None:
    report.events += 1
    if position != expected:
        report.problem(f"positions jump from {expected - 1} to {position}")
    last = versions.get(stream, None if pruned else 0)
    if last is not None and version != last + 1:
        report.problem(f"stream {stream} jumps from version {last} to {version} at position {position}")
    versions[stream] = version
