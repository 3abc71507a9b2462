"""A small swarm log for the web view's tests, built once through the real coordinator, with a
task that failed for a known reason and events whose source, ids and data are hostile markup;
each test gets its own copy. And a real server (uvicorn in a thread) for the live tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from domain.ids import utc_now
from swarmlog.demo import DemoConfig, run_demo
from swarmlog.log import EventLog

ROOT = Path(__file__).resolve().parents[2]
with warnings.catch_warnings():  # Starlette's test client would rather have httpx2 than httpx
    warnings.simplefilter("ignore")
    import starlette.testclient  # noqa: F401

SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 1">'
HOSTILE_TASK = f"t-{IMG}"
HOSTILE_AGENT = f"a-{SCRIPT}"
FAILED_TASK = "t-broken"
REASON = "the disk was full"
TOOL_ERROR = "ENOSPC: no space left on device"


def add_known_events(log: EventLog) -> None:
    """A task that failed at work after a failing tool call, and hostile markup everywhere."""
    now = utc_now()
    at = [now - timedelta(minutes=20) + timedelta(seconds=s) for s in range(0, 600, 30)]
    steps = [
        ("agent.joined", None, "a-fixer", {"name": "Fixer", "capabilities": ["python"]}),
        ("task.created", FAILED_TASK, None, {"description": "rotate the logs"}),
        ("task.bidding", FAILED_TASK, None, {"window_seconds": 30}),
        ("bid.submitted", FAILED_TASK, "a-fixer", {"bid_sats": 70}),
        ("bid.submitted", FAILED_TASK, "r1-a01", {"bid_sats": 90}),
        ("auction.closed", FAILED_TASK, None, {"winner": "a-fixer", "winning_bid": 70, "bid_count": 2}),
        ("task.assigned", FAILED_TASK, "a-fixer", {"bid_sats": 70}),
        ("task.started", FAILED_TASK, "a-fixer", {}),
        ("tool.called", FAILED_TASK, "a-fixer", {"tool": "fs.write", "call_id": "c1"}),
        ("tool.completed", FAILED_TASK, "a-fixer",
         {"tool": "fs.write", "call_id": "c1", "duration_ms": 20000}),
        ("tool.called", FAILED_TASK, "a-fixer", {"tool": "fs.rotate", "call_id": "c2"}),
        ("tool.failed", FAILED_TASK, "a-fixer", {"tool": "fs.rotate", "call_id": "c2", "error": TOOL_ERROR}),
        ("task.failed", FAILED_TASK, "a-fixer", {"reason": REASON}),
        ("system.error", HOSTILE_TASK, HOSTILE_AGENT,
         {"message": IMG, "detail": f"</code></pre>{SCRIPT}", "error_type": SCRIPT}),
        ("task.created", HOSTILE_TASK, None, {"description": SCRIPT + IMG}),
        ("agent.joined", None, HOSTILE_AGENT, {"name": IMG, "capabilities": [SCRIPT]}),
    ]
    for (kind, task, agent, data), moment in zip(steps, at, strict=False):
        source = SCRIPT if kind == "system.error" else "tests"
        log.log(kind, source, task_id=task, agent_id=agent, data=data, timestamp=moment)


@pytest.fixture(scope="session")
def template_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log every test copies: a demo swarm whose last two hours end now, and the above."""
    path = tmp_path_factory.mktemp("web") / "swarm.db"
    with EventLog(path) as log:
        run_demo(log, DemoConfig(agents=6, tasks=40, seed=5, days=2 / 24,
                                 start=utc_now() - timedelta(hours=2)))
        add_known_events(log)
    return path


@pytest.fixture
def log_path(template_log: Path, tmp_path: Path) -> Path:
    path = tmp_path / "swarm.db"
    shutil.copy(template_log, path)
    return path


def append_from_another_process(location: str | Path, kind: str, source: str,
                                data: dict[str, object], task_id: str | None = None) -> None:
    """Append one event the way another program would: in a process of its own."""
    code = ("import json, sys\nfrom swarmlog.log import EventLog\n"
            "with EventLog(sys.argv[1]) as log:\n"
            "    log.log(sys.argv[2], sys.argv[3], task_id=sys.argv[5] or None,"
            " data=json.loads(sys.argv[4]))\n")
    import json

    subprocess.run([sys.executable, "-c", code, str(location), kind, source, json.dumps(data),
                    task_id or ""], cwd=ROOT, check=True, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Running:
    """A view served by uvicorn in a thread, at `url`."""

    def __init__(self, location: str | Path, token: str | None = None) -> None:
        from swarmlog.web import create_app
        from swarmlog.web.server import Server

        self.location = location
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(location, token=token)
        self.server = Server(self.app, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the view did not start")
            time.sleep(0.02)

    def stop(self) -> float:
        """Stop it as Ctrl-C would; returns how long that took."""
        started = time.monotonic()
        self.server.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the server did not stop"
        return time.monotonic() - started


@pytest.fixture
def running(log_path: Path) -> Iterator[Running]:
    served = Running(log_path)
    yield served
    served.stop()
