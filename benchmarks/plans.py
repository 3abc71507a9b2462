"""`EXPLAIN QUERY PLAN` of every query the read API exposes, as the store really runs it.

The statements are captured from the store's own connection (a trace callback sees them with
their parameters bound), then explained on a second connection and timed through the API on the
full-size log. A plan is flagged when it scans the whole `event_log` for a filtered query, or
sorts a result the planner cannot bound with a temporary b-tree.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from domain.events import EventType
from domain.ids import utc_now
from store.base import EVERYTHING, EventFilter, prefix_end
from store.sqlite import SQLiteStore

_FAILED = frozenset({EventType.TASK_FAILED.value})
_BID = frozenset({EventType.BID_SUBMITTED.value})


def _calls(task_id: str, agent_id: str, first_id: str,
           head: int) -> list[tuple[str, Callable[[SQLiteStore], Any]]]:
    """(name, call) for every read the API exposes; each call consumes what it asks for (the
    store's reads are lazy iterators: an unconsumed one runs no SQL). The facade's listings ask
    for newest first, the folds and the `events_of_task` read for oldest first."""
    hour = utc_now() - timedelta(hours=1)
    day = utc_now() - timedelta(days=1)

    def newest(where: EventFilter, **options: Any) -> Callable[[SQLiteStore], Any]:
        return lambda s: list(s.query(where, newest_first=True, **options))

    def oldest(where: EventFilter, **options: Any) -> Callable[[SQLiteStore], Any]:
        return lambda s: list(s.query(where, **options))

    return [
        ("query(task_id) [get_task_events]", newest(EventFilter(task_id=task_id))),
        ("query(agent_id) [get_agent_events]", newest(EventFilter(agent_id=agent_id))),
        ("query(event_type, limit=100) [list_events]", newest(EventFilter(types=_FAILED), limit=100)),
        ("query(source, limit=100) [list_events]", newest(EventFilter(source="system"), limit=100)),
        ("query(since=1h) [get_recent_events]", newest(EventFilter(since=hour))),
        ("query(since=1d, until=1h, limit=100)", newest(EventFilter(since=day, until=hour), limit=100)),
        ("query(event_type, since=1h)", newest(EventFilter(types=_FAILED, since=hour))),
        ("query(task_id, event_type)", newest(EventFilter(task_id=task_id, types=_BID))),
        # list_events(offset=) reads limit + offset rows newest first and drops the offset.
        ("query(limit=100+100000)[100000:] [list_events paging]",
         lambda s: list(s.query(EVERYTHING, newest_first=True, limit=100_100))[100_000:]),
        ("query(before=head-100000, limit=100) [keyset paging]",
         newest(EVERYTHING, before=max(head - 100_000, 1), limit=100)),
        ("count_by_type(since=1h) [get_event_summary]", lambda s: s.count_by_type(hour)),
        ("count_by_type()", lambda s: s.count_by_type()),
        ("query(task_id), oldest first [events_of_task]", oldest(EventFilter(task_id=task_id))),
        ("query(agent_id), oldest first, first page",
         lambda s: next(s.query(EventFilter(agent_id=agent_id)), None)),
        ("query(since=1h, types), oldest first", oldest(EventFilter(since=hour, types=_FAILED))),
        ("read (first page) [folds]", lambda s: next(s.read(), None)),
        ("get(id)", lambda s: s.get(first_id)),
        ("prefix_end(1d ago)", lambda s: prefix_end(s, day)),
    ]


_CLAUSE_END = re.compile(r" (?:ORDER BY|GROUP BY|LIMIT) ", re.IGNORECASE)
_AND = re.compile(r" AND ", re.IGNORECASE)


def _filtered(sql: str) -> bool:
    """Whether a statement filters `event_log` on more than its position window (every read
    pages on `seq > ?`, so the window alone says nothing)."""
    parts = re.split(r" WHERE ", sql, maxsplit=1, flags=re.IGNORECASE)
    if len(parts) < 2:
        return False
    clause = _CLAUSE_END.split(parts[1], maxsplit=1)[0]
    return any(not c.strip().lstrip("+").startswith("seq ") for c in _AND.split(clause))


def _verdict(sql: str, plan: list[str], limited: bool) -> str:
    """`limited`: the call asks for at most N rows."""
    text = " | ".join(plan)
    for column in ("task_id", "agent_id"):  # the selective columns: their index must be used
        if re.search(rf"(?<![+\w]){column} = ", sql) and f"idx_event_log_{column}" not in text:
            return f"BAD: ignores the {column} index"
    if _filtered(sql) and any(p.startswith("SCAN event_log") and "INDEX" not in p for p in plan):
        return "BAD: full scan of event_log"
    # Every read pages on `seq > ?`: a filter no index serves walks the log by position; but
    # the first (or newest) few rows since a time are found by walking on purpose ("NOT
    # INDEXED": the walk stops at the first matches, at the end where they are).
    if _filtered(sql) and any(p.endswith("USING INTEGER PRIMARY KEY (rowid>?)") for p in plan):
        if "NOT INDEXED" in sql and limited:
            return "ok: walks from the end where the matches are, and stops"
        return "BAD: walks event_log by position (no index for the filter)"
    if "TEMP B-TREE FOR ORDER BY" in text and "LIMIT" in sql.upper():
        return "check: sorts every match before LIMIT"
    if limited and "LIMIT" not in sql.upper() and sql.lstrip().upper().startswith("SELECT SEQ "):
        return "check: reads every match's position before LIMIT (sorted in Python)"
    return "ok"


def explain(path: str, task_id: str, agent_id: str, first_id: str) -> list[dict[str, Any]]:
    """One entry per API call: its statements, their plans, a verdict, and the call's time."""
    store = SQLiteStore(path)
    conn: sqlite3.Connection = store._conn  # the benchmark looks inside, on purpose
    probe = sqlite3.connect(path)
    found: list[dict[str, Any]] = []
    try:
        for name, call in _calls(task_id, agent_id, first_id, store.head()):
            seen: list[str] = []
            conn.set_trace_callback(seen.append)
            call(store)  # warm
            conn.set_trace_callback(None)
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                call(store)
                best = min(best, time.perf_counter() - started)
            statements = []
            for sql in dict.fromkeys(s for s in seen if s.lstrip().upper().startswith("SELECT")):
                plan = [row[3] for row in probe.execute("EXPLAIN QUERY PLAN " + sql)]
                verdict = _verdict(sql, plan, "limit" in name or "prefix_end" in name)
                statements.append({"sql": sql, "plan": plan, "verdict": verdict})
            worst = next((s["verdict"] for s in statements if s["verdict"] != "ok"), "ok")
            found.append({"call": name, "ms": best * 1000, "verdict": worst, "statements": statements})
    finally:
        conn.set_trace_callback(None)
        probe.close()
        store.close()
    return found


def markdown(found: list[dict[str, Any]]) -> str:
    lines = ["| API call | time | plan | verdict |", "|---|---:|---|---|"]
    for entry in found:
        plans = "; ".join(" / ".join(s["plan"]) for s in entry["statements"][:1])
        lines.append(f"| {entry['call']} | {entry['ms']:.2f} ms | {plans} | {entry['verdict']} |")
    return "\n".join(lines)
