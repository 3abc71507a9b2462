"""The host's own tests, unchanged by adopting swarmlog: they import `swarm.event_log`, patch its
`DB_PATH` and `log_event`, and find the host's tables beside the log in one file."""

import json
import sqlite3
from pathlib import Path
from unittest.mock import patch

import pytest
import swarm
import swarm.event_log
from swarm import task_queue
from swarm.coordinator import SwarmCoordinator
from swarm.event_log import (
    EventType,
    get_agent_events,
    get_event,
    get_event_summary,
    get_recent_events,
    get_task_events,
    list_events,
    log_event,
    prune_events,
)


def test_swarm_is_the_hosts_package_and_swarm_event_log_is_swarmlogs(expected_swarmlog):
    import swarmlog.event_log

    assert swarm.HOST == "fake-dashboard" and hasattr(swarm, "coordinator")
    assert swarm.event_log is swarmlog.event_log
    if expected_swarmlog:
        assert Path(swarmlog.__file__).resolve().is_relative_to(Path(expected_swarmlog).resolve())


def test_the_coordinators_calls_land_in_the_file_beside_the_hosts_tables(_isolate_db):
    coordinator = SwarmCoordinator()
    task_id = coordinator.post_task("index the docs")
    coordinator.bid(task_id, "agent-7", 120)
    coordinator.assign(task_id, "agent-7", 120)
    coordinator.complete(task_id, "agent-7", "41 pages")
    events = get_task_events(task_id)
    assert [e.event_type for e in events] == [
        EventType.TASK_COMPLETED, EventType.TASK_ASSIGNED, EventType.BID_SUBMITTED,
        EventType.TASK_BIDDING, EventType.TASK_CREATED]
    assert json.loads(events[1].data) == {"bid_sats": 120}
    assert task_queue.get_task(task_id) == (task_id, "index the docs", "completed", "agent-7")
    tables = {name for (name,) in sqlite3.connect(_isolate_db).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"tasks", "event_log"} <= tables
    assert not Path("data/swarm.db").exists()  # DB_PATH, patched, redirected everything


def test_a_bid_of_twelve_and_a_half_sats_is_kept_not_refused():
    coordinator = SwarmCoordinator()
    task_id = coordinator.post_task("fractional")
    coordinator.bid(task_id, "agent-1", 12.5)  # the seed stored it: the coordinator goes on
    coordinator.assign(task_id, "agent-1", 12.5)
    bid = list_events(event_type=EventType.BID_SUBMITTED)[0]
    assert json.loads(bid.data) == {"bid_sats": 12.5} and bid.conforms is False


def test_patching_log_event_reaches_the_hosts_callers():
    coordinator = SwarmCoordinator()
    with patch("swarm.event_log.log_event") as mocked:
        from swarm.event_log import log_event as patched

        patched(EventType.SYSTEM_INFO, source="x")
    mocked.assert_called_once()
    with patch("swarm.coordinator.log_event") as mocked:
        coordinator.think("hm")
    args, kwargs = mocked.call_args
    assert args[0] == EventType.TIMMY_THOUGHT and kwargs["agent_id"] == "timmy"
    assert list_events() == []  # both patched: nothing stored


def test_the_hosts_broadcaster_hears_every_entry():
    from infrastructure.events.broadcaster import event_broadcaster

    before = len(event_broadcaster.sent)
    entry = log_event(EventType.SYSTEM_INFO, source="coordinator", data={"message": "started"})
    assert event_broadcaster.sent[before:] == [entry]


def test_error_capture_and_bug_reports_are_kept():
    SwarmCoordinator().capture_error(ValueError("boom"))
    captured = list_events(event_type=EventType.ERROR_CAPTURED)
    bugs = list_events(event_type=EventType.BUG_REPORT_CREATED)
    assert len(captured) == 1 and json.loads(captured[0].data)["hash"] == "abc123"
    assert len(bugs) == 1 and bugs[0].task_id == "bug-1" and bugs[0].conforms


# -- the seed's own test suite for its event log, as it was written --------------------------


def test_log_simple_event():
    event = log_event(event_type=EventType.SYSTEM_INFO, source="test", data={"message": "test event"})
    assert event.event_type == EventType.SYSTEM_INFO
    assert event.source == "test"
    assert event.data is not None
    retrieved = get_event(event.id)
    assert retrieved is not None
    assert retrieved.source == "test"


def test_log_task_and_agent_events():
    event = log_event(event_type=EventType.TASK_ASSIGNED, source="coordinator",
                      task_id="task-123", agent_id="agent-456", data={"bid_sats": 100})
    assert any(e.id == event.id for e in get_task_events("task-123"))
    joined = log_event(EventType.AGENT_JOINED, source="coordinator", agent_id="agent-test-001",
                       data={"persona_id": "forge"})
    assert any(e.id == joined.id for e in get_agent_events("agent-test-001"))


def test_list_events_filtering_recent_and_summary():
    log_event(EventType.TASK_CREATED, source="test")
    log_event(EventType.TASK_COMPLETED, source="test")
    log_event(EventType.SYSTEM_INFO, source="recent_test")
    assert all(e.event_type == EventType.TASK_CREATED
               for e in list_events(event_type=EventType.TASK_CREATED, limit=10))
    assert all(e.source == "test" for e in list_events(source="test", limit=10))
    assert any(e.source == "recent_test" for e in get_recent_events(minutes=1))
    summary = get_event_summary(minutes=1)
    assert summary["task.created"] == 1 and summary["task.completed"] == 1


def test_prune_events():
    assert isinstance(prune_events(older_than_days=365), int)


@pytest.mark.parametrize("event_type", list(EventType))
def test_all_event_types(event_type):
    event = log_event(event_type=event_type, source="type_test", data={"test": True})
    retrieved = get_event(event.id)
    assert retrieved is not None
    assert retrieved.event_type == event_type
