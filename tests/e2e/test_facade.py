"""The seed's own usage of `swarmlog.event_log`, written the way its callers write it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.errors import CorruptEvent, InvalidEvent


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
    assert entry.event_type == event_log.EventType.BID_SUBMITTED
    assert entry.data == '{"bid_sats": 5}' and entry.conforms is True
    none = event_log.log_event("system.info", "x")
    assert none.data is None
    empty = event_log.log_event("system.info", "x", data={})  # the seed stored no data for {}
    assert empty.data is None


def test_nested_data_round_trips(event_log) -> None:  # type: ignore[no-untyped-def]
    data = {"a": {"b": [1, 2.5, {"c": None}], "d": "é✓"}, "f": -0.125, "big": 2**62, "t": True}
    entry = event_log.log_event("tool.called", "agent", data=data)
    assert json.loads(event_log.get_event(entry.id).data) == data


def test_data_is_the_text_the_seed_returned_its_spacing_and_key_order(event_log) -> None:  # type: ignore[no-untyped-def]
    data = {"zeta": 1, "bid_sats": 7, "alpha": {"y": [1, 2], "x": "é"}}
    entry = event_log.log_event("bid.submitted", "agent", "t1", "a1", data)
    assert entry.data == json.dumps(data)  # the seed's own: ", " and ": ", keys as given, \u escapes
    assert event_log.get_event(entry.id).data == json.dumps(data)
    assert event_log.list_events()[0].data == json.dumps(data)
    assert entry.event.data.bid_sats == 7


def test_an_empty_filter_is_no_filter_as_in_the_seed(event_log) -> None:  # type: ignore[no-untyped-def]
    event_log.log_event("task.created", "coordinator", "t1")
    event_log.log_event("system.info", "cron")
    assert len(event_log.list_events(task_id="")) == 2
    assert len(event_log.list_events(event_type="", agent_id="", source="")) == 2
    assert len(event_log.list_events(event_type=None, task_id=None)) == 2
    for bad in (None, ""):
        with pytest.raises(InvalidEvent, match="task_id"):
            event_log.get_task_events(bad)
        with pytest.raises(InvalidEvent, match="agent_id"):
            event_log.get_agent_events(bad)


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


def test_what_the_seed_stored_is_stored_flagged_not_refused(event_log) -> None:  # type: ignore[no-untyped-def]
    """The seed's module stored an empty source, a bid of 12.5 or -1 sats, NUL characters: so
    does the facade, losslessly, flagged as not conforming (the typed API stays strict)."""
    given = [dict(event_type="task.created", source=""),
             dict(event_type="bid.submitted", source="c", task_id="t1", agent_id="a1",
                  data={"bid_sats": 12.5}),
             dict(event_type="task.assigned", source="c", task_id="t1", agent_id="a1",
                  data={"bid_sats": -1}),
             dict(event_type="system.info", source="c", data={"message": "nul\x00here"}),
             dict(event_type="system.info", source="c", data={"x": float("nan")}),
             dict(event_type="system.info", source="c", data={"big": 2**70})]
    stored = [event_log.log_event(**fields) for fields in given]
    assert [e.conforms for e in stored] == [False] * len(given)
    for entry, fields in zip(stored, given, strict=True):
        fetched = event_log.get_event(entry.id)
        assert fetched == entry and fetched.source == fields["source"]
        assert fetched.data == (json.dumps(fields["data"]) if "data" in fields else None)
        assert fetched.problem is not None and fetched.conforms is False
        with pytest.raises(CorruptEvent):
            _ = fetched.event
    assert len(event_log.list_events()) == len(given)


def test_only_what_the_seed_could_not_store_either_raises(event_log) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError):  # the seed's json.dumps raised it too
        event_log.log_event("task.created", "c", data={"x": object()})
    circular: dict[str, object] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular"):
        event_log.log_event("task.created", "c", data=circular)
    with pytest.raises(InvalidEvent, match="event_type"):
        event_log.log_event("no.such.type", "c")
    with pytest.raises(InvalidEvent, match="source"):
        event_log.log_event("task.created", None)
    assert event_log.list_events() == []


def test_subscribers_hear_each_stored_entry_in_order_and_a_failing_one_loses_nothing(
        event_log, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    heard: list[str] = []

    def broken(entry: object) -> None:
        raise RuntimeError("the feed is down")

    stop_hearing = event_log.subscribe(lambda entry: heard.append(entry.id))
    stop_breaking = event_log.subscribe(broken)
    logged = [event_log.log_event("system.info", "c", data={"n": n}).id for n in range(3)]
    assert heard == logged
    assert "the feed is down" in caplog.text
    assert [e.id for e in reversed(event_log.list_events())] == logged
    stop_hearing()
    stop_breaking()
    event_log.log_event("system.info", "c")
    assert heard == logged


def test_a_row_changed_behind_swarmlogs_back_is_listed_as_stored_and_says_so(
        event_log, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    logged = [event_log.log_event("bid.submitted", "agent", "t1", f"a{i}", {"bid_sats": i})
              for i in range(3)]
    raw = sqlite3.connect(tmp_path / "seed.db", isolation_level=None)
    raw.execute("DROP TRIGGER event_log_no_update")
    raw.execute("""UPDATE event_log SET data = '{"bid_sats":-1}', event_type = 'bid.exploded'
                   WHERE seq = 2""")
    raw.close()
    listed = event_log.get_task_events("t1")
    assert [e.id for e in listed] == [e.id for e in reversed(logged)]
    changed = listed[1]
    assert changed.event_type == "bid.exploded" and changed.data == '{"bid_sats":-1}'
    assert "bid.exploded" in changed.problem
    with pytest.raises(CorruptEvent) as raised:
        _ = changed.event
    assert raised.value.seq == 2
