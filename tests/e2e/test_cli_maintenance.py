"""The maintenance commands as operators expect them: a --json report from every command, export
files that appear whole or not at all, vacuum, status in words, the demo's own count, and the
log that -v shows (quiet by default)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from store import stored_count
from swarmlog.log import EventLog
from tests.e2e.test_cli import ROOT, as_json, ok, refused, run

# -- --json everywhere ----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["status"], ["summary"], ["verify"], ["events"], ["agents"], ["agent", "r1-a01"],
    ["rebuild"], ["snapshot"], ["vacuum"], ["prune", "--older-than", "1d"],
    ["prune", "--older-than", "1d", "--dry-run"], ["export", "-o", "{tmp}/out.jsonl"],
    ["import", "{tmp}/in.jsonl"], ["demo", "--agents", "2", "--tasks", "3"],
    ["metrics"], ["datasette-metadata"],
], ids=" ".join)
def test_every_command_reports_as_json(db: Path, tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "in.jsonl").write_text(ok("export", db=db).stdout)
    report = as_json(*(a.replace("{tmp}", str(tmp_path)) for a in args), db=db)
    assert isinstance(report, dict | list) and report


def test_the_maintenance_reports_say_what_was_done(db: Path, tmp_path: Path) -> None:
    with EventLog(db) as log:
        head, count = log.store.head(), stored_count(log.store)
    rebuilt = as_json("rebuild", db=db)
    assert rebuilt["events"] == count and rebuilt["position"] == head
    snapped = as_json("snapshot", db=db)
    assert snapped["position"] == head and len(snapped["snapshot_ids"]) == 1
    exported = tmp_path / "events.jsonl"
    assert as_json("export", "-o", str(exported), db=db) == {"exported": count, "path": str(exported)}
    imported = as_json("import", str(exported), db=tmp_path / "copy.db")
    assert imported == {"file": str(exported), "lines": count, "added": count, "present": 0,
                        "repeated": 0}
    again = as_json("demo", "--agents", "2", "--tasks", "3", "--seed", "1", db=db)
    assert again["run"] == 2 and again["prefix"] == "r2-"
    with EventLog(db) as log:
        assert again["events"] == stored_count(log.store) - count


# -- export files ---------------------------------------------------------------------------------


def test_export_to_a_file_writes_it_whole_and_reports(db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "events.jsonl"
    target.write_text("an older export\n")
    shown = ok("export", "--type", "task.*", "-o", str(target), db=db).stdout
    expected = ok("export", "--type", "task.*", db=db).stdout
    assert target.read_text() == expected and expected
    assert shown == f"exported {len(expected.splitlines())} events to {target}\n"
    assert {json.loads(line)["event_type"].split(".")[0] for line in expected.splitlines()} == {"task"}
    assert [p.name for p in folder.iterdir()] == ["events.jsonl"]  # no temporary file left


def test_a_failed_export_leaves_no_file_and_an_existing_one_whole(db: Path, tmp_path: Path) -> None:
    refused(run("export", "-o", str(tmp_path / "missing" / "events.jsonl"), db=db))
    assert not (tmp_path / "missing").exists()
    target = tmp_path / "events.jsonl"
    target.write_text("kept\n")
    refused(run("export", "--since", "soon", "-o", str(target), db=db), "--since")
    assert target.read_text() == "kept\n"


def test_export_json_needs_a_file_to_report_on(db: Path) -> None:
    refused(run("export", "--json", db=db), "-o FILE")


# -- vacuum ---------------------------------------------------------------------------------------


def test_vacuum_after_a_prune_gives_the_space_back(db: Path) -> None:
    before = os.path.getsize(db)
    pruned = as_json("prune", "--older-than", "12h", db=db)
    assert pruned["removed"] > 0 and pruned["vacuum"] is None
    assert os.path.getsize(db) >= before  # a prune alone never shrinks the file
    report = as_json("vacuum", db=db)
    assert report["after_bytes"] < report["before_bytes"]
    assert os.path.getsize(db) == report["after_bytes"] < before
    assert "vacuumed: " in ok("vacuum", db=db).stdout


def test_prune_with_vacuum_reports_both(db: Path) -> None:
    shown = ok("prune", "--older-than", "12h", "--vacuum", db=db).stdout.splitlines()
    assert shown[0].startswith("pruned ") and shown[-1].startswith("vacuumed: ")
    assert "given back" in shown[-1]
    assert as_json("prune", "--older-than", "12h", "--vacuum", "--dry-run", db=db)["vacuum"] is None


# -- status ---------------------------------------------------------------------------------------


def status_text(db: Path) -> str:
    result = run("status", db=db, env={"COLUMNS": "400"})  # one line per row
    assert result.exit_code == 0
    return result.stdout


def test_status_of_a_fresh_demo_says_all_is_well_in_words(db: Path) -> None:
    shown = ok("status", db=db).stdout
    assert "None" not in shown and "behind" not in shown
    assert "not folded in this process" in shown and "at position" in shown and ", the head" in shown
    data = as_json("status", db=db)
    (model,) = data["projections"].values()
    assert model["to_fold"] == 0 and model["folded"] is False and model["lag"] is None


def test_status_says_how_much_a_reader_would_fold_and_what_was_pruned(db: Path) -> None:
    with EventLog(db) as log:
        for n in range(7):
            log.log("system.info", "ops", data={"message": f"note {n}"})
    shown = status_text(db)
    assert "a reader opening the log folds the 7 events after it" in shown
    assert "│ prunes         │ none " in shown
    ok("prune", "--older-than", "1d", db=db)
    shown = status_text(db)
    assert "before them pruned" in shown and "without an archive" in shown and "None" not in shown


# -- the demo's count -----------------------------------------------------------------------------


def test_the_demo_counts_only_what_it_appended_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    ok("demo", "--agents", "2", "--tasks", "2", db=path)  # the file exists before both start
    with EventLog(path) as log:
        before = stored_count(log.store)
    writer = subprocess.Popen([sys.executable, "-m", "tests.store.writer", str(path), "other",
                               "200", "5"], cwd=ROOT)
    demo = subprocess.run([sys.executable, "-m", "swarmlog.cli", "demo", "--agents", "5",
                           "--tasks", "80", "--json", "--db", str(path)], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)
    assert writer.wait(timeout=120) == 0 and demo.returncode == 0, demo.stderr
    reported = json.loads(demo.stdout)["events"]
    with EventLog(path) as log:
        assert stored_count(log.store) == before + 1000 + reported


# -- logging --------------------------------------------------------------------------------------


def test_commands_are_quiet_on_stderr_by_default(db: Path) -> None:
    for args in (["prune", "--older-than", "1d"], ["snapshot"], ["rebuild"], ["vacuum"]):
        assert run(*args, db=db).stderr == "", args


def test_verbose_logs_migrations_prunes_and_snapshots(db: Path, tmp_path: Path) -> None:
    created = run("-v", "demo", "--agents", "2", "--tasks", "2", db=tmp_path / "new.db").stderr
    assert "INFO swarmlog.store: migrated" in created and "stored snapshot" in created
    pruned = run("-v", "prune", "--older-than", "1d", "--vacuum", db=db).stderr
    assert "INFO swarmlog: pruned" in pruned and "stored snapshot" not in pruned
    assert "INFO swarmlog: vacuumed" in pruned
    assert "stored snapshot" in run("-v", "snapshot", db=db).stderr
    assert "verified" in run("-vv", "verify", db=db).stderr
