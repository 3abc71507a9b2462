"""The CLI on a big log, through real processes: listings stream (a reader sees the first lines
at once, and one that goes away ends the command quietly), Ctrl-C leaves no partial export,
progress bars appear on a terminal only, and `events --nl` of a million events stays under
100 MB."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.bulk import big_log
from tests.e2e.test_cli import ROOT

SWARMLOG = [sys.executable, "-m", "swarmlog.cli"]


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return big_log(tmp_path_factory.mktemp("big") / "swarm.db", 100_000)


def start(*args: str, **options: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*SWARMLOG, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **options)  # type: ignore[call-overload]


def test_the_first_lines_of_a_whole_log_listing_arrive_at_once_and_a_reader_may_leave(
        big_db: Path) -> None:
    began = time.monotonic()
    listing = start("events", "--limit", "0", "--nl", "--db", str(big_db))
    assert listing.stdout is not None and listing.stderr is not None
    first = json.loads(listing.stdout.readline())
    assert first["position"] == 1 and time.monotonic() - began < 10
    listing.stdout.close()  # like `| head -1`
    assert listing.wait(timeout=60) == 0
    assert listing.stderr.read() == b""


def test_ctrl_c_ends_a_listing_with_one_line_and_code_130(big_db: Path) -> None:
    listing = start("events", "--limit", "0", "--nl", "--db", str(big_db))
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.readline()
    listing.send_signal(signal.SIGINT)
    listing.stdout.read()
    assert listing.wait(timeout=60) == 130
    assert listing.stderr.read().decode().strip().splitlines()[-1] == "aborted"


def test_ctrl_c_during_an_export_leaves_no_file(big_db: Path, tmp_path: Path) -> None:
    target = tmp_path / "events.jsonl"
    export = start("export", "-o", str(target), "--db", str(big_db))
    deadline = time.monotonic() + 30
    while not any(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.002)
    (partial,) = tmp_path.iterdir()  # written under a temporary name until complete
    assert partial.name.startswith(".events.jsonl.") and partial.name.endswith(".part")
    export.send_signal(signal.SIGINT)
    assert export.wait(timeout=60) == 130
    assert list(tmp_path.iterdir()) == []
    assert b"Traceback" not in export.communicate()[1]


def _on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run swarmlog with stderr on a pseudo-terminal 100 columns wide; (code, stdout, what the
    terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    shown = bytearray()

    def pump() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "TERM")}
    done = subprocess.run([*SWARMLOG, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=slave,
                          env={**env, "TERM": "xterm", "SWARMLOG_PROGRESS_AFTER": "0"}, timeout=120)
    os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    return done.returncode, done.stdout.decode(), shown.decode(errors="replace")


def test_a_long_operation_shows_its_rate_and_time_left_on_a_terminal_only(big_db: Path) -> None:
    code, out, terminal = _on_a_terminal("rebuild", "--db", str(big_db))
    assert code == 0 and out.startswith("rebuilt the read models up to position 100000")
    assert "rebuilding" in terminal and "/100000" in terminal and "rebuilding" not in out
    assert "/s" in terminal and "left" in terminal  # (and on a pipe, nothing: test_cli_maintenance)


@pytest.mark.slow
def test_events_nl_of_a_million_events_streams_in_under_100_mb(tmp_path: Path) -> None:
    db = big_log(tmp_path / "million.db", 1_000_000)
    # A parent of its own, so that its children's peak resident size is this one command's.
    measure = ("import resource, subprocess, sys, time; began = time.monotonic(); "
               "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
               "print(code, time.monotonic() - began, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", measure, *SWARMLOG, "events", "--limit", "0",
                           "--nl", "--db", str(db)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=True)
    code, seconds, peak_kb = done.stdout.split()
    print(f"events --nl of 1,000,000 events: {float(seconds):.1f} s, peak RSS {int(peak_kb) / 1024:.0f} MB")
    assert code == "0" and int(peak_kb) < 100 * 1024
