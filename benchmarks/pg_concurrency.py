"""PostgreSQL under concurrent writers (issue 19): writer processes of single-event appends, each
its own connection, as coordinators on several hosts are.

Three sides take turns, round by round, on one server: 8 swarmlog writers; 8 plain psycopg
writers, each INSERT its own transaction into a `bigserial` table (what PostgreSQL does with no
ordering promise at all: its group commit batches the fsyncs); and one swarmlog writer. While the
8 swarmlog writers run, a reader tails the log (`read` after its last position, then
`wait_for_append`), and the lag of each event is the time from its writer's append returning
(its commit acknowledged) to the reader seeing it (0 when the reader saw it first).
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.report import Row

WRITERS = 8
SECONDS = 3.0
_PLAIN = "CREATE TABLE plain (id bigserial PRIMARY KEY, event_id text, event_type text, " \
         "source text, task_id text, agent_id text, data text, timestamp text)"


def _events(name: str, n: int) -> Any:
    from domain.codec import build_event, encode

    return encode(build_event("bid.submitted", name, f"{name}-t{n % 50}", name,
                              {"bid_sats": n % 1000}))


def _swarmlog_writer(url: str, name: str, ready: Any, go: Any, seconds: float,
                     out: Any) -> None:
    from store.postgres import PostgresStore

    store = PostgresStore(url, max_connections=2)
    rows = [_events(name, n) for n in range(20_000)]
    ready.wait()
    go.wait()
    done: list[tuple[str, float]] = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        store.append([rows[n]])
        done.append((rows[n].id, time.time()))
        n += 1
    store.close()
    out.put(done)


def _plain_writer(url: str, name: str, ready: Any, go: Any, seconds: float, out: Any) -> None:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    rows = [_events(name, n) for n in range(20_000)]
    ready.wait()
    go.wait()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        r = rows[n]
        conn.execute("INSERT INTO plain (event_id, event_type, source, task_id, agent_id, data, "
                     "timestamp) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (r.id, r.event_type, r.source, r.task_id, r.agent_id, r.data, r.timestamp))
        n += 1
    conn.close()
    out.put([("", 0.0)] * n)


def _reader(url: str, ready: Any, go: Any, stop: Any, out: Any) -> None:
    from store.postgres import PostgresStore

    store = PostgresStore(url, read_only=True)
    after = store.head()
    seen: list[tuple[str, float]] = []
    ready.wait()
    go.wait()
    while not stop.is_set():
        for row in store.read(after=after):
            seen.append((row.id, time.time()))
            after = row.position
        store.wait_for_append(after, 0.1)
    store.close()
    out.put(seen)


def _phase(target: Callable[..., None], url: str, writers: int, seconds: float,
           tail: bool = False) -> tuple[float, list[float]]:
    """Run `writers` processes of `target` for `seconds` once all are ready: events/s, and the
    reader's lags (ms) when `tail`."""
    ready = mp.Barrier(writers + 1 + tail)
    go = mp.Event()
    stop = mp.Event()
    out: Any = mp.Queue()
    seen: Any = mp.Queue()
    procs = [mp.Process(target=target, args=(url, f"w{n}-{time.monotonic_ns()}", ready, go,
                                             seconds, out)) for n in range(writers)]
    if tail:
        procs.append(mp.Process(target=_reader, args=(url, ready, go, stop, seen)))
    for p in procs:
        p.start()
    ready.wait()
    go.set()
    done = [out.get() for _ in range(writers)]
    stop.set()
    lags: list[float] = []
    if tail:
        returned = {event_id: at for batch in done for event_id, at in batch}
        lags = [max(0.0, at - returned[event_id]) * 1000 for event_id, at in seen.get()
                if event_id in returned]
    for p in procs:
        p.join()
    return sum(len(d) for d in done) / seconds, lags


def run(ours_url: str, plain_url: str, rounds: int,
        say: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    """The concurrency rows: `ours_url` a fresh swarmlog database, `plain_url` a fresh one."""
    import psycopg

    from store.postgres import PostgresStore

    PostgresStore(ours_url).close()
    with psycopg.connect(plain_url, autocommit=True) as conn:
        conn.execute(_PLAIN)
        fsync = conn.execute("SHOW fsync").fetchone()
    rates: dict[str, list[float]] = {"ours8": [], "plain8": [], "ours1": []}
    lags: list[float] = []
    for k in range(rounds):
        sides = ["plain8", "ours8", "ours1"]
        for side in sides[k % 3:] + sides[: k % 3]:  # each side first in turn
            if side == "plain8":
                rate, _ = _phase(_plain_writer, plain_url, WRITERS, SECONDS)
            elif side == "ours8":
                rate, seen = _phase(_swarmlog_writer, ours_url, WRITERS, SECONDS, tail=True)
                lags += seen
            else:
                rate, _ = _phase(_swarmlog_writer, ours_url, 1, SECONDS)
            rates[side].append(rate)
        say(f"  postgres concurrency round {k + 1}: " +
            ", ".join(f"{side} {r[-1]:,.0f}/s" for side, r in rates.items()))
    rate = {side: statistics.median(r) for side, r in rates.items()}
    p99 = sorted(lags)[int(0.99 * (len(lags) - 1))] if lags else None
    note = f"{WRITERS} processes, {SECONDS:g} s x {rounds} rounds, fsync {fsync[0] if fsync else '?'}"
    rows = [
        Row(f"postgres: {WRITERS} writer processes, single-event appends", "events/s",
            rate["ours8"], f"psycopg {WRITERS} writers, bigserial", rate["plain8"], 0.6,
            note=note),
        Row(f"postgres: {WRITERS} writer processes against one", "events/s", rate["ours8"],
            "swarmlog 1 writer", rate["ours1"], 4.0, note="same run"),
        Row(f"postgres: reader lag p99, {WRITERS} writers", "ms", p99, "budget", 50.0, 1.0,
            higher_is_better=False,
            note=f"{len(lags):,} events; append returned -> seen by a tailing reader"),
    ]
    return rows, {"postgres_concurrency": {"rates": rates, "lag_ms_p50":
                                           statistics.median(lags) if lags else None}}
