"""The demo swarm: deterministic, and its read models satisfy the swarm's invariants."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.codec import StoredEvent
from domain.ids import utc_now
from domain.task import OPEN_STATUSES, TaskStatus
from projections.tasks import TasksState, all_tasks
from store import stored_count
from swarmlog.demo import DemoConfig, DemoResult, SeededIds, default_start, run_demo
from swarmlog.log import EventLog

START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def _stored(log: EventLog) -> list[StoredEvent]:
    return list(log.read())


def count_by_status(tasks: TasksState) -> dict[str, int]:
    """How many tasks the task read model holds in each status, counted task by task."""
    return dict(Counter(t.status.value for t in all_tasks(tasks) if t.status is not None))


def _dumps(log: EventLog) -> dict[str, str]:
    log.catch_up()
    return {p.name: p.dump(log.runner.state(p.name)) for p in log.projections}


def test_same_seed_and_start_give_identical_events_and_read_models(tmp_path: Path) -> None:
    config = DemoConfig(agents=8, tasks=60, seed=7, start=START)
    with EventLog(tmp_path / "a.db") as a, EventLog(tmp_path / "b.db") as b, \
            EventLog(tmp_path / "c.db") as c:
        run_demo(a, config)
        run_demo(b, config)
        run_demo(c, DemoConfig(agents=8, tasks=60, seed=8, start=START))
        assert _stored(a) == _stored(b)  # ids, payloads, timestamps, positions, streams
        assert _dumps(a) == _dumps(b)
        assert _stored(a) != _stored(c)


def test_seeded_ids_are_uuid7_shaped_and_time_ordered() -> None:
    ids = SeededIds("x")
    made = [ids(START + timedelta(milliseconds=ms // 3)) for ms in range(50)]
    assert made == sorted(made) and len(set(made)) == 50
    assert all(i[14] == "7" and i[19] in "89ab" for i in made)
    again, other = SeededIds("x"), SeededIds("y")
    assert [again(START + timedelta(milliseconds=ms // 3)) for ms in range(50)] == made
    assert other(START) != made[0]


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EventLog, DemoResult]]:
    log = EventLog(tmp_path_factory.mktemp("demo") / "demo.db")
    result = run_demo(log, DemoConfig(agents=12, tasks=200, seed=3, failure_rate=0.2))
    yield log, result
    log.close()


def test_every_task_is_in_exactly_one_status_and_the_counts_add_up(
        swarm: tuple[EventLog, DemoResult]) -> None:
    log, result = swarm
    by_status = count_by_status(log.tasks)
    created = log.summary.by_type["task.created"]
    opened = sum(by_status.get(s.value, 0) for s in OPEN_STATUSES)
    assert sum(by_status.values()) == len(log.tasks.tasks.merged()) == created == result.tasks
    assert by_status["completed"] + by_status["failed"] + opened == created
    assert {k.value: n for k, n in log.summary.tasks_by_status.items() if n} == by_status
    assert opened == 0  # the simulation runs every task to its end


def test_an_agent_has_at_most_one_current_task(swarm: tuple[EventLog, DemoResult]) -> None:
    log, _ = swarm
    tasks = log.tasks.tasks.merged()
    current = {a.agent_id: a.current_task for a in log.agents.agents.merged().values()
               if a.current_task}
    assert len(set(current.values())) == len(current)
    for agent_id, task_id in current.items():
        assert tasks[task_id].status in (TaskStatus.ASSIGNED, TaskStatus.RUNNING)
        assert tasks[task_id].agent_id == agent_id
    holders = [t.agent_id for t in tasks.values() if t.status in (TaskStatus.ASSIGNED, TaskStatus.RUNNING)]
    assert len(holders) == len(set(holders))


def test_sats_earned_are_the_winning_bids_of_completed_tasks(swarm: tuple[EventLog, DemoResult]) -> None:
    log, _ = swarm
    earned: dict[str, int] = {}
    for task in all_tasks(log.tasks):  # (closed tasks may be in the store, not in memory)
        if task.status is TaskStatus.COMPLETED:
            assert task.agent_id is not None and task.winning_bid is not None
            earned[task.agent_id] = earned.get(task.agent_id, 0) + task.winning_bid
    agents = log.agents.agents.merged()
    assert {a: v.sats_earned for a, v in agents.items() if v.sats_earned} == earned
    assert sum(earned.values()) > 0


def test_every_assignment_pays_the_winners_own_bid(swarm: tuple[EventLog, DemoResult]) -> None:
    log, _ = swarm
    for task in all_tasks(log.tasks):  # (closed tasks may be in the store, not in memory)
        if task.agent_id is not None:
            assert task.winning_bid == task.bids[task.agent_id]
            # Lower bids can only come from bidders who were busy or gone when it closed.
            assert task.winning_bid is not None and min(task.bids.values()) <= task.winning_bid


def test_the_winner_of_each_auction_is_claimed_busy_and_released_idle_in_its_own_stream(
        swarm: tuple[EventLog, DemoResult]) -> None:
    log, _ = swarm
    held: dict[str, str | None] = {}  # agent -> the task its stream says it holds
    assigned: dict[str | None, str | None] = {}  # task -> its winner
    claimed = 0
    for row in log.read():
        if row.event_type == "task.assigned":
            assigned[row.task_id] = row.agent_id
        elif row.event_type == "agent.left":
            held[row.agent_id or ""] = None  # its task fails with it: no idle claim follows
        elif row.event_type == "agent.status_changed":
            agent_id, claim = row.agent_id or "", json.loads(row.data or "{}")
            assert row.stream_id == f"agent-{agent_id}" and row.task_id is None
            if claim["status"] == "busy":
                assert held.get(agent_id) is None and assigned[claim["task"]] == agent_id
                held[agent_id] = claim["task"]
                claimed += 1
            else:
                assert claim["status"] == "idle" and held.get(agent_id) == claim["task"]
                held[agent_id] = None
    assert claimed == len(assigned) > 0
    assert not any(held.values())  # every task ended: no agent is still claimed


def test_the_coordinator_left_no_anomalies_and_refused_only_late_bids(
        swarm: tuple[EventLog, DemoResult]) -> None:
    log, result = swarm
    assert log.tasks.anomaly_count == log.agents.anomaly_count == 0
    assert result.refused == result.late_bids > 0


def test_the_swarm_does_everything_a_swarm_does(swarm: tuple[EventLog, DemoResult]) -> None:
    log, _ = swarm
    seen = {k for k, n in log.summary.by_type.items() if n}
    assert seen >= {"agent.joined", "agent.left", "agent.status_changed", "task.created",
                    "task.bidding", "bid.submitted", "auction.closed", "task.assigned",
                    "task.started", "task.completed", "task.failed", "tool.called",
                    "tool.completed", "tool.failed", "system.error"}


def test_timestamps_spread_over_days_and_end_in_the_recent_past(swarm: tuple[EventLog, DemoResult]) -> None:
    log, result = swarm
    stamps = [r.event.timestamp for r in log.store.read()]
    assert stamps == sorted(stamps)  # simulated time runs forward, as the log does
    assert stamps[0] >= result.start and stamps[-1] - stamps[0] > timedelta(days=6)
    assert utc_now() - timedelta(hours=2) < stamps[-1] < utc_now()


def test_the_default_start_is_days_and_half_an_hour_ago_to_the_minute() -> None:
    now = datetime(2025, 6, 10, 12, 34, 56, tzinfo=UTC)
    assert default_start(7, now) == datetime(2025, 6, 3, 12, 4, tzinfo=UTC)


def test_a_second_demo_on_the_same_database_is_run_2(tmp_path: Path) -> None:
    with EventLog(tmp_path / "twice.db") as log:
        first = run_demo(log, DemoConfig(agents=3, tasks=5, start=START))
        second = run_demo(log, DemoConfig(agents=3, tasks=5, start=START))
        assert (first.run, second.run) == (1, 2)
        assert stored_count(log.store) == first.events + second.events
        assert sorted(log.tasks.tasks.merged())[-1] == "r2-t0005"
        assert "r2-a03" in log.agents.agents.merged()
        assert log.tasks.anomaly_count == log.agents.anomaly_count == 0
