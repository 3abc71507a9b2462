"""The web view's page renders on the suite's log: p50 and p95 of each page's server time.

The application (`swarmlog.web.create_app`, the log opened read-only, its read models folded
from the snapshot) is driven in process through ASGI, request after request, and each figure is
what the server says it took (`Server-Timing: app;dur=`), so the client's costs are not in it.
The budget is 100 ms at p95 for every page. The integrity page is measured with its whole-log
`verify` left out (it runs in a thread of its own, never in a request).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from benchmarks.report import Row
from store import EventFilter
from swarmlog.log import EventLog
from swarmlog.web import create_app, viewer_of

BUDGET_MS = 100.0


async def _get(app: Any, path: str) -> tuple[int, float]:
    """GET `path` through ASGI: (status, server milliseconds)."""
    target, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": target, "raw_path": target.encode(),
             "query_string": query.encode(), "root_path": "", "headers": [(b"host", b"bench")],
             "client": ("127.0.0.1", 1), "server": ("bench", 80)}
    found: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            found["status"] = message["status"]
            for key, value in message["headers"]:
                if key == b"server-timing":
                    found["ms"] = float(value.decode().split("dur=")[1])

    await app(scope, receive, send)
    return found["status"], found["ms"]


def _pages(log: EventLog, seed: int) -> list[tuple[str, list[str]]]:
    """(page, the addresses to sample it at): tasks and agents picked across the log."""
    rng = random.Random(seed)
    head = log.store.head()
    newest = list(log.store.query(EventFilter(types=frozenset({"task.created"})), limit=2000,
                                  newest_first=True))
    oldest = list(log.store.query(EventFilter(types=frozenset({"task.created"})), limit=2000))
    tasks = [r.task_id for r in rng.sample(newest + oldest, min(40, len(newest + oldest)))
             if r.task_id]
    agents = sorted({r.agent_id for r in log.store.query(limit=5000, newest_first=True)
                     if r.agent_id})
    some_agents = rng.sample(agents, min(10, len(agents)))
    failed = [r.task_id for r in log.store.query(EventFilter(types=frozenset({"task.failed"})),
                                                 limit=200, newest_first=True) if r.task_id]
    return [
        ("overview /", ["/"]),
        ("events /events (newest 50)", ["/events"]),
        ("events, an older page (before=)", [f"/events?before={rng.randint(2, head)}"
                                             for _ in range(20)]),
        ("events, one type", ["/events?type=task.failed", "/events?type=system.error"]),
        ("events, three types", ["/events?type=task.failed&type=tool.failed&type=system.error"]),
        ("events, an agent's", [f"/events?agent={quote(a)}" for a in some_agents]),
        ("events, the last hour", ["/events?since=1h", "/events?since=1h&type=system.error"]),
        ("events, an hour a day ago", ["/events?since=25h&until=24h"]),
        ("task /tasks/<id>", [f"/tasks/{quote(t, safe='')}" for t in tasks]),
        ("task, a failed one", [f"/tasks/{quote(t, safe='')}" for t in rng.sample(
            failed, min(10, len(failed)))]),
        ("agents /agents", ["/agents"]),
        ("integrity /integrity", ["/integrity"]),
        ("api /api/events", ["/api/events?limit=100"]),
        ("api /api/summary", ["/api/summary"]),
        ("api /api/tasks/<id>", [f"/api/tasks/{quote(t, safe='')}" for t in tasks[:10]]),
    ]


def run(path: str, quick: bool, say: Callable[[str], None], seed: int = 17
        ) -> tuple[list[Row], dict[str, Any]]:
    """The rows of the page renders on the log at `path`, and the details."""
    started = time.perf_counter()
    log = EventLog(path, read_only=True)
    app = create_app(log, close_log=True)
    viewer = viewer_of(app)
    viewer.start()
    start_seconds = time.perf_counter() - started
    viewer.verifier.started_at = datetime.now(UTC)  # as if run: no whole-log verify meanwhile
    samples = 15 if quick else 60
    rows: list[Row] = []
    extra: dict[str, Any] = {"start_seconds": start_seconds, "pages": {}}
    head = log.store.head()
    try:
        pages = _pages(log, seed)

        async def measure() -> None:
            for name, paths in pages:
                if not paths:
                    continue
                for p in paths[:3]:  # warm: templates compiled, pages cached
                    status, _ = await _get(app, p)
                    if status != 200:
                        raise RuntimeError(f"GET {p} answered {status}")
                times = []
                for k in range(samples):
                    status, ms = await _get(app, paths[k % len(paths)])
                    if status != 200:
                        raise RuntimeError(f"GET {paths[k % len(paths)]} answered {status}")
                    times.append(ms)
                times.sort()
                p50 = statistics.median(times)
                p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
                extra["pages"][name] = {"p50_ms": p50, "p95_ms": p95, "samples": len(times)}
                rows.append(Row(f"web page p95: {name}, at {head:,} events", "ms", p95,
                                "budget", BUDGET_MS, 1.0, higher_is_better=False,
                                note=f"p50 {p50:.2f} ms; server time (Server-Timing)"))
                say(f"  {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")

        asyncio.run(measure())
    finally:
        viewer.stop()
        log.close()
    return rows, extra


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.web PATH|URL [--quick]`: the page renders of any log."""
    import argparse
    import sys

    from benchmarks import report

    parser = argparse.ArgumentParser(prog="python -m benchmarks.web", description=main.__doc__)
    parser.add_argument("log", help="an SQLite file or a postgresql:// URL")
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args(argv)
    rows, extra = run(args.log, args.quick, lambda text: print(text, file=sys.stderr))
    print(f"start-up (read models from the snapshot): {extra['start_seconds']:.2f} s\n")
    print(report.markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
