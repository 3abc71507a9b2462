"""`EXPLAIN QUERY PLAN` of every query the read API exposes, as the store really runs it.

The statements are captured from the store's own connection (a trace callback sees them with
their parameters bound), then explained on a second connection and timed through the API on the
full-size log. A plan is flagged when it scans the whole `event_log` for a filtered query, or
sorts a result the planner cannot bound with a temporary b-tree.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from domain.events import EventType
from domain.ids import utc_now
from store.sqlite import SQLiteEventStore


def _calls(task_id: str, agent_id: str, first_id: str) -> list[tuple[str, Callable[[SQLiteEventStore], Any]]]:
    hour = utc_now() - timedelta(hours=1)
    day = utc_now() - timedelta(days=1)
    return [
        ("query(task_id) [get_task_events]", lambda s: s.query(task_id=task_id)),
        ("query(agent_id) [get_agent_events]", lambda s: s.query(agent_id=agent_id)),
        ("query(event_type, limit=100) [list_events]",
         lambda s: s.query(event_type=EventType.TASK_FAILED, limit=100)),
        ("query(source, limit=100) [list_events]",
         lambda s: s.query(source="system", limit=100)),
        ("query(since=1h) [get_recent_events]", lambda s: s.query(since=hour)),
        ("query(since=1d, until=1h, limit=100)", lambda s: s.query(since=day, until=hour, limit=100)),
        ("query(event_type, since=1h)", lambda s: s.query(event_type=EventType.TASK_FAILED, since=hour)),
        ("query(task_id, event_type)",
         lambda s: s.query(task_id=task_id, event_type=EventType.BID_SUBMITTED)),
        ("query(limit=100, offset=100000) [list_events paging]",
         lambda s: s.query(limit=100, offset=100_000)),
        ("count_by_type(since=1h) [get_event_summary]", lambda s: s.count_by_type(hour)),
        ("count_by_type()", lambda s: s.count_by_type()),
        ("read_task", lambda s: list(s.read_task(task_id))),
        ("read_agent (first page)", lambda s: next(iter(s.read_agent(agent_id)), None)),
        ("read_range(since=1h, types)",
         lambda s: list(s.read_range(since=hour, types=[EventType.TASK_FAILED]))),
        ("get(id)", lambda s: s.get(first_id)),
        ("prefix_end(1d ago)", lambda s: s.prefix_end(day)),
    ]


def _verdict(sql: str, plan: list[str]) -> str:
    filtered = " WHERE " in sql.upper() and "seq >" not in sql
    text = " | ".join(plan)
    for column in ("task_id", "agent_id"):  # the selective columns: their index must be used
        if f"{column} = " in sql and f"idx_event_log_{column}" not in text:
            return f"BAD: ignores the {column} index"
    if filtered and any(p.startswith("SCAN event_log") and "INDEX" not in p for p in plan):
        return "BAD: full scan of event_log"
    if "TEMP B-TREE FOR ORDER BY" in text and "LIMIT" in sql.upper():
        return "check: sorts every match before LIMIT"
    return "ok"


def explain(path: str, task_id: str, agent_id: str, first_id: str) -> list[dict[str, Any]]:
    """One entry per API call: its statements, their plans, a verdict, and the call's time."""
    store = SQLiteEventStore(path)
    conn: sqlite3.Connection = store._conn  # the benchmark looks inside, on purpose
    probe = sqlite3.connect(path)
    found: list[dict[str, Any]] = []
    try:
        for name, call in _calls(task_id, agent_id, first_id):
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
                statements.append({"sql": sql, "plan": plan, "verdict": _verdict(sql, plan)})
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
