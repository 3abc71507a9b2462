"""The listings as operators use them: one event shape in every format (a table, --json, --nl,
--csv, --tsv), the filters (repeatable --type with prefixes, --source, --where on payload fields)
on `events` and `tail -f`, `agent ID`, and tables on narrow terminals."""

from __future__ import annotations

import csv
import io
import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from swarmlog import render
from swarmlog.log import EventLog
from tests.e2e.test_cli import ROOT, as_json, ok, refused, run


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("listings") / "swarm.db"
    ok("demo", "--agents", "6", "--tasks", "40", "--days", "2", "--seed", "11", db=path)
    with EventLog(path) as log:  # a second source, and a payload that is not a bid
        log.log("system.info", "monitor", data={"message": "disk at 70%", "percent": 70})
    return path


def lines_of(*args: str, db: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(*args, "--nl", db=db).stdout.splitlines()]


def table_of(text: str, delimiter: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


# -- one shape in every format --------------------------------------------------------------------


def test_events_nl_json_csv_and_tsv_carry_the_same_events_as_export(demo_db: Path) -> None:
    exported = [json.loads(line) for line in ok("export", db=demo_db).stdout.splitlines()]
    newest = exported[-20:]
    assert lines_of("events", "--limit", "20", db=demo_db) == newest
    assert as_json("events", "--limit", "20", db=demo_db) == newest
    assert lines_of("events", "--limit", "0", db=demo_db) == exported
    for fmt, delimiter in (("--csv", ","), ("--tsv", "\t")):
        records = table_of(ok("events", "--limit", "20", fmt, db=demo_db).stdout, delimiter)
        assert list(records[0]) == list(render.EVENT_COLUMNS)
        assert [int(r["position"]) for r in records] == [e["position"] for e in newest]
        assert [json.loads(r["data"]) if r["data"] else None for r in records] == \
            [e["data"] for e in newest]
        assert {r["conforms"] for r in records} == {"true"}
        assert [r["task_id"] or None for r in records] == [e["task_id"] for e in newest]


def test_the_streamed_json_array_is_the_indented_json_of_the_rows(demo_db: Path) -> None:
    shown = ok("events", "--limit", "5", "--json", db=demo_db).stdout
    assert shown == render.dumps(json.loads(shown)) + "\n"
    assert ok("events", "--since", "2020-01-01", "--until", "2020-01-02", "--json",
              db=demo_db).stdout == "[]\n"


def test_agents_in_every_format_are_the_same_roster(demo_db: Path) -> None:
    roster = as_json("agents", db=demo_db)
    assert len(roster) == 6 and lines_of("agents", db=demo_db) == roster
    records = table_of(ok("agents", "--csv", db=demo_db).stdout, ",")
    assert [r["agent_id"] for r in records] == [a["agent_id"] for a in roster]
    assert [int(r["sats_earned"]) for r in records] == [a["sats_earned"] for a in roster]
    assert [json.loads(r["capabilities"]) for r in records] == [a["capabilities"] for a in roster]
    assert table_of(ok("agents", "--tsv", db=demo_db).stdout, "\t") == records


# -- filters --------------------------------------------------------------------------------------


def test_type_is_repeatable_and_takes_a_prefix(demo_db: Path) -> None:
    everything = lines_of("events", "--limit", "0", db=demo_db)
    both = lines_of("events", "--limit", "0", "--type", "task.failed", "--type", "task.completed",
                    db=demo_db)
    assert {e["event_type"] for e in both} == {"task.failed", "task.completed"}
    assert both == [e for e in everything if e["event_type"] in ("task.failed", "task.completed")]
    tasks = lines_of("events", "--limit", "0", "--type", "task.*", db=demo_db)
    assert tasks == [e for e in everything if e["event_type"].startswith("task.")]
    assert {e["event_type"] for e in tasks} >= {"task.created", "task.assigned", "task.completed"}


def test_an_unknown_type_or_prefix_is_refused_with_a_suggestion(demo_db: Path) -> None:
    refused(run("events", "--type", "task.faild", db=demo_db), "did you mean 'task.failed'")
    refused(run("events", "--type", "job.*", db=demo_db), "'job.*' matches no event type")


def test_source_keeps_the_events_of_one_source(demo_db: Path) -> None:
    (info,) = lines_of("events", "--source", "monitor", db=demo_db)
    assert info["event_type"] == "system.info" and info["data"]["percent"] == 70
    assert len(lines_of("events", "--source", "coordinator", "--limit", "0", db=demo_db)) == \
        len(lines_of("events", "--limit", "0", db=demo_db)) - 1


def test_where_selects_by_payload_fields(demo_db: Path) -> None:
    everything = lines_of("events", "--limit", "0", db=demo_db)
    bids = [e for e in everything if (e["data"] or {}).get("bid_sats") is not None]
    cut = sorted(e["data"]["bid_sats"] for e in bids)[len(bids) // 2]
    above = lines_of("events", "--limit", "0", "--where", f"data.bid_sats>{cut}", db=demo_db)
    assert above and above == [e for e in bids if e["data"]["bid_sats"] > cut]
    exact = lines_of("events", "--limit", "0", "--where", f"data.bid_sats={cut}", db=demo_db)
    assert exact and {e["data"]["bid_sats"] for e in exact} == {cut}
    other = lines_of("events", "--limit", "0", "--where", f"data.bid_sats!={cut}", db=demo_db)
    assert len(exact) + len(other) == len(everything)
    a_bid = lines_of("events", "--limit", "0", "--type", "bid.submitted", "--where",
                     f"data.bid_sats={cut}", "--where", f"data.bid_sats<{cut + 1}", db=demo_db)
    assert a_bid == [e for e in exact if e["event_type"] == "bid.submitted"]
    assert lines_of("events", "--where", "data.message=disk at 70%", db=demo_db)[0]["source"] == \
        "monitor"


@pytest.mark.parametrize("where", ["bid_sats>3", "data.bid_sats>ten", "data.=3", "data.a'b=1"])
def test_a_malformed_where_is_a_one_line_error(demo_db: Path, where: str) -> None:
    refused(run("events", "--where", where, db=demo_db), "--where")


def test_tail_takes_the_filters_of_events(demo_db: Path) -> None:
    shown = [json.loads(line) for line in
             ok("tail", "-n", "3", "--json", "--type", "bid.submitted", db=demo_db).stdout.splitlines()]
    assert len(shown) == 3 and {e["event_type"] for e in shown} == {"bid.submitted"}
    assert shown == lines_of("events", "--type", "bid.submitted", "--limit", "3", db=demo_db)
    records = table_of(ok("tail", "-n", "2", "--csv", db=demo_db).stdout, ",")
    assert [int(r["position"]) for r in records] == \
        [e["position"] for e in lines_of("events", "--limit", "2", db=demo_db)]


def test_tail_follow_prints_only_the_matching_events_other_processes_append(
        demo_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    shutil.copy(demo_db, db)
    tail = subprocess.Popen([sys.executable, "-m", "swarmlog.cli", "tail", "-f", "-n", "1", "--nl",
                             "--source", "monitor", "--where", "data.percent>2", "--db", str(db)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in tail.stdout or ()],
                     daemon=True).start()
    try:
        assert json.loads(lines.get(timeout=30))["data"]["percent"] == 70  # the newest match
        with EventLog(db) as log:
            for percent in range(5):
                log.log("system.info", "monitor", data={"message": "disk", "percent": percent})
                log.log("system.info", "elsewhere", data={"message": "disk", "percent": 99})
        followed = [json.loads(lines.get(timeout=30)) for _ in range(2)]
    finally:
        tail.send_signal(signal.SIGINT)
        code = tail.wait(timeout=30)
    assert [e["data"]["percent"] for e in followed] == [3, 4]
    assert {e["source"] for e in followed} == {"monitor"}
    assert lines.empty() and code == 0


# -- agent ID -------------------------------------------------------------------------------------


def test_agent_shows_its_state_then_its_newest_events(demo_db: Path) -> None:
    roster = as_json("agents", db=demo_db)
    busiest = max(roster, key=lambda a: a["tasks_won"])
    shown = as_json("agent", busiest["agent_id"], "--limit", "5", db=demo_db)
    assert shown["agent"] == busiest
    assert shown["events"] == lines_of("events", "--agent", busiest["agent_id"], "--limit", "5",
                                       db=demo_db)
    table = ok("agent", busiest["agent_id"], db=demo_db).stdout
    assert f"agent {busiest['agent_id']}" in table and "sats_earned" in table
    assert "its newest" in table


def test_an_unknown_agent_is_an_error(demo_db: Path) -> None:
    refused(run("agent", "nobody", db=demo_db), "no agent 'nobody'")


# -- narrow terminals -----------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [60, 80])
def test_a_narrow_roster_keeps_every_agent_id_whole(demo_db: Path, columns: int) -> None:
    roster = as_json("agents", db=demo_db)
    shown = run("agents", db=demo_db, env={"COLUMNS": str(columns)}).stdout
    assert roster and all(f"│ {a['agent_id']} │" in shown for a in roster), shown


@pytest.mark.parametrize("columns", [40, 60, 80])
def test_a_narrow_table_keeps_every_position_and_says_what_it_left_out(demo_db: Path,
                                                                       columns: int) -> None:
    newest = lines_of("events", "--limit", "8", db=demo_db)
    result = run("events", "--limit", "8", db=demo_db, env={"COLUMNS": str(columns)})
    shown = result.stdout.splitlines()
    assert all(len(line) <= columns for line in shown)
    for event in newest:
        assert any(f"│ {event['position']} │" in line for line in shown), event["position"]
    if columns < 80:
        assert "left out to fit" in result.stdout
