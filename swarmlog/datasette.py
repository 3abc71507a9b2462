"""A Datasette metadata file for a swarmlog SQLite file: titles and descriptions for the events
and the read-model views, facets on type, agent and task, and swarmlog's internal tables hidden.

    swarmlog datasette-metadata > metadata.json
    datasette data/swarm.db -m metadata.json
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from domain.errors import StoreError
from store import SQLiteStore
from swarmlog.log import EventLog
from swarmlog.views import read_model_views

_EVENTS = {
    "title": "Events",
    "description": "The audit log, one row per event in the order it was appended (seq). "
                   "`data` is the payload as JSON; rows cannot be changed or deleted here.",
    "sort_desc": "seq",
    "facets": ["event_type", "agent_id", "task_id"],
}
_VIEWS = {
    "swarmlog_tasks": {
        "title": "Tasks",
        "description": "Every task as the read model had it at the newest snapshot (position "
                       "as_of_position): status, winner and winning bid in sats, timings, tool calls.",
        "sort": "first_position",
        "facets": ["status", "agent_id"],
    },
    "swarmlog_agents": {
        "title": "Agents",
        "description": "The agent roster at the newest snapshot: presence, current task, tasks "
                       "won, completed and failed, sats earned, tool calls.",
        "sort": "agent_id",
        "facets": ["presence", "current_task"],
    },
}
#: Tables of SQLite and of sqlite-utils' migrations: nothing a reader of the log needs.
_ALWAYS_HIDDEN = ("_sqlite_migrations", "sqlite_sequence", "sqlite_stat1")


def metadata(log: EventLog) -> dict[str, Any]:
    """The metadata for Datasette of the log's SQLite file (StoreError on PostgreSQL)."""
    if not isinstance(log.store, SQLiteStore) or log.location == ":memory:":
        raise StoreError(f"Datasette opens SQLite files; {log.location} is not one")
    path = Path(log.location)
    with sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True) as conn:
        found = dict(conn.execute("SELECT name, type FROM sqlite_master "
                                  "WHERE type IN ('table', 'view')").fetchall())
    tables: dict[str, Any] = {"event_log": _EVENTS}
    for name in read_model_views(log.projections):
        if name in found:
            tables[name] = _VIEWS[name]
    for name, kind in sorted(found.items()):
        internal = name.startswith("swarmlog_") and kind == "table"
        if internal or name in _ALWAYS_HIDDEN:
            tables[name] = {"hidden": True}
    return {
        "title": f"swarmlog: {path.name}",
        "description": "An event-sourced audit log of an agent swarm. The read-model views "
                       "(Tasks, Agents) are current as of the newest snapshot; "
                       "`swarmlog snapshot` brings them to the head.",
        "databases": {path.stem: {"tables": tables}},
    }
