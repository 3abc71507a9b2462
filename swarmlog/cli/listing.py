"""What the listings share: their filters (`--type`, `--source`, `--where`, ...) and their output
formats (a table, `--json`, `--nl`, `--csv`, `--tsv`), every one of them streamed."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, TypeVar

import click
import orjson
from click.shell_completion import CompletionItem

from domain.codec import StoredEvent
from domain.events import EventType
from store import DataCondition, EventFilter
from store.archive import to_line
from swarmlog import formats, render
from swarmlog.cli.app import make_console, moment
from swarmlog.follow import Gap
from swarmlog.timeparse import MOMENT_HELP

F = TypeVar("F", bound=Callable[..., Any])
TYPES = tuple(t.value for t in EventType)
FORMATS = ("json", "nl", "csv", "tsv")
_WHERE = re.compile(r"data\.(?P<path>[^=!<>]+?)(?P<op>!=|=|>|<)(?P<value>.*)", re.S)


def stdout() -> IO[bytes]:
    return sys.stdout.buffer


# -- options --------------------------------------------------------------------------------------


def output_options(lines: bool = False) -> Callable[[F], F]:
    """--json, --nl, --csv, --tsv: one output format (a table, or with `lines` one line per
    event, when none is given). With `lines` (`tail`), --json writes JSON lines as --nl does."""
    helps = {"json": "Print one JSON object per line (as --nl)." if lines else
                     "Print one JSON array (the rows of the table).",
             "nl": "Print one JSON object per line (streamed: any length in constant memory).",
             "csv": "Print CSV with a header row.", "tsv": "Print tab-separated values with a header row."}

    def decorate(f: F) -> F:
        for name in reversed(FORMATS):
            f = click.option(f"--{name}", "fmt", flag_value=name, help=helps[name])(f)
        return click.option("--table", "fmt", flag_value="table", default=True, hidden=True)(f)

    return decorate


def _complete_type(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    prefixes = sorted({t.split(".")[0] + ".*" for t in TYPES})
    return [CompletionItem(t) for t in (*TYPES, *prefixes) if t.startswith(incomplete)]


def _types(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> frozenset[str] | None:
    """Each --type is a type, or a prefix ending in `*` (`task.*`); their union."""
    if not values:
        return None
    chosen: set[str] = set()
    for value in values:
        if value.endswith("*"):
            matching = {t for t in TYPES if t.startswith(value[:-1])}
            if not matching:
                raise click.BadParameter(f"{value!r} matches no event type", ctx, param)
            chosen |= matching
        elif value in TYPES:
            chosen.add(value)
        else:
            close = difflib.get_close_matches(value, TYPES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; one of {', '.join(TYPES)}"
            raise click.BadParameter(f"{value!r} is not an event type{hint}", ctx, param)
    return frozenset(chosen)


def _conditions(ctx: click.Context, param: click.Parameter,
                values: Sequence[str]) -> tuple[DataCondition, ...]:
    found = []
    for value in values:
        match = _WHERE.fullmatch(value)
        if match is None:
            raise click.BadParameter(f"{value!r} is not data.KEY=VALUE (or !=, >, <), "
                                     "e.g. data.bid_sats>100", ctx, param)
        try:
            found.append(DataCondition(tuple(match["path"].split(".")), match["op"], match["value"]))
        except ValueError as e:
            raise click.BadParameter(f"{value!r}: {e}", ctx, param) from None
    return tuple(found)


def filter_options(times: bool = True) -> Callable[[F], F]:
    """--task, --agent, --type (repeatable, `task.*`), --source, --where (repeatable), and, with
    `times`, --since and --until: what `event_filter` turns into an `EventFilter`."""

    def decorate(f: F) -> F:
        if times:
            f = click.option("--until", metavar="WHEN", help="Events before WHEN (same forms as --since).")(f)
            f = click.option("--since", metavar="WHEN", help=f"Events at or after WHEN: {MOMENT_HELP}.")(f)
        f = click.option("--where", "data", metavar="data.KEY=VALUE", multiple=True, callback=_conditions,
                         help="Only events whose payload field KEY (a.b for nested) equals VALUE; also "
                              "!=, and > or < on numbers. Repeatable: all must hold.")(f)
        f = click.option("--source", metavar="NAME", help="Only events from this source.")(f)
        f = click.option("--type", "types", metavar="TYPE", multiple=True, callback=_types,
                         shell_complete=_complete_type,
                         help="Only events of this type (e.g. task.failed) or prefix (task.*). "
                              "Repeatable: any of them.")(f)
        f = click.option("--agent", "agent_id", metavar="ID", help="Only events naming this agent.")(f)
        return click.option("--task", "task_id", metavar="ID", help="Only events of this task.")(f)

    return decorate


def event_filter(task_id: str | None = None, agent_id: str | None = None,
                 types: frozenset[str] | None = None, source: str | None = None,
                 data: tuple[DataCondition, ...] = (), since: str | None = None,
                 until: str | None = None) -> EventFilter:
    return EventFilter(types=types, task_id=task_id, agent_id=agent_id, source=source,
                       since=moment(since, "--since"), until=moment(until, "--until"), data=data)


# -- output ---------------------------------------------------------------------------------------


def emit_events(rows: Iterable[StoredEvent], fmt: str, title: Callable[[int], str]) -> None:
    """Events in the format asked for, streamed (a table is made of all of them)."""
    out = stdout()
    if fmt == "nl":
        formats.write_json_lines(map(to_line, rows), out)
    elif fmt == "json":
        formats.write_json_array(map(render.event_row, rows), out)
    elif fmt in ("csv", "tsv"):
        formats.write_delimited(render.EVENT_COLUMNS, map(render.event_cells, rows), out,
                               "," if fmt == "csv" else "\t")
    else:
        shown = [render.event_row(r) for r in rows]
        console = make_console()
        console.print(render.events_table(shown, title(len(shown)), console.width))


def emit_records(rows: Iterable[render.Row], fmt: str, columns: Sequence[str],
                 table: Callable[[list[render.Row]], Any]) -> None:
    """Records (plain rows) in the format asked for; `table` makes the table of them."""
    out = stdout()
    if fmt == "nl":
        formats.write_json_lines(map(formats.json_line, rows), out)
    elif fmt == "json":
        formats.write_json_array(rows, out)
    elif fmt in ("csv", "tsv"):
        formats.write_delimited(columns, ([r[c] for c in columns] for r in rows), out,
                               "," if fmt == "csv" else "\t")
    else:
        make_console().print(table(list(rows)))


class EventStream:
    """Events written as they come (`tail`): a line each, JSON lines (`--json`, `--nl`), or
    CSV/TSV with the header once; flushed after every batch."""

    def __init__(self, fmt: str) -> None:
        self.fmt, self.out, self._header = fmt, stdout(), True

    def gap(self, gap: Gap) -> None:
        """Say that events were missed: pruned before they were read, with no archive."""
        if self.fmt in ("json", "nl"):
            line = {"gap": {"first": gap.first, "last": gap.last}}
            formats.write_json_lines([orjson.dumps(line) + b"\n"], self.out)
        click.echo(f"swarmlog: events {gap.first}..{gap.last} were pruned before they could be "
                   "shown, and no archive holds them", err=True)

    def write(self, rows: Iterable[StoredEvent]) -> None:
        if self.fmt in ("json", "nl"):
            formats.write_json_lines(map(to_line, rows), self.out)
        elif self.fmt in ("csv", "tsv"):
            formats.write_delimited(render.EVENT_COLUMNS, map(render.event_cells, rows), self.out,
                                   "," if self.fmt == "csv" else "\t", header=self._header)
            self._header = False
        else:
            formats.write_json_lines((render.event_line(render.event_row(r)).encode() + b"\n"
                                     for r in rows), self.out)
