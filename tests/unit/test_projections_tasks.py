"""The task read model: statuses, bids, assignment, times, tool calls, anomalies, queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.events import Event, EventType
from domain.task import TaskState, TaskStatus, auction_winner
from projections.agents import online_agents
from projections.base import MAX_ANOMALIES
from projections.models import ReadModels, ReadModelsProjection
from projections.tasks import (
    TasksState,
    evolve_tasks,
    get_task,
    open_tasks,
    tasks_by_status,
)
from tests.strategies import ev, stored

_T = EventType
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def fold(*events: Event) -> ReadModels:
    """The read models of `events` as the runner folds them (the fast row fold), checked
    against the plain fold of the typed events."""
    p = ReadModelsProjection()
    plain = p.initial()
    for position, event in enumerate(events, start=1):
        plain = p.apply(plain, position, event)
    fast = p.fold_rows(p.initial(), stored(events))
    assert fast == plain
    return fast


def tasks(*events: Event) -> TasksState:
    return fold(*events).tasks


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


JOINS = [ev(_T.AGENT_JOINED, agent=a, name=a) for a in ("a1", "a2", "a3")]
AUCTION = [
    ev(_T.TASK_CREATED, "t1", description="index the docs", at=T0, minute=0),
    ev(_T.TASK_BIDDING, "t1", at=T0, minute=1),
    ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=30, at=T0, minute=2),
    ev(_T.BID_SUBMITTED, "t1", "a2", bid_sats=20, at=T0, minute=2),
    ev(_T.BID_SUBMITTED, "t1", "a3", bid_sats=20, at=T0, minute=2),
]


def test_a_task_goes_through_its_lifecycle_with_the_time_of_each_step() -> None:
    state = tasks(*AUCTION, ev(_T.AUCTION_CLOSED, "t1", at=T0, minute=3),
                  ev(_T.TASK_ASSIGNED, "t1", "a2", bid_sats=20, at=T0, minute=3),
                  ev(_T.TASK_STARTED, "t1", "a2", at=T0, minute=4),
                  ev(_T.TOOL_CALLED, "t1", "a2", call_id="c1", at=T0, minute=5),
                  ev(_T.TOOL_FAILED, "t1", "a2", call_id="c1", at=T0, minute=6),
                  ev(_T.TASK_COMPLETED, "t1", "a2", result="done", at=T0, minute=10))
    task = get_task(state, "t1")
    assert task is not None
    assert task.status is TaskStatus.COMPLETED and not task.is_open
    assert task.description == "index the docs"
    assert (task.created_at, task.bidding_at, task.assigned_at, task.started_at,
            task.completed_at) == tuple(at(m) for m in (0, 1, 3, 4, 10))
    assert task.auction_closed_at == at(3)
    assert task.duration == timedelta(minutes=6)
    assert task.turnaround == timedelta(minutes=10)
    assert (task.agent_id, task.winning_bid) == ("a2", 20)
    assert (task.tool_calls, task.tool_failures) == (1, 1)
    assert task.anomaly_count == 0 and state.anomaly_count == 0


def test_bids_are_kept_by_agent_in_first_bid_order_and_the_auction_rule_reads_them() -> None:
    models = fold(*JOINS, *AUCTION, ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=25))
    task = models.tasks.tasks["t1"]
    assert task.bid_count == 4
    assert task.bids == {"a1": 25, "a2": 20, "a3": 20}  # a new bid replaces the agent's last
    assert list(task.bids) == ["a1", "a2", "a3"]  # in the order the agents first bid
    # The view is the decider's own state: the lowest bid wins, ties go to the earliest bidder.
    assert isinstance(task, TaskState)
    roster = {a.agent_id: a for a in online_agents(models.agents)}
    assert auction_winner(task, roster) == ("a2", 20)


def test_an_assignment_without_bid_sats_takes_the_agents_bid() -> None:
    task = tasks(*AUCTION, ev(_T.TASK_ASSIGNED, "t1", "a1")).tasks["t1"]
    assert (task.agent_id, task.winning_bid) == ("a1", 30)
    task = tasks(*AUCTION, ev(_T.TASK_ASSIGNED, "t1", "a9")).tasks["t1"]
    assert (task.agent_id, task.winning_bid) == ("a9", None)  # it never bid


def test_a_task_can_fail_with_a_reason_while_bidding() -> None:
    task = tasks(*AUCTION[:2], ev(_T.TASK_FAILED, "t1", reason="no bids", at=T0, minute=5)).tasks["t1"]
    assert task.status is TaskStatus.FAILED
    assert (task.failure_reason, task.failed_at, task.finished_at) == ("no bids", at(5), at(5))
    assert task.duration is None  # it never started


def test_completion_before_assignment_is_an_anomaly_and_changes_nothing() -> None:
    state = tasks(*AUCTION, ev(_T.TASK_COMPLETED, "t1", "a1"))
    task = state.tasks["t1"]
    assert task.status is TaskStatus.BIDDING and task.completed_at is None
    assert [(a.position, a.event_type, a.reason) for a in task.anomalies] == [
        (6, "task.completed", "not allowed while the task is bidding")]
    assert task.anomaly_count == state.anomaly_count == 1


def test_a_bid_on_a_task_not_bidding_is_an_anomaly() -> None:
    state = tasks(ev(_T.TASK_CREATED, "t1"), ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=5))
    task = state.tasks["t1"]
    assert task.bid_count == 0 and task.bids == {}
    assert [a.reason for a in task.anomalies] == ["not allowed while the task is created"]


def test_a_terminal_task_stays_terminal() -> None:
    state = tasks(ev(_T.TASK_CREATED, "t1"), ev(_T.TASK_FAILED, "t1", reason="x"),
                  ev(_T.TASK_BIDDING, "t1"), ev(_T.TASK_FAILED, "t1", reason="again"))
    task = state.tasks["t1"]
    assert (task.status, task.failure_reason, task.anomaly_count) == (TaskStatus.FAILED, "x", 2)


def test_events_lacking_the_ids_they_need_are_anomalies() -> None:
    state = tasks(ev(_T.TASK_CREATED), *AUCTION[:2],
                  ev(_T.BID_SUBMITTED, "t1", bid_sats=5),
                  ev(_T.BID_SUBMITTED, "t1", "a1"),
                  ev(_T.TASK_ASSIGNED, "t1", bid_sats=5))
    assert [a.reason for a in state.anomalies] == ["no task_id"]  # touches no task
    task = state.tasks["t1"]
    assert [a.reason for a in task.anomalies] == ["no agent_id", "no data.bid_sats", "no agent_id"]
    assert task.status is TaskStatus.BIDDING and task.bid_count == 0
    assert state.anomaly_count == 4


def test_a_task_first_seen_after_its_creation_is_taken_as_created() -> None:
    # The seed's callers log task.created without a task id: the rest of the lifecycle still folds.
    state = tasks(ev(_T.TASK_CREATED), ev(_T.TASK_BIDDING, "t1"),
                  ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=3))
    task = state.tasks["t1"]
    assert task.status is TaskStatus.BIDDING and task.created_at is None
    assert task.bids == {"a1": 3}
    assert [a.reason for a in task.anomalies] == ["unknown task (no task.created before it)"]


def test_work_by_another_agent_than_the_assigned_one_is_an_anomaly() -> None:
    state = tasks(*AUCTION, ev(_T.TASK_ASSIGNED, "t1", "a2"), ev(_T.TASK_STARTED, "t1", "a3"),
                  ev(_T.TASK_COMPLETED, "t1"))
    task = state.tasks["t1"]
    assert task.status is TaskStatus.COMPLETED  # the facts stand; who did them is suspicious
    assert [a.reason for a in task.anomalies] == [
        "by 'a3', but assigned to 'a2'", "no agent_id, but assigned to 'a2'"]


def test_tool_calls_on_an_unknown_task_are_anomalies_and_without_a_task_are_fine() -> None:
    state = tasks(ev(_T.TOOL_CALLED, "t9", "a1"), ev(_T.TOOL_CALLED))
    assert [a.reason for a in state.anomalies] == ["unknown task 't9'"]
    assert state.tasks == {}


def test_anomaly_lists_are_capped_but_counts_stay_exact() -> None:
    state = tasks(ev(_T.TASK_CREATED, "t1"), *[ev(_T.TASK_STARTED, "t1", "a1")] * 30)
    task = state.tasks["t1"]
    assert task.anomaly_count == 30 and len(task.anomalies) == MAX_ANOMALIES
    assert task.anomalies[-1].position == 31  # the newest are kept


def test_each_fold_says_what_it_did_to_a_task() -> None:
    state = TasksState()
    created = evolve_tasks(state, 1, ev(_T.TASK_CREATED, "t1"))
    assert created is not None
    assert (created.task.task_id, created.before, created.task.status, created.applied) == (
        "t1", None, TaskStatus.CREATED, True)
    refused = evolve_tasks(state, 2, ev(_T.TASK_STARTED, "t1", "a1"))
    assert refused is not None
    assert (refused.before, refused.task.status, refused.applied) == (
        TaskStatus.CREATED, TaskStatus.CREATED, False)
    assert evolve_tasks(state, 3, ev(_T.SYSTEM_INFO, message="hi")) is None  # no task's event


def test_queries_by_status_and_open_tasks_return_copies() -> None:
    models = fold(*AUCTION, ev(_T.TASK_CREATED, "t2"), ev(_T.TASK_CREATED, "t3"),
                  ev(_T.TASK_FAILED, "t3", reason="x"))
    state = models.tasks
    assert [t.task_id for t in tasks_by_status(state, TaskStatus.CREATED)] == ["t2"]
    assert [t.task_id for t in tasks_by_status(state, "failed")] == ["t3"]
    assert [t.task_id for t in open_tasks(state)] == ["t1", "t2"]
    assert models.summary.tasks_by_status == {
        TaskStatus.CREATED: 1, TaskStatus.BIDDING: 1, TaskStatus.ASSIGNED: 0,
        TaskStatus.RUNNING: 0, TaskStatus.COMPLETED: 0, TaskStatus.FAILED: 1}
    copy = get_task(state, "t1")
    assert copy is not None
    copy.bids["zz"] = 1
    assert "zz" not in state.tasks["t1"].bids
    assert get_task(state, "nope") is None


def test_the_state_round_trips_through_json() -> None:
    projection = ReadModelsProjection()
    state = fold(*AUCTION, ev(_T.TASK_ASSIGNED, "t1", "a2"), ev(_T.TASK_COMPLETED, "t1", "a2"),
                 ev(_T.TASK_CREATED, required_capabilities=["code"]),
                 ev(_T.TASK_CREATED, "t2", required_capabilities=["code"]))
    loaded = projection.load(projection.dump(state))
    assert loaded.tasks == state.tasks
    assert loaded.tasks.tasks["t2"].required_capabilities == ["code"]
