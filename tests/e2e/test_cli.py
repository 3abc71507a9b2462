"""The `swarmlog` command, driven as a user would: click's CliRunner, and real processes for
`tail -f`. Errors are one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import gzip
import json
import queue
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from store import stored_count
from swarmlog.cli import cli
from swarmlog.log import EventLog

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, db: Path | None = None, input: str | None = None,
        env: dict[str, str] | None = None) -> Result:
    argv = [*args, *(["--db", str(db)] if db is not None else [])]
    return CliRunner().invoke(cli, argv, input=input, env=env, catch_exceptions=False)


def ok(*args: str, db: Path | None = None) -> Result:
    result = run(*args, db=db)
    assert result.exit_code == 0, result.output
    return result


def as_json(*args: str, db: Path) -> Any:
    return json.loads(ok(*args, "--json", db=db).stdout)


def refused(result: Result, *needles: str) -> None:
    """Exit code 2, one line on stderr saying what is wrong, and no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]


def _read_models(path: Path) -> dict[str, str]:
    with EventLog(path) as log:
        log.catch_up()
        return {p.name: p.dump(log.runner.state(p.name)) for p in log.projections}


# -- help and errors ------------------------------------------------------------------------------


def test_every_command_has_help_with_an_example() -> None:
    assert set(cli.commands) >= {"events", "tail", "task", "agents", "summary", "rebuild", "snapshot",
                                 "export", "import", "status", "prune", "demo"}
    for name, command in cli.commands.items():
        assert command.help and command.help.strip(), name
        shown = ok(name, "--help").stdout
        assert "Example:" in shown and f"swarmlog {name}" in shown, name
    assert "Example:" in ok("--help").stdout


def test_version() -> None:
    assert ok("--version").stdout.startswith("swarmlog, version ")


@pytest.mark.parametrize("args", [["events"], ["tail"], ["task", "t1"], ["agents"], ["summary"],
                                  ["status"], ["rebuild"], ["snapshot"], ["export"],
                                  ["prune", "--older-than", "1d"]], ids=lambda a: a[0])
def test_read_commands_on_a_missing_database_say_so_and_create_nothing(tmp_path: Path,
                                                                      args: list[str]) -> None:
    missing = tmp_path / "nowhere.db"
    refused(run(*args, db=missing), f"no swarmlog database at {missing}")
    assert not missing.exists()


def test_the_database_comes_from_db_or_swarmlog_db(demo_db: Path, tmp_path: Path) -> None:
    result = run("summary", "--json", env={"SWARMLOG_DB": str(demo_db)})
    assert result.exit_code == 0 and json.loads(result.stdout)["total"] > 0
    before_the_command = run("--db", str(demo_db), "summary", "--json")
    assert before_the_command.exit_code == 0 and before_the_command.stdout == result.stdout
    refused(run("summary", env={"SWARMLOG_DB": str(tmp_path / "other.db")}), "other.db")


@pytest.mark.parametrize("args", [["events", "--since", "yesterday"], ["events", "--until", "2h ago"],
                                  ["export", "--since", "3x"], ["prune", "--older-than", "soon"],
                                  ["prune"], ["events", "--type", "task.exploded"],
                                  ["events", "--limit", "-1"]], ids=" ".join)
def test_malformed_options_are_one_line_errors(demo_db: Path, args: list[str]) -> None:
    refused(run(*args, db=demo_db))


# -- reading --------------------------------------------------------------------------------------


def test_events_lists_the_newest_events_oldest_first(demo_db: Path) -> None:
    rows = as_json("events", "--limit", "7", db=demo_db)
    with EventLog(demo_db) as log:
        head = log.store.head()
    assert [r["position"] for r in rows] == list(range(head - 6, head + 1))
    table = ok("events", "--limit", "7", db=demo_db).stdout
    assert "7 events" in table and rows[-1]["event_type"] in table


def test_events_filters_by_task_agent_type_and_time(demo_db: Path) -> None:
    failed = as_json("events", "--type", "task.failed", "--limit", "0", db=demo_db)
    assert failed and {r["event_type"] for r in failed} == {"task.failed"}
    task_id = failed[0]["task_id"]
    timeline = as_json("events", "--task", task_id, db=demo_db)
    assert timeline[0]["event_type"] == "task.created" and {r["task_id"] for r in timeline} == {task_id}
    agent_id = as_json("events", "--type", "task.assigned", "--limit", "1", db=demo_db)[0]["agent_id"]
    assert {r["agent_id"] for r in as_json("events", "--agent", agent_id, db=demo_db)} == {agent_id}
    everything = as_json("events", "--limit", "0", db=demo_db)
    day = as_json("events", "--since", "1d", "--limit", "0", db=demo_db)
    older = as_json("events", "--until", "1d", "--limit", "0", db=demo_db)
    assert 0 < len(day) < len(everything) and len(day) + len(older) == len(everything)
    assert as_json("events", "--since", "2020-01-01", "--until", "2020-01-02", db=demo_db) == []


def test_tail_prints_the_newest_events_one_per_line(demo_db: Path) -> None:
    lines = ok("tail", "-n", "3", db=demo_db).stdout.splitlines()
    assert len(lines) == 3 and all("task=" in line for line in lines)
    records = [json.loads(line) for line in ok("tail", "-n", "2", "--json", db=demo_db).stdout.splitlines()]
    assert records[0]["position"] + 1 == records[1]["position"]


def tail_follow(db: Path) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """`swarmlog tail -f -n 1 --json` on `db` in a process of its own, and a queue of the lines
    it writes (read in a thread, so that a test can wait for each with a timeout)."""
    tail = subprocess.Popen([sys.executable, "-m", "swarmlog.cli", "tail", "-f", "-n", "1", "--json",
                             "--db", str(db)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in tail.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return tail, lines


def test_tail_follow_sees_events_another_process_appends_and_exits_on_ctrl_c(db: Path) -> None:
    tail, lines = tail_follow(db)
    try:
        newest = json.loads(lines.get(timeout=30))
        subprocess.run([sys.executable, "-m", "tests.store.writer", str(db), "other", "2", "3"],
                       cwd=ROOT, check=True, timeout=60)
        followed = [json.loads(lines.get(timeout=30)) for _ in range(6)]
    finally:
        tail.send_signal(signal.SIGINT)
        code = tail.wait(timeout=30)
    assert [r["position"] for r in followed] == list(range(newest["position"] + 1, newest["position"] + 7))
    assert {r["source"] for r in followed} == {"other"}
    assert code == 0 and "Traceback" not in (tail.stderr.read() if tail.stderr else "")


def test_task_shows_its_state_and_timeline(demo_db: Path) -> None:
    task_id = as_json("events", "--type", "task.completed", "--limit", "1", db=demo_db)[0]["task_id"]
    shown = as_json("task", task_id, db=demo_db)
    assert shown["task"]["status"] == "completed" and shown["task"]["winning_bid"] > 0
    kinds = [e["event_type"] for e in shown["timeline"]]
    assert kinds[:2] == ["task.created", "task.bidding"] and kinds[-1] == "task.completed"
    table = ok("task", task_id, db=demo_db).stdout
    assert "completed" in table and "timeline" in table and "auction.closed" in table


def test_an_unknown_task_is_an_error(demo_db: Path) -> None:
    refused(run("task", "no-such-task", db=demo_db), "no task 'no-such-task'")


def test_agents_lists_the_roster(demo_db: Path) -> None:
    roster = as_json("agents", db=demo_db)
    assert len(roster) == 6 and {a["agent_id"] for a in roster} == {f"r1-a0{i}" for i in range(1, 7)}
    online = as_json("agents", "--online", db=demo_db)
    assert {a["agent_id"] for a in online} == {a["agent_id"] for a in roster if a["presence"] == "online"}
    table = ok("agents", db=demo_db).stdout
    assert all(a["agent_id"] in table for a in roster)


def test_summary_counts_agree_with_the_log(demo_db: Path) -> None:
    summary = as_json("summary", "--minutes", "120", db=demo_db)
    with EventLog(demo_db) as log:
        assert summary["total"] == stored_count(log.store)
        assert {k: n for k, n in summary["by_type"].items() if n} == log.store.count_by_type()
    assert sum(summary["tasks_by_status"].values()) == 60  # the demo's --tasks
    assert summary["window_minutes"] == 120 and isinstance(summary["last_window"], dict)
    assert "tasks completed" in ok("summary", db=demo_db).stdout


def test_status_reports_the_log(demo_db: Path, tmp_path: Path) -> None:
    status = as_json("status", db=demo_db)
    with EventLog(demo_db) as log:
        assert (status["head"], status["count"]) == (log.store.head(), stored_count(log.store))
    assert status["size_bytes"] > 0 and set(status["projections"]) == {"read_models"}
    assert "status" in ok("status", db=demo_db).stdout
    copy = tmp_path / "copy.db"
    with EventLog(demo_db) as log, EventLog(copy) as target:
        target.append([r.event for r in log.read()])
        target.prune(older_than=timedelta(days=1))
    pruned = as_json("status", db=copy)
    (prune,) = pruned["prunes"]
    assert pruned["count"] == pruned["head"] - prune["removed"] and prune["first"] == 1
    for model in pruned["projections"].values():  # from the prune's snapshots: what is left
        assert model["snapshot_position"] == prune["last"] and model["to_fold"] == pruned["count"]
        assert model["folded"] is False and model["lag"] is None


# -- maintaining ----------------------------------------------------------------------------------


def test_rebuild_and_snapshot_keep_the_read_models(db: Path) -> None:
    before = _read_models(db)
    assert "rebuilt the read models" in ok("rebuild", db=db).stdout
    assert "saved 1 snapshot" in ok("snapshot", db=db).stdout  # the one read-models projection
    assert _read_models(db) == before


def test_prune_dry_run_then_prune_with_archive_keeps_the_read_models(db: Path, tmp_path: Path) -> None:
    before = _read_models(db)
    summary = as_json("summary", db=db)
    dry = as_json("prune", "--older-than", "1d", "--dry-run", db=db)
    assert dry["removed"] > 0 and dry["dry_run"] is True
    assert as_json("summary", db=db) == summary
    archive = tmp_path / "archive"
    done = ok("prune", "--older-than", "1d", "--archive", str(archive), db=db).stdout
    assert f"pruned {dry['removed']} events" in done
    assert len(list(archive.iterdir())) == 1
    assert _read_models(db) == before
    assert as_json("summary", db=db) == summary
    assert "nothing to prune" in ok("prune", "--older-than", "1d", db=db).stdout


def test_export_then_import_into_an_empty_database_gives_identical_read_models(
        demo_db: Path, tmp_path: Path) -> None:
    exported = tmp_path / "events.jsonl"
    exported.write_text(ok("export", db=demo_db).stdout)
    copy = tmp_path / "copy.db"
    with EventLog(demo_db) as log:
        count = stored_count(log.store)
    assert f"imported {count} events" in ok("import", str(exported), db=copy).stdout
    assert _read_models(copy) == _read_models(demo_db)
    again = ok("import", str(exported), db=copy).stdout
    assert f"imported 0 events from {exported} ({count} were already in the log)" in again
    with EventLog(copy) as log:
        assert stored_count(log.store) == count


def test_export_since_exports_only_recent_events(demo_db: Path) -> None:
    recent = ok("export", "--since", "1d", db=demo_db).stdout.splitlines()
    everything = ok("export", db=demo_db).stdout.splitlines()
    assert 0 < len(recent) < len(everything) and recent == everything[-len(recent):]


def test_import_reads_standard_input(demo_db: Path, tmp_path: Path) -> None:
    lines = ok("export", db=demo_db).stdout
    copy = tmp_path / "stdin.db"
    result = run("import", "-", db=copy, input=lines)
    assert result.exit_code == 0 and "from <stdin>" in result.stdout


@pytest.mark.parametrize(("bad", "needle"), [
    ('{"not": "an event"', "not JSON"),
    ('["a list"]', "not an object"),
    ('{"id": "x", "event_type": "task.exploded", "source": "s", "timestamp": "2025-01-01T00:00:00+00:00"}',
     "event_type"),
    ('{"id": "x", "event_type": "bid.submitted", "source": "s", "timestamp": "2025-01-01T00:00:00+00:00",'
     ' "data": {"bid_sats": -5}}', "data.bid_sats"),
    ('{"id": "x", "event_type": "task.created", "source": "s", "timestamp": "2025-01-01T00:00:00"}',
     "timestamp"),
    ('{"event_type": "task.created", "source": "s", "timestamp": "2025-01-01T00:00:00+00:00"}', "missing id"),
    ('{"id": "x", "event_type": "task.created", "source": "s", "timestamp": "2025-01-01T00:00:00+00:00",'
     ' "colour": "red"}', "unknown keys colour"),
])
def test_a_bad_line_is_reported_with_its_line_number_and_nothing_is_stored(
        demo_db: Path, tmp_path: Path, bad: str, needle: str) -> None:
    good = ok("export", db=demo_db).stdout.splitlines()[:3]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([*good, "", bad, *good]) + "\n")
    target = tmp_path / "target.db"
    refused(run("import", str(path), db=target), f"{path} line 5", needle)
    assert not target.exists()


def test_importing_a_missing_file_is_an_error(tmp_path: Path) -> None:
    refused(run("import", str(tmp_path / "none.jsonl"), db=tmp_path / "x.db"), "no such file")


def test_export_lines_events_json_and_tail_json_are_one_shape(demo_db: Path) -> None:
    exported = [json.loads(line) for line in ok("export", db=demo_db).stdout.splitlines()]
    listed = as_json("events", "--limit", "3", db=demo_db)
    tailed = [json.loads(line) for line in ok("tail", "-n", "3", "--json", db=demo_db).stdout.splitlines()]
    assert listed == tailed == exported[-3:]
    assert set(listed[0]) == {"position", "id", "event_type", "source", "task_id", "agent_id",
                              "data", "timestamp", "stream_id", "stream_version", "schema_version",
                              "conforms", "hash"}


def test_a_line_repeating_an_earlier_one_is_imported_once_and_reported(demo_db: Path,
                                                                        tmp_path: Path) -> None:
    good = ok("export", db=demo_db).stdout.splitlines()[:3]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([*good, good[1], good[1]]) + "\n")
    copy = tmp_path / "copy.db"
    shown = ok("import", str(path), db=copy).stdout
    assert f"imported 3 events from {path} (2 repeated an earlier line)" in shown
    with EventLog(copy) as log:
        assert [r.id for r in log.read()] == [json.loads(line)["id"] for line in good]


def test_an_id_reused_with_other_content_in_one_file_names_both_lines(demo_db: Path,
                                                                      tmp_path: Path) -> None:
    good = ok("export", db=demo_db).stdout.splitlines()[:3]
    changed = {**json.loads(good[0]), "source": "someone else"}
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([*good, json.dumps(changed)]) + "\n")
    target = tmp_path / "target.db"
    refused(run("import", str(path), db=target), f"{path} line 4",
            f"id {changed['id']} is also on line 1, with other content")
    assert not target.exists()


def test_an_import_clashing_with_the_log_stores_none_of_the_file(demo_db: Path,
                                                                 tmp_path: Path) -> None:
    lines = ok("export", db=demo_db).stdout.splitlines()
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_text("\n".join(lines[:3]) + "\n")
    clash = {**json.loads(lines[1]), "source": "someone else"}  # its id is in the log already
    rest.write_text("\n".join([*lines[3:10], json.dumps(clash), *lines[10:12]]) + "\n")
    copy = tmp_path / "copy.db"
    ok("import", str(first), db=copy)
    refused(run("import", str(rest), db=copy), f"{rest} line 8",
            f"id {clash['id']} is in the log already, with other content")
    with EventLog(copy) as log:  # one transaction: the seven lines before it are not stored
        assert [r.id for r in log.read()] == [json.loads(line)["id"] for line in lines[:3]]


def test_an_archive_segment_imports_as_it_is(db: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    pruned = as_json("prune", "--older-than", "1d", "--archive", str(archive), db=db)
    (segment,) = archive.iterdir()
    assert segment.name.endswith(".jsonl.gz") and str(segment) == pruned["archive_path"]
    copy = tmp_path / "copy.db"
    shown = ok("import", str(segment), db=copy).stdout
    assert f"imported {pruned['removed']} events from {segment}" in shown
    # The same rows at the same positions and stream versions: the log's prefix, as it was.
    with gzip.open(segment, "rt") as archived:
        assert ok("export", db=copy).stdout == archived.read()


# -- the demo -------------------------------------------------------------------------------------


def test_demo_shows_the_read_models_and_runs_again_beside_itself(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    shown = ok("demo", "--agents", "4", "--tasks", "15", "--seed", "1", db=path).stdout
    for title in ("demo run 1", "summary", "events by type", "agents", "slowest tasks", "failed tasks"):
        assert title in shown
    assert "demo run 2 (ids r2-" in ok("demo", "--agents", "2", "--tasks", "3", db=path).stdout
    with EventLog(path) as log:
        assert {t[:3] for t in log.tasks.tasks.merged()} == {"r1-", "r2-"}


def test_demo_refuses_nonsense_options(tmp_path: Path) -> None:
    refused(run("demo", "--failure-rate", "2", db=tmp_path / "d.db"), "--failure-rate")
    refused(run("demo", "--start", "whenever", db=tmp_path / "d.db"), "--start")
