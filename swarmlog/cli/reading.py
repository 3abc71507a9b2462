"""Commands that read the log: events, tail, task, agents, summary, status."""

from __future__ import annotations

import sys

import click
import orjson

from domain.codec import StoredEvent
from domain.events import EventType
from projections.agents import all_agents, online_agents
from projections.tasks import get_task
from store import EventFilter, first_stored
from swarmlog import render
from swarmlog.cli.app import (
    cli,
    db_option,
    emit_json,
    fail,
    json_option,
    make_console,
    moment,
    open_log,
    print_tables,
    summary_data,
)
from swarmlog.timeparse import MOMENT_HELP

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
@json_option
@db_option
def events(task_id: str | None, agent_id: str | None, event_type: str | None, since: str | None,
           until: str | None, limit: int, as_json: bool) -> None:
    """List events, oldest first (the newest --limit of those matching).

    \b
    Example:
        swarmlog events --type task.failed --since 2h
        swarmlog events --task r1-t0042 --json
    """
    start, end = moment(since, "--since"), moment(until, "--until")
    log = open_log()
    where = EventFilter(types=None if event_type is None else frozenset({event_type}),
                        task_id=task_id, agent_id=agent_id, since=start, until=end)
    found = list(log.store.query(where, limit=limit or None, newest_first=True))
    rows = [render.event_row(r) for r in reversed(found)]
    if as_json:
        emit_json(rows)
    else:
        console = make_console()
        console.print(render.events_table(rows, f"{len(rows)} events", console.width))


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing events as they are appended.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the newest events to print first.")
@json_option
@db_option
def tail(follow: bool, lines: int, as_json: bool) -> None:
    """Print the newest events; with -f, follow new ones until Ctrl-C.

    One line per event (one JSON object per line with --json), as other processes append them.

    \b
    Example:
        swarmlog tail -f --json | jq .event_type
    """
    log = open_log()
    store = log.store

    def show(stored: StoredEvent) -> None:
        row = render.event_row(stored)
        click.echo(orjson.dumps(row).decode() if as_json else render.event_line(row))

    after = store.head()
    newest = list(store.query(limit=lines, newest_first=True)) if lines else []
    for stored in reversed(newest):
        show(stored)
    sys.stdout.flush()
    if not follow:
        return
    try:
        while True:
            if store.wait_for_append(after, timeout=1.0):
                for stored in store.read(after=after):
                    show(stored)
                    after = stored.position
                sys.stdout.flush()
    except KeyboardInterrupt:
        return


@cli.command()
@click.argument("task_id", metavar="ID")
@json_option
@db_option
def task(task_id: str, as_json: bool) -> None:
    """Show one task: its state in the read model and its timeline of stored events.

    \b
    Example:
        swarmlog task r1-t0042
    """
    log = open_log()
    view = get_task(log.tasks, task_id)
    if view is None:
        fail(f"no task {task_id!r} in {log.location}")
    timeline = [render.event_row(r) for r in log.events_of_task(task_id)]
    state = render.task_row(view)
    if as_json:
        emit_json({"task": state, "timeline": timeline})
        return
    console = make_console()
    shown = {k: v for k, v in state.items() if v not in (None, [], {}) and k != "anomalies"}
    console.print(render.pairs_table(shown, f"task {task_id}"))
    console.print(render.events_table(timeline, "timeline", console.width))
    if not timeline or timeline[0]["event_type"] != "task.created":
        first = first_stored(log.store)
        if first > 1:
            console.print(f"(events before position {first} were pruned; the state above still "
                          "counts them)")


@cli.command()
@click.option("--online", is_flag=True, help="Only the agents online now.")
@json_option
@db_option
def agents(online: bool, as_json: bool) -> None:
    """List the agent roster: presence, current task, work done and sats earned.

    \b
    Example:
        swarmlog agents --online
    """
    log = open_log()
    state = log.agents
    views = online_agents(state) if online else all_agents(state)
    rows = [render.agent_row(v) for v in sorted(views, key=lambda v: v.agent_id)]
    if as_json:
        emit_json(rows)
    else:
        make_console().print(render.agents_table(rows, f"{len(rows)} agents"))



@cli.command()
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True,
              help="The recent window to count events in.")
@json_option
@db_option
def summary(minutes: float, as_json: bool) -> None:
    """Show the summary counts: tasks by status, agents online, failures, events by type.

    \b
    Example:
        swarmlog summary --minutes 15
    """
    data = summary_data(open_log(), minutes)
    if as_json:
        emit_json(data)
    else:
        print_tables(*render.summary_tables(data))


@cli.command()
@json_option
@db_option
def status(as_json: bool) -> None:
    """Show the health of the log: head, event count, size, projection lag, snapshots, prunes.

    \b
    Example:
        swarmlog status --json
    """
    data = open_log().status()
    if as_json:
        emit_json(data)
    else:
        print_tables(*render.status_tables(data))


