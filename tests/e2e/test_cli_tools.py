"""The log for other tools: SQL views of the read models, Datasette with the metadata file
`swarmlog datasette-metadata` writes, and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from projections.agents import all_agents
from projections.tasks import all_tasks
from store import stored_count
from swarmlog import render
from swarmlog.log import EventLog
from swarmlog.metrics import exposition
from tests.e2e.test_cli import as_json, ok, refused, run


def view(path: Path, name: str, key: str) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return {row[key]: dict(row) for row in conn.execute(f"SELECT * FROM {name}")}


def expected_tasks(log: EventLog) -> dict[str, dict[str, Any]]:
    return {t.task_id: {"status": t.status.value if t.status else None, "agent_id": t.agent_id,
                        "winning_bid": t.winning_bid, "tool_calls": t.tool_calls,
                        "duration": None if t.duration is None else t.duration.total_seconds()}
            for t in all_tasks(log.tasks)}


class Near:
    """A duration the view computed from julianday (a double: right to a few microseconds,
    then rounded to the millisecond)."""

    def __init__(self, value: float | None) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if self.value is None or other is None:
            return self.value is other
        return isinstance(other, float) and abs(self.value - other) <= 0.001

    def __repr__(self) -> str:
        return f"~{self.value}"


def shown_tasks(path: Path) -> dict[str, dict[str, Any]]:
    return {k: {**{c: v[c] for c in ("status", "agent_id", "winning_bid", "tool_calls")},
                "duration": Near(v["duration_seconds"])}
            for k, v in view(path, "swarmlog_tasks", "task_id").items()}


# -- SQL views ------------------------------------------------------------------------------------


def test_the_views_show_the_read_models_as_of_the_newest_snapshot(db: Path) -> None:
    with EventLog(db) as log:
        assert shown_tasks(db) == expected_tasks(log)
        agents = view(db, "swarmlog_agents", "agent_id")
        assert {a: (v["presence"], v["sats_earned"], json.loads(v["capabilities"]))
                for a, v in agents.items()} == \
            {a.agent_id: (render.agent_row(a)["presence"], a.sats_earned, list(a.capabilities))
             for a in all_agents(log.agents)}
        assert {v["as_of_position"] for v in agents.values()} == {log.store.head()}


def test_the_views_follow_the_snapshots_through_a_prune_and_new_events(db: Path) -> None:
    ok("prune", "--older-than", "1d", db=db)  # closed tasks now live as snapshot items
    with EventLog(db) as log:
        assert shown_tasks(db) == expected_tasks(log)
        for n in range(3):
            log.log("task.created", "ops", task_id=f"late-{n}", data={"description": "late"})
    assert "late-0" not in shown_tasks(db)  # not until the next snapshot
    ok("snapshot", db=db)
    with EventLog(db) as log:
        assert shown_tasks(db) == expected_tasks(log)
    assert shown_tasks(db)["late-2"]["status"] == "created"


def test_the_views_are_not_the_host_projects_tasks_and_agents(db: Path) -> None:
    with sqlite3.connect(db) as conn:  # a host's own tables in the same file (the seed's)
        conn.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, title TEXT)")
        conn.execute("CREATE TABLE agents (id TEXT PRIMARY KEY, name TEXT)")
    ok("snapshot", db=db)
    with sqlite3.connect(db) as conn:
        kinds = dict(conn.execute("SELECT name, type FROM sqlite_master"))
    assert kinds["tasks"] == kinds["agents"] == "table"
    assert kinds["swarmlog_tasks"] == kinds["swarmlog_agents"] == "view"


# -- Datasette ------------------------------------------------------------------------------------


def test_datasette_opens_the_file_with_the_metadata(db: Path) -> None:
    from datasette.app import Datasette

    metadata = as_json("datasette-metadata", db=db)
    assert ok("datasette-metadata", db=db).stdout == ok("datasette-metadata", "--json", db=db).stdout
    with EventLog(db) as log:
        count, tasks = stored_count(log.store), len(all_tasks(log.tasks))

    async def browse() -> dict[str, Any]:
        datasette = Datasette([str(db)], metadata=metadata)
        await datasette.invoke_startup()
        pages = {}
        for name, url in (("database", "/swarm.json"),
                          ("events", "/swarm/event_log.json?_size=1"),
                          ("tasks", "/swarm/swarmlog_tasks.json?_size=1"),
                          ("about", "/-/metadata.json")):
            response = await datasette.client.get(url)
            assert response.status_code == 200, (url, response.text)
            pages[name] = response.json()
        return pages

    pages = asyncio.run(browse())
    listed = {t["name"]: t["hidden"] for t in pages["database"]["tables"]}
    assert listed["event_log"] is False
    assert {name for name, hidden in listed.items() if hidden} == \
        {n for n in listed if n.startswith("swarmlog_")} | {"_sqlite_migrations", "sqlite_sequence"}
    assert {"swarmlog_tasks", "swarmlog_agents"} <= {v["name"] for v in pages["database"]["views"]}
    events = pages["events"]
    assert events["filtered_table_rows_count"] == count
    assert set(events["facet_results"]) == {"event_type", "agent_id", "task_id"}
    assert pages["tasks"]["filtered_table_rows_count"] == tasks
    assert set(pages["tasks"]["facet_results"]) == {"status", "agent_id"}
    assert pages["about"]["databases"]["swarm"]["tables"]["event_log"]["title"] == "Events"


def test_datasette_metadata_needs_an_sqlite_file(tmp_path: Path) -> None:
    refused(run("datasette-metadata", db=tmp_path / "none.db"), "no swarmlog database")


# -- metrics --------------------------------------------------------------------------------------


def test_metrics_are_prometheus_text_of_the_log(db: Path) -> None:
    ok("prune", "--older-than", "1d", db=db)
    families = {f.name: f for f in text_string_to_metric_families(ok("metrics", db=db).stdout)}
    with EventLog(db) as log:
        status = log.status()
        by_type = log.store.count_by_type()
    stored = {s.labels["type"]: s.value for s in families["swarmlog_events_stored"].samples}
    assert stored == by_type and sum(stored.values()) == status["count"]
    assert families["swarmlog_head_position"].samples[0].value == status["head"]
    assert families["swarmlog_database_size_bytes"].samples[0].value == status["size_bytes"]
    (prune,) = status["prunes"]
    assert families["swarmlog_pruned_events"].samples[0].value == prune["removed"]
    assert families["swarmlog_prunes"].type == "counter"
    assert families["swarmlog_last_prune_timestamp_seconds"].samples[0].value > 0
    (lag,) = families["swarmlog_snapshot_lag_events"].samples
    assert lag.labels == {"model": "read_models"} and lag.value == 0
    assert "swarmlog_read_model_lag_events" not in families  # nothing folded in that process
    samples = as_json("metrics", db=db)
    assert {s["name"] for s in samples} >= {"swarmlog_events_stored", "swarmlog_head_position"}


def test_a_long_running_log_reports_its_live_lag(db: Path) -> None:
    with EventLog(db) as log, EventLog(db) as writer:
        log.catch_up()
        for n in range(4):
            writer.log("system.info", "ops", data={"message": f"n{n}"})
        families = {f.name: f for f in text_string_to_metric_families(exposition(log))}
        (live,) = families["swarmlog_read_model_lag_events"].samples
        assert live.value == 4
        assert families["swarmlog_snapshot_lag_events"].samples[0].value == 4
        log.catch_up()
        families = {f.name: f for f in text_string_to_metric_families(exposition(log))}
        assert families["swarmlog_read_model_lag_events"].samples[0].value == 0
