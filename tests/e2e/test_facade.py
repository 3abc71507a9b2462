"""The seed's own usage of `swarmlog.event_log`, written the way its callers write it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.errors import InvalidEvent


@pytest.fixture
def event_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SWARMLOG_DB", str(tmp_path / "seed.db"))
    from swarmlog import event_log

    return event_log


def test_every_event_type_logged_without_ids_is_fetched_back(event_log) -> None:  # type: ignore[no-untyped-def]
    from swarmlog.event_log import EventType, get_event, log_event

    for kind in EventType:
        entry = log_event(kind, "test", data={"test": True})
        fetched = get_event(entry.id)
        assert fetched is not None
        assert (fetched.id, fetched.event_type, fetched.source) == (entry.id, kind, "test")
        assert (fetched.task_id, fetched.agent_id) == (None, None)
        assert json.loads(fetched.data) == {"test": True} and fetched.data == entry.data
        assert fetched.timestamp == entry.timestamp and fetched.timestamp.endswith("+00:00")
        assert fetched.event.event_type is kind
    assert get_event("no-such-id") is None


def test_the_adr_usage_example_runs_as_written(event_log) -> None:  # type: ignore[no-untyped-def]
    from swarmlog.event_log import EventType, get_event_summary, get_task_events, log_event

    class Task:
        id = "task-42"

    class Winner:
        agent_id = "agent-7"
        bid_sats = 120

    task, winner = Task(), Winner()
    log_event(
        event_type=EventType.TASK_ASSIGNED,
        source="coordinator",
        task_id=task.id,
        agent_id=winner.agent_id,
        data={"bid_sats": winner.bid_sats},
    )
    events = get_task_events(task.id)
    summary = get_event_summary(minutes=60)
    assert [e.event_type for e in events] == [EventType.TASK_ASSIGNED]
    assert events[0].event.data.bid_sats == 120
    assert summary == {"task.assigned": 1}


def test_positional_arguments_and_plain_strings_work(event_log) -> None:  # type: ignore[no-untyped-def]
    entry = event_log.log_event("bid.submitted", "agent", "t1", "a1", {"bid_sats": 5})
    assert entry.event_type == event_log.EventType.BID_SUBMITTED and entry.data == '{"bid_sats":5}'
    none = event_log.log_event("system.info", "x")
    assert none.data is None


def test_nested_data_round_trips(event_log) -> None:  # type: ignore[no-untyped-def]
    data = {"a": {"b": [1, 2.5, {"c": None}], "d": "é✓"}, "f": -0.125, "big": 2**62, "t": True}
    entry = event_log.log_event("tool.called", "agent", data=data)
    assert json.loads(event_log.get_event(entry.id).data) == data


def test_list_events_filters_newest_first(event_log) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):
        event_log.log_event("bid.submitted", "agent-a" if n % 2 else "agent-b", "t1", "a", {"bid_sats": n})
    event_log.log_event("task.created", "coordinator", "t1")
    bids = event_log.list_events(event_type=event_log.EventType.BID_SUBMITTED)
    assert [json.loads(e.data)["bid_sats"] for e in bids] == [4, 3, 2, 1, 0]
    assert [e.source for e in event_log.list_events(source="agent-a")] == ["agent-a", "agent-a"]
    assert len(event_log.list_events(limit=2)) == 2
    assert [e.event_type.value for e in event_log.list_events(limit=1, offset=0)] == ["task.created"]
    assert len(event_log.list_events(task_id="t1", offset=4)) == 2
    assert len(event_log.get_task_events("t1")) == 6 and len(event_log.get_agent_events("a")) == 5


def test_recent_events_and_summary_see_a_fresh_event(event_log) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        event_log.log_event("system.error", "x", data={"message": "boom"})
    event_log.log_event("system.warning", "x")
    recent = event_log.get_recent_events(minutes=1)
    assert [e.event_type.value for e in recent] == ["system.warning", "system.error", "system.error"]
    assert event_log.get_event_summary(minutes=1) == {"system.error": 2, "system.warning": 1}
    assert list(event_log.get_event_summary(minutes=1)) == ["system.error", "system.warning"]


def test_get_task_events_is_not_capped(event_log) -> None:  # type: ignore[no-untyped-def]
    for n in range(150):
        event_log.log_event("bid.submitted", "agent", "t1", "a", {"bid_sats": n})
    assert len(event_log.get_task_events("t1")) == 150


def test_prune_events_returns_an_int(event_log) -> None:  # type: ignore[no-untyped-def]
    event_log.log_event("system.info", "x")
    removed = event_log.prune_events(older_than_days=365)
    assert removed == 0 and isinstance(removed, int)


def test_bad_input_raises_invalid_event_and_stores_nothing(event_log) -> None:  # type: ignore[no-untyped-def]
    for bad in [dict(event_type="task.assigned", source="c", data={"bid_sats": -1}),
                dict(event_type="no.such.type", source="c"),
                dict(event_type="task.created", source=""),
                dict(event_type="task.created", source="c", data={"x": object()})]:
        with pytest.raises(InvalidEvent):
            event_log.log_event(**bad)
    assert event_log.list_events() == []


def test_listed_entries_read_like_fetched_ones_and_changed_rows_are_validated(
        event_log, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Listings read rows as stored (their checksum vouches for them) and decode an event only
    when asked; a row changed behind swarmlog's back is validated when listed."""
    import sqlite3

    from domain.errors import CorruptEvent

    logged = [event_log.log_event("bid.submitted", "agent", "t1", f"a{i}", {"bid_sats": i,
                                  "note": "é ✓"}) for i in range(3)]
    listed = event_log.get_task_events("t1")
    fetched = [event_log.get_event(e.id) for e in reversed(logged)]
    for a, b in zip(listed, fetched, strict=True):
        assert (a.position, a.id, a.event_type, a.source, a.task_id, a.agent_id, a.data,
                a.timestamp) == (b.position, b.id, b.event_type, b.source, b.task_id, b.agent_id,
                                 b.data, b.timestamp)
        assert a.event == b.event and a == b
    raw = sqlite3.connect(tmp_path / "seed.db", isolation_level=None)
    raw.execute("DROP TRIGGER event_log_no_update")
    raw.execute("""UPDATE event_log SET data = '{"bid_sats":-1}' WHERE seq = 2""")
    raw.close()
    with pytest.raises(CorruptEvent) as raised:
        event_log.get_task_events("t1")
    assert raised.value.seq == 2
