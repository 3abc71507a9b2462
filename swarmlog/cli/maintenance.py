"""Commands that check, fold, prune, move or make logs: verify, rebuild, snapshot, prune,
vacuum, export, import, demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from projections.agents import all_agents
from projections.tasks import all_tasks
from swarmlog import render
from swarmlog.cli.app import (
    Finite,
    PathText,
    cli,
    db_option,
    emit_json,
    fail,
    json_option,
    make_console,
    moment,
    not_the_log,
    open_log,
    output_file,
    print_tables,
    progress,
    summary_data,
)
from swarmlog.cli.listing import event_filter, filter_options
from swarmlog.demo import MAX_AGENTS, MAX_DAYS, MAX_TASKS, DemoConfig, run_demo
from swarmlog.jsonl import JsonLines, export_events, import_rows
from swarmlog.log import VacuumReport
from swarmlog.timeparse import DURATION_HELP, ago, parse_duration


def _many(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


# -- maintaining the log --------------------------------------------------------------------------


@cli.command()
@click.option("--deep", is_flag=True,
              help="Also refold the read models from the archives and the log, and compare "
                   "them with every stored snapshot.")
@click.option("--witness", metavar="FILE", envvar="SWARMLOG_WITNESS", type=PathText(dir_okay=False),
              help="A witness file of signed checkpoints: prove the log still extends each "
                   "[default: $SWARMLOG_WITNESS].")
@click.option("--public-key", metavar="HEX",
              help="The witness's public key, to pin it (else the key its first line names).")
@json_option
@db_option
def verify(deep: bool, witness: str | None, public_key: str | None, as_json: bool) -> None:
    """Check the whole log against its integrity chain: every row's hash over its
    predecessor's, positions and stream versions gapless, the chain of prune records and every
    archive segment, every snapshot and item bound to the chain; with --witness, every signed
    checkpoint. Exit code 0 when everything checks, 1 when something does not (each finding
    named: table, position and kind), 2 on a usage error (a key the chain needs, a missing
    witness).

    \b
    Example:
        swarmlog verify --witness /mnt/other-disk/swarm.witness --json
    """
    log = open_log()
    with progress("verifying") as update:
        report = log.verify(deep=deep, witness=witness, public_key=public_key, progress=update)
    data = {"ok": report.ok, "events": report.events, "streams": report.streams,
            "snapshots": report.snapshots, "archives": report.archives,
            "chain_starts_at": report.chain_start, "nonconforming": report.nonconforming,
            "notes": report.notes, "finding_count": report.finding_count,
            "findings": [{"kind": f.kind, "table": f.table, "position": f.position,
                          "detail": f.detail} for f in report.findings]}
    if as_json:
        emit_json(data)
    else:
        checked = (f"checked {report.events} events in {report.streams} streams, "
                   f"{_many(report.snapshots, 'snapshot')}, "
                   f"{_many(report.archives, 'archive segment')}"
                   + (f" (the chain starts at position {report.chain_start})"
                      if report.chain_start > 1 else "")
                   + (f"; {report.nonconforming} stored flagged as not conforming to their "
                      "type's schema" if report.nonconforming else ""))
        click.echo(checked + (": all good" if report.ok else ""))
        for note in report.notes:
            click.echo(f"note: {note}")
        for finding in report.findings:
            click.echo(f"problem: {finding}", err=True)
        if not report.ok:
            click.echo(f"{_many(report.finding_count, 'problem')} found in {log.location}",
                       err=True)
    if not report.ok:
        raise click.exceptions.Exit(1)


@cli.command()
@click.option("--witness", metavar="FILE", envvar="SWARMLOG_WITNESS", required=True,
              type=PathText(dir_okay=False),
              help="The witness file to append the checkpoint to (another disk or host) "
                   "[default: $SWARMLOG_WITNESS].")
@click.option("--signing-key", metavar="FILE", envvar="SWARMLOG_SIGNING_KEY", required=True,
              type=PathText(dir_okay=False),
              help="The Ed25519 key file that signs it, outside the database; made on first "
                   "use [default: $SWARMLOG_SIGNING_KEY].")
@json_option
@db_option
def checkpoint(witness: str, signing_key: str, as_json: bool) -> None:
    """Append a signed statement of the log's chain (position, hash, count, time) to a witness
    file, so that `verify --witness` can later prove the log still extends it. With both
    $SWARMLOG_WITNESS and $SWARMLOG_SIGNING_KEY set, every prune and snapshot does this too.

    \b
    Example:
        swarmlog checkpoint --witness /mnt/other-disk/swarm.witness --signing-key ~/.swarmlog.key
    """
    not_the_log(witness, "--witness")
    not_the_log(signing_key, "--signing-key")
    point = open_log().checkpoint(witness, signing_key)
    if as_json:
        emit_json(point.__dict__)
    else:
        click.echo(f"checkpoint at position {point.position} ({point.count} events stored), "
                   f"chain hash {point.hash[:16]}…, written to {witness}")


@cli.command()
@json_option
@db_option
def rebuild(as_json: bool) -> None:
    """Refold every read model from the stored log, with a progress bar.

    \b
    Example:
        swarmlog rebuild
    """
    log = open_log()
    began = time.perf_counter()
    with progress("rebuilding") as update:
        read = log.rebuild(progress=update)
    data = {"events": read, "position": log.runner.position,
            "seconds": round(time.perf_counter() - began, 3)}
    if as_json:
        emit_json(data)
    else:
        click.echo(f"rebuilt the read models up to position {data['position']} from "
                   f"{_many(read, 'event')} in {data['seconds']:.2f}s")


@cli.command()
@json_option
@db_option
def snapshot(as_json: bool) -> None:
    """Snapshot every read model at the log's head (start-up then folds only what follows; the
    SQL views swarmlog_tasks and swarmlog_agents show it).

    \b
    Example:
        swarmlog snapshot
    """
    log = open_log(write=True)
    with progress("folding the read models") as update:
        log.catch_up(progress=update)
    ids = log.snapshot()
    data = {"snapshot_ids": ids, "position": log.runner.position}
    if as_json:
        emit_json(data)
        return
    listed = ", ".join(map(str, ids))
    click.echo(f"saved {_many(len(ids), 'snapshot')} (id{'s' if len(ids) != 1 else ''} {listed}) "
               f"at position {data['position']}")


def _vacuum_data(report: VacuumReport) -> dict[str, Any]:
    return {"before_bytes": report.before_bytes, "after_bytes": report.after_bytes,
            "seconds": round(report.seconds, 3)}


def _vacuumed(data: dict[str, Any]) -> str:
    before, after = data["before_bytes"], data["after_bytes"]
    if before is None or after is None:
        return "vacuumed (this log has no size to report)"
    return (f"vacuumed: {render.size(before)} before, {render.size(after)} after "
            f"({render.size(max(before - after, 0))} given back) in {data['seconds']:.1f}s")


@cli.command()
@click.option("--older-than", metavar="AGE", help=f"Prune events older than AGE: {DURATION_HELP}.")
@click.option("--before", metavar="WHEN", help="Prune events before WHEN (an ISO-8601 date/time).")
@click.option("--archive", type=PathText(file_okay=False), metavar="DIR",
              help="Write the pruned events to a compressed archive segment in DIR first.")
@click.option("--dry-run", is_flag=True, help="Only report what would be pruned.")
@click.option("--vacuum", "then_vacuum", is_flag=True,
              help="Then give the space back (see `swarmlog vacuum`): the file shrinks.")
@json_option
@db_option
def prune(older_than: str | None, before: str | None, archive: str | None, dry_run: bool,
          then_vacuum: bool, as_json: bool) -> None:
    """Delete old events after snapshotting every read model, so no state is lost.

    A prune leaves the file as big as it was (the space is reused by new events); --vacuum
    gives it back.

    \b
    Example:
        swarmlog prune --older-than 30d --archive ./archive --dry-run
        swarmlog prune --older-than 30d --archive ./archive --vacuum
    """
    if (older_than is None) == (before is None):
        raise click.UsageError("give exactly one of --older-than AGE or --before WHEN")
    kwargs: dict[str, Any] = {"archive": archive, "dry_run": dry_run}
    if older_than is not None:
        try:
            kwargs["before"] = ago(parse_duration(older_than))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--older-than") from None
    else:
        kwargs["before"] = moment(before, "--before")
    log = open_log(write=True)
    with progress("pruning") as update:
        report = log.prune(progress=update, **kwargs)
    data: dict[str, Any] = {"removed": report.removed, "first_position": report.first_position,
            "last_position": report.last_position, "cutoff": report.cutoff,
            "dry_run": report.dry_run, "snapshot_ids": list(report.snapshot_ids),
            "archive_path": report.archive_path, "archive_sha256": report.archive_sha256,
            "resumed": report.resumed, "archive_cleanup": report.archive_cleanup,
            "vacuum": None}
    if then_vacuum and not dry_run:
        data["vacuum"] = _vacuum_data(log.vacuum())
    if as_json:
        emit_json(data)
        return
    for line in report.archive_cleanup:
        click.echo(f"archive: {line}")
    verb = "would prune" if dry_run else "pruned"
    if report.resumed:
        click.echo(f"finished an interrupted prune: deleted the {report.resumed} events it had "
                   "recorded as pruned")
    if not report.removed:
        click.echo(f"nothing to prune: no stored event is older than {data['cutoff']:%Y-%m-%d %H:%M:%S} UTC")
    else:
        click.echo(f"{verb} {report.removed} events (positions {report.first_position}.."
                   f"{report.last_position}) older than {data['cutoff']:%Y-%m-%d %H:%M:%S} UTC")
    if data["archive_path"] and report.removed:
        click.echo(f"archive: {data['archive_path']}"
                   + (f" (sha256 {data['archive_sha256']})" if data["archive_sha256"] else ""))
    if data["vacuum"] is not None:
        click.echo(_vacuumed(data["vacuum"]))


@cli.command()
@json_option
@db_option
def vacuum(as_json: bool) -> None:
    """Give back the space that pruned events left in the database, reporting its size before
    and after. SQLite rewrites the file (it needs that much free disk for a while, and holds
    the write lock meanwhile); PostgreSQL runs VACUUM, which makes the space reusable and
    returns what it can. Run it after a large prune (or prune with --vacuum).

    \b
    Example:
        swarmlog vacuum
    """
    data = _vacuum_data(open_log(write=True).vacuum())
    if as_json:
        emit_json(data)
    else:
        click.echo(_vacuumed(data))


@cli.command("export")
@filter_options()
@click.option("-o", "--output", type=PathText(dir_okay=False, allow_dash=True), default="-",
              metavar="FILE", help="Write to FILE (whole or not at all) instead of standard output.")
@json_option
@db_option
def export_(output: str, as_json: bool, **filters: Any) -> None:
    """Write events as JSON lines, oldest first (`swarmlog import` reads them back).

    The filters of `events` apply. With -o, FILE appears only once it is complete: Ctrl-C or a
    failure leaves no partial file; then a line (or --json) reports what was written.

    \b
    Example:
        swarmlog export --since 30d > events.jsonl
        swarmlog export --type 'task.*' -o tasks.jsonl --json
    """
    if as_json and output == "-":
        raise click.UsageError("--json reports on an export to a file (-o FILE); on standard "
                               "output the events themselves are JSON lines")
    where = event_filter(**filters)
    if output != "-":
        not_the_log(output, "--output")
    store = open_log().store
    with output_file(output) as out, progress("exporting", enabled=output != "-") as update:
        count = export_events(store, out, where, progress=update)
    if output == "-":
        return
    data = {"exported": count, "path": output}
    if as_json:
        emit_json(data)
    else:
        click.echo(f"exported {_many(count, 'event')} to {output}")


@cli.command("import")
@click.argument("path", type=PathText(dir_okay=False, allow_dash=True), metavar="FILE")
@json_option
@db_option
def import_(path: str, as_json: bool) -> None:
    """Append the events of a JSON-lines file (as `swarmlog export` writes), keeping their ids.

    Every line is checked first, as the API checks an event: one bad line is reported with its
    line number and nothing is stored. Then the file is stored in one transaction: whole, or
    not at all (a full disk, a kill). Events already in the log (same id) are skipped, so
    importing twice is harmless. Archive segments (.jsonl.gz) are read as they are.

    \b
    Example:
        swarmlog import events.jsonl --db copy.db
    """
    if path != "-" and not Path(path).is_file():
        fail(f"no such file: {path}")
    if path != "-":
        not_the_log(path, "FILE")
    source = JsonLines(path)
    with progress("checking") as update:
        checked = source.check(progress=update)  # before the database is even created
    log = open_log(create=True)
    with progress("importing") as update:
        report = import_rows(log.store, source, progress=update, checked=checked)
    data = {"file": source.name, "lines": report.lines, "added": report.added,
            "present": report.present, "repeated": report.repeated}
    if as_json:
        emit_json(data)
        return
    notes = [f"{report.present} were already in the log"] if report.present else []
    notes += [f"{report.repeated} repeated an earlier line"] if report.repeated else []
    click.echo(f"imported {report.added} events from {source.name}"
               + (f" ({'; '.join(notes)})" if notes else ""))


# -- the demo -------------------------------------------------------------------------------------


@cli.command()
@click.option("--agents", type=click.IntRange(1, MAX_AGENTS), default=20, show_default=True)
@click.option("--tasks", type=click.IntRange(0, MAX_TASKS), default=500, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--failure-rate", type=Finite(0, 1), default=0.1, show_default=True,
              help="Chance that a tool call fails, and that a task fails at the end.")
@click.option("--days", type=Finite(0, MAX_DAYS, min_open=True), default=7.0, show_default=True,
              help="How many simulated days the tasks are spread over.")
@click.option("--start", metavar="WHEN",
              help="Simulated start (ISO-8601) [default: DAYS days and 30 minutes ago, to the minute]. "
                   "Same seed and start: the same events.")
@json_option
@db_option
def demo(agents: int, tasks: int, seed: int, failure_rate: float, days: float,
         start: str | None, as_json: bool) -> None:
    """Run a simulated swarm through the coordinator, then show its read models.

    Agents join, bid on tasks, win auctions, call tools, finish or fail, leave and rejoin, over
    simulated days. A second run on the same database is run 2 (ids r2-...), beside run 1. The
    events reported are those this run appended (whoever else writes meanwhile); the read models
    are snapshotted at the end. --json reports the run instead of the tables.

    \b
    Example:
        swarmlog demo --agents 20 --tasks 500 --seed 7
    """
    config = DemoConfig(agents=agents, tasks=tasks, seed=seed, failure_rate=failure_rate, days=days,
                        start=moment(start, "--start"))
    log = open_log(create=True)
    began = time.perf_counter()
    with progress("simulating") as update:
        result = run_demo(log, config, progress=update)
    took = time.perf_counter() - began
    if as_json:
        emit_json({"run": result.run, "prefix": result.prefix, "agents": agents,
                   "tasks": result.tasks, "events": result.events, "commands": result.commands,
                   "refused": result.refused, "start": result.start, "end": result.end,
                   "seconds": round(took, 3)})
        return
    console = make_console()
    console.print(f"demo run {result.run} (ids {result.prefix}…): {agents} agents, {result.tasks} tasks, "
                  f"{result.events} events in {took:.1f}s")
    console.print(f"simulated {result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC; "
                  f"{result.refused} late bids refused (nothing appended for them)")
    agents_state = log.agents
    roster = [render.agent_row(v) for v in sorted(all_agents(agents_state), key=lambda v: v.agent_id)
              if v.agent_id.startswith(result.prefix)]
    runs = [render.task_row(t) for t in all_tasks(log.tasks) if t.task_id.startswith(result.prefix)]
    print_tables(*render.summary_tables(summary_data(log, 60)), *render.demo_tables(roster, runs))
    example = next((r["task_id"] for r in reversed(runs) if r["status"] == "failed"), "ID")
    console.print(f"next: swarmlog task {example}   swarmlog events --type task.failed   "
                  "swarmlog prune --older-than 3d --dry-run")



