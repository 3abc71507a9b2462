"""Following a log as it grows (`swarmlog tail -f`): every new event, once, in order, never
skipping one silently.

A prune may delete events a follower has not read yet (it deletes the oldest first, a step at a
time, after recording itself). The follower reads every row after the last one it saw, filters
them itself, and so sees any hole: the events in it come from the prune's archive when it kept
one, and otherwise a `Gap` says which positions it missed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from domain.codec import StoredEvent
from domain.errors import StoreError
from store import EVERYTHING, EventFilter, Store
from store.archive import read_segment


@dataclass(frozen=True)
class Gap:
    """Events `first`..`last` were pruned before they were read, and no archive holds them."""

    first: int
    last: int


def follow(store: Store, where: EventFilter = EVERYTHING, after: int | None = None, *,
           stop: threading.Event | None = None, poll: float = 1.0) -> Iterator[StoredEvent | Gap]:
    """The events `where` wants appended after position `after` (the head when None), as they
    come, until `stop` is set (forever if None); each wait for an append ends after `poll`
    seconds at most."""
    seen = store.head() if after is None else after
    stop = stop or threading.Event()
    while not stop.is_set():
        if store.wait_for_append(seen, poll):
            head = store.head()
            yield from between(store, where, seen, head)
            seen = head


def between(store: Store, where: EventFilter, after: int, through: int
            ) -> Iterator[StoredEvent | Gap]:
    """The events `where` wants at positions after..through, those pruned meanwhile from their
    archive or as a `Gap`."""
    expected = after + 1
    for row in store.read(after, through):
        if row.position > expected:
            yield from _pruned(store, where, expected, row.position - 1)
        if where.matches(row):
            yield row
        expected = row.position + 1
    if expected <= through:
        yield from _pruned(store, where, expected, through)


def _pruned(store: Store, where: EventFilter, first: int, last: int
            ) -> Iterator[StoredEvent | Gap]:
    """Events first..last, deleted by a prune: from its archive where it kept a readable one."""
    expected = first
    for prune in store.prunes():
        if prune.last_position < expected or prune.first_position > last:
            continue
        if prune.archive_path is None or not os.path.exists(prune.archive_path):
            continue
        try:
            rows = [r for r in read_segment(prune.archive_path, prune.archive_sha256)
                    if expected <= r.position <= last]
        except StoreError:
            continue  # (`verify` names a changed archive; here it is a gap)
        if rows and rows[0].position > expected:
            yield Gap(expected, rows[0].position - 1)
        for row in rows:
            if where.matches(row):
                yield row
        if rows:
            expected = rows[-1].position + 1
    if expected <= last:
        yield Gap(expected, last)
