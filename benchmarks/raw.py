"""The raw baseline: swarmlog's own schema driven by plain `sqlite3`, with nothing on top.

The file is created by `SQLiteStore` (so the tables, indexes, triggers and pragmas are exactly
the product's), then written and read here with pre-serialised tuples and no validation. Every
operation still does what the design requires of any writer, so that the baseline is the physical
limit of *this design* rather than of a different one: per-stream versions read from the
`streams` table and upserted in the same `BEGIN IMMEDIATE` transaction (another writer may have
moved them), and deletes only through the prune gate.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from domain.codec import encode
from domain.events import Event
from domain.task import TRANSITIONS, TaskStatus
from store.sqlite import SQLiteStore

_INSERT = (
    "INSERT INTO event_log (id, event_type, source, task_id, agent_id, data, timestamp, "
    "stream_id, schema_version, conforms, hash, stream_version) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
_UPSERT = (
    "INSERT INTO swarmlog_streams (stream_id, version) VALUES (?, ?) "
    "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version"
)
_COLUMNS = (
    "seq, id, event_type, source, task_id, agent_id, data, timestamp, stream_id, stream_version, "
    "schema_version, conforms, hash"
)
#: The planner-proof summary query (see DESIGN "Planner trap").
SUMMARY_SQL = (
    "SELECT event_type, count(*) FROM event_log WHERE timestamp >= ? AND timestamp < ? "
    "GROUP BY +event_type"
)
#: The same query as a naive caller writes it, for the record.
SUMMARY_SQL_NAIVE = ("SELECT event_type, count(*) FROM event_log WHERE timestamp >= ? AND "
                     "timestamp < ? GROUP BY event_type")
TASK_SQL = f"SELECT {_COLUMNS} FROM event_log WHERE task_id = ? ORDER BY seq DESC"

# The task table as plain strings, for the dict fold.
_MOVES = {
    (None if s is None else s.value): {t.value: n.value for t, n in moves.items()}
    for s, moves in TRANSITIONS.items()
}
_CREATED = TaskStatus.CREATED.value


#: What the raw side inserts, serialised before the clock starts: (id, event_type, source,
#: task_id, agent_id, data, timestamp, stream_id, schema_version, conforms, hash), the
#: columns swarmlog's append fills from a `StoredEvent` (the stream version is added at insert).
#: Its hash is made before the clock starts too (the raw side computes no chain): the cost of
#: swarmlog's chain is in the ratio.
RawRow = tuple[str, str, str, str | None, str | None, str | None, str, str, int, bool | None,
               bytes]
_SOME_HASH = bytes(range(32))


def serialise(event: Event) -> RawRow:
    """The pre-serialised tuple of an event (untimed: the raw side does no encoding)."""
    r = encode(event)
    return (r.id, r.event_type, r.source, r.task_id, r.agent_id, r.data, r.timestamp,
            r.stream_id, r.schema_version, r.conforms, _SOME_HASH)


def fold_rows(rows: Iterable[tuple[Any, ...]]) -> tuple[int, dict[str, Any]]:
    """The raw rebuild's fold: parse each row's JSON, fold three dict read models (tasks, agents,
    counts); rows are (seq, event_type, source, task_id, agent_id, data, timestamp)."""
    tasks: dict[str, dict[str, Any]] = {}
    agents: dict[str, dict[str, Any]] = {}
    by_type: dict[str, int] = {}
    by_source: dict[str, int] = {}
    by_minute: dict[str, int] = {}
    n = 0
    for seq, kind, source, task_id, agent_id, data, ts in rows:
        payload = orjson.loads(data) if data else {}
        n += 1
        by_type[kind] = by_type.get(kind, 0) + 1
        by_source[source] = by_source.get(source, 0) + 1
        minute = ts[:16]
        by_minute[minute] = by_minute.get(minute, 0) + 1
        if task_id is not None:
            task = tasks.get(task_id)
            if task is None:
                task = tasks[task_id] = {"status": None, "bids": 0, "agent": None, "at": ts}
            after = _MOVES[task["status"] or (None if kind == "task.created" else _CREATED)].get(kind)
            if after is not None:
                task["status"] = after
                if kind == "bid.submitted":
                    task["bids"] += 1
                elif kind == "task.assigned":
                    task["agent"] = agent_id
                    task["winning_bid"] = payload.get("bid_sats")
                task["at"] = ts
            else:
                task["anomalies"] = task.get("anomalies", 0) + 1
        if agent_id is not None:
            agent = agents.get(agent_id)
            if agent is None:
                agent = agents[agent_id] = {"online": False, "events": 0, "seen": seq}
            agent["events"] += 1
            if kind == "agent.joined":
                agent["online"] = True
                agent["name"] = payload.get("name")
            elif kind == "agent.left":
                agent["online"] = False
    return n, {"tasks": len(tasks), "agents": len(agents), "by_type": by_type,
               "sources": len(by_source), "minutes": len(by_minute)}


class RawLog:
    """One swarmlog database file, written and read with plain sqlite3."""

    def __init__(self, path: str) -> None:
        SQLiteStore(path).close()  # the product's schema, migrations and all
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=10000")

    def append(self, rows: Sequence[RawRow]) -> None:
        """One transaction: read the batch's stream heads, insert the rows, upsert the heads."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        streams = list({r[7] for r in rows})
        heads: dict[str, int] = {}
        for i in range(0, len(streams), 500):
            chunk = streams[i : i + 500]
            heads.update(conn.execute(
                "SELECT stream_id, version FROM swarmlog_streams WHERE stream_id IN "
                f"({','.join('?' * len(chunk))})",
                chunk))
        params = []
        for r in rows:
            version = heads.get(r[7], 0) + 1
            heads[r[7]] = version
            params.append((*r, version))
        conn.executemany(_INSERT, params)
        conn.executemany(_UPSERT, list(heads.items()))
        conn.execute("COMMIT")

    def append_one(self, row: RawRow) -> None:
        """The single-event transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        found = conn.execute("SELECT version FROM swarmlog_streams WHERE stream_id = ?", (row[7],)).fetchone()
        version = (found[0] if found else 0) + 1
        conn.execute(_INSERT, (*row, version))
        conn.execute(_UPSERT, (row[7], version))
        conn.execute("COMMIT")

    def rebuild(self) -> tuple[int, dict[str, Any]]:
        """Scan every row, parse its JSON, fold three dict read models (tasks, agents, counts)."""
        return fold_rows(self.conn.execute(
            "SELECT seq, event_type, source, task_id, agent_id, data, timestamp FROM event_log "
            "ORDER BY seq"))

    def hash_walk(self) -> int:
        """Read every row in order and SHA-256 its fields: the least a chain check can do."""
        count = 0
        for row in self.conn.execute(f"SELECT {_COLUMNS} FROM event_log ORDER BY seq"):
            hashlib.sha256(repr(row).encode()).digest()
            count += 1
        return count

    def task_events(self, task_id: str) -> list[tuple[Any, ...]]:
        return self.conn.execute(TASK_SQL, (task_id,)).fetchall()

    def summary(self, since: str, until: str, sql: str = SUMMARY_SQL) -> dict[str, int]:
        """Counts by type of the events stamped in [since, until): "recent" as the facade
        means it (an event stamped in the future is not recent)."""
        return dict(self.conn.execute(sql, (since, until)).fetchall())

    def delete_through(self, position: int) -> int:
        """DELETE the same prefix the prune removes, through the same gate, in one transaction."""
        conn = self.conn
        conn.create_function("swarmlog_pruning", 0, lambda: 1)  # the guard's question, answered
        conn.execute("BEGIN IMMEDIATE")
        removed = conn.execute("DELETE FROM event_log WHERE seq <= ?", (position,)).rowcount
        conn.execute("COMMIT")
        return removed

    def close(self) -> None:
        self.conn.close()
