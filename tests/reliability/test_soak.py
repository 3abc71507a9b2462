"""Four writer processes and two tailing readers at once: nothing lost, doubled or reordered,
and no `database is locked` reaches a caller (long: marked slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swarmlog.log import EventLog

pytestmark = pytest.mark.slow
SECONDS = 15


def test_four_writers_and_two_tailing_readers_agree_on_every_event(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    EventLog(path).close()
    worker = [sys.executable, "-m", "tests.reliability.workers"]
    readers = [subprocess.Popen([*worker, "tail", str(path), str(tmp_path / f"r{n}.json"),
                                 str(SECONDS)]) for n in range(2)]
    writers = [subprocess.Popen([*worker, "write", str(path), f"w{n}", str(SECONDS),
                                 str(tmp_path / f"w{n}.json")]) for n in range(4)]
    assert [p.wait(timeout=SECONDS + 60) for p in writers + readers] == [0] * 6
    with EventLog(path) as log:
        stored = [(r.position, r.event.id) for r in log.read()]
        assert log.verify().ok
    assert [position for position, _ in stored] == list(range(1, len(stored) + 1))
    outcomes = [json.loads((tmp_path / f"w{n}.json").read_text()) for n in range(4)]
    assert [o["errors"] for o in outcomes] == [[]] * 4
    assert sum(o["appended"] for o in outcomes) == len(stored)
    for n in range(2):
        seen = [tuple(pair) for pair in json.loads((tmp_path / f"r{n}.json").read_text())]
        assert seen == stored  # every event once, in position order, as stored
