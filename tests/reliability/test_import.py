"""`swarmlog import` stores a whole file or nothing: under SIGKILL (real processes), on a full disk
(a real file-size limit), and with a bad line anywhere; every error names its line, and a line is
refused whenever the API would refuse its event."""

from __future__ import annotations

import gzip
import io
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidEvent
from domain.events import Event
from store import stored_count
from swarmlog.cli import cli
from swarmlog.jsonl import JsonLines, export_events, import_rows
from swarmlog.log import EventLog
from tests.strategies import any_events

ROOT = Path(__file__).resolve().parents[2]


def line(n: int, **change: Any) -> dict[str, Any]:
    """The n-th event of a file to import (a bid with some padding)."""
    return {"id": f"0190a000-0000-7000-8000-{n:012d}", "event_type": "bid.submitted",
            "source": "import", "task_id": f"t{n % 97}", "agent_id": f"a{n % 7}",
            "timestamp": f"2026-01-0{1 + n % 9}T00:00:00.{n % 10**6:06d}+00:00",
            "data": {"bid_sats": n, "pad": "x" * 200}, **change}


def write_lines(path: Path, lines: list[dict[str, Any]] | list[str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def refused(result: Result, *needles: str) -> None:
    """Exit code 2, one line on stderr naming what is wrong, and no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def a_log_of(path: Path, events: int = 50) -> tuple[int, list[str]]:
    """A log holding `events` events already: (its head, its ids)."""
    with EventLog(path) as log:
        file = write_lines(path.with_suffix(".first.jsonl"), [line(10**6 + n) for n in range(events)])
        import_rows(log.store, JsonLines(str(file)))
        return log.store.head(), [r.id for r in log.read()]


def unchanged(path: Path, head: int, ids: list[str]) -> None:
    with EventLog(path) as log:
        assert log.store.head() == head and [r.id for r in log.read()] == ids


# -- a bad line anywhere --------------------------------------------------------------------------

TOO_BIG = {"blob": "x" * (64 * 1024)}


@pytest.mark.parametrize(("bad", "needle"), [
    (line(4000, data={"n": 123456789012345678901234567890}), "123456789012345678901234567890"),
    (line(4000, data={"deep": {"n": -(10**25)}}), "does not fit in 64 bits"),
    (line(4000, data=TOO_BIG), "data: is 65547 bytes as JSON; the limit is 65536"),
    (line(4000, schema_version="1"), "schema_version"),
    (line(4000, schema_version=0), "schema_version"),
    (line(4000, schema_version=99), "schema_version 99"),
    (line(4000, timestamp="9999-12-31T23:59:59.999999+00:00"), "timestamp"),
    (line(4000, source=""), "source"),
    (line(4000, source="a\x00b"), "NUL"),
    (line(4000, data={"bid_sats": -1}), "data.bid_sats"),
    (line(4000, stream_version=2**70), "does not fit in 64 bits"),
    (line(4000, stream_version="7"), "stream_version of the wrong type"),
])
def test_a_bad_line_anywhere_stores_nothing_and_is_named(tmp_path: Path, bad: dict[str, Any],
                                                         needle: str) -> None:
    db = tmp_path / "log.db"
    head, ids = a_log_of(db)
    path = write_lines(tmp_path / "in.jsonl", [*map(line, range(4000)), bad,
                                               *map(line, range(4001, 5000))])
    refused(run("import", str(path), "--db", str(db)), f"{path} line 4001:", needle)
    unchanged(db, head, ids)


def test_an_integer_beyond_64_bits_is_refused_by_import_as_by_the_api(tmp_path: Path) -> None:
    with EventLog(tmp_path / "api.db") as log, pytest.raises(InvalidEvent, match="64 bits"):
        log.log("system.info", "test", data={"n": 123456789012345678901234567890})
    for spelt in ({"data": {"n": 123456789012345678901234567890}},
                  {"data": {"list": [1, 99999999999999999999]}},
                  {"data_text": '{"n": 123456789012345678901234567890}'}):
        path = write_lines(tmp_path / "in.jsonl", [line(1), {**line(2), "data": None, **spelt}])
        refused(run("import", str(path), "--db", str(tmp_path / "x.db")), "line 2:", "64 bits")
        assert not (tmp_path / "x.db").exists()
    # Up to 64 bits (unsigned) is stored exactly, as by the API.
    path = write_lines(tmp_path / "ok.jsonl", [line(1, data={"n": 2**64 - 1, "m": -(2**63)})])
    assert run("import", str(path), "--db", str(tmp_path / "ok.db")).exit_code == 0
    with EventLog(tmp_path / "ok.db") as log:
        (row,) = log.read()
        assert row.data == f'{{"n":{2**64 - 1},"m":{-(2**63)}}}'


def test_the_same_id_with_other_data_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", [line(1), line(2), line(1, data={"bid_sats": 7})])
    refused(run("import", str(path), "--db", str(tmp_path / "log.db")),
            f"{path} line 3:", "is also on line 1, with other content")
    path = write_lines(tmp_path / "again.jsonl", [line(1), line(2), line(1)])
    result = run("import", str(path), "--db", str(tmp_path / "log.db"))
    assert result.exit_code == 0
    assert result.stdout == f"imported 2 events from {path} (1 repeated an earlier line)\n"


@pytest.mark.parametrize("damage", ["cut", "flipped"])
def test_a_damaged_compressed_file_is_named_and_stores_nothing(tmp_path: Path,
                                                              damage: str) -> None:
    packed = gzip.compress(
        "".join(json.dumps(line(n)) + "\n" for n in range(3000)).encode(), mtime=0)
    middle = len(packed) // 2
    packed = packed[:middle] if damage == "cut" else (
        packed[:middle] + bytes([packed[middle] ^ 0xFF]) + packed[middle + 1:])
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(packed)
    db = tmp_path / "log.db"
    head, ids = a_log_of(db)
    # Cut short: where it ends; damaged: the first line that does not read (or the CRC, at the end).
    refused(run("import", str(path), "--db", str(db)), f"{path} line ",
            *(["damaged or cut short"] if damage == "cut" else []))
    unchanged(db, head, ids)


# -- a round trip -------------------------------------------------------------------------------


@settings(max_examples=40)
@given(st.lists(any_events(), max_size=30))
def test_what_the_api_stores_exports_and_imports_back_exactly(events: list[Event]) -> None:
    with tempfile.TemporaryDirectory() as tmp, EventLog(Path(tmp) / "a.db") as source, \
            EventLog(Path(tmp) / "b.db") as copy:
        source.append(events)
        exported = io.BytesIO()
        export_events(source.store, exported)
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(exported.getvalue())
        report = import_rows(copy.store, JsonLines(str(path)))
        stored = len({e.id for e in events})
        assert (report.lines, report.added, report.present) == (stored, stored, 0)
        assert [r._replace(hash=None) for r in copy.read()] == [
            r._replace(hash=None) for r in source.read()]
        assert copy.models == source.models
        again = import_rows(copy.store, JsonLines(str(path)))
        assert (again.added, again.present) == (0, stored)


# -- a full disk and SIGKILL: real faults in real processes ----------------------------------------


def swarmlog(*args: str, limit: Callable[[], None] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "swarmlog.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit)


def file_size_limit(size: int) -> Callable[[], None]:
    """What the child runs first: no file of its may grow past `size` bytes (its writes then fail
    with EFBIG, as on a full disk, instead of killing it with SIGXFSZ)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return limit


def test_an_import_onto_a_full_disk_stores_nothing_and_works_once_there_is_room(
        tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    head, ids = a_log_of(db)
    path = write_lines(tmp_path / "in.jsonl", [line(n) for n in range(12_000)])
    full = swarmlog("import", str(path), "--db", str(db),
                    limit=file_size_limit(db.stat().st_size + 1_000_000))
    out, err = full.communicate(timeout=120)
    assert full.returncode == 2, out + err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert f"{path} line " in err and "nothing of it was stored" in err, err
    unchanged(db, head, ids)
    room = swarmlog("import", str(path), "--db", str(db))
    out, err = room.communicate(timeout=120)
    assert room.returncode == 0, err
    with EventLog(db) as log:
        assert stored_count(log.store) == len(ids) + 12_000


def import_killed_at_random_moments(location: str, watch: Callable[[], Callable[[], bool]],
                                    tmp_path: Path, attempts: int) -> None:
    """Kill `swarmlog import` with SIGKILL at a random moment after its transaction is open
    (`watch()`, called as the import starts, returns what tells); the log holds none of the file
    each time, then all of it."""
    lines = 20_000
    path = write_lines(tmp_path / "in.jsonl", [line(n) for n in range(lines)])
    rng = random.Random(15)
    with EventLog(location) as log:
        before = stored_count(log.store)
    for _ in range(attempts):
        importing = watch()
        child = swarmlog("import", str(path), "--db", location)
        while not importing():
            assert child.poll() is None, child.communicate()
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.5))
        assert child.poll() is None, "the import ended before it was killed"
        child.kill()
        child.wait()
        with EventLog(location) as log:
            assert stored_count(log.store) == before
            assert log.verify().ok
    done = swarmlog("import", str(path), "--db", location)
    assert done.wait(timeout=300) == 0
    with EventLog(location) as log:
        assert stored_count(log.store) == before + lines and log.verify().ok


@pytest.mark.slow
def test_an_import_killed_at_random_moments_stores_the_whole_file_or_nothing(
        tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    a_log_of(db)
    wal = Path(f"{db}-wal")

    def watch() -> Callable[[], bool]:  # its transaction has written a megabyte to the WAL
        start = wal.stat().st_size if wal.exists() else 0
        return lambda: wal.exists() and wal.stat().st_size > start + 1_000_000

    import_killed_at_random_moments(str(db), watch, tmp_path, attempts=3)


@pytest.mark.slow
@pytest.mark.postgres
def test_an_import_killed_at_random_moments_stores_the_whole_file_or_nothing_on_postgres(
        tmp_path: Path) -> None:
    from tests import pg

    url = pg.create_database()
    EventLog(url).close()

    def holds_the_writer_lock() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                conn.execute("SELECT 1 FROM swarmlog_head FOR UPDATE NOWAIT")
                return False
            except psycopg.errors.LockNotAvailable:
                return True

    import_killed_at_random_moments(url, lambda: holds_the_writer_lock, tmp_path, attempts=3)
