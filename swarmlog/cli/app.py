"""The `swarmlog` group and what its commands share: opening the log (one place: `--db`,
`$SWARMLOG_DB` or data/swarm.db, or a `postgresql://` URL), options, rendering, errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from domain.errors import SwarmlogError
from domain.ids import utc_now
from projections.models import counts
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


class _Swarmlog(click.Group):
    """Runs a command and turns every expected failure into one line on stderr and exit code 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            returned = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = returned if isinstance(returned, int) else 0  # click returns Exit's code
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            code = 2
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            code = e.exit_code
        except SwarmlogError as e:
            click.echo(f"error: {e}", err=True)
            code = 2
        except BrokenPipeError:
            # The reader went away (`swarmlog export | head`): stop quietly, like other tools.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 0
        except OSError as e:
            click.echo(f"error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", err=True)
            code = 2
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code)


def _remember_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta[_DB] = value


def db_option(f: F) -> F:
    return click.option(
        "--db", metavar="PATH|URL", expose_value=False, callback=_remember_db, is_eager=True,
        help="The log: an SQLite file or a postgresql:// URL [default: $SWARMLOG_DB, else data/swarm.db].",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (the rows of the table).")(f)


def open_log(create: bool = False) -> EventLog:
    """The one place the CLI opens the log; a missing file is an error unless `create`."""
    ctx = click.get_current_context()
    log = EventLog(ctx.meta.get(_DB) or default_location(), create=create)
    ctx.call_on_close(log.close)
    return log


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


@contextmanager
def progress(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (quiet when stderr is not a terminal); yields update(done, total)."""
    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, transient=True,
                   disable=not (enabled and console.is_terminal))
    with bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@click.group(cls=_Swarmlog, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="swarmlog")
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
    data["last_window"] = log.store.count_by_type(utc_now() - timedelta(minutes=minutes))
    return data


def main() -> None:
    cli()
