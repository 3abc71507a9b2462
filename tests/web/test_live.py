"""Live updates over a real server: an event appended by another process reaches an open
stream within a second; streams filter, resume, and end when the server stops; `swarmlog serve`
refuses the network without a token and stops cleanly on Ctrl-C. And the same view on
PostgreSQL, where the follower is woken by LISTEN/NOTIFY."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarmlog.demo import DemoConfig, run_demo
from swarmlog.log import EventLog
from tests import pg
from tests.web.conftest import (
    FAILED_TASK,
    ROOT,
    Running,
    add_known_events,
    append_from_another_process,
    free_port,
)


class Stream:
    """An open `/stream`, read in a thread: its batches arrive in `batches`."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.batches: queue.Queue[dict[str, Any] | str] = queue.Queue()
        self.ended = threading.Event()
        self.opened = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=60.0))
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200, response.status_code
                assert response.headers["content-type"].startswith("text/event-stream")
                kind = ""
                for line in response.iter_lines():
                    self.opened.set()
                    if line.startswith("event: "):
                        kind = line[7:]
                        if kind == "reload":
                            self.batches.put("reload")
                    elif line.startswith("data: ") and kind == "batch":
                        self.batches.put(json.loads(line[6:]))
        except (httpx.HTTPError, AssertionError):
            pass
        finally:
            self.opened.set()
            self.ended.set()

    def rows(self, timeout: float) -> list[dict[str, Any]]:
        """The rows of the next batch that has some."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                batch = self.batches.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(batch, dict) and batch["rows"]:
                return list(batch["rows"])
        raise AssertionError(f"no event arrived within {timeout} s")

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def stream_of(running: Running) -> Iterator[Any]:
    opened: list[Stream] = []

    def open_stream(query: str = "", headers: dict[str, str] | None = None) -> Stream:
        stream = Stream(f"{running.url}/stream{query}", headers)
        opened.append(stream)
        return stream

    yield open_stream
    for stream in opened:
        stream.close()


def test_an_event_appended_by_another_process_arrives_within_a_second(
        running: Running, stream_of: Any) -> None:
    stream = stream_of()
    append_from_another_process(running.location, "system.info", "elsewhere", {"message": "hi"})
    appended = time.monotonic()
    rows = stream.rows(timeout=5)
    took = time.monotonic() - appended
    assert [r["event"]["data"] for r in rows] == [{"message": "hi"}]
    assert rows[0]["event"]["source"] == "elsewhere" and rows[0]["category"] == "system"
    assert took < 1.0, f"arrived {took:.2f} s after the append"


def test_a_stream_sends_only_what_matches_its_filters(running: Running, stream_of: Any) -> None:
    stream = stream_of("?type=task.failed")
    append_from_another_process(running.location, "system.info", "elsewhere", {"message": "no"})
    append_from_another_process(running.location, "task.failed", "elsewhere", {"reason": "yes"},
                                task_id=FAILED_TASK)
    rows = stream.rows(timeout=5)
    assert [r["event"]["event_type"] for r in rows] == ["task.failed"]
    assert rows[0]["bad"] is True and rows[0]["description"] == "yes"


def test_a_stream_resumes_after_the_position_it_last_saw(running: Running, stream_of: Any) -> None:
    head = httpx.get(f"{running.url}/api/status").json()["head"]
    stream = stream_of("", {"last-event-id": str(head - 3)})
    rows = stream.rows(timeout=5)
    assert [r["event"]["position"] for r in rows] == [head - 2, head - 1, head]
    far = stream_of("?after=1")  # more than a batch back: the newest, and how many were left out
    batch = far.batches.get(timeout=5)
    assert isinstance(batch, dict) and len(batch["rows"]) == 200
    assert batch["skipped"] == head - 1 - 200 and batch["rows"][-1]["event"]["position"] == head


def test_the_overview_stream_carries_the_live_figures(running: Running, stream_of: Any) -> None:
    stream = stream_of()
    before = httpx.get(f"{running.url}/api/summary").json()["total"]
    append_from_another_process(running.location, "system.error", "elsewhere", {"message": "x"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        batch = stream.batches.get(timeout=5)
        if isinstance(batch, dict) and batch["summary"] is not None:
            assert batch["summary"]["total"] == before + 1
            assert {"agents_online", "working", "running", "tasks_by_status"} <= set(batch["summary"])
            return
    raise AssertionError("no summary arrived")


def test_stopping_the_server_ends_open_streams_at_once(log_path: Path) -> None:
    served = Running(log_path)
    stream = Stream(f"{served.url}/stream")
    took = served.stop()
    assert stream.ended.wait(5)
    assert took < 5, f"stopping took {took:.1f} s"
    stream.close()


# -- the command ------------------------------------------------------------------------------------


def serve(log_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "swarmlog.cli", "--db", str(log_path), "serve",
                             *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_until_up(url: str, process: subprocess.Popen[str], **kwargs: Any) -> httpx.Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return httpx.get(url, timeout=2, **kwargs)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("swarmlog serve did not come up")


def test_serve_refuses_the_network_without_a_token(log_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "swarmlog.cli", "--db", str(log_path), "serve",
                           "--host", "0.0.0.0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "--token" in done.stderr and "Traceback" not in done.stderr
    short = subprocess.run([sys.executable, "-m", "swarmlog.cli", "--db", str(log_path), "serve",
                            "--token", "short"], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert short.returncode == 2 and "at least 8 characters" in short.stderr


def test_serve_on_a_missing_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "swarm.db"
    done = subprocess.run([sys.executable, "-m", "swarmlog.cli", "--db", str(missing), "serve"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no swarmlog database" in done.stderr
    assert not missing.parent.exists()


def test_serve_with_a_token_file_requires_it_and_stops_cleanly_on_ctrl_c(
        log_path: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-long-secret-token\n")
    port = free_port()
    process = serve(log_path, "--port", str(port), "--token-file", str(token_file))
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_up(f"{url}/", process).status_code == 401
        headers = {"authorization": "Bearer a-long-secret-token"}
        assert httpx.get(f"{url}/api/summary", headers=headers).status_code == 200
        stream = Stream(f"{url}/stream", headers)  # held open across the Ctrl-C
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=10)
        assert stream.ended.wait(5)
        stream.close()
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read() if process.stderr else ""
    assert code == 0 and "Traceback" not in stderr, stderr
    assert "read-only on http://127.0.0.1:" in stderr and "(token required)" in stderr


def test_serve_warns_when_it_listens_beyond_this_machine(log_path: Path) -> None:
    port = free_port()
    process = serve(log_path, "--host", "0.0.0.0", "--port", str(port), "--token", "another-token")
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/summary", process)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert "warning: serving on 0.0.0.0" in (process.stderr.read() if process.stderr else "")


# -- PostgreSQL -------------------------------------------------------------------------------------


@pytest.mark.postgres
class TestOnPostgres:
    """The view on PostgreSQL: pages, filters and the API, and a live append from another
    process (the follower is woken by NOTIFY)."""

    @pytest.fixture
    def served(self, postgres_server: str) -> Iterator[Running]:
        url = pg.create_database()
        with EventLog(url) as log:
            run_demo(log, DemoConfig(agents=4, tasks=15, seed=9, days=1 / 24))
            add_known_events(log)
        running = Running(url)
        yield running
        running.stop()

    def test_pages_filters_and_the_api(self, served: Running) -> None:
        with httpx.Client(base_url=served.url) as c:
            for path in ("/", "/events", "/agents", "/integrity", f"/tasks/{FAILED_TASK}"):
                assert c.get(path).status_code == 200, path
            failed = c.get("/api/events?type=task.failed&type=tool.failed").json()
            assert failed and {r["event_type"] for r in failed} <= {"task.failed", "tool.failed"}
            first = c.get("/api/events?limit=5").json()
            second = c.get(f"/api/events?limit=5&before={first[-1]['position']}").json()
            assert [r["position"] for r in first + second] == list(
                range(first[0]["position"], first[0]["position"] - 10, -1))
            assert c.get(f"/api/tasks/{FAILED_TASK}").json()["task"]["status"] == "failed"
            assert c.get("/events?limit=0").status_code == 400

    def test_an_append_from_another_process_arrives_live(self, served: Running) -> None:
        stream = Stream(f"{served.url}/stream?type=system.info")
        try:
            append_from_another_process(served.location, "system.info", "pg", {"message": "hi"})
            appended = time.monotonic()
            rows = stream.rows(timeout=5)
            assert rows[0]["event"]["source"] == "pg" and time.monotonic() - appended < 1.0
        finally:
            stream.close()
