"""Commands that read the log: events, tail, task, agent, agents, summary, status."""

from __future__ import annotations

from typing import Any

import click

from projections.agents import all_agents, get_agent, online_agents
from projections.tasks import get_task
from store import EventFilter, first_stored
from swarmlog import render
from swarmlog.cli.app import (
    Finite,
    cli,
    count_option,
    db_option,
    emit_json,
    fail,
    folded,
    json_option,
    make_console,
    open_log,
    print_tables,
    summary_data,
)
from swarmlog.cli.listing import (
    EventStream,
    emit_events,
    emit_records,
    event_filter,
    filter_options,
    output_options,
)
from swarmlog.follow import Gap
from swarmlog.follow import follow as follow_log
from swarmlog.timeparse import MAX_WINDOW_MINUTES

# -- reading the log ------------------------------------------------------------------------------


@cli.command()
@filter_options()
@count_option("--limit", default=50, help="The newest N matching events (0: all).")
@output_options()
@db_option
def events(limit: int, fmt: str, **filters: Any) -> None:
    """List events, oldest first (the newest --limit of those matching).

    Every output streams: `--limit 0 --nl` writes the whole log in constant memory.

    \b
    Example:
        swarmlog events --type task.failed --since 2h
        swarmlog events --type 'task.*' --agent r1-a03 --where 'data.bid_sats>500'
        swarmlog events --limit 0 --nl | jq -c 'select(.source == "coordinator")'
    """
    where = event_filter(**filters)
    log = open_log()
    emit_events(log.latest(where, limit or None), fmt, lambda n: f"{n} event{'' if n == 1 else 's'}")


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing events as they are appended.")
@count_option("-n", "--lines", default=10, help="How many of the newest events to print first.")
@filter_options(times=False)
@output_options(lines=True)
@db_option
def tail(follow: bool, lines: int, fmt: str, **filters: Any) -> None:
    """Print the newest events; with -f, follow new ones until Ctrl-C.

    One line per event (one JSON object per line with --json or --nl; CSV rows after one header
    with --csv), as other processes append them. The filters of `events` apply. Events a prune
    removes before they are shown are read from its archive; without one, a line on stderr (a
    {"gap": {"first": N, "last": M}} line with --json or --nl) says which were missed.

    \b
    Example:
        swarmlog tail -f --json | jq .event_type
        swarmlog tail -f --type 'tool.*' --where data.tool=web_search
    """
    where = event_filter(**filters)
    log = open_log()
    store = log.store
    out = EventStream(fmt)
    after = store.head()
    out.write(log.latest(where, lines, before=after + 1) if lines else ())
    if not follow:
        return
    try:
        for item in follow_log(store, where, after):
            if isinstance(item, Gap):
                out.gap(item)
            else:
                out.write((item,))
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
    view = get_task(folded(log).tasks, task_id)
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
@click.argument("agent_id", metavar="ID")
@count_option("--limit", default=50, help="The newest N of its events (0: all).")
@json_option
@db_option
def agent(agent_id: str, limit: int, as_json: bool) -> None:
    """Show one agent: its state in the read model, then its newest events.

    \b
    Example:
        swarmlog agent r1-a03 --limit 20
    """
    log = open_log()
    view = get_agent(folded(log).agents, agent_id)
    if view is None:
        fail(f"no agent {agent_id!r} in {log.location}")
    state = render.agent_row(view)
    found = log.latest(EventFilter(agent_id=agent_id), limit or None)
    if as_json:
        emit_json({"agent": state, "events": [render.event_row(r) for r in found]})
        return
    console = make_console()
    shown = {k: v for k, v in state.items() if v not in (None, [], {})}
    console.print(render.pairs_table(shown, f"agent {agent_id}"))
    rows = [render.event_row(r) for r in found]
    console.print(render.events_table(rows, f"its newest {len(rows)} events" if limit else "its events",
                                      console.width))


@cli.command()
@click.option("--online", is_flag=True, help="Only the agents online now.")
@output_options()
@db_option
def agents(online: bool, fmt: str) -> None:
    """List the agent roster: presence, current task, work done and sats earned.

    \b
    Example:
        swarmlog agents --online
        swarmlog agents --csv > agents.csv
    """
    state = folded(open_log()).agents
    views = online_agents(state) if online else all_agents(state)
    rows = [render.agent_row(v) for v in sorted(views, key=lambda v: v.agent_id)]
    emit_records(rows, fmt, render.AGENT_COLUMNS, lambda shown: render.agents_table(
        shown, f"{len(shown)} agents"))


@cli.command()
@click.option("--minutes", type=Finite(0, MAX_WINDOW_MINUTES, min_open=True, max_open=True),
              default=60, show_default=True, help="The recent window to count events in.")
@json_option
@db_option
def summary(minutes: float, as_json: bool) -> None:
    """Show the summary counts: tasks by status, agents online, failures, events by type.

    \b
    Example:
        swarmlog summary --minutes 15
    """
    log = open_log()
    folded(log)
    data = summary_data(log, minutes)
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


