"""Pruning snapshots first: no read model changes, the archive plus the log is the history."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import projections.base
from domain.codec import build_event
from domain.errors import InvalidEvent, ProjectionError
from domain.events import Event, EventType
from projections.models import ReadModels, ReadModelsProjection
from projections.runner import ProjectionRunner
from store import MemoryStore, SQLiteStore, Store, stored_count
from store.archive import read_segment
from swarmlog.log import EventLog
from tests.strategies import EPOCH, event_sequences, rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TASKS, AGENTS = ["t1", "t2", "t3"], ["a1", "a2"]


@st.composite
def swarm_events(draw: st.DrawFn) -> Event:
    """Swarm-shaped events over a few ids, in any order, at any of 600 minutes."""
    kind = draw(st.sampled_from(list(EventType)))
    data: dict[str, Any] = {}
    if kind in (EventType.BID_SUBMITTED, EventType.TASK_ASSIGNED):
        data["bid_sats"] = draw(st.integers(0, 500))
    if kind in (EventType.TOOL_CALLED, EventType.TOOL_COMPLETED, EventType.TOOL_FAILED):
        data["call_id"] = draw(st.sampled_from(["c1", "c2"]))
    if kind is EventType.AGENT_JOINED:
        data["name"] = "agent"
    return build_event(kind, "test", draw(st.none() | st.sampled_from(TASKS)),
                       draw(st.none() | st.sampled_from(AGENTS)), data,
                       timestamp=T0 + timedelta(minutes=draw(st.integers(0, 600))))


def full_fold(history: list[Event]) -> ReadModels:
    """The read models of the whole history, folded from nothing through the typed events
    (the oracle)."""
    store = MemoryStore()
    store.append(rows(*history))
    runner = ProjectionRunner(store, [ReadModelsProjection(plain=True)])
    runner.start()
    models: ReadModels = runner.state("read_models")
    return models


def archived_then_stored(log: EventLog) -> list[Event]:
    """Every event: the archived ones, then the stored ones after them (a prune that was stopped
    while deleting leaves some rows both archived and stored)."""
    rows = [r for p in log.store.prunes() if p.archive_path
            for r in read_segment(p.archive_path, p.archive_sha256)]
    archived = rows[-1].position if rows else 0
    return [r.event for r in rows] + [r.event for r in log.read(after=archived)]


@settings(max_examples=40)
@given(st.data())
def test_prunes_at_any_cutoffs_between_appends_change_no_read_model(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prune_and_restart(data, os.path.join(tmp, "log.db"), os.path.join(tmp, "archive"))


@pytest.mark.postgres
@settings(max_examples=6)
@given(st.data())
def test_prune_invariance_holds_on_postgres(data: st.DataObject) -> None:
    from tests import pg

    with tempfile.TemporaryDirectory() as tmp:
        prune_and_restart(data, pg.create_database(), os.path.join(tmp, "archive"))


def prune_and_restart(data: st.DataObject, path: str, archive: str) -> None:
    """Appends and prunes at random cutoffs; after each prune and after a restart the read
    models equal the fold of the whole history, and archive + log is that history."""
    history: list[Event] = []
    log = EventLog(path)
    for _ in range(data.draw(st.integers(1, 5), label="rounds")):
        batch = data.draw(st.lists(swarm_events(), max_size=12), label="batch")
        if batch:
            log.append(batch)
            history += batch
        if data.draw(st.booleans(), label="snapshot?"):  # (a snapshot inside the next prefix)
            log.snapshot()
        if data.draw(st.booleans(), label="prune?"):
            minute = data.draw(st.integers(0, 620), label="cutoff minute")
            log.prune(before=T0 + timedelta(minutes=minute), archive=archive)
            assert log.models == full_fold(history)
    log.close()
    restarted = EventLog(path)
    assert restarted.models == full_fold(history)
    assert archived_then_stored(restarted) == history
    assert restarted.verify().ok, restarted.verify().problems
    restarted.close()


def _log_with_days(path: Path, days: list[int]) -> EventLog:
    log = EventLog(path)
    log.append([build_event("bid.submitted", "test", "t1", "a1", {"bid_sats": n},
                            timestamp=T0 + timedelta(days=d)) for n, d in enumerate(days)])
    return log


def test_a_snapshot_inside_the_prefix_neither_shortens_its_segment_nor_its_fold(
        tmp_path: Path) -> None:
    log = _log_with_days(tmp_path / "log.db", [0, 1, 2])
    log.snapshot()  # at position 3, inside the prefix about to be pruned
    log.append([build_event("bid.submitted", "test", "t1", "a1", {"bid_sats": 9},
                            timestamp=T0 + timedelta(days=3))])
    report = log.prune(before=T0 + timedelta(days=5), archive=tmp_path / "a")
    assert report.removed == 4
    assert [r.position for r in read_segment(report.archive_path or "", report.archive_sha256)] \
        == [1, 2, 3, 4]
    assert log.verify(deep=True).ok, log.verify(deep=True).problems


def test_a_dry_run_reports_and_changes_nothing(tmp_path: Path) -> None:
    log = _log_with_days(tmp_path / "log.db", [0, 1, 2, 10])
    report = log.prune(before=T0 + timedelta(days=5), archive=tmp_path / "a", dry_run=True)
    assert (report.removed, report.first_position, report.last_position) == (3, 1, 3)
    assert report.dry_run and report.archive_path is not None
    assert stored_count(log.store) == 4 and log.store.prunes() == [] and log.store.snapshots() == []
    assert not (tmp_path / "a").exists()


def test_pruning_an_empty_or_young_log_is_a_noop(tmp_path: Path) -> None:
    empty = EventLog(tmp_path / "empty.db")
    assert empty.prune(older_than=timedelta(days=1)).removed == 0
    young = _log_with_days(tmp_path / "young.db", [0, 1])
    assert young.prune(before=T0).removed == 0
    assert young.store.prunes() == [] and stored_count(young.store) == 2


def test_pruning_twice_in_a_row_removes_nothing_the_second_time(tmp_path: Path) -> None:
    log = _log_with_days(tmp_path / "log.db", [0, 1, 9])
    assert log.prune(before=T0 + timedelta(days=5)).removed == 2
    again = log.prune(before=T0 + timedelta(days=5))
    assert again.removed == 0 and len(log.store.prunes()) == 1


def test_an_out_of_order_young_event_stops_the_prefix(tmp_path: Path) -> None:
    log = _log_with_days(tmp_path / "log.db", [0, 1, 30, 2, 3])
    report = log.prune(before=T0 + timedelta(days=10))
    assert (report.removed, report.last_position) == (2, 2)
    assert [r.position for r in log.read()] == [3, 4, 5]


def test_after_a_prune_positions_and_stream_versions_continue(tmp_path: Path) -> None:
    log = _log_with_days(tmp_path / "log.db", [0, 1, 9])
    log.prune(before=T0 + timedelta(days=5))
    assert log.append(build_event("task.started", "test", "t1", "a1")) == [4]
    assert [r.stream_version for r in log.events_of_task("t1")] == [3, 4]
    assert log.store.head() == 4 and stored_count(log.store) == 2


def test_prune_needs_one_cutoff_with_a_timezone(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log.db")
    with pytest.raises(InvalidEvent):
        log.prune()
    with pytest.raises(InvalidEvent):
        log.prune(older_than=timedelta(days=1), before=T0)
    with pytest.raises(InvalidEvent):
        log.prune(before=datetime(2026, 1, 1))


class ReadModelsV2(ReadModelsProjection):
    """The read models after a change to their fold: their old snapshots no longer apply."""

    version = ReadModelsProjection.version + 1


def test_a_changed_projection_is_refolded_from_the_archive(tmp_path: Path) -> None:
    log = _log_with_days(tmp_path / "log.db", [0, 1, 2, 9])
    history = [r.event for r in log.read()]
    log.prune(before=T0 + timedelta(days=5), archive=tmp_path / "archive")
    log.close()
    upgraded = EventLog(tmp_path / "log.db", projections=[ReadModelsV2()])
    assert upgraded.models == full_fold(history)


def test_a_changed_projection_without_an_archive_fails_clearly(tmp_path: Path) -> None:
    log = _log_with_days(tmp_path / "log.db", [0, 1, 2, 9])
    log.prune(before=T0 + timedelta(days=5))
    log.close()
    upgraded = EventLog(tmp_path / "log.db", projections=[ReadModelsV2()])
    with pytest.raises(ProjectionError, match="archive"):
        upgraded.start()


def test_a_rebuild_after_a_prune_refolds_the_archive_or_starts_at_the_cut(tmp_path: Path) -> None:
    for archive in (tmp_path / "archive", None):
        log = _log_with_days(tmp_path / f"log{archive is None}.db", [0, 1, 2, 9])
        expected = full_fold([r.event for r in log.read()])
        log.prune(before=T0 + timedelta(days=5), archive=archive)
        assert log.rebuild() == 1  # the one stored event; the rest from the archive or the cut
        assert log.models == expected


def test_snapshots_do_not_pile_up_over_many_prunes(tmp_path: Path) -> None:
    log = _log_with_days(tmp_path / "log.db", list(range(30)))
    history = [r.event for r in log.read()]
    for day in range(1, 30):
        log.prune(before=T0 + timedelta(days=day), archive=tmp_path / "archive")
        assert len(log.store.snapshots(with_state=False)) <= 4  # the newest 3, and the cut's
    assert log.models == full_fold(history)
    assert archived_then_stored(log) == history and log.verify().ok


class StopsDeleting:
    """A store whose prune is killed after its first step of deleting rows."""

    def __init__(self, store: Store) -> None:
        self.store, self.deleted = store, 0

    def delete_pruned(self, limit: int) -> int:
        if self.deleted:
            raise KeyboardInterrupt("killed")
        self.deleted = self.store.delete_pruned(min(limit, 3))
        return self.deleted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize("with_archive", [True, False])
def test_a_prune_stopped_while_deleting_leaves_a_log_that_reads_folds_verifies_and_finishes(
    tmp_path: Path, with_archive: bool
) -> None:
    path, archive = tmp_path / "log.db", (tmp_path / "archive" if with_archive else None)
    log = _log_with_days(path, [0, 0, 1, 1, 2, 2, 3, 9])
    history = [r.event for r in log.read()]
    expected = full_fold(history)
    behind = ProjectionRunner(SQLiteStore(path))  # a reader that folded the start, then slept
    behind.fold_to(2)
    log.close()

    stopping = EventLog(cast(Store, StopsDeleting(SQLiteStore(path))))
    with pytest.raises(KeyboardInterrupt):
        stopping.prune(before=T0 + timedelta(days=5), archive=archive)
    stopping.close()

    log = EventLog(path)
    (prune,) = log.store.prunes()
    assert (prune.first_position, prune.last_position) == (1, 7)
    assert [r.position for r in log.read()] == [4, 5, 6, 7, 8]  # 1..3 deleted, 4..7 not yet
    assert log.models == expected
    assert not with_archive or archived_then_stored(log) == history
    report = log.verify()
    assert report.ok, report.problems
    assert any("prune 1 was interrupted: events 4..7" in n for n in report.notes)
    # From the archive (and the stored rows after what it folded), or from the cut.
    assert log.rebuild() == (5 if with_archive else 1) and log.models == expected
    assert behind.catch_up() >= 1 and behind.state("read_models") == expected

    finished = log.prune(before=T0 + timedelta(days=5), archive=archive)
    assert (finished.resumed, finished.removed) == (4, 0)
    assert [r.position for r in log.read()] == [8] and log.models == expected
    assert log.verify().ok
    assert not with_archive or archived_then_stored(log) == history


PRUNER = """
import sys
from datetime import datetime
from swarmlog.log import EventLog
EventLog(sys.argv[1]).prune(before=datetime.fromisoformat(sys.argv[2]), archive=sys.argv[3])
"""


@pytest.mark.slow
def test_a_prune_killed_at_any_moment_leaves_the_log_before_or_after(tmp_path: Path) -> None:
    original = tmp_path / "original.db"
    log = EventLog(original)
    for day in range(20):
        log.append([build_event("bid.submitted", "test", f"t{n % 300}", f"a{n % 9}", {"bid_sats": n},
                                timestamp=T0 + timedelta(days=day, seconds=n)) for n in range(500)])
    history = [r.event for r in log.read()]
    expected = full_fold(history)
    log.close()
    cutoff = (T0 + timedelta(days=10)).isoformat()
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", PRUNER, str(shutil.copy(original, tmp_path / "timing.db")),
                    cutoff, str(tmp_path / "timing")], check=True)
    duration = time.monotonic() - started
    outcomes = set()
    for attempt in range(12):
        path = tmp_path / f"try{attempt}.db"
        shutil.copy(original, path)
        child = subprocess.Popen([sys.executable, "-c", PRUNER, str(path), cutoff,
                                  str(tmp_path / f"archive{attempt}")])
        time.sleep(duration * attempt / 8)  # the last few outlast an unkilled prune
        if attempt == 11:  # (on a loaded machine they may not: the last one finishes)
            child.wait(timeout=300)
        child.kill()
        child.wait()
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        reopened = EventLog(path)
        prunes, stored = reopened.store.prunes(), stored_count(reopened.store)
        # Before (nothing recorded, every row stored), deleting (recorded, a suffix of the
        # pruned rows still stored), or after.
        outcomes.add("before" if not prunes else "after" if stored == 5_000 else "deleting")
        if prunes:
            assert prunes[0].last_position == 5_000 and 5_000 <= stored <= 10_000
        else:
            assert stored == 10_000
        assert reopened.models == expected
        assert archived_then_stored(reopened) == history
        assert reopened.verify().ok, reopened.verify().problems
        assert reopened.prune(before=datetime.fromisoformat(cutoff)).removed in (0, 5_000)
        assert stored_count(reopened.store) == 5_000 and reopened.models == expected
        assert reopened.verify().ok, reopened.verify().problems
        reopened.close()
    assert "before" in outcomes and "after" in outcomes


@settings(max_examples=60)
@given(st.data())
def test_spilling_at_a_tiny_limit_across_snapshots_restarts_prunes_and_rebuilds_changes_no_state(
    data: st.DataObject
) -> None:
    """What the unit property (`test_spilling_closed_entries_and_snapshotting_them_changes_no_
    state`) shows on folds, through a real log: with closed entries spilled after every page
    (`SPILL_AT` 1 to 3), any mix of appends, snapshots, restarts, prunes (archived or not) and
    rebuilds leaves the read models equal to the plain fold of the whole history, before and
    after a restart. A rebuild after a prune without an archive may only fail saying so."""
    spill_at = data.draw(st.integers(1, 3), label="SPILL_AT")
    with tempfile.TemporaryDirectory() as tmp, patch.object(projections.base, "SPILL_AT", spill_at):
        path, archive = os.path.join(tmp, "log.db"), os.path.join(tmp, "archive")
        history: list[Event] = []
        log = EventLog(path)
        for _ in range(data.draw(st.integers(1, 6), label="rounds")):
            batch = data.draw(event_sequences(), label="batch")
            if batch:
                log.append(batch)
                history += batch
            step = data.draw(st.sampled_from(["snapshot", "restart", "prune", "prune unarchived",
                                              "rebuild", "nothing"]), label="then")
            if step == "snapshot":
                log.snapshot()
            elif step == "restart":
                log.close()
                log = EventLog(path)
            elif step.startswith("prune"):
                hours = data.draw(st.integers(0, 80), label="cutoff hour")
                log.prune(before=EPOCH + timedelta(hours=hours),
                          archive=archive if step == "prune" else None)
            elif step == "rebuild":
                try:
                    log.rebuild()
                except ProjectionError as e:
                    assert "archive" in str(e)
            expected = full_fold(history)
            assert log.models == expected
            assert ReadModelsProjection().dump(log.models) == ReadModelsProjection().dump(expected)
        log.close()
        restarted = EventLog(path)
        assert restarted.models == full_fold(history)
        restarted.close()
