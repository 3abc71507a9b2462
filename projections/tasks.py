"""Task state: per task its status, bids, assignment, transition times, tool calls and anomalies.

Statuses follow the one table in `domain.lifecycle` (through `advance_task`): an event the table
refuses changes nothing and is noted as an anomaly on the task, so the read model shows the
lifecycle the coordinator would have accepted and the anomalies show what else the log says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from domain.events import EventType
from domain.lifecycle import OPEN_STATUSES, TERMINAL_STATUSES, TaskStatus
from projections.base import (
    Anomaly,
    Cold,
    DispatchingFold,
    Tiered,
    advance_task,
    dumps,
    missing_field,
    moves_on,
    note,
    parse_anomalies,
    parse_time,
)

_T = EventType


@dataclass(slots=True)
class TaskView:
    """What is known about one task."""

    task_id: str
    status: TaskStatus = TaskStatus.CREATED
    description: str | None = None
    required_capabilities: list[str] | None = None
    created_at: datetime | None = None  # None: the log has no task.created for it
    bidding_at: datetime | None = None
    auction_closed_at: datetime | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    bid_count: int = 0
    lowest_bid: int | None = None
    lowest_bidder: str | None = None  # the first agent to offer the lowest bid
    bids: dict[str, int] = field(default_factory=dict)  # agent -> its latest bid
    agent_id: str | None = None  # the assigned agent
    winning_bid: int | None = None
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


def _parse_task(text: str) -> TaskView:
    return _task(orjson.loads(text))


def _is_closed(task: TaskView) -> bool:
    return task.status in TERMINAL_STATUSES


@dataclass(slots=True)
class TasksState:
    """Every task by id, plus anomalies that name no known task.

    `tasks` holds the tasks in memory: the open ones, and those closed since the last snapshot;
    the others are read from the store when needed. `all_tasks`, `get_task` and the other
    queries see every task."""

    tasks: Tiered[TaskView] = field(default_factory=lambda: Tiered(_parse_task))
    anomalies: list[Anomaly] = field(default_factory=list)
    anomaly_count: int = 0  # every anomaly, those noted on tasks included


_TIME_FIELDS = (
    "created_at",
    "bidding_at",
    "auction_closed_at",
    "assigned_at",
    "started_at",
    "completed_at",
    "failed_at",
)


class TasksProjection(DispatchingFold):
    """The task-state read model. `plain=True` folds without the fast paths (the test oracle)."""

    name = "tasks"
    version = 2

    def initial(self) -> TasksState:
        return TasksState()

    def dump(self, state: TasksState) -> str:
        return self._dump(state, _by_position(state.tasks.merged()))

    def split(self, state: TasksState) -> tuple[str, list[tuple[str, str]]]:
        open_, items = state.tasks.split(_is_closed, dumps)
        return self._dump(state, open_), items

    def attach(self, state: TasksState, cold: Cold) -> None:
        state.tasks.attach(cold, _is_closed)

    def _dump(self, state: TasksState, tasks: dict[str, TaskView]) -> str:
        return dumps({"tasks": tasks, "anomalies": state.anomalies,
                      "anomaly_count": state.anomaly_count})

    def load(self, text: str) -> TasksState:
        raw = orjson.loads(text)
        tasks = Tiered(_parse_task, ((k, _task(fields)) for k, fields in raw["tasks"].items()))
        return TasksState(tasks, parse_anomalies(raw["anomalies"]), raw["anomaly_count"])


def _task(fields: dict[str, Any]) -> TaskView:
    """A task that `dumps` wrote."""
    for name in _TIME_FIELDS:
        fields[name] = parse_time(fields[name])
    fields["status"] = TaskStatus(fields["status"])
    fields["anomalies"] = parse_anomalies(fields["anomalies"])
    return TaskView(**fields)


def _by_position(tasks: dict[str, TaskView]) -> dict[str, TaskView]:
    """Tasks in order of first appearance."""
    return dict(sorted(tasks.items(), key=lambda kv: kv[1].first_position))


# -- the fold ---------------------------------------------------------------------------------


def _on_task_event(state: TasksState, position: int, event: Any) -> None:
    task_id = event.task_id
    if task_id is None:
        note(state, None, position, event, "no task_id")
        return
    task = state.tasks.recall(task_id)
    status = None if task is None else task.status
    if task is None:
        task = state.tasks[task_id] = TaskView(task_id, first_position=position)
        if event.event_type is not _T.TASK_CREATED:
            note(state, task, position, event, "unknown task (no task.created before it)")
    after, applied = advance_task(status, event)
    if not applied:
        missing = missing_field(event)
        why = f"no {missing}" if missing else f"not allowed while the task is {after.value}"
        note(state, task, position, event, why)
        return
    task.status = after
    _EFFECTS[event.event_type](state, task, position, event)


def _created(state: TasksState, task: TaskView, position: int, event: Any) -> None:
    data = event.data
    task.description = data.description
    caps = data.required_capabilities
    task.required_capabilities = None if caps is None else list(caps)
    task.created_at = event.timestamp


def _bidding(state: TasksState, task: TaskView, position: int, event: Any) -> None:
    task.bidding_at = event.timestamp


def _bid(state: TasksState, task: TaskView, position: int, event: Any) -> None:
    _add_bid(task, event.agent_id, event.data.bid_sats)


def _add_bid(task: TaskView, agent_id: str, sats: int) -> None:
    task.bid_count += 1
    task.bids[agent_id] = sats
    if task.lowest_bid is None or sats < task.lowest_bid:  # ties: the earlier bid stays lowest
        task.lowest_bid = sats
        task.lowest_bidder = agent_id


def _auction_closed(state: TasksState, task: TaskView, position: int, event: Any) -> None:
    task.auction_closed_at = event.timestamp


def _assigned(state: TasksState, task: TaskView, position: int, event: Any) -> None:
    task.agent_id = agent_id = event.agent_id
    sats = event.data.bid_sats
    task.winning_bid = task.bids.get(agent_id) if sats is None else sats
    task.assigned_at = event.timestamp


def _check_worker(state: TasksState, task: TaskView, position: int, event: Any) -> None:
    if event.agent_id != task.agent_id:
        who = "no agent_id" if event.agent_id is None else f"by {event.agent_id!r}"
        note(state, task, position, event, f"{who}, but assigned to {task.agent_id!r}")


def _started(state: TasksState, task: TaskView, position: int, event: Any) -> None:
    task.started_at = event.timestamp
    _check_worker(state, task, position, event)


def _completed(state: TasksState, task: TaskView, position: int, event: Any) -> None:
    task.completed_at = event.timestamp
    _check_worker(state, task, position, event)


def _failed(state: TasksState, task: TaskView, position: int, event: Any) -> None:
    task.failed_at = event.timestamp
    task.failure_reason = event.data.reason


def _tool_event(counter: str | None) -> Callable[[TasksState, int, Any], None]:
    """The fold of a tool event: bump `counter` on its task (a tool call needs no task; one
    naming a task the log does not know is an anomaly)."""

    def fold(state: TasksState, position: int, event: Any) -> None:
        task_id = event.task_id
        if task_id is None:
            return
        task = state.tasks.recall(task_id)
        if task is None:
            _unknown_task(state, position, event)
        elif counter is not None:
            setattr(task, counter, getattr(task, counter) + 1)

    return fold


_tool_called = _tool_event("tool_calls")
_tool_failed = _tool_event("tool_failures")
_tool_completed = _tool_event(None)


def _unknown_task(state: TasksState, position: int, event: Any) -> None:
    note(state, None, position, event, f"unknown task {event.task_id!r}")


_Effect = Callable[[TasksState, TaskView, int, Any], None]
_EFFECTS: dict[EventType, _Effect] = {
    _T.TASK_CREATED: _created,
    _T.TASK_BIDDING: _bidding,
    _T.BID_SUBMITTED: _bid,
    _T.AUCTION_CLOSED: _auction_closed,
    _T.TASK_ASSIGNED: _assigned,
    _T.TASK_STARTED: _started,
    _T.TASK_COMPLETED: _completed,
    _T.TASK_FAILED: _failed,
}
_Handler = Callable[[TasksState, int, Any], None]


def _fast_path(kind: EventType) -> _Handler:
    """The handler of one task event type: the common case (a known task, a move the table
    allows, the ids it needs present) inline; anything else through the plain `_on_task_event`."""
    moves = moves_on(kind)
    effect = _EFFECTS[kind]
    checked = kind is _T.BID_SUBMITTED or kind is _T.TASK_ASSIGNED

    def handle(state: TasksState, position: int, event: Any) -> None:
        task = state.tasks.get(event.task_id)
        if task is not None:
            after = moves.get(task.status)
            if after is not None and not (checked and missing_field(event)):
                task.status = after
                effect(state, task, position, event)
                return
        _on_task_event(state, position, event)

    return handle


_BID_MOVES = moves_on(_T.BID_SUBMITTED)


def _fast_bid(state: TasksState, position: int, event: Any) -> None:
    """Bids are the commonest task event: their fast path also skips `missing_field`."""
    task = state.tasks.get(event.task_id)
    if task is not None:
        after = _BID_MOVES.get(task.status)
        agent_id = event.agent_id
        sats = event.data.bid_sats
        if after is not None and agent_id is not None and sats is not None:
            task.status = after
            _add_bid(task, agent_id, sats)
            return
    _on_task_event(state, position, event)


_TOOLS: dict[EventType, _Handler] = {
    _T.TOOL_CALLED: _tool_called,
    _T.TOOL_COMPLETED: _tool_completed,
    _T.TOOL_FAILED: _tool_failed,
}
_PLAIN_HANDLERS: dict[EventType, _Handler] = {**dict.fromkeys(_EFFECTS, _on_task_event), **_TOOLS}
_HANDLERS: dict[EventType, _Handler] = {
    **{kind: _fast_path(kind) for kind in _EFFECTS},
    _T.BID_SUBMITTED: _fast_bid,
    **_TOOLS,
}
TasksProjection._FAST, TasksProjection._PLAIN = _HANDLERS, _PLAIN_HANDLERS


# -- queries (they return copies, safe to keep after the runner's lock is released) ----------


def _copy(task: TaskView) -> TaskView:
    caps = task.required_capabilities
    return replace(
        task,
        bids=dict(task.bids),
        anomalies=list(task.anomalies),
        required_capabilities=None if caps is None else list(caps),
    )


def get_task(state: TasksState, task_id: str) -> TaskView | None:
    """One task, or None if the log never named it."""
    task = state.tasks.peek(task_id)
    return None if task is None else _copy(task)


def all_tasks(state: TasksState) -> list[TaskView]:
    """Every task, in order of first appearance (closed tasks are read from the store)."""
    return [_copy(t) for t in _by_position(state.tasks.merged()).values()]


def tasks_by_status(state: TasksState, status: TaskStatus | str) -> list[TaskView]:
    """The tasks in one status, in order of first appearance."""
    wanted = TaskStatus(status)
    # Open tasks are all in memory; closed ones may be in the store.
    tasks = state.tasks if wanted in OPEN_STATUSES else state.tasks.merged()
    return [_copy(t) for t in _by_position(tasks).values() if t.status is wanted]


def open_tasks(state: TasksState) -> list[TaskView]:
    """The tasks not completed or failed yet, in order of first appearance."""
    return [_copy(t) for t in _by_position(state.tasks).values() if t.status in OPEN_STATUSES]


def count_by_status(state: TasksState) -> dict[str, int]:
    """How many tasks are in each status (every status listed)."""
    counts = dict.fromkeys(TaskStatus, 0)
    for task in state.tasks.merged().values():
        counts[task.status] += 1
    return {status.value: n for status, n in counts.items()}
