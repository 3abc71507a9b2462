"""The benchmark suite runs end to end on a tiny log and writes its figures as JSON.

No timing is asserted here (the machine is shared and noisy): only that every operation of the
table was measured against its baseline, and that the JSON says the same as the table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ("batch append", "single-event append", "full rebuild", "start-up without snapshots",
              "start-up from snapshot", "get_task_events p50", "get_task_events p99",
              "get_event_summary(60)", "rebuild: peak RSS", "start-up without snapshots: peak RSS",
              "batch append with the chain", "verify", "prune half", "postgres: batch append",
              "postgres: single-event append", "postgres: full rebuild")

pytest.importorskip("eventsourcing", reason="the peer baseline needs the `dev` or `bench` extra")
pytest.importorskip("psutil", reason="the memory measurement needs the `dev` or `bench` extra")


@pytest.mark.postgres
def test_a_quick_run_prints_the_table_and_writes_the_same_figures_as_json(tmp_path: Path) -> None:
    from tests import pg

    out = tmp_path / "results.json"
    done = subprocess.run(  # its PostgreSQL part on the tests' server
        [sys.executable, "-m", "benchmarks", "--quick", "--events", "2000", "--json", str(out),
         "--workdir", str(tmp_path / "work"), "--postgres", pg.server_url()],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["events"] == 2000 and doc["quick"] is True
    rows = doc["rows"]
    for operation in OPERATIONS:
        assert any(r["operation"].startswith(operation) for r in rows), operation
    for row in rows:
        assert row["verdict"] in {"pass", "MISS", "info", "gap"}
        if row["verdict"] != "gap":
            assert row["swarmlog"] > 0 and row["baseline"] > 0, row
            assert row["ratio"] == pytest.approx(row["swarmlog"] / row["baseline"])
        assert row["operation"] in done.stdout  # the table shows what the JSON holds
    assert {p["call"] for p in doc["plans"]} >= {"query(task_id) [get_task_events]",
                                                 "count_by_type(since=1h) [get_event_summary]"}
    for plan in doc["plans"]:  # a read left unconsumed runs no SQL, and its plan would be empty
        assert plan["statements"], plan["call"]


def test_the_scaling_run_measures_every_row_at_every_size(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "2000", "4000", "--json", str(out),
         "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert [r["events"] for r in results] == [2000, 4000]
    from benchmarks.scaling import ROWS

    for label, key, _, _ in ROWS:
        assert all(r[key] > 0 for r in results), key
        assert label in done.stdout
