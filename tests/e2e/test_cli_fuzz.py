"""Every command of the `swarmlog` group, driven with generated arguments: each option its
command declares (enumerated from the group, so a new command or option is covered), given
hostile values — huge, negative and not-a-number numbers, odd durations, impossible dates,
unicode, empty strings, paths to missing and foreign files, the log itself.

Whatever comes, a command exits 0 or 2 (`verify` may also say 1: problems found), an error is
one line on stderr, there is never a traceback, and a command that failed left the log — and
every other file it was pointed at — exactly as it was. Click's CliRunner runs the commands in
this process; a few cases run as real processes. `tail -f` meets a Ctrl-C as it waits, and
`serve` returns once it would start serving."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmlog.cli import cli
from tests.fingerprint import contents

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-pw"

# -- hostile values, by what a parameter takes ----------------------------------------------------

INTEGERS = ["0", "1", "3", "-1", "-0", "2147483648", "9223372036854775807", "9223372036854775808",
            "1" + "0" * 30, "-" + "9" * 25, "1.5", "1e3", "nan", "inf", "", " ", "x", "٣", "0x10",
            " 7 ", "+2", "1_0"]
FLOATS = ["0", "0.5", "1", "3", "-1", "-0", "nan", "-nan", "NaN", "inf", "-inf", "infinity",
          "1e308", "1e309", "-1e308", "1e-320", "5e-324", "", "x", "1_000", "0x1p3", "٣"]
DURATIONS = ["0s", "90s", "1h30m", "30d", "2w", "-1d", "-0s", "99999999d", "9999999999999d",
             "1" + "0" * 30 + "s", "1e3d", "0.0000001s", "", "d", "1x", "🐝", "now"]
MOMENTS = ["now", "2h", "30d", "2026-01-01", "2026-01-01T00:00:00Z", "0001-01-01",
           "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31", "2026-13-40",
           "99999999d", "9999999999999d", "", "yesterday", "2026-01-01T00:00:00+25:00", "-1d",
           "1" + "0" * 30 + "s", "\x00"]
WHERE = ["data.bid_sats>1", "data.a.b=1", "data.x>nan", "data.x>1e999", "data.x<-inf",
         "data.=1", "data.x!=", "x=1", "data..=1", "data.x=\x00", "data.x>" + "9" * 400,
         "data." + "a." * 300 + "b=1", ""]
TYPES = ["task.created", "task.*", "*", "tool.*", "task.exploded", "", ".*", "TASK.CREATED"]
HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "999.1.1.1", "", "🐝"]
KEYS = ["00" * 32, "zz", "", "0" * 63]
TEXTS = st.text(max_size=12) | st.sampled_from(
    ["", "t1", "a1", "r1-t0001", "r1-a01", "\x00", "🐝" * 3, "x" * 300, "-", "--json", "%s",
     "'; DROP TABLE event_log; --", "\ud800"])
#: Files each example's directory holds (see `workspace`), and paths that name none.
PATHS = ["log.db", "empty.db", "crm.db", "notes.txt", "folder", "events.jsonl",
         "missing.db", "nowhere/missing.db", "notes.txt/inside", "", "-", "new.out", "w.witness"]
#: Files a failed command must leave as they were.
WATCHED = ["log.db", "empty.db", "crm.db", "notes.txt", "events.jsonl"]
DATABASES = [*PATHS, f"postgresql://swarm:{SECRET}@127.0.0.1:1/swarm",
             f"postgresql://swarm:{SECRET}%ZZ@127.0.0.1:1/swarm",
             f"host=127.0.0.1 port=1 password={SECRET}"]


def _of(values: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(values)


def values_of(param: click.Parameter) -> st.SearchStrategy[str]:
    """What to give a parameter: values of its kind (by its type, name or metavar) mostly,
    sometimes anything at all — so a new option is fuzzed from its first day."""
    kind: st.SearchStrategy[str]
    metavar = (param.metavar or "").upper()
    if param.name == "db":
        kind = _of(DATABASES)
    elif isinstance(param.type, click.types.IntParamType):
        kind = _of(INTEGERS)
    elif isinstance(param.type, click.types.FloatParamType):
        kind = _of(FLOATS)
    elif isinstance(param.type, click.Choice):
        kind = _of([*map(str, param.type.choices), "", "nope"])
    elif isinstance(param.type, click.Path) or "FILE" in metavar or "DIR" in metavar:
        kind = _of(PATHS)
    elif param.name == "older_than":
        kind = _of(DURATIONS)
    elif param.name in ("since", "until", "before", "start"):
        kind = _of(MOMENTS)
    elif param.name == "data":
        kind = _of(WHERE)
    elif param.name == "types":
        kind = _of(TYPES)
    elif param.name == "host":
        kind = _of(HOSTS)
    elif param.name == "public_key":
        kind = _of(KEYS)
    else:
        kind = TEXTS
    anything = _of(INTEGERS + FLOATS + DURATIONS + MOMENTS + PATHS) | TEXTS
    return st.one_of(kind, kind, kind, anything)


@st.composite
def invocations(draw: st.DrawFn, name: str) -> list[str]:
    """The arguments of one call of command `name`: its arguments, and some of its options."""
    command = cli.commands[name]
    argv = [name]
    for param in command.params:
        if isinstance(param, click.Argument):
            argv.append(draw(values_of(param)))
            continue
        assert isinstance(param, click.Option)
        if param.hidden or not draw(st.booleans()):
            continue
        flag = draw(st.sampled_from(param.opts))
        if param.is_flag or param.count:
            argv.append(flag)
        else:
            for _ in range(draw(st.integers(1, 2)) if param.multiple else 1):
                argv += [flag, draw(values_of(param))]
    return argv


# -- where each example runs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small log (a demo run, snapshotted) and its export."""
    folder = tmp_path_factory.mktemp("fuzz")
    runner = CliRunner()
    db = str(folder / "log.db")
    done = runner.invoke(cli, ["demo", "--agents", "3", "--tasks", "8", "--days", "1", "--json",
                               "--db", db])
    assert done.exit_code == 0, done.output
    assert runner.invoke(cli, ["export", "-o", str(folder / "events.jsonl"), "--db", db]
                         ).exit_code == 0
    return folder


def workspace(template: Path, into: Path) -> None:
    """The files the hostile paths name, in the directory a command runs in."""
    shutil.copy(template / "log.db", into / "log.db")
    shutil.copy(template / "events.jsonl", into / "events.jsonl")
    (into / "empty.db").touch()
    (into / "notes.txt").write_text("these are my notes, not a database\n")
    (into / "folder").mkdir()
    import sqlite3

    conn = sqlite3.connect(into / "crm.db")
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`tail -f` gets Ctrl-C as it waits for new events; `serve` returns instead of serving."""
    from store.sqlite import SQLiteStore
    from swarmlog.web.server import Server

    def ctrl_c(self: Any, after: int, timeout: float) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteStore, "wait_for_append", ctrl_c)
    monkeypatch.setattr(Server, "run", lambda self, *a, **k: None)
    for name in ("SWARMLOG_WITNESS", "SWARMLOG_SIGNING_KEY", "SWARMLOG_TOKEN", "DATABASE_URL",
                 "SWARMLOG_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield


@contextlib.contextmanager
def inside(base: Path) -> Iterator[Path]:
    """A new directory under `base`, the working directory meanwhile."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(dir=base) as here:
        os.chdir(here)
        try:
            yield Path(here)
        finally:
            os.chdir(previous)


def check(argv: list[str], template: Path, base: Path, *, stdin: str = "") -> None:
    runner = CliRunner()
    with inside(base) as here:
        workspace(template, here)
        before = {name: contents(here / name) for name in WATCHED}
        result = runner.invoke(cli, argv, input=stdin, env={"SWARMLOG_DB": "log.db"})
        allowed = {0, 1, 2} if argv[0] == "verify" else {0, 2}
        shown = f"swarmlog {' '.join(map(repr, argv))}\n{result.output}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{shown}\nraised {result.exception!r}") from result.exception
        assert result.exit_code in allowed, shown
        assert "Traceback" not in result.output, shown
        assert SECRET not in result.output, shown
        if result.exit_code == 2:
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), shown
        if result.exit_code != 0:
            for name, was in before.items():
                assert contents(here / name) == was, f"{shown}\nchanged {name}"


COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("name", COMMANDS)
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_every_command_answers_hostile_arguments_with_0_or_one_line_and_2(
        name: str, template: Path, tmp_path: Path, no_waiting: None, data: st.DataObject) -> None:
    argv = data.draw(invocations(name), label="argv")
    stdin = data.draw(_of(["", "not json\n", (template / "events.jsonl").read_text()]),
                      label="stdin")
    check(argv, template, tmp_path, stdin=stdin)


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_every_command_answers_hostile_arguments_at_length(
        name: str, template: Path, tmp_path: Path, no_waiting: None, data: st.DataObject) -> None:
    check(data.draw(invocations(name), label="argv"), template, tmp_path)


# -- as real processes ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["prune", "--older-than", "99999999d"],
    ["events", "--since", "99999999d"],
    ["export", "--since", "9999999999999d"],
    ["summary", "--minutes", "nan"],
    ["summary", "--minutes", "1e308"],
    ["demo", "--days", "inf"],
    ["events", "--until", "0001-01-01T00:00:00+01:00"],
    ["status", "--db", "crm.db"],
    ["summary", "--db", "empty.db"],
    ["status", "--db", f"postgresql://swarm:{SECRET}%ZZ@127.0.0.1:1/swarm"],
    ["serve", "--host", "999.1.1.1", "--token", "a-long-token"],
    ["import", "notes.txt"],
    ["import", "empty.db", "--db", "empty.db"],
    ["export", "-o", "log.db"],
    ["checkpoint", "--witness", "notes.txt", "--signing-key", "new.key"],
], ids=" ".join)
def test_hostile_arguments_in_a_real_process_are_one_line_and_exit_2(
        argv: list[str], template: Path, tmp_path: Path) -> None:
    workspace(template, tmp_path)
    before = {name: contents(tmp_path / name) for name in WATCHED}
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SWARMLOG_WITNESS")}
    done = subprocess.run([sys.executable, "-m", "swarmlog.cli", *argv],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**env, "SWARMLOG_DB": "log.db",
                               "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert {name: contents(tmp_path / name) for name in WATCHED} == before
