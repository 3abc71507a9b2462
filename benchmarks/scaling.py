"""How swarmlog scales with the length of its log: `python -m benchmarks.scaling [SIZES...]`.

For each size (default 100,000, 1,000,000 and 3,000,000 events of the benchmark's swarm, every
one with about 15 tasks open), it builds a log and measures, each against what a log of that
size should cost if the design holds:

- start-up from a snapshot plus a 1,000-event tail (median of 5): flat;
- a rebuild and a start-up without snapshots (median of 3) and the peak RSS of each (in a fresh
  process): time in proportion to the log, memory flat;
- get_task_events p50 and p99 (1,000 calls) and get_event_summary(60) (median of 50): flat;
- a prune of the older half, with the p99 latency of another process's appends meanwhile.

It prints a markdown table (a column per size) and writes the figures as JSON
(`--json`, default scaling-results.json). At three sizes it takes about 15 minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from benchmarks.suite import BATCH, settle
from benchmarks.workload import swarm_specs, to_event
from domain.ids import utc_now
from swarmlog.log import EventLog

ROOT = Path(__file__).resolve().parent.parent
TAIL = 1000


def build(path: Path, events: int, end: datetime) -> list[str]:
    """A log of `events` events of the swarm (then a snapshot, then a tail of TAIL more);
    returns the task ids in it."""
    tasks: dict[str, None] = {}
    specs = swarm_specs(events + TAIL, 17, end)
    with EventLog(path) as log:
        done = 0
        while done < events:
            chunk = list(islice(specs, min(5 * BATCH, events - done)))
            log.append([to_event(s) for s in chunk])
            tasks.update((s.task_id, None) for s in chunk if s.task_id)
            done += len(chunk)
        log.rebuild()
        log.snapshot()
        tail = list(specs)
        log.append([to_event(s) for s in tail])
        tasks.update((s.task_id, None) for s in tail if s.task_id)
    return list(tasks)


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def peak(path: Path, fold: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", str(path), fold],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    found: dict[str, Any] = orjson.loads(out.stdout.strip().splitlines()[-1])
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def measure(path: Path, events: int, tasks: list[str], say: Callable[[str], None]
            ) -> dict[str, Any]:
    figures: dict[str, Any] = {"events": events}
    say(f"  start-up from a snapshot ({events:,})")
    settle()
    startups = []
    for _ in range(5):
        with EventLog(path, read_only=True) as log:
            startups.append(timed(log.start))
    figures["startup_snapshot_s"] = statistics.median(startups)

    say(f"  rebuild ({events:,})")
    rebuilds = []
    for _ in range(3):
        settle()
        with EventLog(path, read_only=True) as log:
            rebuilds.append(timed(log.rebuild))
    figures["rebuild_s"] = statistics.median(rebuilds)
    figures["rebuild_peak_mb"] = peak(path, "rebuild")["peak_mb"]

    say(f"  queries ({events:,})")
    os.environ["SWARMLOG_DB"] = str(path)
    from swarmlog import event_log as facade

    rng = random.Random(5)
    sample = rng.sample(tasks, min(1000, len(tasks)))
    for t in sample[:20]:
        facade.get_task_events(t)
    settle()
    calls = [timed(lambda t=t: facade.get_task_events(t)) * 1000 for t in sample]
    figures["get_task_events_p50_ms"] = statistics.median(calls)
    figures["get_task_events_p99_ms"] = percentile(calls, 0.99)
    figures["get_event_summary_ms"] = statistics.median(
        [timed(lambda: facade.get_event_summary(60)) * 1000 for _ in range(50)])
    return figures


def snapshotless(path: Path, events: int, say: Callable[[str], None]) -> dict[str, Any]:
    """A start-up without snapshots: on a copy of the log with its snapshots deleted."""
    say(f"  start-up without snapshots ({events:,})")
    copy = path.with_name(f"nosnap-{path.name}")
    shutil.copy(path, copy)
    with EventLog(copy) as log:
        log.store.delete_snapshots([s.id for s in log.store.snapshots(with_state=False)])
    times = []
    for _ in range(3):
        settle()
        with EventLog(copy, read_only=True) as log:
            times.append(timed(log.start))
    found = peak(copy, "start")
    copy.unlink()
    return {"startup_no_snapshot_s": statistics.median(times),
            "startup_no_snapshot_peak_mb": found["peak_mb"]}


def prune_half(path: Path, events: int, say: Callable[[str], None]) -> dict[str, Any]:
    say(f"  prune half ({events:,})")
    with EventLog(path) as log:
        middle = next(log.store.query(after=events // 2, limit=1)).timestamp
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.appender", str(path)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert child.stdin is not None and child.stdout is not None
        child.stdout.readline()
        try:
            took = timed(lambda: log.prune(before=datetime.fromisoformat(middle),
                                           archive=path.parent / "archive"))
        finally:
            child.stdin.close()
            latencies = orjson.loads(child.stdout.read().strip().splitlines()[-1])
            child.wait()
    return {"prune_half_s": took, "append_p99_during_prune_ms": percentile(latencies, 0.99) * 1000}


ROWS = [
    ("start-up from a snapshot + 1,000-event tail", "startup_snapshot_s", "s", 3),
    ("start-up without snapshots", "startup_no_snapshot_s", "s", 1),
    ("its peak RSS", "startup_no_snapshot_peak_mb", "MB", 0),
    ("rebuild", "rebuild_s", "s", 1),
    ("its peak RSS", "rebuild_peak_mb", "MB", 0),
    ("get_task_events p50", "get_task_events_p50_ms", "ms", 3),
    ("get_task_events p99", "get_task_events_p99_ms", "ms", 3),
    ("get_event_summary(60)", "get_event_summary_ms", "ms", 2),
    ("prune the older half (archive)", "prune_half_s", "s", 1),
    ("append p99 during that prune", "append_p99_during_prune_ms", "ms", 1),
]


def table(results: list[dict[str, Any]]) -> str:
    head = "| | " + " | ".join(f"{r['events']:,} events" for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for label, key, unit, digits in ROWS:
        cells = [f"{r[key]:,.{digits}f} {unit}" for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    parser.add_argument("sizes", nargs="*", type=int, default=[100_000, 1_000_000, 3_000_000])
    parser.add_argument("--json", default="scaling-results.json")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="swarmlog-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results = []
    end = utc_now() - timedelta(minutes=30)
    try:
        for events in args.sizes:
            path = workdir / f"log-{events}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            say(f"building {events:,} events")
            tasks = build(path, events, end)
            figures = measure(path, events, tasks, say)
            figures.update(snapshotless(path, events, say))
            figures.update(prune_half(path, events, say))
            results.append(figures)
            path.unlink()
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
