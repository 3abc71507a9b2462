"""Summary counts: totals by type and source, tasks by status, agents online, per-minute counts."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidEvent, ProjectionError
from domain.events import Event, EventType
from domain.task import TaskStatus
from projections.agents import online_agents
from projections.models import ReadModels, ReadModelsProjection, counts
from projections.summary import SummaryState, events_since, minute_of
from store import MemoryStore
from tests.strategies import EPOCH, ev, event_sequences, rows, stored

_T = EventType
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def fold(*events: Event, minute_buckets: int = 1440) -> ReadModels:
    """The read models of `events` as the runner folds them (the fast row fold), checked
    against the plain fold of the typed events."""
    p = ReadModelsProjection(minute_buckets=minute_buckets)
    plain = p.initial()
    for position, event in enumerate(events, start=1):
        plain = p.apply(plain, position, event)
    fast = p.fold_rows(p.initial(), stored(events))
    assert fast == plain
    return fast


def summary(*events: Event, minute_buckets: int = 1440) -> SummaryState:
    return fold(*events, minute_buckets=minute_buckets).summary


def test_totals_by_type_and_source_failures_and_errors() -> None:
    models = fold(ev(_T.SYSTEM_ERROR, message="x"), ev(_T.SYSTEM_ERROR, source="seed"),
                  ev(_T.SYSTEM_WARNING), ev(_T.TOOL_FAILED, agent="a1"),
                  ev(_T.TASK_CREATED, "t1"), ev(_T.TASK_FAILED, "t1"))
    shown = counts(models)
    assert shown["total"] == 6
    assert shown["by_source"] == {"test": 5, "seed": 1}
    assert set(shown["by_type"]) == {t.value for t in EventType}  # every type, even at zero
    assert {k: n for k, n in shown["by_type"].items() if n} == {
        "system.error": 2, "system.warning": 1, "tool.failed": 1, "task.created": 1,
        "task.failed": 1}
    assert (shown["errors"], shown["warnings"], shown["tool_failures"],
            shown["task_failures"]) == (2, 1, 1, 1)
    assert shown["tasks_by_status"]["failed"] == 1


def test_tasks_by_status_follow_the_lifecycle() -> None:
    state = summary(ev(_T.TASK_CREATED, "t1"), ev(_T.TASK_CREATED, "t2"), ev(_T.TASK_BIDDING, "t1"),
                    ev(_T.TASK_ASSIGNED, "t1", "a1"), ev(_T.TASK_STARTED, "t1", "a1"),
                    ev(_T.TASK_COMPLETED, "t1", "a1"), ev(_T.TASK_COMPLETED, "t2", "a1"),
                    ev(_T.BID_SUBMITTED, "t3", "a1", bid_sats=1))
    # t2's completion is refused (it stays created); t3, first seen by a bid, is taken as created.
    assert state.tasks_by_status == {
        TaskStatus.CREATED: 2, TaskStatus.BIDDING: 0, TaskStatus.ASSIGNED: 0,
        TaskStatus.RUNNING: 0, TaskStatus.COMPLETED: 1, TaskStatus.FAILED: 0}


def test_agents_online_are_the_rosters_online_agents() -> None:
    # The summary keeps no set of its own: the roster's presence is the one answer.
    models = fold(ev(_T.AGENT_JOINED, agent="a1"), ev(_T.AGENT_JOINED, agent="a2"),
                  ev(_T.AGENT_JOINED, agent="a2"), ev(_T.AGENT_LEFT, agent="a1"),
                  ev(_T.AGENT_LEFT, agent="a3"), ev(_T.AGENT_JOINED))
    assert counts(models)["agents_online"] == 1
    assert [a.agent_id for a in online_agents(models.agents)] == ["a2"]


def test_events_in_the_last_minutes_count_whole_minutes() -> None:
    state = summary(ev(_T.SYSTEM_INFO, at=T0, minute=0), ev(_T.SYSTEM_INFO, at=T0, minute=0.5),
                    ev(_T.SYSTEM_ERROR, at=T0, minute=1.2),
                    ev(_T.TASK_CREATED, "t1", at=T0, minute=9.9))
    now = T0 + timedelta(minutes=10)
    assert events_since(state, 60, now) == {"system.info": 2, "system.error": 1,
                                            "task.created": 1}
    # 9.5 minutes back is 12:00:30, widened to 12:00: both infos count.
    assert events_since(state, 9.5, now)["system.info"] == 2
    assert events_since(state, 8.5, now) == {"system.error": 1, "task.created": 1}
    assert events_since(state, 1, now) == {"task.created": 1}
    assert events_since(state, 1, now + timedelta(minutes=5)) == {}
    with pytest.raises(ValueError, match="naive"):
        events_since(state, 1, now.replace(tzinfo=None))


def test_events_since_counts_up_to_now_and_takes_any_window_without_overflow() -> None:
    state = summary(ev(_T.SYSTEM_INFO, at=T0), ev(_T.SYSTEM_ERROR, at=T0, minute=4))
    assert events_since(state, 60, T0 + timedelta(seconds=30)) == {"system.info": 1}
    assert events_since(state, 60, T0 + timedelta(minutes=4)) == {"system.info": 1,
                                                                 "system.error": 1}
    assert events_since(state, 10**15, T0) == {"system.info": 1}  # further back than datetime
    assert events_since(state, 0, datetime.max.replace(tzinfo=UTC)) == {}
    assert events_since(state, 60, datetime.min.replace(tzinfo=UTC)) == {}
    for bad in (math.nan, math.inf, -1):
        with pytest.raises(InvalidEvent, match="minutes"):
            events_since(state, bad, T0)


def test_buckets_older_than_the_range_are_dropped_and_such_windows_refused() -> None:
    # Events far apart: the sweep keeps the newest minutes; a late, old event is dropped.
    events = [ev(_T.SYSTEM_INFO, at=T0, minute=m) for m in range(0, 12)]
    state = summary(*events, ev(_T.SYSTEM_ERROR, at=T0, minute=2), minute_buckets=3)
    assert state.total == 13
    assert set(state.minutes) <= set(range(minute_of(T0), minute_of(T0) + 12))
    assert len(state.minutes) <= 2 * 3
    now = T0 + timedelta(minutes=11, seconds=30)
    assert events_since(state, 2, now) == {"system.info": 3}  # minutes 9, 10, 11
    with pytest.raises(ProjectionError, match="count from the log"):
        events_since(state, 11, now)


@settings(max_examples=60)
@given(event_sequences(), st.sampled_from([3, 60, 1440]), st.integers(0, 5000),
       st.integers(0, 3 * 24 * 60 + 60))
def test_events_since_equals_the_log_count_from_that_minute_through_nows(
    events: list[Event], buckets: int, minutes: int, now_minute: int
) -> None:
    """Whole minutes, from the minute `minutes` before now through now's minute: an event
    stamped after that is not recent yet, however the log's clocks differ."""
    store = MemoryStore()
    store.append(rows(*events))  # (a repeated event is stored once)
    p = ReadModelsProjection(minute_buckets=buckets)
    state = p.fold_rows(p.initial(), store.read()).summary
    now = EPOCH + timedelta(minutes=now_minute, seconds=17)
    start = now - timedelta(minutes=minutes)
    since = start.replace(second=0, microsecond=0)
    try:
        found = events_since(state, minutes, now)
    except ProjectionError:
        assert state.dropped_through is not None and minute_of(since) <= state.dropped_through
        return
    assert found == store.count_by_type(since, now.replace(second=0) + timedelta(minutes=1))


def test_the_state_round_trips_through_json() -> None:
    projection = ReadModelsProjection()
    state = fold(ev(_T.TASK_CREATED, "t1"), ev(_T.AGENT_JOINED, agent="a1"),
                 ev(_T.SYSTEM_INFO, at=T0, minute=3))
    loaded = projection.load(projection.dump(state))
    assert loaded.summary == state.summary
    assert loaded.summary.tasks_by_status[TaskStatus.CREATED] == 1
    assert projection.dump(loaded) == projection.dump(state)
