"""An archive folder is written safely: a segment is written under an unpredictable name, made
anew (never through a symbolic link or over a file that is there), and put in place under a
name nothing holds. What a killed prune left — a partial temporary file, or a whole segment of
events the log still stores — the next prune removes, and says so; what is not the log's own
(another log's segments, links, files of other names) it leaves alone."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from domain.errors import StoreError
from domain.events import EventType
from store.archive import segment_name, to_line, write_segment
from swarmlog.log import EventLog
from tests.fingerprint import contents

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 3000  # (more than a page of the prune's fold, and than a chunk of the archive writer)


def make_log(path: Path, events: int = EVENTS, source: str = "coordinator") -> Path:
    with EventLog(path) as log, log.transaction():
        for n in range(events):
            log.log(EventType.BID_SUBMITTED, source, f"t{n % 9}", "a1", {"bid_sats": n})
    return path


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return make_log(tmp_path / "log.db")


def prune_all(path: Path, archive: Path) -> object:
    with EventLog(path) as log:
        return log.prune(older_than=timedelta(0), archive=archive)


# -- links and names --------------------------------------------------------------------------------


@pytest.mark.parametrize("planted", [
    segment_name(1, EVENTS).replace(".gz", ".tmp"),  # the name earlier versions wrote first
    segment_name(1, EVENTS) + ".tmp", f".{segment_name(1, EVENTS)}.tmp",
    segment_name(1, EVENTS) + ".part",
])
def test_a_link_planted_at_a_guessable_name_is_never_written_through(
        log_path: Path, tmp_path: Path, planted: str) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (archive / planted).symlink_to(victim)
    report = prune_all(log_path, archive)
    assert report.removed == EVENTS  # type: ignore[attr-defined]
    assert victim.read_text() == "precious\n"
    assert (archive / planted).is_symlink()  # (not the log's: left alone)


def test_a_link_at_the_segments_own_name_is_refused_and_nothing_pruned(
        log_path: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (archive / segment_name(1, EVENTS)).symlink_to(victim)
    before = contents(log_path)
    with pytest.raises(StoreError, match="already exists"):
        prune_all(log_path, archive)
    assert victim.read_text() == "precious\n" and contents(log_path) == before


def test_a_segment_is_never_written_over_another_logs(tmp_path: Path) -> None:
    """Two logs archiving to one folder: the second one's segment of the same range is refused,
    and the first one's is neither overwritten nor cleaned away."""
    archive = tmp_path / "archive"
    ours, theirs = make_log(tmp_path / "a.db", 50, "a"), make_log(tmp_path / "b.db", 50, "b")
    prune_all(theirs, archive)
    kept = (archive / segment_name(1, 50)).read_bytes()
    before = contents(ours)
    with pytest.raises(StoreError, match="already exists"):
        prune_all(ours, archive)
    assert contents(ours) == before
    assert (archive / segment_name(1, 50)).read_bytes() == kept


def test_a_temporary_file_is_private_and_named_unpredictably(tmp_path: Path) -> None:
    seen: list[str] = []

    def lines() -> object:
        for n in range(3):
            seen.extend(p.name for p in tmp_path.iterdir())
            yield b'{"n": %d}\n' % n

    write_segment(tmp_path, 1, 3, lines())  # type: ignore[arg-type]
    temporary = {name for name in seen if name != segment_name(1, 3)}
    assert len(temporary) == 1
    (name,) = temporary
    assert name.startswith(f".{segment_name(1, 3)}.") and name.endswith(".tmp")
    assert len(name) > len(f".{segment_name(1, 3)}..tmp") + 6  # a random part
    assert [p.name for p in tmp_path.iterdir()] == [segment_name(1, 3)]
    assert (tmp_path / segment_name(1, 3)).stat().st_mode & 0o077 == 0


# -- what a killed prune leaves -------------------------------------------------------------------

KILLED_PRUNE = """
import os, signal, sys
from collections.abc import Callable
from datetime import timedelta
from swarmlog.log import EventLog

path, archive, where = sys.argv[1:]
log = EventLog(path)
store = log.store
if where == "writing":  # SIGKILL once the archive holds part of the prefix
    read = store.read
    def dying(after, until=None):
        for n, row in enumerate(read(after, until)):
            if n == 2500:
                os.kill(os.getpid(), signal.SIGKILL)
            yield row
    store.read = dying
else:  # SIGKILL with the segment in place, before the prune is recorded and committed
    store.record_prune = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
log.prune(older_than=timedelta(0), archive=archive)
"""


def killed_prune(path: Path, archive: Path, where: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_PRUNE, str(path), str(archive), where],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr


@pytest.mark.parametrize(("where", "left"), [
    ("writing", lambda name: name.startswith(f".{segment_name(1, EVENTS)}.") and name.endswith(".tmp")),
    ("placed", lambda name: name == segment_name(1, EVENTS)),
])
def test_the_next_prune_removes_what_a_killed_prune_left_and_says_so(
        log_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str,
        left: Callable[[str], bool]) -> None:
    archive = tmp_path / "archive"
    killed_prune(log_path, archive, where)
    (name,) = [p.name for p in archive.iterdir()]
    assert left(name), name
    with EventLog(log_path) as log:
        assert log.verify().ok and log.status()["count"] == EVENTS  # nothing was pruned
        log.log(EventType.SYSTEM_INFO, "cron", data={"message": "later"})
    with caplog.at_level(logging.WARNING, logger="swarmlog"):
        report = prune_all(log_path, archive)
    assert report.removed == EVENTS + 1  # type: ignore[attr-defined]
    assert [p.name for p in archive.iterdir()] == [segment_name(1, EVENTS + 1)]
    (cleaned,) = report.archive_cleanup  # type: ignore[attr-defined]
    assert cleaned.startswith(f"removed {archive / name}: ") and cleaned in caplog.text
    with EventLog(log_path) as log:
        assert log.verify(deep=True).ok


def test_prune_in_the_cli_says_what_it_removed(log_path: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from swarmlog.cli import cli

    archive = tmp_path / "archive"
    killed_prune(log_path, archive, "placed")
    result = CliRunner().invoke(cli, ["prune", "--older-than", "0s", "--archive", str(archive),
                                      "--json", "--db", str(log_path)])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    assert len(report["archive_cleanup"]) == 1
    assert segment_name(1, EVENTS) in report["archive_cleanup"][0]
    shown = CliRunner().invoke(cli, ["prune", "--older-than", "0s", "--archive", str(archive),
                                     "--db", str(log_path)])
    assert shown.exit_code == 0 and "removed" not in shown.stdout  # nothing left to clean


def test_what_is_not_the_logs_own_is_left_alone(log_path: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    other = make_log(tmp_path / "other.db", 20, "elsewhere")
    with EventLog(other) as log:  # another log's segment, of positions ours still stores
        rows = list(log.read())
    write_segment(archive, 1, 20, (to_line(r) for r in rows))
    (archive / "notes.txt").write_text("mine\n")
    (archive / segment_name(5, 9)).symlink_to(tmp_path / "nowhere")
    report = prune_all(log_path, archive)
    assert report.archive_cleanup == []  # type: ignore[attr-defined]
    assert sorted(p.name for p in archive.iterdir()) == sorted(
        [segment_name(1, 20), "notes.txt", segment_name(5, 9), segment_name(1, EVENTS)])


def test_a_temporary_file_an_earlier_version_left_is_removed_too(log_path: Path,
                                                                  tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    old = archive / segment_name(1, 2000).replace(".gz", ".tmp")
    old.write_bytes(b"\x1f\x8b half a segment")
    report = prune_all(log_path, archive)
    assert report.archive_cleanup == [  # type: ignore[attr-defined]
        f"removed {old}: a partial segment a killed prune left"]
    assert [p.name for p in archive.iterdir()] == [segment_name(1, EVENTS)]
