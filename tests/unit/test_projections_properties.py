"""Properties every fold keeps on any event sequence: total, deterministic, chunk- and
snapshot-independent, JSON round-trip exact, fast paths equal to the plain ones, read models that
agree with each other, and no anomaly in a valid story."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import Event, EventType
from domain.lifecycle import TASK_EVENT_TYPES, TaskStatus
from projections.agents import AgentsProjection, AgentsState
from projections.base import Projection, apply_many, fold
from projections.summary import SummaryProjection, SummaryState
from projections.tasks import TasksProjection, TasksState, count_by_status
from tests.strategies import event_sequences, recorded, swarm_stories


def projections(**summary: Any) -> list[Projection[Any]]:
    # A tiny bucket range, so that sweeping and dropping old minutes happen in short sequences.
    return [TasksProjection(), AgentsProjection(), SummaryProjection(minute_buckets=3, **summary)]


def fold_all(events: list[Event]) -> list[Any]:
    return [fold(p, recorded(events)) for p in projections()]


@settings(max_examples=150)
@given(event_sequences())
def test_folds_never_raise_and_count_every_anomaly(events: list[Event]) -> None:
    tasks, agents, _ = fold_all(events)
    for model, entities in ((tasks, tasks.tasks), (agents, agents.agents)):
        on_entities = sum(e.anomaly_count for e in entities.values())
        assert model.anomaly_count >= on_entities + len(model.anomalies)
        assert all(len(e.anomalies) == min(e.anomaly_count, 20) for e in entities.values())
    no_task_id = sum(1 for e in events if e.event_type in TASK_EVENT_TYPES and e.task_id is None)  # type: ignore[attr-defined]
    assert tasks.anomaly_count >= no_task_id


@settings(max_examples=100)
@given(swarm_stories())
def test_a_valid_story_has_no_anomalies(events: list[Event]) -> None:
    tasks, agents, _ = fold_all(events)
    assert tasks.anomaly_count == 0, [t.anomalies for t in tasks.tasks.values()] + [tasks.anomalies]
    assert agents.anomaly_count == 0, [a.anomalies for a in agents.agents.values()]


@settings(max_examples=150)
@given(event_sequences())
def test_fast_paths_fold_exactly_like_the_plain_ones(events: list[Event]) -> None:
    plain = [TasksProjection(plain=True), AgentsProjection(plain=True),
             SummaryProjection(plain=True, minute_buckets=3)]
    assert [fold(p, recorded(events)) for p in plain] == fold_all(events)


@settings(max_examples=150)
@given(event_sequences(), st.data())
def test_incremental_chunks_equal_one_rebuild_equal_snapshot_plus_tail(
    events: list[Event], data: st.DataObject
) -> None:
    records = recorded(events)
    for projection, rebuilt in zip(projections(), fold_all(events), strict=True):
        state, i = projection.initial(), 0
        while i < len(records):
            size = data.draw(st.integers(1, 7), label="chunk")
            state = apply_many(projection, state, records[i : i + size])
            i += size
        assert state == rebuilt

        cut = data.draw(st.integers(0, len(records)), label="snapshot at")
        snapshot = projection.dump(fold(projection, records[:cut]))
        resumed = fold(projection, records[cut:], projection.load(snapshot))
        assert resumed == rebuilt
        assert projection.dump(resumed) == projection.dump(rebuilt)


@settings(max_examples=100)
@given(event_sequences(), st.data())
def test_every_state_round_trips_through_json_exactly(
    events: list[Event], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(events)), label="prefix")
    for projection, state in zip(projections(), fold_all(events[:cut]), strict=True):
        text = projection.dump(state)
        assert projection.load(text) == state
        assert projection.dump(projection.load(text)) == text


@settings(max_examples=150)
@given(event_sequences())
def test_the_read_models_agree_with_each_other(events: list[Event]) -> None:
    tasks, agents, summary = fold_all(events)
    assert_consistent(tasks, agents, summary)
    assert summary.total == len(events)
    assert sum(summary.by_type.values()) == sum(summary.by_source.values()) == len(events)


def assert_consistent(tasks: TasksState, agents: AgentsState, summary: SummaryState) -> None:
    """What the three read models say about the same facts must match."""
    assert {s.value: n for s, n in summary.tasks_by_status.items()} == count_by_status(tasks)
    assert summary.online == {a.agent_id for a in agents.agents.values() if a.online}
    for agent in agents.agents.values():
        won = [t for t in tasks.tasks.values() if t.agent_id == agent.agent_id]
        done = [t for t in won if t.status is TaskStatus.COMPLETED]
        assert agent.tasks_won == len(won)
        assert agent.tasks_completed == len(done)
        assert agent.tasks_failed == sum(t.status is TaskStatus.FAILED for t in won)
        assert agent.sats_earned == sum(t.winning_bid or 0 for t in done)
        if agent.current_task is not None:
            task = tasks.tasks[agent.current_task]
            assert task.is_open and task.agent_id == agent.agent_id
    assert set(agents.tasks) == set(tasks.tasks)
    for task in tasks.tasks.values():
        assert agents.tasks[task.task_id].status is task.status
    assert summary.by_type.get(EventType.SYSTEM_ERROR, 0) == summary.errors
