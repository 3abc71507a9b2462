"""The `swarmlog` command: a thin click layer over `EventLog`, rendered with rich.

Each command parses, calls the library, renders. Every listing takes `--json` (the same rows the
table shows). Errors are one line on stderr and exit code 2; the database is opened in one place,
`_open`, from `--db`, `$SWARMLOG_DB` or ./swarmlog.db (a `postgresql://` URL works too).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from domain.errors import SwarmlogError
from domain.events import EventType
from domain.ids import utc_now
from projections.agents import get_agent, online_agents
from projections.summary import counts
from projections.tasks import get_task
from swarm import render
from swarm.demo import DemoConfig, run_demo
from swarm.jsonl import JsonLines, export_events, import_events
from swarm.log import EventLog, default_location
from swarm.timeparse import DURATION_HELP, MOMENT_HELP, parse_duration, parse_moment

F = TypeVar("F", bound=Callable[..., Any])
_DB = "swarmlog.db"


def _version() -> str:
    try:
        return version("swarmlog")
    except PackageNotFoundError:
        return "0+unknown"


class CliError(click.ClickException):
    """A refused command-line request: one line on stderr, exit code 2."""

    exit_code = 2


def _fail(message: str) -> NoReturn:
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


def _db_option(f: F) -> F:
    return click.option(
        "--db", metavar="PATH|URL", expose_value=False, callback=_remember_db, is_eager=True,
        help="The log: an SQLite file or a postgresql:// URL [default: $SWARMLOG_DB or ./swarmlog.db].",
    )(f)


def _json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (the rows of the table).")(f)


def _open(create: bool = False) -> EventLog:
    """The one place the CLI opens the log; a missing file is an error unless `create`."""
    ctx = click.get_current_context()
    log = EventLog(ctx.meta.get(_DB) or default_location(), create=create)
    ctx.call_on_close(log.close)
    return log


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # piped or captured: wide enough for the tables, still bounded
    return console


def _emit_json(data: Any) -> None:
    click.echo(render.dumps(data))


def _print(*tables: Any) -> None:
    console = _console()
    for table in tables:
        console.print(table)


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


@contextmanager
def _progress(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
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
@_db_option
def cli() -> None:
    """swarmlog: an event-sourced audit log for agent swarms.

    The log is --db PATH (or a postgresql:// URL), else $SWARMLOG_DB, else ./swarmlog.db.

    \b
    Example:
        swarmlog demo && swarmlog summary
    """


# -- reading the log ------------------------------------------------------------------------------


@cli.command()
@click.option("--task", "task_id", metavar="ID", help="Only events of this task.")
@click.option("--agent", "agent_id", metavar="ID", help="Only events naming this agent.")
@click.option("--type", "event_type", type=click.Choice([t.value for t in EventType]),
              metavar="TYPE", help="Only events of this type (e.g. task.failed).")
@click.option("--since", metavar="WHEN", help=f"Events at or after WHEN: {MOMENT_HELP}.")
@click.option("--until", metavar="WHEN", help="Events before WHEN (same forms as --since).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="The newest N matching events (0: all).")
@_json_option
@_db_option
def events(task_id: str | None, agent_id: str | None, event_type: str | None, since: str | None,
           until: str | None, limit: int, as_json: bool) -> None:
    """List events, oldest first (the newest --limit of those matching).

    \b
    Example:
        swarmlog events --type task.failed --since 2h
        swarmlog events --task r1-t0042 --json
    """
    start, end = _moment(since, "--since"), _moment(until, "--until")
    log = _open()
    found = log.store.query(event_type=None if event_type is None else EventType(event_type),
                            task_id=task_id, agent_id=agent_id, since=start, until=end,
                            limit=limit or None)
    rows = [render.event_row(r) for r in reversed(found)]
    if as_json:
        _emit_json(rows)
    else:
        console = _console()
        console.print(render.events_table(rows, f"{len(rows)} events", console.width))


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing events as they are appended.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the newest events to print first.")
@_json_option
@_db_option
def tail(follow: bool, lines: int, as_json: bool) -> None:
    """Print the newest events; with -f, follow new ones until Ctrl-C.

    One line per event (one JSON object per line with --json), as other processes append them.

    \b
    Example:
        swarmlog tail -f --json | jq .event_type
    """
    log = _open()
    store = log.store

    def show(recorded: Any) -> None:
        row = render.event_row(recorded)
        click.echo(orjson.dumps(row).decode() if as_json else render.event_line(row))

    after = store.head()
    for recorded in reversed(store.query(limit=lines) if lines else []):
        show(recorded)
    sys.stdout.flush()
    if not follow:
        return
    try:
        while True:
            if store.wait_for_append(after, timeout=1.0):
                for recorded in store.read(after=after):
                    show(recorded)
                    after = recorded.position
                sys.stdout.flush()
    except KeyboardInterrupt:
        return


@cli.command()
@click.argument("task_id", metavar="ID")
@_json_option
@_db_option
def task(task_id: str, as_json: bool) -> None:
    """Show one task: its state in the read model and its timeline of stored events.

    \b
    Example:
        swarmlog task r1-t0042
    """
    log = _open()
    view = get_task(log.tasks, task_id)
    if view is None:
        _fail(f"no task {task_id!r} in {log.location}")
    timeline = [render.event_row(r) for r in log.store.read_task(task_id)]
    state = render.task_row(view)
    if as_json:
        _emit_json({"task": state, "timeline": timeline})
        return
    console = _console()
    shown = {k: v for k, v in state.items() if v not in (None, [], {}) and k != "anomalies"}
    console.print(render.pairs_table(shown, f"task {task_id}"))
    console.print(render.events_table(timeline, "timeline", console.width))
    if not timeline or timeline[0]["event_type"] != "task.created":
        first = log.store.head() - log.store.count() + 1
        if first > 1:
            console.print(f"(events before position {first} were pruned; the state above still "
                          "counts them)")


@cli.command()
@click.option("--online", is_flag=True, help="Only the agents online now.")
@_json_option
@_db_option
def agents(online: bool, as_json: bool) -> None:
    """List the agent roster: presence, current task, work done and sats earned.

    \b
    Example:
        swarmlog agents --online
    """
    log = _open()
    state = log.agents
    views = online_agents(state) if online else [
        v for a in state.agents if (v := get_agent(state, a)) is not None]
    rows = [render.agent_row(v) for v in sorted(views, key=lambda v: v.agent_id)]
    if as_json:
        _emit_json(rows)
    else:
        _console().print(render.agents_table(rows, f"{len(rows)} agents"))


def _summary_data(log: EventLog, minutes: float) -> dict[str, Any]:
    data = counts(log.summary)
    data["window_minutes"] = minutes
    data["last_window"] = log.store.count_by_type(utc_now() - timedelta(minutes=minutes))
    return data


@cli.command()
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True,
              help="The recent window to count events in.")
@_json_option
@_db_option
def summary(minutes: float, as_json: bool) -> None:
    """Show the summary counts: tasks by status, agents online, failures, events by type.

    \b
    Example:
        swarmlog summary --minutes 15
    """
    data = _summary_data(_open(), minutes)
    if as_json:
        _emit_json(data)
    else:
        _print(*render.summary_tables(data))


@cli.command()
@_json_option
@_db_option
def status(as_json: bool) -> None:
    """Show the health of the log: head, event count, size, projection lag, snapshots, prunes.

    \b
    Example:
        swarmlog status --json
    """
    data = _open().status()
    if as_json:
        _emit_json(data)
    else:
        _print(*render.status_tables(data))


# -- maintaining the log --------------------------------------------------------------------------


@cli.command()
@_json_option
@_db_option
def verify(as_json: bool) -> None:
    """Check the whole log: every row parses, positions and stream versions are gapless (after
    the recorded prunes), snapshots load, archive segments match their SHA-256. Exit code 2 when
    anything is wrong, with every problem listed.

    \b
    Example:
        swarmlog verify
    """
    report = _open().verify()
    data = {"ok": report.ok, "events": report.events, "streams": report.streams,
            "snapshots": report.snapshots, "archives": report.archives,
            "problem_count": report.problem_count, "problems": report.problems}
    if as_json:
        _emit_json(data)
    else:
        checked = (f"checked {report.events} events in {report.streams} streams, "
                   f"{report.snapshots} snapshots, {report.archives} archive segments")
        click.echo(checked + (": all good" if report.ok else ""))
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
    if not report.ok:
        raise SwarmlogError(f"{report.problem_count} problem(s) found in {_open().location}")


@cli.command()
@_db_option
def rebuild() -> None:
    """Refold every read model from the stored log, with a progress bar.

    \b
    Example:
        swarmlog rebuild
    """
    log = _open()
    began = time.perf_counter()
    with _progress("rebuilding") as update:
        log.rebuild(progress=update)
    took = time.perf_counter() - began
    click.echo(f"rebuilt the read models up to position {log.store.head()} in {took:.2f}s")


@cli.command()
@_db_option
def snapshot() -> None:
    """Snapshot every read model at the log's head (start-up then folds only what follows).

    \b
    Example:
        swarmlog snapshot
    """
    log = _open()
    ids = log.snapshot()
    click.echo(f"saved {len(ids)} snapshots (ids {', '.join(map(str, ids))}) at position {log.store.head()}")


@cli.command()
@click.option("--older-than", metavar="AGE", help=f"Prune events older than AGE: {DURATION_HELP}.")
@click.option("--before", metavar="WHEN", help="Prune events before WHEN (an ISO-8601 date/time).")
@click.option("--archive", type=click.Path(file_okay=False), metavar="DIR",
              help="Write the pruned events to a compressed archive segment in DIR first.")
@click.option("--dry-run", is_flag=True, help="Only report what would be pruned.")
@_json_option
@_db_option
def prune(older_than: str | None, before: str | None, archive: str | None, dry_run: bool,
          as_json: bool) -> None:
    """Delete old events after snapshotting every read model, so no state is lost.

    \b
    Example:
        swarmlog prune --older-than 30d --archive ./archive --dry-run
    """
    if (older_than is None) == (before is None):
        raise click.UsageError("give exactly one of --older-than AGE or --before WHEN")
    kwargs: dict[str, Any] = {"archive": archive, "dry_run": dry_run}
    if older_than is not None:
        try:
            kwargs["older_than"] = parse_duration(older_than)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--older-than") from None
    else:
        kwargs["before"] = _moment(before, "--before")
    report = _open().prune(**kwargs)
    data = {"removed": report.removed, "first_position": report.first_position,
            "last_position": report.last_position, "cutoff": report.cutoff,
            "dry_run": getattr(report, "dry_run", dry_run),
            "snapshot_ids": list(getattr(report, "snapshot_ids", [])),
            "archive_path": getattr(report, "archive_path", None),
            "archive_sha256": getattr(report, "archive_sha256", None)}
    if as_json:
        _emit_json(data)
        return
    verb = "would prune" if dry_run else "pruned"
    if not report.removed:
        click.echo(f"nothing to prune: no stored event is older than {data['cutoff']:%Y-%m-%d %H:%M:%S} UTC")
        return
    click.echo(f"{verb} {report.removed} events (positions {report.first_position}.."
               f"{report.last_position}) older than {data['cutoff']:%Y-%m-%d %H:%M:%S} UTC")
    if data["archive_path"]:
        click.echo(f"archive: {data['archive_path']}"
                   + (f" (sha256 {data['archive_sha256']})" if data["archive_sha256"] else ""))


@cli.command("export")
@click.option("--since", metavar="WHEN", help=f"Only events at or after WHEN: {MOMENT_HELP}.")
@click.option("--until", metavar="WHEN", help="Only events before WHEN.")
@click.option("-o", "--output", type=click.File("wb"), default="-", metavar="FILE",
              help="Write to FILE instead of standard output.")
@_db_option
def export_(since: str | None, until: str | None, output: Any) -> None:
    """Write events as JSON lines, oldest first (`swarmlog import` reads them back).

    \b
    Example:
        swarmlog export --since 30d > events.jsonl
    """
    start, end = _moment(since, "--since"), _moment(until, "--until")
    store = _open().store
    export_events(store.read_range(since=start, until=end) if start or end else store.read(), output)


@cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True), metavar="FILE")
@_db_option
def import_(path: str) -> None:
    """Append the events of a JSON-lines file (as `swarmlog export` writes), keeping their ids.

    Every line is validated first: one bad line is reported with its line number and nothing is
    stored. Events already in the log (same id) are skipped, so importing twice is harmless.

    \b
    Example:
        swarmlog import events.jsonl --db copy.db
    """
    if path != "-" and not Path(path).is_file():
        _fail(f"no such file: {path}")
    source = JsonLines(path)
    count = source.validate()  # before the database is even created
    log = _open(create=True)
    with _progress("importing") as update:
        report = import_events(log.store, source, validated=count, progress=update)
    click.echo(f"imported {report.added} events from {source.name}"
               + (f" ({report.present} were already in the log)" if report.present else ""))


# -- the demo -------------------------------------------------------------------------------------


@cli.command()
@click.option("--agents", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--tasks", type=click.IntRange(min=0), default=500, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Chance that a tool call fails, and that a task fails at the end.")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=7.0, show_default=True,
              help="How many simulated days the tasks are spread over.")
@click.option("--start", metavar="WHEN",
              help="Simulated start (ISO-8601) [default: DAYS days and 30 minutes ago, to the minute]. "
                   "Same seed and start: the same events.")
@_db_option
def demo(agents: int, tasks: int, seed: int, failure_rate: float, days: float,
         start: str | None) -> None:
    """Run a simulated swarm through the coordinator, then show its read models.

    Agents join, bid on tasks, win auctions, call tools, finish or fail, leave and rejoin, over
    simulated days. A second run on the same database is run 2 (ids r2-...), beside run 1.

    \b
    Example:
        swarmlog demo --agents 20 --tasks 500 --seed 7
    """
    config = DemoConfig(agents=agents, tasks=tasks, seed=seed, failure_rate=failure_rate, days=days,
                        start=_moment(start, "--start"))
    log = _open(create=True)
    began = time.perf_counter()
    with _progress("simulating") as update:
        result = run_demo(log, config, progress=update)
    took = time.perf_counter() - began
    console = _console()
    console.print(f"demo run {result.run} (ids {result.prefix}…): {agents} agents, {result.tasks} tasks, "
                  f"{result.events} events in {took:.1f}s")
    console.print(f"simulated {result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC; "
                  f"{result.refused} late bids refused (nothing appended for them)")
    agents_state = log.agents
    roster = [render.agent_row(v) for a in sorted(agents_state.agents)
              if a.startswith(result.prefix) and (v := get_agent(agents_state, a)) is not None]
    runs = [render.task_row(t) for t in log.tasks.tasks.values() if t.task_id.startswith(result.prefix)]
    _print(*render.summary_tables(_summary_data(log, 60)), *render.demo_tables(roster, runs))
    example = next((r["task_id"] for r in reversed(runs) if r["status"] == "failed"), "ID")
    console.print(f"next: swarmlog task {example}   swarmlog events --type task.failed   "
                  "swarmlog prune --older-than 3d --dry-run")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
