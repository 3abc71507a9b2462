"""The `swarmlog` group and what its commands share: opening the log (one place: `--db`,
`$SWARMLOG_DB` or data/swarm.db, or a `postgresql://` URL), options, rendering, errors."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from domain.errors import SwarmlogError
from domain.ids import utc_now
from projections.models import ReadModels, counts
from store import is_url
from swarmlog import render
from swarmlog.log import EventLog, default_location
from swarmlog.timeparse import parse_moment

F = TypeVar("F", bound=Callable[..., Any])
_DB = "swarmlog.db_option"


def _version() -> str:
    try:
        return version("swarmlog")
    except PackageNotFoundError:
        return "0+unknown"


class CliError(click.ClickException):
    """A refused command-line request: one line on stderr, exit code 2."""

    exit_code = 2


def fail(message: str) -> NoReturn:
    raise CliError(message)


def one_line(text: str) -> str:
    """`text` as one printable line: line breaks, control characters and the like escaped
    (an error message may quote what was typed)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Swarmlog(click.Group):
    """Runs a command and turns every expected failure into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (`swarmlog events --nl | head`): stop quietly with 0, like
            # other tools, before click makes it exit code 1. Standard output now goes nowhere,
            # so that flushing what is buffered at exit cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for arg in args:  # (bytes that are not UTF-8 reach Python as lone surrogates)
            try:
                arg.encode()
            except UnicodeEncodeError:
                raise CliError(f"{one_line(arg)} is not UTF-8 text") from None
        return super().parse_args(ctx, args)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            returned = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = returned if isinstance(returned, int) else 0  # click returns Exit's code
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {one_line(e.format_message())}{hint}", err=True)
            code = 2
        except click.ClickException as e:
            click.echo(f"error: {one_line(e.format_message())}", err=True)
            code = e.exit_code
        except SwarmlogError as e:
            click.echo(f"error: {one_line(str(e))}", err=True)
            code = 2
        except BrokenPipeError:
            # The reader went away (`swarmlog export | head`): stop quietly, like other tools.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 0
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            click.echo(f"error: {one_line(f'{e.strerror or e}{where}')}", err=True)
            code = 2
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code)


class Finite(click.FloatRange):
    """A number in a range, never NaN or infinite (which `FloatRange` lets through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


#: The most a count (`--limit`, `--lines`) can be: the database's largest integer.
MAX_COUNT = 2**63 - 1


def count_option(*names: str, default: int, help: str) -> Callable[[F], F]:
    """An option counting events: a whole number from 0 to `MAX_COUNT`."""
    return click.option(*names, type=click.IntRange(0, MAX_COUNT), default=default,
                        show_default=True, help=help)


class PathText(click.Path):
    """A path (as text), refused when no file could have it: empty, or with a NUL character."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and (not value or "\x00" in value):
            self.fail(f"{value!r} cannot name a file", param, ctx)
        return super().convert(value, param, ctx)


def _remember_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and (not value or "\x00" in value):
        raise click.BadParameter(f"{value!r} is neither an SQLite file nor a postgresql:// URL",
                                 ctx, param)
    if value:
        ctx.meta[_DB] = value


def db_option(f: F) -> F:
    return click.option(
        "--db", metavar="PATH|URL", expose_value=False, callback=_remember_db, is_eager=True,
        help="The log: an SQLite file or a postgresql:// URL [default: $SWARMLOG_DB, else data/swarm.db].",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (the rows of the table).")(f)


def open_log(*, write: bool = False, create: bool = False) -> EventLog:
    """The one place the CLI opens the log: read-only (it creates, migrates and writes nothing)
    unless the command `write`s; a missing file, or one that is no swarmlog log, is an error
    unless the command may `create` the log."""
    ctx = click.get_current_context()
    log = EventLog(ctx.meta.get(_DB) or default_location(), create=create,
                   read_only=not (write or create))
    ctx.call_on_close(log.close)
    return log


def not_the_log(path: str, option: str) -> None:
    """Refuse to write a file an option names over the log itself."""
    location = click.get_current_context().meta.get(_DB) or default_location()
    try:
        same = not is_url(location) and os.path.samefile(path, location)
    except (OSError, ValueError):  # one of them does not exist (or cannot be a path)
        return
    if same:
        raise click.BadParameter(f"{path} is the log itself", param_hint=option)


def make_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # piped or captured: wide enough for the tables, still bounded
    return console


def emit_json(data: Any) -> None:
    click.echo(render.dumps(data))


def print_tables(*tables: Any) -> None:
    console = make_console()
    for table in tables:
        console.print(table)


def moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


#: A progress bar appears once an operation has run this long (a quick one shows none);
#: `$SWARMLOG_PROGRESS_AFTER` (seconds) overrides it.
SHOW_PROGRESS_AFTER = 0.5


def _show_progress_after() -> float:
    try:
        return max(0.0, float(os.environ.get("SWARMLOG_PROGRESS_AFTER", SHOW_PROGRESS_AFTER)))
    except ValueError:
        return SHOW_PROGRESS_AFTER


class _Rate(ProgressColumn):
    """Events (or lines) per second, over the last few seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


@contextmanager
def progress(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr with the rate and the time left, shown only when stderr is a
    terminal and once the operation has taken `SHOW_PROGRESS_AFTER` seconds, and cleared at
    the end; yields update(done, total) (total 0: not known)."""
    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield lambda done, total: None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
                   TextColumn("left"), TimeRemainingColumn(), TimeElapsedColumn(),
                   console=console, transient=True)
    task = bar.add_task(label, total=None)
    began, shown, after = time.monotonic(), False, _show_progress_after()

    def update(done: int, total: int) -> None:
        nonlocal shown
        bar.update(task, completed=done, total=total or None)
        if not shown and time.monotonic() - began >= after:
            bar.start()
            shown = True

    try:
        yield update
    finally:
        if shown:
            bar.stop()


@contextmanager
def output_file(path: str) -> Iterator[IO[bytes]]:
    """Standard output for "-"; else the file at `path`, written under a temporary name beside
    it and renamed over it only once everything is written, so that Ctrl-C or a failure leaves
    no partial file (and an existing file whole)."""
    if path == "-":
        yield sys.stdout.buffer
        return
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(temp, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def folded(log: EventLog) -> ReadModels:
    """The read models, caught up (with a progress bar when that takes a while: the first fold
    of a log without a recent snapshot reads every event after the newest one)."""
    with progress("folding the read models") as update:
        log.catch_up(progress=update)
    return log.models


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (a test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


def _logging(ctx: click.Context, param: click.Parameter, verbose: int) -> None:
    """-v: swarmlog's log on stderr (migrations, prunes, snapshots, slow operations); -vv:
    its debug messages too. Quiet by default."""
    if not verbose:
        return
    logger = logging.getLogger("swarmlog")
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                           "%H:%M:%S"))
    level, previous = logging.INFO if verbose == 1 else logging.DEBUG, logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def remove() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    ctx.call_on_close(remove)


@click.group(cls=_Swarmlog, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="swarmlog")
@click.option("-v", "--verbose", count=True, expose_value=False, callback=_logging, is_eager=True,
              help="Log what swarmlog does on stderr: migrations, prunes, snapshots, slow "
                   "operations (-vv: more).")
@db_option
def cli() -> None:
    """swarmlog: an event-sourced audit log for agent swarms.

    The log is --db PATH (or a postgresql:// URL), else $SWARMLOG_DB, else data/swarm.db.

    \b
    Example:
        swarmlog demo && swarmlog summary
    """


def summary_data(log: EventLog, minutes: float) -> dict[str, Any]:
    data = counts(log.models)
    data["window_minutes"] = minutes
    now = utc_now()
    data["last_window"] = log.store.count_by_type(now - timedelta(minutes=minutes), now)
    return data


def main() -> None:
    cli()
