"""A database the seed's ADR 017 module wrote — every type it knew and some it did not, empty
sources, payloads that fit no schema — opens, lists, exports, folds and verifies, every row
accounted for and none fatal."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from domain.events import EventType
from projections.models import counts
from swarmlog.cli import cli
from swarmlog.log import EventLog

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _seed_rows() -> list[tuple[str, str, str, str | None, str | None, object, int]]:
    """(event type, source, task, agent, data, minute) as the seed's callers logged them."""
    rows: list[tuple[str, str, str, str | None, str | None, object, int]] = [
        (kind.value, "coordinator", "t1" if kind.value.startswith("task") else None,
         "a1" if kind.value.startswith(("agent", "tool", "timmy")) else None,
         {"n": n}, n) for n, kind in enumerate(EventType)]
    rows += [
        ("task.created", "", None, None, {"description": "no task id, no source"}, 30),
        ("bid.submitted", "persona-forge", "t1", "a1", {"bid_sats": 12.5}, 31),
        ("task.assigned", "coordinator", "t1", "a1", {"bid_sats": -1}, 32),
        ("system.info", "upgrade_queue", None, None, {"message": "nul\x00inside"}, 33),
        ("system.warning", "cron", None, None, {"ratio": float("nan")}, 34),
        ("agent.exploded", "chaos", None, "a2", {"why": "a type swarmlog does not know"}, 35),
        ("system.info", "cron", None, None, [1, 2, 3], 36),
    ]
    return rows


@pytest.fixture
def seed_db(tmp_path: Path) -> tuple[Path, int, int]:
    """The seed's file, written as its module wrote it; (path, rows, rows that do not conform)."""
    path = tmp_path / "data" / "swarm.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute("""CREATE TABLE IF NOT EXISTS event_log (id TEXT PRIMARY KEY,
        event_type TEXT NOT NULL, source TEXT NOT NULL, task_id TEXT, agent_id TEXT, data TEXT,
        timestamp TEXT NOT NULL)""")
    for index in ("task ON event_log(task_id)", "agent ON event_log(agent_id)",
                  "type ON event_log(event_type)", "time ON event_log(timestamp)"):
        conn.execute(f"CREATE INDEX IF NOT EXISTS idx_event_log_{index}")
    conn.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT)")  # the host's own
    conn.execute("INSERT INTO tasks VALUES ('t1', 'completed')")
    rows = _seed_rows()
    for kind, source, task, agent, data, minute in rows:
        stamp = (START + timedelta(minutes=minute)).isoformat()  # no fraction, as the seed's
        conn.execute("INSERT INTO event_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (str(uuid.uuid4()), kind, source, task, agent,
                      json.dumps(data) if data else None, stamp))
    conn.commit()
    conn.close()
    return path, len(rows), 7


def test_every_row_is_listed_as_stored_and_the_odd_ones_flagged(
        seed_db: tuple[Path, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmlog import event_log

    path, total, odd = seed_db
    monkeypatch.setattr(event_log, "DB_PATH", path)
    listed = event_log.list_events(limit=1000)
    assert len(listed) == total
    flagged = [e for e in listed if not e.conforms]
    assert len(flagged) == odd
    assert all(e.problem for e in flagged) and all(e.problem is None for e in listed if e.conforms)
    unknown = next(e for e in listed if e.event_type == "agent.exploded")
    assert unknown.data == json.dumps({"why": "a type swarmlog does not know"})
    assert {e.source for e in flagged} >= {"", "persona-forge", "chaos"}
    assert sqlite3.connect(path).execute("SELECT * FROM tasks").fetchall() == [("t1", "completed")]


def test_the_read_models_fold_every_row_and_count_the_odd_ones_as_anomalies(
        seed_db: tuple[Path, int, int]) -> None:
    path, total, odd = seed_db
    with EventLog(path) as log:
        models = log.models
        summary = counts(models)
        assert summary["total"] == total
        assert summary["by_type"]["agent.exploded"] == 1
        assert models.summary.anomaly_count == odd
        assert {a.position for a in models.summary.anomalies} == {
            r.position for r in log.read() if not r.conforms}
        assert log.rebuild() == total and counts(log.models) == summary


def test_export_tail_and_verify_account_for_every_row(seed_db: tuple[Path, int, int]) -> None:
    path, total, odd = seed_db
    runner = CliRunner()
    refused = runner.invoke(cli, ["--db", str(path), "export"])  # a read upgrades nothing
    assert refused.exit_code == 2 and "has not upgraded yet" in refused.stderr, refused.output
    assert runner.invoke(cli, ["--db", str(path), "snapshot"]).exit_code == 0  # a write does
    exported = runner.invoke(cli, ["--db", str(path), "export"])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(lines) == total and sum(1 for line in lines if not line["conforms"]) == odd
    nan = next(line for line in lines if line["event_type"] == "system.warning" and not line["conforms"])
    assert nan["data_text"] == json.dumps({"ratio": float("nan")})  # not JSON: kept as text
    tail = runner.invoke(cli, ["--db", str(path), "tail", "-n", str(total), "--json"])
    assert tail.exit_code == 0 and len(tail.stdout.splitlines()) == total
    events = runner.invoke(cli, ["--db", str(path), "events", "--limit", "0"])
    assert events.exit_code == 0, events.output
    verified = runner.invoke(cli, ["--db", str(path), "verify"])
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.count("note:") == odd
    assert f"{odd} stored flagged as not conforming" in verified.stdout
