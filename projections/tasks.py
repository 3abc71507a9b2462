"""Task state: per task its lifecycle (`domain.task`), the time of each step, tool calls, anomalies.

The lifecycle is the task decider's own: `evolve_tasks` folds each task through
`domain.task.evolve` and notes what `domain.task.refusal` refuses as an anomaly on the task, so
the read model shows the lifecycle the coordinator would have accepted and the anomalies show
what else the log says. Each fold reports what it did to a task (`TaskChange`); the agent roster
and the summary consume that instead of following the lifecycle themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson

from domain import task
from domain.events import Event, EventType, TaskCreated, TaskFailed
from domain.task import OPEN_STATUSES, TERMINAL_STATUSES, TaskState, TaskStatus
from projections.base import Anomaly, Cold, Tiered, dumps, note, parse_anomalies, parse_time

_T = EventType
TOOL_TYPES = frozenset({_T.TOOL_CALLED, _T.TOOL_COMPLETED, _T.TOOL_FAILED})


@dataclass(slots=True, kw_only=True)
class TaskView(TaskState):
    """What is known about one task: the decider's state, and what the log says besides."""

    description: str | None = None
    created_at: datetime | None = None  # None: the log has no task.created for it
    bidding_at: datetime | None = None
    auction_closed_at: datetime | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    failure_reason: str | None = None
    tool_calls: int = 0
    tool_failures: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    anomaly_count: int = 0
    first_position: int = 0  # the position of the first event that named it

    @property
    def is_open(self) -> bool:
        """Not completed or failed yet."""
        return self.status in OPEN_STATUSES

    @property
    def finished_at(self) -> datetime | None:
        """When it completed or failed."""
        return self.completed_at or self.failed_at

    @property
    def duration(self) -> timedelta | None:
        """The agent's working time: from task.started to completion or failure."""
        end = self.finished_at
        return None if end is None or self.started_at is None else end - self.started_at

    @property
    def turnaround(self) -> timedelta | None:
        """From task.created to completion or failure."""
        end = self.finished_at
        return None if end is None or self.created_at is None else end - self.created_at


class TaskChange(NamedTuple):
    """What an event did to a task: the task after it, its status before (None: first seen
    now), and whether the lifecycle applied the event."""

    task: TaskView
    before: TaskStatus | None
    applied: bool


def _parse_task(text: str) -> TaskView:
    return _task(orjson.loads(text))


def _task(fields: dict[str, Any]) -> TaskView:
    """A task that `dumps` wrote."""
    for name in _TIME_FIELDS:
        fields[name] = parse_time(fields[name])
    fields["status"] = None if fields["status"] is None else TaskStatus(fields["status"])
    fields["anomalies"] = parse_anomalies(fields["anomalies"])
    return TaskView(**fields)


_TIME_FIELDS = ("created_at", "bidding_at", "auction_closed_at", "assigned_at", "started_at",
                "completed_at", "failed_at")


def is_closed(view: TaskView) -> bool:
    """Completed or failed: it may leave memory at the next snapshot."""
    return view.status in TERMINAL_STATUSES


@dataclass(slots=True)
class TasksState:
    """Every task by id, plus anomalies that name no known task.

    `tasks` holds the tasks in memory: the open ones, and those closed since the last snapshot;
    the others are read from the store when needed. `all_tasks`, `get_task` and the other
    queries see every task."""

    tasks: Tiered[TaskView] = field(default_factory=lambda: Tiered(_parse_task, prefix="task:"))
    anomalies: list[Anomaly] = field(default_factory=list)
    anomaly_count: int = 0  # every anomaly, those noted on tasks included

    def dump(self, tasks: dict[str, TaskView]) -> dict[str, Any]:
        return {"tasks": dict(sorted(tasks.items(), key=lambda kv: kv[1].first_position)),
                "anomalies": self.anomalies, "anomaly_count": self.anomaly_count}

    @classmethod
    def load(cls, raw: dict[str, Any]) -> TasksState:
        tasks = Tiered(_parse_task, ((k, _task(v)) for k, v in raw["tasks"].items()),
                       prefix="task:")
        return cls(tasks, parse_anomalies(raw["anomalies"]), raw["anomaly_count"])

    def split(self) -> tuple[dict[str, Any], Iterable[tuple[str, str]]]:
        kept, items = self.tasks.split(is_closed, dumps)
        return self.dump(kept), items

    def spill(self) -> None:
        self.tasks.spill(is_closed, dumps)

    def attach(self, cold: Cold) -> None:
        self.tasks.attach(cold, is_closed)


# -- the fold (plain: the oracle of `projections.fast`) ------------------------------------------


def evolve_tasks(state: TasksState, position: int, event: Event) -> TaskChange | None:
    """Fold one event into the task read model; what it did to a task, if it touched one."""
    kind = event.event_type
    if kind in task.LIFECYCLE_TYPES:
        return _lifecycle(state, position, event)
    if kind in TOOL_TYPES and event.task_id is not None:
        view = state.tasks.recall(event.task_id)
        if view is None:
            note(state, None, position, kind.value, f"unknown task {event.task_id!r}")
        elif kind is _T.TOOL_CALLED:
            view.tool_calls += 1
        elif kind is _T.TOOL_FAILED:
            view.tool_failures += 1
    return None


def _lifecycle(state: TasksState, position: int, event: Event) -> TaskChange | None:
    kind = event.event_type
    task_id = event.task_id
    if task_id is None:
        note(state, None, position, kind.value, "no task_id")
        return None
    view = state.tasks.recall(task_id)
    before = None if view is None else view.status
    if view is None:
        view = TaskView(task_id=task_id, first_position=position)
        if kind is not _T.TASK_CREATED:
            note(state, view, position, kind.value, "unknown task (no task.created before it)")
    refused = task.refusal(view, event)
    after = task.evolve(view, event)
    assert isinstance(after, TaskView)  # `evolve` keeps the class of what it is given
    state.tasks[task_id] = after
    if refused is not None:
        note(state, after, position, kind.value, refused)
        return TaskChange(after, before, False)
    _record(state, after, position, event)
    return TaskChange(after, before, True)


def _record(state: TasksState, view: TaskView, position: int, event: Event) -> None:
    """What the view keeps of an applied event besides the decider's state."""
    moment = event.timestamp
    match event.event_type:
        case _T.TASK_CREATED:
            assert isinstance(event, TaskCreated)
            view.description = event.data.description
            view.created_at = moment
        case _T.TASK_BIDDING:
            view.bidding_at = moment
        case _T.AUCTION_CLOSED:
            view.auction_closed_at = moment
        case _T.TASK_ASSIGNED:
            view.assigned_at = moment
        case _T.TASK_STARTED:
            view.started_at = moment
            _check_worker(state, view, position, event)
        case _T.TASK_COMPLETED:
            view.completed_at = moment
            _check_worker(state, view, position, event)
        case _T.TASK_FAILED:
            assert isinstance(event, TaskFailed)
            view.failed_at = moment
            view.failure_reason = event.data.reason


def worker_mismatch(view: TaskState, agent_id: str | None) -> str | None:
    """Why work reported by `agent_id` on this task is odd: not the assigned agent."""
    if agent_id == view.agent_id:
        return None
    who = "no agent_id" if agent_id is None else f"by {agent_id!r}"
    return f"{who}, but assigned to {view.agent_id!r}"


def _check_worker(state: TasksState, view: TaskView, position: int, event: Event) -> None:
    odd = worker_mismatch(view, event.agent_id)
    if odd is not None:
        note(state, view, position, event.event_type.value, odd)


# -- queries (they return copies, safe to keep after the runner's lock is released) ----------


def _copy(view: TaskView) -> TaskView:
    caps = view.required_capabilities
    return replace(view, bids=dict(view.bids), anomalies=list(view.anomalies),
                   required_capabilities=None if caps is None else list(caps))


def _in_order(tasks: dict[str, TaskView]) -> list[TaskView]:
    return sorted(tasks.values(), key=lambda t: t.first_position)


def get_task(state: TasksState, task_id: str) -> TaskView | None:
    """One task, or None if the log never named it."""
    view = state.tasks.peek(task_id)
    return None if view is None else _copy(view)


def all_tasks(state: TasksState) -> list[TaskView]:
    """Every task, in order of first appearance (closed tasks are read from the store)."""
    return [_copy(t) for t in _in_order(state.tasks.merged())]


def tasks_by_status(state: TasksState, status: TaskStatus | str) -> list[TaskView]:
    """The tasks in one status, in order of first appearance."""
    wanted = TaskStatus(status)
    # Open tasks are all in memory; closed ones may be in the store.
    tasks = state.tasks if wanted in OPEN_STATUSES else state.tasks.merged()
    return [_copy(t) for t in _in_order(tasks) if t.status is wanted]


def open_tasks(state: TasksState) -> list[TaskView]:
    """The tasks not completed or failed yet, in order of first appearance."""
    return [_copy(t) for t in _in_order(state.tasks) if t.status in OPEN_STATUSES]
