"""Many writers on one PostgreSQL server over TCP, as coordinators on several hosts are: eight
writer processes of single events and small batches, two tailing readers (the store's, and
`swarmlog tail -f`) and a projection runner following, all at once. Nothing is lost, doubled or
reordered between readers; each writer was told the position its events hold; the read models
equal a fold of the stored log; `verify` passes (long: marked slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from swarmlog.log import EventLog
from tests import pg
from tests.reliability.test_kill import fold_of_what_is_stored

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SECONDS = 8
WRITERS = 8


def test_eight_writers_over_tcp_two_tailing_readers_and_a_runner_agree_on_every_event(
        postgres_server: str, tmp_path: Path) -> None:
    url = pg.tcp_url(pg.create_database())
    follower = EventLog(url)
    follower.start()
    stop = threading.Event()
    runner = threading.Thread(target=follower.runner.follow, args=(stop, 0.2))
    runner.start()
    worker = [sys.executable, "-m", "tests.reliability.workers"]
    reader = subprocess.Popen([*worker, "tail", url, str(tmp_path / "r0.json"), str(SECONDS)])
    # (`-n`: whatever was appended before it started following, then what follows)
    cli = subprocess.Popen([sys.executable, "-m", "swarmlog.cli", "--db", url, "tail", "-f",
                            "-n", "1000000", "--nl"], stdout=subprocess.PIPE, text=True)
    seen_by_cli: list[tuple[int, str]] = []

    def read_cli() -> None:
        assert cli.stdout is not None
        for line in cli.stdout:
            event = json.loads(line)
            seen_by_cli.append((event["position"], event["id"]))

    cli_reader = threading.Thread(target=read_cli, daemon=True)
    cli_reader.start()
    writers = [subprocess.Popen([*worker, "singles", url, f"w{n}", str(SECONDS),
                                 str(tmp_path / f"w{n}.json")]) for n in range(WRITERS)]
    try:
        assert [p.wait(timeout=SECONDS + 90) for p in writers] == [0] * WRITERS
        assert reader.wait(timeout=90) == 0
        with EventLog(url) as log:
            stored = [(r.position, r.id) for r in log.read()]
            report = log.verify()
            assert report.ok, report.problems
        deadline = time.monotonic() + 60
        while len(seen_by_cli) < len(stored) and time.monotonic() < deadline:
            time.sleep(0.1)  # (it follows forever: until it has shown what is stored)
    finally:
        cli.kill()
        cli.wait()
        stop.set()
        runner.join(timeout=30)
    assert [position for position, _ in stored] == list(range(1, len(stored) + 1))
    outcomes = [json.loads((tmp_path / f"w{n}.json").read_text()) for n in range(WRITERS)]
    assert [o["errors"] for o in outcomes] == [[]] * WRITERS
    told = {event_id: position for o in outcomes for event_id, position in o["positions"].items()}
    assert told == {event_id: position for position, event_id in stored}
    seen = [tuple(pair) for pair in json.loads((tmp_path / "r0.json").read_text())]
    assert seen == stored  # every event once, in position order, as stored
    assert seen_by_cli == stored
    follower.runner.catch_up()
    assert follower.runner.position == len(stored)
    assert follower.models == fold_of_what_is_stored(follower)
    follower.close()
