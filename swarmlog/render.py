"""What the CLI shows: read-model entries and events as plain rows (what `--json` prints), and
the rich tables made from those same rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import IO, Any

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
                        default=_plain).decode()


def _plain(value: Any) -> Any:
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


# -- streamed output: JSON, JSON lines, CSV, TSV ---------------------------------------------------
#
# Each writer takes an iterable and writes as it goes, a thousand records at a time, so that a
# listing of the whole log costs one page of memory, whatever its length.

_CHUNK = 1000


def write_json_lines(lines: Iterable[bytes], out: IO[bytes]) -> int:
    """Write ready JSON lines (each ending in a newline); returns how many."""
    count, chunk = 0, []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= _CHUNK:
            out.write(b"".join(chunk))
            count += len(chunk)
            chunk.clear()
    out.write(b"".join(chunk))
    out.flush()
    return count + len(chunk)


def json_line(row: Mapping[str, Any]) -> bytes:
    """One record as a JSON line."""
    return orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS, default=_plain) + b"\n"


def write_json_array(rows: Iterable[Any], out: IO[bytes]) -> int:
    """Write records as one indented JSON array, exactly as `dumps(list(rows))` would, without
    holding the list; returns how many."""
    count, chunk = 0, []
    for row in rows:
        text = orjson.dumps(row, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
                            default=_plain)
        chunk.append((b"[\n  " if count == 0 else b",\n  ") + text.replace(b"\n", b"\n  "))
        count += 1
        if len(chunk) >= _CHUNK:
            out.write(b"".join(chunk))
            chunk.clear()
    chunk.append(b"[]\n" if count == 0 else b"\n]\n")
    out.write(b"".join(chunk))
    out.flush()
    return count


def cell(value: Any) -> str:
    """A value as a CSV cell: empty for null, true/false, ISO-8601 times, compact JSON for
    lists and objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=_plain).decode()


def write_delimited(columns: Sequence[str], records: Iterable[Sequence[Any]], out: IO[bytes],
                    delimiter: str = ",", header: bool = True) -> int:
    """Write a header and records as CSV (or TSV, with a tab); returns how many records."""
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(columns)
    count = 0
    for record in records:
        writer.writerow([cell(v) for v in record])
        count += 1
        if count % _CHUNK == 0:
            out.write(text.getvalue().encode())
            text.seek(0)
            text.truncate()
    out.write(text.getvalue().encode())
    out.flush()
    return count


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


def tasks_table(rows: Sequence[Row], title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    for name in ("task", "status", "agent", "sats", "duration", "tools", "description / reason"):
        table.add_column(name, justify="right" if name in ("sats", "duration", "tools") else "left")
    for r in rows:
        tools = f"{r['tool_calls']}" + (f" ({r['tool_failures']} failed)" if r["tool_failures"] else "")
        table.add_row(r["task_id"], r["status"], r["agent_id"] or "",
                      "" if r["winning_bid"] is None else str(r["winning_bid"]),
                      _seconds(r["duration_seconds"]), tools,
                      _short(r["failure_reason"] or r["description"], 48))
    return table


def agents_table(rows: Sequence[Row], title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    for name in ("agent", "name", "presence", "current task", "won", "done", "failed", "sats",
                 "tools", "capabilities"):
        numeric = name in ("won", "done", "failed", "sats", "tools")
        table.add_column(name, justify="right" if numeric else "left")
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


def status_tables(data: Mapping[str, Any]) -> list[Table]:
    """`EventLog.status()`: its scalars as one table, each nested mapping or list as another."""
    tables = [pairs_table({k: v for k, v in data.items() if not isinstance(v, dict | list)}, "status")]
    for key, value in data.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(c for v in value.values() for c in v))
            rows = [(name, *(v.get(c, "") for c in columns)) for name, v in value.items()]
            tables.append(counts_table((key, *columns), rows, key))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(c for v in value for c in v))
            tables.append(counts_table(columns, ([v.get(c, "") for c in columns] for v in value), key))
        elif isinstance(value, dict | list) and value:
            tables.append(pairs_table({key: value}))
    return tables


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
