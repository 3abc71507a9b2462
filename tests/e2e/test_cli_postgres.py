"""The CLI against a real PostgreSQL: the demo swarm, and `tail -f` following another process."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from store import stored_count
from swarmlog.log import EventLog
from tests import pg

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).parents[2]


def swarmlog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swarmlog.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)


def test_the_demo_runs_on_postgres_and_its_read_models_hold(postgres_server: str) -> None:
    url = pg.create_database()
    done = swarmlog("demo", "--db", url, "--agents", "5", "--tasks", "30", "--seed", "3")
    assert done.returncode == 0, done.stderr
    with EventLog(url) as log:
        tasks = log.tasks.tasks.merged()
        assert len(tasks) == 30 and log.summary.total == stored_count(log.store) > 30
        assert log.verify().ok
    summary = json.loads(swarmlog("summary", "--json", "--db", url).stdout)
    assert sum(summary["tasks_by_status"].values()) == 30


def test_tail_follow_on_postgres_sees_another_processes_appends(postgres_server: str) -> None:
    url = pg.create_database()
    with EventLog(url) as log:
        log.log("system.info", "setup", data={"message": "hello"})
    tail = subprocess.Popen([sys.executable, "-m", "swarmlog.cli", "tail", "-f", "-n", "1", "--json",
                             "--db", url], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in tail.stdout or ()],
                     daemon=True).start()
    try:
        assert json.loads(lines.get(timeout=30))["position"] == 1
        subprocess.run([sys.executable, "-m", "tests.store.writer", url, "other", "2", "3"],
                       cwd=ROOT, check=True, timeout=60)
        followed = [json.loads(lines.get(timeout=30)) for _ in range(6)]
    finally:
        tail.send_signal(signal.SIGINT)
        code = tail.wait(timeout=30)
    assert [r["position"] for r in followed] == list(range(2, 8))
    assert code == 0 and "Traceback" not in (tail.stderr.read() if tail.stderr else "")
