"""The task-state read model: statuses, bids, assignment, times, tool calls, anomalies, queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.codec import build_event
from domain.events import Event, EventType
from domain.lifecycle import TaskStatus
from projections.base import MAX_ANOMALIES, fold
from projections.tasks import (
    TasksProjection,
    TasksState,
    count_by_status,
    get_task,
    open_tasks,
    tasks_by_status,
)
from tests.strategies import recorded

_T = EventType
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def ev(kind: EventType, task: str | None = "t1", agent: str | None = None, minute: float = 0,
       **data: Any) -> Event:
    return build_event(kind, "coordinator", task, agent, data,
                       timestamp=T0 + timedelta(minutes=minute))


def tasks(*events: Event) -> TasksState:
    return fold(TasksProjection(), recorded(events))


AUCTION = [
    ev(_T.TASK_CREATED, description="index the docs", minute=0),
    ev(_T.TASK_BIDDING, minute=1),
    ev(_T.BID_SUBMITTED, agent="a1", bid_sats=30, minute=2),
    ev(_T.BID_SUBMITTED, agent="a2", bid_sats=20, minute=2),
    ev(_T.BID_SUBMITTED, agent="a3", bid_sats=20, minute=2),
]


def test_a_task_goes_through_its_lifecycle_with_the_time_of_each_step() -> None:
    state = tasks(*AUCTION, ev(_T.AUCTION_CLOSED, minute=3),
                  ev(_T.TASK_ASSIGNED, agent="a2", bid_sats=20, minute=3),
                  ev(_T.TASK_STARTED, agent="a2", minute=4),
                  ev(_T.TOOL_CALLED, agent="a2", call_id="c1", minute=5),
                  ev(_T.TOOL_FAILED, agent="a2", call_id="c1", minute=6),
                  ev(_T.TASK_COMPLETED, agent="a2", result="done", minute=10))
    task = get_task(state, "t1")
    assert task is not None
    assert task.status is TaskStatus.COMPLETED and not task.is_open
    assert task.description == "index the docs"
    assert (task.created_at, task.bidding_at, task.assigned_at, task.started_at,
            task.completed_at) == tuple(T0 + timedelta(minutes=m) for m in (0, 1, 3, 4, 10))
    assert task.auction_closed_at == T0 + timedelta(minutes=3)
    assert task.duration == timedelta(minutes=6)
    assert task.turnaround == timedelta(minutes=10)
    assert (task.agent_id, task.winning_bid) == ("a2", 20)
    assert (task.tool_calls, task.tool_failures) == (1, 1)
    assert task.anomaly_count == 0 and state.anomaly_count == 0


def test_the_lowest_bid_wins_ties_by_time_and_bids_are_kept_by_agent() -> None:
    task = tasks(*AUCTION).tasks["t1"]
    assert task.bid_count == 3
    assert (task.lowest_bid, task.lowest_bidder) == (20, "a2")
    assert task.bids == {"a1": 30, "a2": 20, "a3": 20}
    assert list(task.bids) == ["a1", "a2", "a3"]  # in the order the agents first bid


def test_an_assignment_without_bid_sats_takes_the_agents_bid() -> None:
    task = tasks(*AUCTION, ev(_T.TASK_ASSIGNED, agent="a1")).tasks["t1"]
    assert (task.agent_id, task.winning_bid) == ("a1", 30)
    task = tasks(*AUCTION, ev(_T.TASK_ASSIGNED, agent="a9")).tasks["t1"]
    assert (task.agent_id, task.winning_bid) == ("a9", None)  # it never bid


def test_a_task_can_fail_with_a_reason_while_bidding() -> None:
    task = tasks(*AUCTION[:2], ev(_T.TASK_FAILED, reason="no bids", minute=5)).tasks["t1"]
    assert task.status is TaskStatus.FAILED
    assert (task.failure_reason, task.failed_at, task.finished_at) == (
        "no bids", T0 + timedelta(minutes=5), T0 + timedelta(minutes=5))
    assert task.duration is None  # it never started


def test_completion_before_assignment_is_an_anomaly_and_changes_nothing() -> None:
    state = tasks(*AUCTION, ev(_T.TASK_COMPLETED, agent="a1"))
    task = state.tasks["t1"]
    assert task.status is TaskStatus.BIDDING and task.completed_at is None
    assert [(a.position, a.event_type, a.reason) for a in task.anomalies] == [
        (6, "task.completed", "not allowed while the task is bidding")]
    assert task.anomaly_count == state.anomaly_count == 1


def test_a_bid_on_a_task_not_bidding_is_an_anomaly() -> None:
    state = tasks(ev(_T.TASK_CREATED), ev(_T.BID_SUBMITTED, agent="a1", bid_sats=5))
    task = state.tasks["t1"]
    assert task.bid_count == 0 and task.bids == {}
    assert task.anomalies[0].reason == "not allowed while the task is created"


def test_a_terminal_task_stays_terminal() -> None:
    state = tasks(ev(_T.TASK_CREATED), ev(_T.TASK_FAILED, reason="x"), ev(_T.TASK_BIDDING),
                  ev(_T.TASK_FAILED, reason="again"))
    task = state.tasks["t1"]
    assert (task.status, task.failure_reason, task.anomaly_count) == (TaskStatus.FAILED, "x", 2)


def test_events_lacking_the_ids_they_need_are_anomalies() -> None:
    state = tasks(ev(_T.TASK_CREATED, task=None), *AUCTION[:2],
                  ev(_T.BID_SUBMITTED, agent=None, bid_sats=5),
                  ev(_T.BID_SUBMITTED, agent="a1"),
                  ev(_T.TASK_ASSIGNED, agent=None, bid_sats=5))
    assert [a.reason for a in state.anomalies] == ["no task_id"]  # touches no task
    task = state.tasks["t1"]
    assert [a.reason for a in task.anomalies] == ["no agent_id", "no data.bid_sats", "no agent_id"]
    assert task.status is TaskStatus.BIDDING and task.bid_count == 0
    assert state.anomaly_count == 4


def test_a_task_first_seen_after_its_creation_is_taken_as_created() -> None:
    # The seed's callers log task.created without a task id: the rest of the lifecycle still folds.
    state = tasks(ev(_T.TASK_CREATED, task=None), ev(_T.TASK_BIDDING),
                  ev(_T.BID_SUBMITTED, agent="a1", bid_sats=3))
    task = state.tasks["t1"]
    assert task.status is TaskStatus.BIDDING and task.created_at is None
    assert [a.reason for a in task.anomalies] == ["unknown task (no task.created before it)"]


def test_work_by_another_agent_than_the_assigned_one_is_an_anomaly() -> None:
    state = tasks(*AUCTION, ev(_T.TASK_ASSIGNED, agent="a2"), ev(_T.TASK_STARTED, agent="a3"),
                  ev(_T.TASK_COMPLETED))
    task = state.tasks["t1"]
    assert task.status is TaskStatus.COMPLETED  # the facts stand; who did them is suspicious
    assert [a.reason for a in task.anomalies] == [
        "by 'a3', but assigned to 'a2'", "no agent_id, but assigned to 'a2'"]


def test_tool_calls_on_an_unknown_task_are_anomalies_and_without_a_task_are_fine() -> None:
    state = tasks(ev(_T.TOOL_CALLED, task="t9", agent="a1"), ev(_T.TOOL_CALLED, task=None))
    assert [a.reason for a in state.anomalies] == ["unknown task 't9'"]
    assert state.tasks == {}


def test_anomaly_lists_are_capped_but_counts_stay_exact() -> None:
    state = tasks(ev(_T.TASK_CREATED), *[ev(_T.TASK_STARTED, agent="a1")] * 30)
    task = state.tasks["t1"]
    assert task.anomaly_count == 30 and len(task.anomalies) == MAX_ANOMALIES
    assert task.anomalies[-1].position == 31  # the newest are kept


def test_queries_by_status_and_open_tasks_return_copies() -> None:
    state = tasks(*AUCTION, ev(_T.TASK_CREATED, task="t2"), ev(_T.TASK_CREATED, task="t3"),
                  ev(_T.TASK_FAILED, task="t3"))
    assert [t.task_id for t in tasks_by_status(state, TaskStatus.CREATED)] == ["t2"]
    assert [t.task_id for t in tasks_by_status(state, "failed")] == ["t3"]
    assert [t.task_id for t in open_tasks(state)] == ["t1", "t2"]
    assert count_by_status(state) == {"created": 1, "bidding": 1, "assigned": 0, "running": 0,
                                      "completed": 0, "failed": 1}
    copy = get_task(state, "t1")
    assert copy is not None
    copy.bids["zz"] = 1
    assert "zz" not in state.tasks["t1"].bids
    assert get_task(state, "nope") is None


def test_the_state_round_trips_through_json() -> None:
    projection = TasksProjection()
    state = tasks(*AUCTION, ev(_T.TASK_ASSIGNED, agent="a2"), ev(_T.TASK_COMPLETED, agent="a2"),
                  ev(_T.TASK_CREATED, task=None))
    assert projection.load(projection.dump(state)) == state
