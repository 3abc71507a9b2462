"""A task's timeline as SVG geometry, drawn on the server: its lifecycle (bidding -> assigned ->
running -> completed or failed) as one band of phases, its bids as marks, and its tool calls as
bars on the same time axis, failures marked. The template turns the shapes into SVG elements
(escaping every text), so no script draws it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain.codec import StoredEvent
from projections.tasks import TaskView
from swarmlog.web.present import payload

WIDTH = 1200
LEFT = 96  # the lane labels
RIGHT = 64  # room for the outcome's label
AXIS = 26  # the axis and its labels, on top
PHASE_LANE = 30
BID_LANE = 22
TOOL_LANE = 20
MAX_TOOL_LANES = 12


@dataclass(frozen=True, slots=True)
class Span:
    """A bar on a lane: a phase, or a tool call."""

    x: float
    width: float
    y: float
    height: float
    kind: str  # the CSS class: a phase name, or tool / tool-failed / tool-open
    label: str  # drawn inside when it fits
    title: str  # the tooltip


@dataclass(frozen=True, slots=True)
class Mark:
    """A point in time on a lane: a bid, the end of the task, a failed tool call."""

    x: float
    y: float
    kind: str
    label: str
    title: str


@dataclass
class Timeline:
    width: int = WIDTH
    height: int = 0
    ticks: list[tuple[float, str]] = field(default_factory=list)
    lanes: list[tuple[float, str]] = field(default_factory=list)  # (y of the middle, label)
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    start: str = ""
    end: str = ""
    hidden_calls: int = 0  # tool calls beyond the lanes drawn


def _time(text: str) -> datetime | None:
    """The time a stored timestamp says, or None when it is not a time with a timezone (as
    the read models take it)."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


class _Axis:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.span = max((end - start).total_seconds(), 1.0)
        self.plot = WIDTH - LEFT - RIGHT

    def x(self, moment: datetime) -> float:
        seconds = (moment - self.start).total_seconds()
        return round(LEFT + max(0.0, min(seconds / self.span, 1.0)) * self.plot, 2)

    def ticks(self) -> list[tuple[float, str]]:
        steps = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200,
                 86400)
        step = next((s for s in steps if self.span / s <= 8), 86400 * max(1, int(self.span // 691200)))
        first = self.start.replace(microsecond=0)
        ticks: list[tuple[float, str]] = []
        k = 0
        while True:
            try:
                moment = first + timedelta(seconds=k * step)
            except OverflowError:  # an axis that ends at the end of time
                return ticks
            k += 1
            seconds = (moment - self.start).total_seconds()
            if seconds < 0:
                continue
            if seconds > self.span:
                return ticks
            fmt = "%H:%M:%S" if self.span < 86400 else "%m-%d %H:%M"
            ticks.append((self.x(moment), moment.strftime(fmt)))


def _seconds(delta: timedelta) -> str:
    value = delta.total_seconds()
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _phases(task: TaskView, end: datetime) -> list[tuple[str, datetime, datetime | None]]:
    """(phase, from, to) in lifecycle order, for the steps the task took."""
    steps = [("created", task.created_at), ("bidding", task.bidding_at),
             ("assigned", task.assigned_at), ("running", task.started_at)]
    taken = [(name, at) for name, at in steps if at is not None]
    finish = task.finished_at
    phases: list[tuple[str, datetime, datetime | None]] = []
    for i, (name, at) in enumerate(taken):
        until = taken[i + 1][1] if i + 1 < len(taken) else finish
        phases.append((name, at, until if until is not None else None))
    return phases


def build(task: TaskView, rows: list[StoredEvent], now: datetime) -> Timeline:
    """The timeline of one task from its read-model state and its stored events."""
    moments = [m for m in (_time(r.timestamp) for r in rows) if m is not None]
    known = [m for m in (task.created_at, task.bidding_at, task.assigned_at, task.started_at,
                         task.finished_at) if m is not None]
    if not moments and not known:
        return Timeline(height=0)
    start = min(moments + known)
    last = max(moments + known)
    # An open task runs on to now (within an hour of its last event: a stale one stops there).
    end = last if not task.is_open or last >= now else min(now, last + timedelta(hours=1))
    if end <= start:
        with contextlib.suppress(OverflowError):  # (at the end of time it stays a moment)
            end = start + timedelta(seconds=1)
    axis = _Axis(start, end)
    line = Timeline(start=f"{start:%Y-%m-%d %H:%M:%S}", end=f"{end:%Y-%m-%d %H:%M:%S}")
    line.ticks = axis.ticks()
    y: float = AXIS
    # The lifecycle band.
    line.lanes.append((y + PHASE_LANE / 2, "lifecycle"))
    for name, at, until in _phases(task, end):
        x0, x1 = axis.x(at), axis.x(until or end)
        length = f"{_seconds((until or end) - at)}" + ("" if until else ", still going")
        line.spans.append(Span(x0, max(x1 - x0, 2.0), y + 4, PHASE_LANE - 8, f"phase-{name}",
                               name, f"{name}: {length} from {at:%H:%M:%S}"))
    if task.finished_at is not None and task.status is not None:
        outcome = task.status.value
        reason = f": {task.failure_reason}" if outcome == "failed" and task.failure_reason else ""
        line.marks.append(Mark(axis.x(task.finished_at), y + PHASE_LANE / 2, f"end-{outcome}",
                               outcome, f"{outcome} at {task.finished_at:%H:%M:%S}{reason}"))
    y += PHASE_LANE
    # The bids.
    line.lanes.append((y + BID_LANE / 2, f"bids ({task.bid_count})"))
    for row in rows:
        if row.event_type == "bid.submitted":
            bid_at = _time(row.timestamp)
            data = payload(row)
            sats = data.get("bid_sats") if isinstance(data, dict) else None
            if bid_at is not None:
                won = row.agent_id is not None and row.agent_id == task.agent_id
                line.marks.append(Mark(
                    axis.x(bid_at), y + BID_LANE / 2, "bid-won" if won else "bid", "",
                    f"{row.agent_id or '?'} bid {sats} sats at {bid_at:%H:%M:%S}"
                    + (" (won)" if won else "")))
    y += BID_LANE
    y = _tools(line, axis, rows, end, y)
    line.height = int(y + 6)
    return line


def _tools(line: Timeline, axis: _Axis, rows: list[StoredEvent], end: datetime,
           y: float) -> float:
    """The tool calls as bars, packed into lanes; returns the y below them."""
    calls: dict[str, dict[str, object]] = {}
    order: list[str] = []
    for row in rows:
        if not row.event_type.startswith("tool."):
            continue
        at = _time(row.timestamp)
        data = payload(row)
        data = data if isinstance(data, dict) else {}
        key = str(data.get("call_id") or f"#{row.position}")
        if row.event_type == "tool.called":
            if key in calls:
                key = f"{key}#{row.position}"
            calls[key] = {"tool": data.get("tool"), "start": at, "agent": row.agent_id}
            order.append(key)
            continue
        call = calls.get(key)
        if call is None:  # an outcome without its call: drawn from its duration
            duration = data.get("duration_ms")
            began = at
            if at is not None and isinstance(duration, int | float):
                with contextlib.suppress(OverflowError, ValueError):  # (beyond any datetime)
                    began = at - timedelta(milliseconds=duration)
            call = calls[key] = {"tool": data.get("tool"), "start": began, "agent": row.agent_id}
            order.append(key)
        call["end"] = at
        call["failed"] = row.event_type == "tool.failed"
        call["error"] = data.get("error")
    lanes: list[float] = []  # the right edge of each lane
    for key in order:
        call = calls[key]
        start = call.get("start")
        if not isinstance(start, datetime):
            continue
        finish = call.get("end")
        done = isinstance(finish, datetime)
        x0 = axis.x(start)
        x1 = axis.x(finish if isinstance(finish, datetime) else end)
        width = max(x1 - x0, 3.0)
        lane = next((i for i, edge in enumerate(lanes) if edge <= x0), None)
        if lane is None:
            if len(lanes) >= MAX_TOOL_LANES:
                line.hidden_calls += 1
                continue
            lanes.append(0.0)
            lane = len(lanes) - 1
        lanes[lane] = x0 + width + 2
        top = y + lane * TOOL_LANE
        tool = str(call.get("tool") or "tool")
        failed = bool(call.get("failed"))
        kind = "tool-failed" if failed else ("tool" if done else "tool-open")
        took = _seconds(finish - start) if isinstance(finish, datetime) else "no outcome yet"
        title = f"{tool} ({key}): {'failed' if failed else 'completed' if done else 'open'}, {took}"
        if failed and call.get("error"):
            title += f": {call['error']}"
        line.spans.append(Span(x0, width, top + 3, TOOL_LANE - 6, kind, tool, title))
        if failed:
            line.marks.append(Mark(x0 + width, top + TOOL_LANE / 2, "fail", "", title))
    line.lanes.append((y + TOOL_LANE / 2, "tools" if lanes else "tools (none)"))
    return y + max(len(lanes), 1) * TOOL_LANE
