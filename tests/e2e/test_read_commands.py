"""Commands that only read open the log read-only: they create, migrate and write nothing — not
on a log (not even the snapshot a long fold would otherwise leave), not on an empty file, not on
another application's SQLite file, not on a file the seed's module wrote and swarmlog has not
upgraded. Those files get one line saying what they are, and exit code 2."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from domain.events import SystemInfoLogged
from swarmlog.cli import cli
from swarmlog.log import SNAPSHOT_AFTER, EventLog
from tests.fingerprint import contents

#: The commands that write to the log; every other command of the group only reads it.
WRITING = {"prune", "snapshot", "vacuum", "import", "demo"}
#: What a command needs besides --db to run.
ARGUMENTS = {"task": ["t1"], "agent": ["a1"]}


def read_commands() -> list[str]:
    return sorted(set(cli.commands) - WRITING)


@pytest.fixture(autouse=True)
def serve_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`serve` opens the log and builds the view as it would, then returns instead of serving."""
    from swarmlog.web.server import Server

    monkeypatch.setattr(Server, "run", lambda self, *a, **k: None)
    yield


def arguments(command: str, tmp_path: Path) -> list[str]:
    if command == "checkpoint":
        return ["--witness", str(tmp_path / "w.witness"), "--signing-key", str(tmp_path / "w.key")]
    return ARGUMENTS.get(command, [])


def run(command: str, db: Path, tmp_path: Path) -> Result:
    return CliRunner().invoke(cli, [command, *arguments(command, tmp_path), "--db", str(db)])


def empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.db"
    path.touch()
    return path


def foreign(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()
    return path


def seed(tmp_path: Path) -> Path:
    """A file the seed's ADR 017 module wrote: its event_log, no swarmlog schema yet."""
    path = tmp_path / "swarm.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE event_log (id TEXT PRIMARY KEY, event_type TEXT NOT NULL, "
                 "source TEXT NOT NULL, task_id TEXT, agent_id TEXT, data TEXT, "
                 "timestamp TEXT NOT NULL)")
    conn.execute("INSERT INTO event_log VALUES ('e1', 'task.created', 'c', 't1', NULL, NULL, "
                 "'2026-01-01T00:00:00+00:00')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("command", read_commands())
@pytest.mark.parametrize(("make", "says"), [
    (empty, "is not a swarmlog log"),
    (foreign, "is not a swarmlog log"),
    (seed, "has not upgraded"),
], ids=["empty", "foreign", "seed"])
def test_a_read_command_on_a_file_that_is_no_swarmlog_log_says_so_and_changes_nothing(
        tmp_path: Path, command: str, make: object, says: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    before = contents(path)
    result = run(command, path, tmp_path)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert str(path) in result.stderr
    assert contents(path) == before


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("read") / "log.db"
    with EventLog(path) as log:
        log.append([SystemInfoLogged(source="cron", data={"message": str(n)})
                    for n in range(SNAPSHOT_AFTER + 1)])
    return path


@pytest.fixture
def unsnapshotted(template: Path, tmp_path: Path) -> Path:
    """A log with more events than a fold takes before it stores a snapshot, and no snapshot."""
    path = tmp_path / "log.db"
    shutil.copy(template, path)
    return path


@pytest.mark.parametrize("command", read_commands())
def test_a_read_command_on_a_log_writes_nothing_to_it(unsnapshotted: Path, tmp_path: Path,
                                                      command: str) -> None:
    before = contents(unsnapshotted)
    result = run(command, unsnapshotted, tmp_path)
    assert result.exit_code in (0, 2), result.output  # (task t1, agent a1: there are none)
    assert contents(unsnapshotted) == before


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["status", "summary", "events", "verify"])
def test_a_read_command_on_an_empty_postgresql_database_says_so_and_creates_nothing(
        postgres_server: str, tmp_path: Path, command: str) -> None:
    import psycopg

    from tests import pg

    url = pg.create_database()
    result = CliRunner().invoke(cli, [command, *arguments(command, tmp_path), "--db", url])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "is not a swarmlog log" in result.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone() == (0,)


@pytest.mark.parametrize("args", [["prune", "--older-than", "1d"], ["snapshot"], ["vacuum"]],
                         ids=lambda a: a[0])
@pytest.mark.parametrize("make", [empty, foreign], ids=["empty", "foreign"])
def test_a_writing_command_that_makes_no_log_refuses_a_file_that_is_none(
        tmp_path: Path, args: list[str], make: object) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    before = contents(path)
    result = CliRunner().invoke(cli, [*args, "--db", str(path)])
    assert result.exit_code == 2 and "is not a swarmlog log" in result.stderr, result.output
    assert contents(path) == before
