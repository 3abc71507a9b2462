"""Commands for other tools: metrics (Prometheus), datasette-metadata."""

from __future__ import annotations

import click

from swarmlog.cli.app import cli, db_option, emit_json, json_option, open_log
from swarmlog.datasette import metadata
from swarmlog.metrics import collect, exposition


@cli.command()
@json_option
@db_option
def metrics(as_json: bool) -> None:
    """Print the log's metrics in Prometheus' text format: events stored by type, the head
    position, read-model lag, the last prune, the database's size (a web view serves the same
    at /metrics). --json gives the same samples as JSON.

    \b
    Example:
        swarmlog metrics > /var/lib/node_exporter/textfile/swarmlog.prom
    """
    log = open_log()
    if as_json:
        emit_json([{"name": s.name, "labels": s.labels, "value": s.value, "type": m.type}
                   for m in collect(log) for s in m.samples])
    else:
        click.echo(exposition(log), nl=False)


@cli.command("datasette-metadata")
@json_option
@db_option
def datasette_metadata(as_json: bool) -> None:
    """Print a Datasette metadata file for the log's SQLite file: titled events and read-model
    views (swarmlog_tasks, swarmlog_agents), facets on type, agent and task, and swarmlog's
    internal tables hidden. It is JSON with or without --json.

    \b
    Example:
        swarmlog datasette-metadata > metadata.json && datasette data/swarm.db -m metadata.json
    """
    emit_json(metadata(open_log()))
