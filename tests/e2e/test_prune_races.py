"""Attacks on the bounded-step prune from the outside: another prune, a reader starting up, a
rebuild, `verify` and a live follower, each racing a prune in another connection (the race made
deterministic: the other party runs at a chosen moment, through its own `EventLog` on the same
database). Each test states the promise it holds the code to; see the README's "Guarantees" and
"Retention"."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from domain.codec import StoredEvent, build_event
from domain.errors import StoreError
from projections.models import ReadModels, ReadModelsProjection
from projections.runner import ProjectionRunner
from projections.verify import verify
from store import SQLiteStore, Store, open_store
from store.archive import read_segment
from swarmlog.log import EventLog

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 1000  # events a day


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database another connection can open too: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "log.db")
        return
    from tests import pg

    request.getfixturevalue("postgres_server")
    url = pg.create_database()
    yield url
    pg.drop_database(pg.name_of(url))


def _fill(location: str, days: int) -> None:
    """`days` days of `DAY` task creations each: positions day*DAY+1 .. (day+1)*DAY are day
    `day`. Every event makes a task of its own, so a lost event is a lost task."""
    with EventLog(location) as log:
        for day in range(days):
            log.append([build_event("task.created", "attack", f"t{day}-{n}", None, {},
                                    timestamp=T0 + timedelta(days=day, seconds=n))
                        for n in range(DAY)])


def _oracle(location: str) -> ReadModels:
    """The read models of every stored event, folded the plain way before anything races."""
    runner = ProjectionRunner(open_store(location), [ReadModelsProjection(plain=True)])
    runner.start()
    models: ReadModels = runner.state("read_models")
    runner.store.close()
    return models


def _same(models: ReadModels, expected: ReadModels) -> None:
    """Equal read models (the event counts first: a short message when events were lost)."""
    assert models.summary.total == expected.summary.total
    assert models == expected


def _once(action: Callable[[], None]) -> Callable[..., None]:
    """A callback that runs `action` the first time it is called, and nothing after."""
    fired: list[bool] = []

    def callback(*_: Any) -> None:
        if not fired:
            fired.append(True)
            action()

    return callback


def _prune(location: str, days: int, archive: Path | None = None) -> Callable[[], None]:
    def run() -> None:
        with EventLog(location) as other:
            other.prune(before=T0 + timedelta(days=days), archive=archive)

    return run


# -- two prunes ------------------------------------------------------------------------------------


class _Killed(Exception):
    """Stands for a SIGKILL of the prune's process."""


class _Unlocked:
    """A store whose prunes do not take the prune lock (a swarmlog from before it, or a lock
    file on a file system where `flock` locks nothing): the races the lock keeps out, which the
    prune's own checks must still refuse."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def prune_lock(self) -> Iterator[None]:
        yield

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _prune_unlocked(location: str, days: int, archive: Path | None = None) -> Callable[[], None]:
    def run() -> None:
        with EventLog(cast(Store, _Unlocked(open_store(location)))) as other:
            other.prune(before=T0 + timedelta(days=days), archive=archive)

    return run


class _DiesAfterRecording(_Unlocked):
    """A store whose prune is killed right after it recorded itself, before deleting a row (and
    that does not take the prune lock, or it could not run beside the other prune at all)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.recorded = False

    def record_prune(self, *args: Any) -> Any:
        record = self.store.record_prune(*args)
        self.recorded = True
        return record

    def delete_pruned(self, limit: int) -> int:
        if self.recorded:
            raise _Killed
        return self.store.delete_pruned(limit)



@pytest.mark.parametrize(("first_days", "second_days"), [(3, 7), (7, 3)])
def test_a_prune_racing_one_killed_after_recording_does_not_record_the_same_rows_again(
    location: str, first_days: int, second_days: int
) -> None:
    """Two prunes over one log (cron and an operator): the first records itself and is killed
    before it deletes a row, while the second is folding. The second must not record a range
    that overlaps the first's: README, "A prune killed at any moment leaves ... `verify` clean,
    and the next prune finishing the job".

    Flaw: `record_prune` only checks the stored rows (min(seq) == first and the rows up to
    `last`), never the recorded prunes, so both records stand: prune 2 "removed 1..N, but the
    one before it ended at M" (a forged prune), its archive does not follow the first's cut,
    and (second cut shorter) the first stored row no longer follows the last cut. `verify` then
    fails on an untampered log, for good."""
    _fill(location, 10)
    expected = _oracle(location)

    def first() -> None:
        killed = EventLog(cast(Store, _DiesAfterRecording(open_store(location))))
        with pytest.raises(_Killed):
            killed.prune(before=T0 + timedelta(days=first_days))
        killed.close()

    second = EventLog(location)
    try:
        second.prune(before=T0 + timedelta(days=second_days), progress=_once(first))
    except Exception as refused:  # refusing is fine: the next prune finishes the job
        assert "another prune" in str(refused)
    second.close()

    log = EventLog(location)
    ranges = [(p.first_position, p.last_position) for p in log.store.prunes()]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges)), f"overlapping prunes {ranges}"
    report = log.verify()
    assert report.ok, report.problems
    _same(log.models, expected)
    log.close()


@pytest.mark.parametrize("locked", [True, False], ids=["locked", "unlocked"])
def test_a_prune_whose_prefix_another_prune_deleted_meanwhile_leaves_no_wrong_snapshot(
    location: str, locked: bool
) -> None:
    """Prune A (older than day 5) folds its prefix without the write lock; meanwhile prune B
    (older than day 3) runs whole. A's paged read (`store.read`, keyset `seq > last`) jumps
    over what B deleted under it, so A folds a prefix with a hole; its `record_prune` is then
    refused ("another prune ran meanwhile"), but the snapshot it stored at its cut, missing
    the events in the hole, stays, and it is the newest: every start-up loads it. README:
    "The read models after a prune, and after a restart, are exactly what they were".

    Flaw: `prune` never checks that the rows it folded and archived are gapless (nor that the
    log still starts at `first`) before storing its snapshots.

    Fixed: B is refused by the prune lock A holds (`locked`); a B that does not take the lock
    deletes under A, and A, finding the rows it reads no longer gapless, stores nothing."""
    _fill(location, 8)
    expected = _oracle(location)
    a = EventLog(location)
    b = _prune(location, 3) if locked else _prune_unlocked(location, 3)
    with pytest.raises(StoreError, match="another prune"):
        a.prune(before=T0 + timedelta(days=5), progress=_once(b))
    a.close()

    restarted = EventLog(location)
    _same(restarted.models, expected)
    restarted.close()


# -- readers -------------------------------------------------------------------------------------


def test_a_reader_starting_up_while_a_prune_deletes_ahead_of_it_loses_no_event(
    location: str
) -> None:
    """A reader starts without a snapshot on a long log (another `swarmlog serve`, a CLI
    command); after its first page a prune deletes rows it has not read yet. README: "Readers
    see every event once, in order", and the read models equal the fold of the log.

    Flaw: `ProjectionRunner._fold` looks for a pruned hole only before the first page
    (`read == 0 and page[0][0] > after + 1`). `store.scan` pages by `seq > last`, so when the
    rows after the page in hand are deleted, the next page silently starts after the hole and
    the events in it are never folded (here 3,000 tasks are missing)."""
    _fill(location, 6)
    expected = _oracle(location)
    reader = EventLog(location)
    reader.catch_up(progress=_once(_prune(location, 5)))
    _same(reader.runner.state("read_models"), expected)
    reader.close()


def test_a_starting_reader_racing_a_prune_does_not_snapshot_what_it_lost(location: str) -> None:
    """As above, on a log long enough that the reader stores a snapshot when it has caught up
    (every `SNAPSHOT_AFTER` events): the hole is then written down, at the head, and every
    later start-up loads the wrong read models (here 3,000 of 16,000 tasks lost for good)."""
    _fill(location, 16)
    expected = _oracle(location)
    reader = EventLog(location)
    reader.catch_up(progress=_once(_prune(location, 5)))
    reader.close()
    restarted = EventLog(location)
    _same(restarted.models, expected)
    restarted.close()


@pytest.mark.parametrize("archived", [True, False])
def test_a_rebuild_racing_a_prune_loses_no_event(location: str, tmp_path: Path,
                                                 archived: bool) -> None:
    """`swarmlog rebuild` while cron prunes: the rebuilt read models must equal the fold of the
    log. Flaw: `ProjectionRunner.rebuild` folds `store.scan` pages with no check for a hole at
    all, so the events a prune deletes ahead of it are silently left out."""
    _fill(location, 6)
    expected = _oracle(location)
    log = EventLog(location)
    log.rebuild(progress=_once(_prune(location, 5, tmp_path / "archive" if archived else None)))
    _same(log.runner.state("read_models"), expected)
    log.close()


def test_catching_up_with_a_listener_while_a_prune_deletes_the_page_does_not_raise(
    location: str
) -> None:
    """The web view's follower calls `runner.catch_up(on_event=...)`. A page is folded from its
    scanned columns, then each row is read whole for the listener; if a prune deleted the page
    in between, `PageRows` raises `RowsVanished` out of `catch_up` (the follower logs it, the
    request asking for the read models gets a 500). Flaw: `_fold` only catches `RowsVanished`
    around the fold, not around the listener's whole reads."""
    _fill(location, 4)
    expected = _oracle(location)
    runner = ProjectionRunner(open_store(location))
    seen: list[StoredEvent] = []
    prune = _once(_prune(location, 3))

    def listener(row: StoredEvent) -> None:
        seen.append(row)
        prune()

    runner.catch_up(on_event=listener)
    _same(runner.state("read_models"), expected)
    runner.store.close()


# -- verify --------------------------------------------------------------------------------------


def test_verify_while_a_prune_deletes_ahead_of_it_finds_nothing(location: str,
                                                                tmp_path: Path) -> None:
    """`swarmlog verify` (or the web view's integrity page) while a prune runs: the prune
    deletes oldest first in short steps, faster than verify hashes and validates each row, so
    it overtakes verify's read. Flaw: `_check_rows` reads pages keyed on `seq > last` and names
    any jump "removed: positions .. are missing": a tampering alarm on an untampered log."""
    _fill(location, 14)
    log = EventLog(location)
    report = verify(log.store, log.projections,
                    progress=_once(_prune(location, 12, tmp_path / "archive")))
    assert report.ok, report.problems
    log.close()


def test_two_prunes_with_the_same_cutoff_share_no_temporary_archive_file(tmp_path: Path) -> None:
    """Two prunes of the same range (cron's and an operator's, or a retry after a kill while
    the killed one's file is still open) write the same segment: `write_segment` names its
    temporary file after the segment (`events-F-L.jsonl.tmp`), so both write one inode, and
    the slower fails renaming a file the other already renamed (or deletes the other's
    temporary file when it fails). Here: the second prune fails with a StoreError naming a
    missing .tmp file. A temporary name of its own (tempfile.mkstemp in the folder) avoids it."""
    db = str(tmp_path / "log.db")
    _fill(db, 6)
    archive = tmp_path / "archive"

    def first() -> None:
        killed = EventLog(cast(Store, _DiesAfterRecording(SQLiteStore(db))))
        with pytest.raises(_Killed):
            killed.prune(before=T0 + timedelta(days=3), archive=archive)
        killed.close()

    second = EventLog(db)
    try:
        second.prune(before=T0 + timedelta(days=3), archive=archive, progress=_once(first))
    except Exception as e:
        assert ".tmp" not in str(e), e
    second.close()
    log = EventLog(db)
    report = log.verify()
    assert report.ok, report.problems
    log.close()


@pytest.mark.parametrize("locked", [True, False], ids=["locked", "unlocked"])
def test_a_recorded_prunes_archive_survives_a_concurrent_prune_of_the_same_range(
    tmp_path: Path, locked: bool
) -> None:
    """Two `prune --older-than 30d --archive archive` at once (overlapping cron runs, an
    operator and cron) over the same range: B runs whole (archives, records, deletes) while A
    is folding. Both write `events-F-L.jsonl.tmp`, one inode: B truncates A's file, writes its
    segment and renames it into place; A, still holding the inode, goes on writing into what is
    now B's recorded archive, and (its keyset read having jumped over what B deleted) writes a
    different stream. B's archive, the only copy of events 1..5000 once their rows are deleted,
    is left unreadable ("Not a gzipped file"): the pruned history is lost for good, `verify`
    names a changed archive, rebuilds and `tail -f` cannot read it.

    Flaws: the shared temporary name (`write_segment`), and a prune that does not notice that
    its prefix changed under it (see the test above).

    Fixed: with the prune lock, B is refused while A runs (and A, its progress failing, stops
    with nothing pruned); a B that does not take the lock runs whole, and A stops."""
    db = str(tmp_path / "log.db")
    _fill(db, 8)
    archive = tmp_path / "archive"
    a = EventLog(db)
    b = _prune(db, 5, archive) if locked else _prune_unlocked(db, 5, archive)
    with pytest.raises(StoreError, match="another prune"):
        a.prune(before=T0 + timedelta(days=5), archive=archive, progress=_once(b))
    a.close()
    log = EventLog(db)
    if locked:
        assert log.store.prunes() == [] and not list(archive.iterdir())
        report = log.verify()
        assert report.ok, report.problems
        log.close()
        return
    (prune,) = log.store.prunes()
    assert prune.archive_path is not None
    rows = list(read_segment(prune.archive_path, prune.archive_sha256))
    assert [r.position for r in rows] == list(range(1, 5001))
    report = log.verify()
    assert report.ok, report.problems
    log.close()
