"""kill -9 at random moments loses no committed batch and invents nothing (long: marked slow)."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from projections.models import ReadModels, ReadModelsProjection
from projections.runner import ProjectionRunner
from store import MemoryStore
from swarmlog.log import EventLog

pytestmark = pytest.mark.slow


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.workers", *args])


def fold_of_what_is_stored(log: EventLog) -> ReadModels:
    """The read models of the stored rows, folded from nothing through the typed events."""
    oracle = MemoryStore()
    oracle.append(list(log.read()))
    runner = ProjectionRunner(oracle, [ReadModelsProjection(plain=True)])
    runner.start()
    models: ReadModels = runner.state("read_models")
    return models


def check_log(path: Path | str) -> int:
    """The invariants after a crash; returns how many events are stored."""
    if isinstance(path, Path):
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        raw.close()
    log = EventLog(path)
    records = list(log.read())
    assert [r.position for r in records] == list(range(1, len(records) + 1))
    sizes = Counter((r.event.source, r.event.data.model_extra["batch"]) for r in records)
    for r in records:  # every batch wholly present or wholly absent
        assert sizes[(r.event.source, r.event.data.model_extra["batch"])] == \
            r.event.data.model_extra["size"]
    report = log.verify()
    assert report.ok, report.problems
    assert log.models == fold_of_what_is_stored(log)
    log.close()
    return len(records)


def test_a_writer_killed_at_random_moments_leaves_whole_batches(tmp_path: Path) -> None:
    kill_writers(tmp_path / "log.db", attempts=12)


@pytest.mark.postgres
def test_a_writer_killed_at_random_moments_leaves_whole_batches_on_postgres() -> None:
    from tests import pg

    kill_writers(pg.create_database(), attempts=6)


def kill_writers(path: Path | str, attempts: int) -> None:
    EventLog(path).close()
    rng = random.Random(17)
    stored = 0
    for attempt in range(attempts):
        writer = start("append", str(path), f"w{attempt}")
        with EventLog(path, read_only=True) as log:  # its first batch is in: it is appending
            deadline = time.monotonic() + 60
            while log.store.head() <= stored and time.monotonic() < deadline:
                time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.8))  # then somewhere among its appends
        writer.kill()
        writer.wait()
        now = check_log(path)
        assert now >= stored  # nothing committed is ever lost
        stored = now
    assert stored > 0


def test_a_snapshotting_process_killed_at_random_moments_leaves_loadable_snapshots(
        tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    EventLog(path).close()
    rng = random.Random(23)
    for attempt in range(5):
        worker = start("snapshot", str(path), f"s{attempt}")
        time.sleep(rng.uniform(0.5, 1.5))
        worker.kill()
        worker.wait()
        check_log(path)
