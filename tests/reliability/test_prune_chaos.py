"""Chaos against the bounded-step prune with real processes: an appender (some of its events
with old timestamps), a `tail -f --json`, a long-lived reader folding the read models, and pairs
of prunes at two cutoffs started together, one of them SIGKILLed at a random moment. Then a
clean prune finishes whatever was interrupted, and every promise is checked at once (README,
"Guarantees" and "Retention"): the file is sound, `verify` is clean, archive + log is exactly
what was appended (each event once, in order), the read models of every reader equal the fold
of that history, and `tail -f` showed every event once, in order, without a gap (every prune
archives)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from projections.models import ReadModelsProjection
from projections.runner import ProjectionRunner
from store import MemoryStore
from store.archive import read_segment
from swarmlog.log import EventLog

ROOT = Path(__file__).resolve().parent.parent.parent
T0 = datetime(2026, 1, 1, tzinfo=UTC)

APPENDER = """
import os, sys, time
from datetime import datetime, timedelta
from domain.codec import build_event
from swarmlog.log import EventLog
path, stop, t0 = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
log, n, batch = EventLog(path), 0, 0
while not os.path.exists(stop):
    batch += 1
    old = batch % 9 == 0  # now and then a batch stamped a day early: out of order
    events = []
    for _ in range(40):
        n += 1
        at = t0 + timedelta(seconds=n) - (timedelta(days=1) if old else timedelta())
        task = f"t{n // 5}"
        kind = ("task.created", "task.bidding", "bid.submitted", "auction.closed",
                "task.failed")[n % 5]
        data = {"bid_sats": n} if kind == "bid.submitted" else {}
        events.append(build_event(kind, "chaos", task, "a1" if kind == "bid.submitted" else None,
                                  data, timestamp=at, id=f"e{n}"))
    log.append(events)
    time.sleep(0.01)
print(n)
"""

READER = """
import os, sys, time
from swarmlog.log import EventLog
from projections.models import ReadModelsProjection
path, stop, out = sys.argv[1], sys.argv[2], sys.argv[3]
log = EventLog(path)
while not os.path.exists(stop):
    log.catch_up()
    time.sleep(0.05)
log.catch_up()
open(out, "w").write(ReadModelsProjection().dump(log.runner.state("read_models")))
"""

PRUNER = """
import sys
from datetime import datetime
from swarmlog.log import EventLog
EventLog(sys.argv[1]).prune(before=datetime.fromisoformat(sys.argv[2]), archive=sys.argv[3])
"""


def _python(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


@pytest.mark.slow
def test_prunes_killed_and_racing_while_others_append_tail_and_fold_keep_every_promise(
    tmp_path: Path
) -> None:
    db, archive, stop = tmp_path / "log.db", tmp_path / "archive", tmp_path / "stop"
    EventLog(db).close()
    appender = _python(APPENDER, str(db), str(stop), T0.isoformat())
    reader = _python(READER, str(db), str(stop), str(tmp_path / "reader.json"))
    tail = subprocess.Popen([sys.executable, "-m", "swarmlog.cli", "tail", "-f", "-n", "0",
                             "--json", "--db", str(db)], cwd=ROOT, text=True,
                            stdout=open(tmp_path / "tail.out", "w"),  # noqa: SIM115
                            stderr=open(tmp_path / "tail.err", "w"))  # noqa: SIM115
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "17")))
    time.sleep(2)
    deadline = time.monotonic() + 14
    round_ = 0
    while time.monotonic() < deadline:
        round_ += 1
        with sqlite3.connect(db) as raw:
            head = raw.execute("SELECT max(seq) FROM event_log").fetchone()[0] or 0
        # Two cutoffs near the young end: each prune's prefix ends at the first young (or
        # out-of-order old) event, so the two ranges differ, or coincide.
        cutoffs = [T0 + timedelta(seconds=head * rng.uniform(0.5, 1.0)) for _ in range(2)]
        pruners = [_python(PRUNER, str(db), c.isoformat(), str(archive)) for c in cutoffs]
        time.sleep(rng.uniform(0.0, 1.5))
        victim = pruners[rng.randrange(2)]
        victim.send_signal(signal.SIGKILL)
        for p in pruners:
            p.wait(timeout=120)
    stop.touch()
    assert appender.wait(timeout=60) == 0, appender.stderr.read() if appender.stderr else ""
    appended = int((appender.stdout.read() if appender.stdout else "0").strip())
    assert reader.wait(timeout=120) == 0, reader.stderr.read() if reader.stderr else ""
    time.sleep(2)  # the follower catches up
    tail.send_signal(signal.SIGINT)
    tail.wait(timeout=30)

    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    log = EventLog(db)
    log.prune(before=T0 - timedelta(days=2), archive=archive)  # finishes an interrupted one
    report = log.verify()
    assert report.ok, report.problems

    # Archive + log: every appended event exactly once, in position order.
    prunes = log.store.prunes()
    archived = [r for p in prunes for r in read_segment(p.archive_path or "", p.archive_sha256)]
    last = archived[-1].position if archived else 0
    history = archived + list(log.read(after=last))
    assert [r.position for r in history] == list(range(1, len(history) + 1))
    assert sorted(int(r.id[1:]) for r in history) == list(range(1, appended + 1))

    # Every reader's read models: the fold of that history.
    oracle_store = MemoryStore()
    oracle_store.append(history)
    oracle = ProjectionRunner(oracle_store, [ReadModelsProjection(plain=True)])
    oracle.start()
    expected = ReadModelsProjection().dump(oracle.state("read_models"))
    assert ReadModelsProjection().dump(log.models) == expected
    assert (tmp_path / "reader.json").read_text() == expected
    restarted = EventLog(db)
    assert ReadModelsProjection().dump(restarted.models) == expected

    # tail -f: each event once, in order, none missed (every prune archived).
    shown = [json.loads(line) for line in (tmp_path / "tail.out").read_text().splitlines()]
    assert not [s for s in shown if "gap" in s], (tmp_path / "tail.err").read_text()
    positions = [s["position"] for s in shown]
    assert positions == list(range(positions[0], positions[0] + len(positions)))
    assert positions[-1] == len(history)
    log.close()
    restarted.close()
