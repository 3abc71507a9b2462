"""Summary counts: totals by type and source, tasks by status, agents online, per-minute counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.codec import build_event
from domain.errors import ProjectionError
from domain.events import Event, EventType
from domain.lifecycle import TaskStatus
from projections.base import fold
from projections.summary import (
    SummaryProjection,
    SummaryState,
    counts,
    events_since,
    minute_of,
)
from store.memory import MemoryEventStore
from tests.strategies import EPOCH, event_sequences, recorded

_T = EventType
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def ev(kind: EventType, task: str | None = None, agent: str | None = None, minute: float = 0,
       source: str = "coordinator", **data: Any) -> Event:
    return build_event(kind, source, task, agent, data, timestamp=T0 + timedelta(minutes=minute))


def summary(*events: Event, minute_buckets: int = 1440) -> SummaryState:
    return fold(SummaryProjection(minute_buckets=minute_buckets), recorded(events))


def test_totals_by_type_and_source_failures_and_errors() -> None:
    state = summary(ev(_T.SYSTEM_ERROR, message="x"), ev(_T.SYSTEM_ERROR, source="seed"),
                    ev(_T.SYSTEM_WARNING), ev(_T.TOOL_FAILED, agent="a1"),
                    ev(_T.TASK_CREATED, "t1"), ev(_T.TASK_FAILED, "t1"))
    shown = counts(state)
    assert shown["total"] == 6
    assert shown["by_source"] == {"coordinator": 5, "seed": 1}
    assert {k: n for k, n in shown["by_type"].items() if n} == {
        "system.error": 2, "system.warning": 1, "tool.failed": 1, "task.created": 1,
        "task.failed": 1}
    assert (shown["errors"], shown["warnings"], shown["tool_failures"],
            shown["task_failures"]) == (2, 1, 1, 1)


def test_tasks_by_status_follow_the_lifecycle() -> None:
    state = summary(ev(_T.TASK_CREATED, "t1"), ev(_T.TASK_CREATED, "t2"), ev(_T.TASK_BIDDING, "t1"),
                    ev(_T.TASK_ASSIGNED, "t1", "a1"), ev(_T.TASK_STARTED, "t1", "a1"),
                    ev(_T.TASK_COMPLETED, "t1", "a1"), ev(_T.TASK_COMPLETED, "t2", "a1"),
                    ev(_T.BID_SUBMITTED, "t3", "a1", bid_sats=1))
    assert state.tasks_by_status == {
        TaskStatus.CREATED: 2, TaskStatus.BIDDING: 0, TaskStatus.ASSIGNED: 0,
        TaskStatus.RUNNING: 0, TaskStatus.COMPLETED: 1, TaskStatus.FAILED: 0}


def test_agents_online_counts_joins_and_departures() -> None:
    state = summary(ev(_T.AGENT_JOINED, agent="a1"), ev(_T.AGENT_JOINED, agent="a2"),
                    ev(_T.AGENT_JOINED, agent="a2"), ev(_T.AGENT_LEFT, agent="a1"),
                    ev(_T.AGENT_LEFT, agent="a3"), ev(_T.AGENT_JOINED))
    assert state.agents_online == 1 and state.online == {"a2"}


def test_events_in_the_last_minutes_count_whole_minutes() -> None:
    state = summary(ev(_T.SYSTEM_INFO, minute=0), ev(_T.SYSTEM_INFO, minute=0.5),
                    ev(_T.SYSTEM_ERROR, minute=1.2), ev(_T.TASK_CREATED, "t1", minute=9.9))
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


def test_buckets_older_than_the_range_are_dropped_and_such_windows_refused() -> None:
    # Events far apart: the sweep keeps the newest minutes; a late, old event is dropped.
    events = [ev(_T.SYSTEM_INFO, minute=m) for m in range(0, 12)]
    state = summary(*events, ev(_T.SYSTEM_ERROR, minute=2), minute_buckets=3)
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
def test_events_since_equals_the_log_count_from_that_minute(
    events: list[Event], buckets: int, minutes: int, now_minute: int
) -> None:
    store = MemoryEventStore()
    store.append(events)
    state = fold(SummaryProjection(minute_buckets=buckets), store.read())
    now = EPOCH + timedelta(minutes=now_minute, seconds=17)
    start = now - timedelta(minutes=minutes)
    since = start.replace(second=0, microsecond=0)
    try:
        found = events_since(state, minutes, now)
    except ProjectionError:
        assert state.dropped_through is not None and minute_of(since) <= state.dropped_through
        return
    assert found == store.count_by_type(since=since)


def test_the_state_round_trips_through_json_without_its_cache() -> None:
    projection = SummaryProjection()
    state = summary(ev(_T.TASK_CREATED, "t1"), ev(_T.AGENT_JOINED, agent="a1"),
                    ev(_T.SYSTEM_INFO, minute=3))
    loaded = projection.load(projection.dump(state))
    assert loaded == state
    assert loaded._bucket == [] and state._bucket  # the cache is neither compared nor stored
