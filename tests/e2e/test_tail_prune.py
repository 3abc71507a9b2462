"""`tail -f` against a prune that deletes what it has not shown yet: every event is shown once,
in order, from the archive if need be, or the positions it missed are named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest

from domain.codec import StoredEvent
from domain.events import EventType
from domain.ids import utc_now
from store import EventFilter, SQLiteStore, Store
from swarmlog.follow import Gap, between
from swarmlog.log import EventLog
from tests.e2e.test_cli import tail_follow
from tests.strategies import ev, rows

ROOT = Path(__file__).resolve().parent.parent.parent


def append(path: Path, source: str, n: int) -> None:
    subprocess.run([sys.executable, "-m", "tests.store.writer", str(path), source, "1", str(n)],
                   cwd=ROOT, check=True, timeout=60)


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP to pause the reader")
@pytest.mark.parametrize("archived", [True, False])
def test_tail_follow_shows_what_a_prune_deleted_before_it_read_it_or_names_the_gap(
    tmp_path: Path, archived: bool
) -> None:
    db = tmp_path / "log.db"
    append(db, "before", 2)
    tail, lines = tail_follow(db)
    try:
        assert json.loads(lines.get(timeout=30))["position"] == 2
        os.kill(tail.pid, signal.SIGSTOP)  # the reader falls behind ...
        append(db, "missed", 6)  # positions 3..8
        with EventLog(db) as log:  # ... and a prune deletes what it has not read
            report = log.prune(before=utc_now(), archive=tmp_path / "archive" if archived else None)
        assert (report.first_position, report.last_position) == (1, 8)
        append(db, "after", 3)  # positions 9..11
        os.kill(tail.pid, signal.SIGCONT)
        shown = [json.loads(lines.get(timeout=30)) for _ in range(9 if archived else 4)]
    finally:
        tail.send_signal(signal.SIGINT)
        code = tail.wait(timeout=30)
    err = tail.stderr.read() if tail.stderr else ""
    if archived:
        assert [r["position"] for r in shown] == list(range(3, 12))
        assert "pruned" not in err
    else:
        assert shown[0] == {"gap": {"first": 3, "last": 8}}
        assert [r["position"] for r in shown[1:]] == [9, 10, 11]
        assert "events 3..8 were pruned before they could be shown" in err
    assert code == 0 and "Traceback" not in err


class PrunedWhileRead:
    """A store whose `read` runs a prune after its first page: the rows right after it go."""

    def __init__(self, store: SQLiteStore, archive: Path | None) -> None:
        self.store, self.archive, self.pruned = store, archive, False

    def read(self, after: int = 0, until: int | None = None) -> Iterator[StoredEvent]:
        for i, row in enumerate(self.store.read(after, until)):
            yield row
            if i == 1999 and not self.pruned:
                self.pruned = True
                with EventLog(self.store.location) as log:
                    cut = next(log.store.query(after=3000, limit=1)).timestamp
                    log.prune(before=datetime.fromisoformat(cut), archive=self.archive)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize("archived", [True, False])
def test_a_follower_reading_while_a_prune_deletes_misses_nothing_silently(
    tmp_path: Path, archived: bool
) -> None:
    store = SQLiteStore(tmp_path / "log.db")
    store.append(rows(*(ev(EventType.BID_SUBMITTED, f"t{n % 9}", "a", bid_sats=n, minute=n)
                        for n in range(5000))))
    racing = PrunedWhileRead(store, tmp_path / "archive" if archived else None)
    got = list(between(cast(Store, racing), EventFilter(task_id="t0"), 0, 5000))
    assert racing.pruned
    positions = [r.position for r in got if not isinstance(r, Gap)]
    gaps = [r for r in got if isinstance(r, Gap)]
    of_t0 = [p for p in range(1, 5001) if (p - 1) % 9 == 0]
    if archived:
        assert positions == of_t0 and gaps == []
    else:
        assert gaps == [Gap(2001, 3000)]
        assert positions == [p for p in of_t0 if not 2001 <= p <= 3000]
