"""What the CLI shows: read-model entries and events as plain rows (what `--json` prints), and
the rich tables made from those same rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from rich.table import Table

from domain.codec import StoredEvent
from projections.agents import AgentView
from projections.tasks import TaskView
from store.archive import to_line

Row = dict[str, Any]


def dumps(data: Any) -> str:
    """Indented JSON of rows (datetimes as ISO-8601, enums as their values)."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
                        default=plain).decode()


def plain(value: Any) -> Any:
    """What orjson is given for a value it does not know (`default=`)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# -- rows -----------------------------------------------------------------------------------------

#: The columns of an event in CSV and TSV: the keys of its JSON line, `data` as its JSON text.
EVENT_COLUMNS = ("position", "id", "event_type", "source", "task_id", "agent_id", "data",
                 "timestamp", "stream_id", "stream_version", "schema_version", "conforms")


def event_row(row: StoredEvent) -> Row:
    """An event as the one JSON-lines format has it (`store.archive.to_line`)."""
    found: Row = orjson.loads(to_line(row))
    return found


def event_cells(row: StoredEvent) -> tuple[Any, ...]:
    """An event's `EVENT_COLUMNS`, for CSV and TSV (`data` as it is stored: its JSON text)."""
    return (row.position, row.id, row.event_type, row.source, row.task_id, row.agent_id, row.data,
            row.timestamp, row.stream_id, row.stream_version, row.schema_version,
            None if row.conforms is None else bool(row.conforms))


def task_row(task: TaskView) -> Row:
    duration = task.duration
    return {
        "task_id": task.task_id,
        "status": None if task.status is None else task.status.value,
        "description": task.description,
        "required_capabilities": task.required_capabilities,
        "agent_id": task.agent_id,
        "winning_bid": task.winning_bid,
        "bid_count": task.bid_count,
        "bids": dict(task.bids),
        "created_at": task.created_at,
        "bidding_at": task.bidding_at,
        "assigned_at": task.assigned_at,
        "started_at": task.started_at,
        "completed_at": task.completed_at,
        "failed_at": task.failed_at,
        "duration_seconds": None if duration is None else duration.total_seconds(),
        "failure_reason": task.failure_reason,
        "tool_calls": task.tool_calls,
        "tool_failures": task.tool_failures,
        "anomaly_count": task.anomaly_count,
        "anomalies": [a._asdict() for a in task.anomalies],
    }


#: The keys of `agent_row`: the columns of the roster in CSV and TSV.
AGENT_COLUMNS = ("agent_id", "name", "presence", "capabilities", "current_task", "bids", "tasks_won",
                 "tasks_completed", "tasks_failed", "sats_earned", "tool_calls", "tool_failures",
                 "joined_at", "left_at", "left_reason", "anomaly_count")


def agent_row(agent: AgentView) -> Row:
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "presence": "never joined" if agent.presence is None else agent.presence.value,
        "capabilities": list(agent.capabilities),
        "current_task": agent.current_task,
        "bids": agent.bids,
        "tasks_won": agent.tasks_won,
        "tasks_completed": agent.tasks_completed,
        "tasks_failed": agent.tasks_failed,
        "sats_earned": agent.sats_earned,
        "tool_calls": agent.tool_calls,
        "tool_failures": agent.tool_failures,
        "joined_at": agent.joined_at,
        "left_at": agent.left_at,
        "left_reason": agent.left_reason,
        "anomaly_count": agent.anomaly_count,
    }


# -- tables ---------------------------------------------------------------------------------------


def _when(value: datetime | str | None) -> str:
    if isinstance(value, str):  # a stored timestamp: UTC ISO-8601
        return value[:19].replace("T", " ")
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _short(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.1f}s"
    return f"{value / 60:.1f}m" if value < 7200 else f"{value / 3600:.1f}h"


#: What a narrow terminal leaves out of an events table first (the position and the type stay).
_DROPPED_FIRST = ("agent", "task", "data", "time (UTC)")
_MIN_DATA = 12


def events_table(rows: Sequence[Row], title: str | None = None, width: int = 120) -> Table:
    """Events one per line, fitted to `width` columns: the data is cut short first, then whole
    columns are left out (agent, task, data, time), never the position or the type."""
    headers = ["#", "time (UTC)", "type", "task", "agent", "data"]
    cells = [[str(r["position"]), _when(r["timestamp"]), r["event_type"], r["task_id"] or "",
              r["agent_id"] or "", r["data"]] for r in rows]
    widths = {name: max([len(name), *(len(c[i]) for c in cells)])
              for i, name in enumerate(headers[:-1])}
    widths["data"] = _MIN_DATA

    def needed(shown: list[str]) -> int:
        return sum(widths[name] for name in shown) + 3 * len(shown) + 1  # borders and padding

    shown = list(headers)
    for name in _DROPPED_FIRST:
        if needed(shown) <= width:
            break
        shown.remove(name)
    left_out = [name for name in headers if name not in shown]
    caption = f"({', '.join(left_out)} left out to fit {width} columns)" if left_out else None
    table = Table(title=title, header_style="bold", caption=caption)
    for name in shown:
        table.add_column(name, justify="right" if name == "#" else "left", no_wrap=True,
                         min_width=widths[name] if name == "#" else None,
                         overflow="ellipsis")
    room = max(_MIN_DATA, width - needed(shown) + _MIN_DATA)
    for cell in cells:
        values = dict(zip(headers, cell, strict=True))
        table.add_row(*(_short(values[name] or None, room) if name == "data" else values[name]
                        for name in shown))
    return table


def event_line(row: Row) -> str:
    """One event on one line (for `tail`)."""
    return "  ".join((f"{row['position']:>7}", _when(row["timestamp"]), f"{row['event_type']:<21}",
                      f"task={row['task_id'] or '-'}", f"agent={row['agent_id'] or '-'}",
                      _short(row["data"] or None, 100)))


def pairs_table(pairs: Mapping[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in pairs.items():
        shown = _when(value) if isinstance(value, datetime) else _short(value, 80)
        table.add_row(key, shown)
    return table


def counts_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


def _widest(values: Iterable[str | None]) -> int:
    return max((len(v) for v in values if v), default=0)


def _add_column(table: Table, name: str, numeric: bool, whole: int | None) -> None:
    """A column; one that identifies a row (`whole`: its widest value) is never cut or wrapped
    on a narrow terminal: the free-text columns give way instead."""
    if whole is None:
        table.add_column(name, justify="right" if numeric else "left")
    else:
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True,
                         min_width=max(whole, 1))


def tasks_table(rows: Sequence[Row], title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    ids = {"task": _widest(r["task_id"] for r in rows),
           "agent": _widest(r["agent_id"] for r in rows)}
    for name in ("task", "status", "agent", "sats", "duration", "tools", "description / reason"):
        _add_column(table, name, name in ("sats", "duration", "tools"), ids.get(name))
    for r in rows:
        tools = f"{r['tool_calls']}" + (f" ({r['tool_failures']} failed)" if r["tool_failures"] else "")
        table.add_row(r["task_id"], r["status"], r["agent_id"] or "",
                      "" if r["winning_bid"] is None else str(r["winning_bid"]),
                      _seconds(r["duration_seconds"]), tools,
                      _short(r["failure_reason"] or r["description"], 48))
    return table


def agents_table(rows: Sequence[Row], title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    ids = {"agent": _widest(r["agent_id"] for r in rows),
           "current task": _widest(r["current_task"] for r in rows), "presence": len("offline")}
    for name in ("agent", "name", "presence", "current task", "won", "done", "failed", "sats",
                 "tools", "capabilities"):
        _add_column(table, name, name in ("won", "done", "failed", "sats", "tools"), ids.get(name))
    for r in rows:
        presence = "[green]online[/]" if r["presence"] == "online" else "[dim]offline[/]"
        table.add_row(r["agent_id"], r["name"] or "", presence, r["current_task"] or "",
                      str(r["tasks_won"]), str(r["tasks_completed"]), str(r["tasks_failed"]),
                      str(r["sats_earned"]), str(r["tool_calls"]), ", ".join(r["capabilities"]))
    return table


# -- whole views ----------------------------------------------------------------------------------


def summary_tables(data: Mapping[str, Any]) -> list[Table]:
    """The summary counts (`projections.summary.counts` plus a recent window) as two tables."""
    by_status = data["tasks_by_status"]
    totals = {"events": data["total"], "agents online": data["agents_online"],
              "tasks": sum(by_status.values()),
              "tasks open": sum(n for k, n in by_status.items() if k not in ("completed", "failed")),
              "tasks completed": by_status.get("completed", 0),
              "tasks failed": by_status.get("failed", 0),
              "tool failures": data["tool_failures"], "system errors": data["errors"]}
    recent = data["last_window"]
    kinds = sorted({k for k, n in data["by_type"].items() if n} | set(recent),
                   key=lambda k: (-data["by_type"].get(k, 0), k))
    rows = [(k, data["by_type"].get(k, 0), recent.get(k, 0)) for k in kinds]
    window = f"last {data['window_minutes']:g} min"
    return [pairs_table(totals, "summary"),
            counts_table(("event type", "all time", window), rows, "events by type")]


def size(value: int | None) -> str:
    """Bytes as a person reads them: 532.4 MB."""
    if value is None:
        return "not known"
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if value >= scale:
            return f"{value / scale:,.1f} {unit}"
    return f"{value} bytes"


def _stamp(text: str) -> str:
    return f"{_when(text)} UTC"


def _model_words(model: Mapping[str, Any], head: int) -> str:
    snap = model["snapshot_position"]
    if model["folded"]:
        lag = model["lag"]
        folded = f"folded to position {model['position']:,}" + (
            " (up to date)" if not lag else f", {lag:,} events behind the head")
    else:
        folded = "not folded in this process"
    if snap is None:
        stored = f"no snapshot yet: a reader opening the log folds all {model['to_fold']:,} events"
    elif not model["to_fold"]:
        stored = f"newest snapshot at position {snap:,}, the head"
    else:
        stored = (f"newest snapshot at position {snap:,}: a reader opening the log folds the "
                  f"{model['to_fold']:,} events after it")
    return f"{folded}; {stored}"


def status_tables(data: Mapping[str, Any]) -> list[Table]:
    """`EventLog.status()` in words, one line per aspect of the log."""
    head, count = data["head"], data["count"]
    backend = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "memory": "in memory"}[data["backend"]]
    pruned = head - count
    if not count:
        events = "none stored" + (f" ({pruned:,} pruned)" if pruned else "")
    else:
        events = (f"{count:,} stored, positions {data['first_position']:,} to {head:,}"
                  + (f" ({pruned:,} before them pruned)" if pruned else ""))
    words: dict[str, str] = {"log": f"{data['location']} ({backend})",
                             "size": size(data["size_bytes"]), "events": events}
    for name, model in data["projections"].items():
        words[f"{name} v{model['version']}"] = _model_words(model, head)
    newest = data["newest_snapshots"]
    words["snapshots"] = ("none" if not data["snapshots"] else
                          f"{data['snapshots']} stored; the newest at position "
                          f"{newest[-1]['position']:,}, taken {_stamp(newest[-1]['created_at'])}")
    prunes = data["prunes"]
    if prunes:
        last = prunes[-1]
        words["prunes"] = (f"{len(prunes)} so far; the latest removed positions {last['first']:,} to "
                           f"{last['last']:,} ({last['removed']:,} events older than "
                           f"{_stamp(last['cutoff'])}) at {_stamp(last['pruned_at'])}"
                           + (f", archived to {last['archive']}" if last["archive"] else
                              ", without an archive"))
    else:
        words["prunes"] = "none"
    table = Table(title="status", show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in words.items():
        table.add_row(key, value)
    return [table]


def demo_tables(agents: Sequence[Row], tasks: Sequence[Row]) -> list[Table]:
    """A demo run's roster, its slowest tasks, and its failures."""
    slowest = sorted((r for r in tasks if r["duration_seconds"] is not None),
                     key=lambda r: -r["duration_seconds"])[:5]
    failed = [r for r in tasks if r["status"] == "failed"]
    reasons: dict[str, int] = {}
    for r in failed:
        reasons[r["failure_reason"] or "?"] = reasons.get(r["failure_reason"] or "?", 0) + 1
    return [agents_table(agents, "agents"), tasks_table(slowest, "slowest tasks"),
            counts_table(("failure reason", "tasks"), sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])),
                         f"{len(failed)} failed tasks"),
            tasks_table(failed[-5:], "latest failures")]
