"""What the overview shows: the summary figures, what is running now, the last hour's failures
by agent, and the events per minute by category (drawn as an SVG bar chart on the server)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.codec import StoredEvent
from domain.task import OPEN_STATUSES, TaskStatus
from projections.models import ReadModels, counts
from projections.summary import TYPES
from projections.tasks import get_task
from store import EventFilter
from swarmlog.web import queries
from swarmlog.web.present import CATEGORIES, category, when
from swarmlog.web.state import Viewer

_WORKING = (TaskStatus.ASSIGNED, TaskStatus.RUNNING)
RUNNING_SHOWN = 20
FAILURE_TYPES = frozenset({"task.failed", "tool.failed", "system.error"})
#: The failures of the last hour read to rank the agents (the newest, if there are more).
FAILURES_READ = 2000


def figures(models: ReadModels) -> dict[str, Any]:
    """The summary (`projections.models.counts`, the CLI's) and the tasks working right now."""
    data = counts(models)
    by_status = data["tasks_by_status"]
    data["tasks"] = sum(by_status.values())
    data["tasks_open"] = sum(n for k, n in by_status.items() if TaskStatus(k) in OPEN_STATUSES)
    working = [t for t in models.tasks.tasks.values() if t.status in _WORKING]
    working.sort(key=lambda t: t.started_at or t.assigned_at or datetime.min.replace(tzinfo=UTC),
                 reverse=True)
    data["working"] = len(working)
    data["running"] = [{"task_id": t.task_id, "status": t.status.value if t.status else "",
                        "agent_id": t.agent_id, "description": t.description or "",
                        "since": when(t.started_at or t.assigned_at),
                        "tool_calls": t.tool_calls, "tool_failures": t.tool_failures}
                       for t in working[:RUNNING_SHOWN]]
    return data


@dataclass(frozen=True, slots=True)
class AgentFailures:
    agent_id: str
    task_failures: int
    tool_failures: int

    @property
    def total(self) -> int:
        return self.task_failures + self.tool_failures


def failures(viewer: Viewer, now: datetime) -> tuple[list[AgentFailures], list[StoredEvent], int]:
    """The last hour's failures: per agent (most first; a failed task counts against the agent
    it was assigned to), the newest few events, and how many were read."""
    since = now - timedelta(hours=1)
    rows = queries.recent(viewer.store, EventFilter(types=FAILURE_TYPES, until=now), since,
                          FAILURES_READ, viewer.rate)
    tally: dict[str, list[int]] = {}
    unnamed = [r.task_id for r in rows if r.event_type == "task.failed" and r.agent_id is None
               and r.task_id is not None]
    owners: dict[str, str | None] = {}
    if unnamed:
        with viewer.models() as models:
            for task_id in dict.fromkeys(unnamed):
                view = get_task(models.tasks, task_id)
                owners[task_id] = None if view is None else view.agent_id
    for row in rows:
        agent = row.agent_id or (owners.get(row.task_id) if row.task_id else None)
        if agent is None or row.event_type == "system.error":
            continue
        slot = tally.setdefault(agent, [0, 0])
        slot[0 if row.event_type == "task.failed" else 1] += 1
    ranked = sorted((AgentFailures(a, n[0], n[1]) for a, n in tally.items()),
                    key=lambda f: (-f.total, -f.task_failures, f.agent_id))
    return ranked, rows[:10], len(rows)


@dataclass(frozen=True, slots=True)
class Segment:
    category: str
    y: float
    height: float
    count: int


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    label: str
    total: int
    segments: list[Segment]


@dataclass(frozen=True, slots=True)
class Chart:
    """Events per minute, stacked by category, as SVG geometry (viewBox 0 0 width height)."""

    width: int
    height: int
    plot_top: int
    plot_bottom: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (x, label)
    peak: int
    quiet: bool  # nothing in the last hour by the clock: the log's last hour is shown
    categories: tuple[str, ...] = CATEGORIES


def chart(models: ReadModels, now: datetime, minutes: int = 60) -> Chart:
    """The per-minute counts of the last `minutes` minutes (or of the log's last ones)."""
    end, buckets = queries.minute_counts(models.summary, minutes, now)
    slot_category = [CATEGORIES.index(category(t)) for t in TYPES]
    width, height, left, top, bottom = 1200, 170, 40, 10, 140
    step = (width - left - 24) / minutes
    totals = []
    for _, bucket in buckets:
        per = [0] * len(CATEGORIES)
        for i, n in enumerate(bucket):
            if n:
                per[slot_category[i]] += n
        totals.append(per)
    peak = max((sum(p) for p in totals), default=0)
    scale = (bottom - top) / peak if peak else 0.0
    bars = []
    for k, ((minute, _), per) in enumerate(zip(buckets, totals, strict=True)):
        y = float(bottom)
        segments = []
        for c, n in enumerate(per):
            if n:
                h = n * scale
                y -= h
                segments.append(Segment(CATEGORIES[c], round(y, 2), round(h, 2), n))
        moment = datetime.fromtimestamp(minute * 60, UTC)
        detail = ", ".join(f"{s.category} {s.count}" for s in reversed(segments))
        bars.append(Bar(round(left + k * step + 1, 2), round(max(step - 2, 1), 2),
                        f"{moment:%H:%M} UTC: {sum(per)} events" + (f" ({detail})" if detail else ""),
                        sum(per), segments))
    ticks = []
    for k in range(0, minutes + 1, 10):
        moment = datetime.fromtimestamp((end - minutes + 1 + k) * 60, UTC)
        ticks.append((round(left + k * step, 2), f"{moment:%H:%M}"))
    quiet = end != int((now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(minutes=1))
    return Chart(width, height, top, bottom, bars, ticks, peak, quiet)
