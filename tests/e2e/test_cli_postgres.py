"""The CLI against a real PostgreSQL: the demo swarm, and `tail -f` following another process."""

from __future__ import annotations

import json
import os
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


def swarmlog(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swarmlog.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, env={**os.environ, **(env or {})})


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


def test_database_url_picks_the_log_when_swarmlog_db_is_unset(postgres_server: str,
                                                              tmp_path: Path) -> None:
    url = pg.create_database()
    env = {k: v for k, v in os.environ.items() if k != "SWARMLOG_DB"}
    done = subprocess.run([sys.executable, "-m", "swarmlog.cli", "demo", "--agents", "3", "--tasks",
                           "10", "--json"], cwd=ROOT, text=True, capture_output=True, timeout=120,
                          env={**env, "DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    with EventLog(url) as log:
        assert stored_count(log.store) == json.loads(done.stdout)["events"] > 10
    local = tmp_path / "local.db"
    chosen = subprocess.run([sys.executable, "-m", "swarmlog.cli", "status", "--json"], cwd=ROOT,
                            text=True, capture_output=True, timeout=120,
                            env={**env, "DATABASE_URL": url, "SWARMLOG_DB": str(local)})
    assert chosen.returncode == 2 and f"no swarmlog database at {local}" in chosen.stderr


def test_filters_status_vacuum_and_metrics_on_postgres(postgres_server: str) -> None:
    url = pg.create_database()
    assert swarmlog("demo", "--db", url, "--agents", "4", "--tasks", "40", "--days", "3").returncode == 0
    bids = [json.loads(line) for line in swarmlog("events", "--db", url, "--limit", "0", "--nl",
                                                  "--type", "bid.*").stdout.splitlines()]
    cut = sorted(b["data"]["bid_sats"] for b in bids)[len(bids) // 2]
    above = swarmlog("events", "--db", url, "--limit", "0", "--nl", "--type", "bid.*",
                     "--where", f"data.bid_sats>{cut}").stdout.splitlines()
    assert [json.loads(line) for line in above] == [b for b in bids if b["data"]["bid_sats"] > cut]
    pruned = json.loads(swarmlog("prune", "--db", url, "--older-than", "1d", "--vacuum", "--json").stdout)
    assert pruned["removed"] > 0 and pruned["vacuum"]["after_bytes"] > 0
    status = swarmlog("status", "--db", url, env={"COLUMNS": "200"}).stdout
    assert "(PostgreSQL)" in status and "None" not in status and "before them pruned" in status
    assert "swarmlog_pruned_events_total" in swarmlog("metrics", "--db", url).stdout
    assert "Datasette opens SQLite files" in swarmlog("datasette-metadata", "--db", url).stderr
