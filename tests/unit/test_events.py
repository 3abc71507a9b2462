"""The typed events and their codec: what is accepted, what is refused (and how), what round-trips
through a stored row (`StoredEvent`), and that the fast codec equals its plain oracle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.codec import (
    MAX_DATA_BYTES,
    StoredEvent,
    build_event,
    decode,
    decode_plain,
    encode,
    encode_plain,
)
from domain.errors import CorruptEvent, InvalidEvent
from domain.events import (
    EVENT_CLASSES,
    BugReportCreated,
    ErrorCaptured,
    Event,
    EventType,
    Payload,
    TaskAssigned,
    ToolCompleted,
)
from store import MemoryStore, SQLiteStore
from tests.strategies import rows

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
ids = st.none() | text.filter(bool)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
non_negative = st.integers(0, 2**53)
seconds = st.floats(0, 1e9, allow_nan=False)
#: A strategy for every payload field any event type declares.
DECLARED: dict[str, st.SearchStrategy[Any]] = {
    "description": text, "reason": text, "name": text, "persona_id": text, "status": text,
    "tool": text, "call_id": text, "error": text, "message": text, "error_type": text,
    "thought_id": text, "content": text, "winner": text, "hash": text, "file": text,
    "git_branch": text, "git_commit": text, "error_hash": text, "title": text, "task": text,
    "required_capabilities": st.lists(text, max_size=3), "capabilities": st.lists(text, max_size=3),
    "window_seconds": seconds, "duration_ms": seconds,
    "bid_sats": non_negative, "winning_bid": non_negative, "bid_count": non_negative,
    "line": st.integers(-(2**63), 2**63 - 1),
    "result": json_values, "detail": json_values, "arguments": st.dictionaries(text, json_values),
}
zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])
STAMP = "2026-01-01T00:00:00.000000+00:00"


def _declared(kind: EventType) -> list[str]:
    payload = EVENT_CLASSES[kind].model_fields["data"].annotation
    assert isinstance(payload, type) and issubclass(payload, Payload)
    return list(payload.model_fields)


@st.composite
def events(draw: st.DrawFn) -> Event:
    """Any valid event of any type: declared payload fields, extra keys, odd Unicode."""
    kind = draw(st.sampled_from(list(EventType)))
    data = {name: draw(DECLARED[name]) for name in _declared(kind) if draw(st.booleans())}
    extra = draw(st.dictionaries(text.filter(lambda k: k not in DECLARED), json_values, max_size=3))
    moment = draw(st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1), timezones=zones))
    return build_event(kind, draw(text.filter(bool)), draw(ids), draw(ids), {**data, **extra},
                       timestamp=moment)


def row_of(kind: str, data: str | None, *, position: int = 3, stamp: str = STAMP,
           version: int = 1) -> StoredEvent:
    """A row as some writer stored it (not checked, no hash)."""
    return StoredEvent(position, f"e{position}", kind, "src", "t", None, data, stamp, "task-t", 1,
                       version, None, None)


# -- the catalogue --------------------------------------------------------------------------------


def test_the_catalogue_has_one_class_for_each_of_the_twenty_types() -> None:
    assert len(EventType) == 20
    assert set(EVENT_CLASSES) == set(EventType)
    assert all(cls.__doc__ and cls.model_fields["event_type"].default is kind
               for kind, cls in EVENT_CLASSES.items())
    assert EVENT_CLASSES[EventType.ERROR_CAPTURED] is ErrorCaptured
    assert EVENT_CLASSES[EventType.BUG_REPORT_CREATED] is BugReportCreated
    assert EventType.ERROR_CAPTURED.value == "error.captured"
    assert EventType.BUG_REPORT_CREATED.value == "bug_report.created"


def test_the_event_strategy_knows_every_declared_payload_field() -> None:
    declared = {name for kind in EventType for name in _declared(kind)}
    assert declared == set(DECLARED)


@pytest.mark.parametrize("kind", list(EventType), ids=[k.value for k in EventType])
def test_an_event_of_every_type_is_stored_and_read_back_as_its_class(kind: EventType) -> None:
    event = build_event(kind, "c", "t1", "a1", {"note": kind.value},
                        timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    assert type(event) is EVENT_CLASSES[kind]
    with SQLiteStore(":memory:") as store:
        store.append(rows(event))
        (row,) = store.read()
    assert (row.position, row.event_type, row.stream_id, row.stream_version) == (
        1, kind.value, "task-t1", 1)
    assert row.event == event and type(row.event) is type(event)


# -- round trips ----------------------------------------------------------------------------------


@given(st.lists(events(), min_size=1, max_size=8))
def test_any_valid_event_survives_append_and_read_unchanged(batch: list[Event]) -> None:
    for store in (MemoryStore(), SQLiteStore(":memory:")):
        store.append(rows(*batch))
        assert [r.event for r in store.read()] == batch
        assert [r._replace(position=0, stream_version=0, hash=None)
                for r in store.read()] == rows(*batch)
        store.close()


@given(events())
def test_encoding_is_stable_and_lossless(event: Event) -> None:
    row = encode(event)
    again = decode(row)
    assert again == event and encode(again) == row
    assert again.data.model_extra == event.data.model_extra


@given(events())
def test_an_encoded_row_is_not_yet_appended_and_carries_its_stream(event: Event) -> None:
    row = encode(event)
    assert (row.position, row.stream_version, row.conforms, row.hash) == (0, 0, True, None)
    assert (row.id, row.event_type, row.stream_id, row.schema_version) == (
        event.id, event.event_type.value, event.stream_id, event.schema_version)


def test_undeclared_payload_keys_are_kept_as_json() -> None:
    event = build_event("task.assigned", "coordinator", "t1", "a1",
                        {"bid_sats": 120, "note": {"nested": [1, 2.5, None, "x"]}})
    assert isinstance(event, TaskAssigned) and event.data.bid_sats == 120
    assert event.data.model_extra == {"note": {"nested": [1, 2.5, None, "x"]}}
    assert encode(event).data == '{"bid_sats":120,"note":{"nested":[1,2.5,null,"x"]}}'


def test_an_empty_payload_is_stored_as_no_data() -> None:
    assert encode(build_event("task.started", "c", "t1", "a1")).data is None


def test_ids_may_be_missing_at_the_log_level() -> None:
    created = build_event(EventType.TASK_CREATED, "coordinator", data={"description": "x"})
    assert created.task_id is None and created.stream_id == "system"
    assert build_event("tool.called", "agent", task_id="t").stream_id == "task-t"
    assert build_event("agent.joined", "c", agent_id="a").stream_id == "agent-a"


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("bid.submitted", "c", "t", "a", {"bid_sats": -1}), "data.bid_sats"),
        (("bid.submitted", "c", "t", "a", {"bid_sats": 1.5}), "data.bid_sats"),
        (("task.assigned", "c", "t", "a", {"bid_sats": "12"}), "data.bid_sats"),
        (("task.assigned", "c", "t", "a", {"bid_sats": True}), "data.bid_sats"),
        (("task.failed", "c", "t", None, {"reason": 42}), "data.reason"),
        (("tool.completed", "c", None, "a", {"duration_ms": -3}), "data.duration_ms"),
        (("system.error", "c", None, None, {"message": ["not", "text"]}), "data.message"),
        (("error.captured", "c", None, None, {"line": "12"}), "data.line"),
        (("bug_report.created", "c", None, None, {"title": 7}), "data.title"),
        (("task.created", ""), "source"),
        (("task.exploded", "c"), "event_type"),
        (("task.created", "c", None, None, {"when": datetime.now()}), "data.when"),
        (("task.created", "c", None, None, {"x": float("nan")}), "data.x"),
        (("task.created", "c", None, None, {"x": float("inf")}), "data.x"),
        (("task.created", "c", None, None, {"blob": "x" * (MAX_DATA_BYTES + 1)}), "data"),
        (("task.created", "c", None, None, {"x": "\ud800"}), "data"),
        (("task.created", "c", None, None, {"x": "a\x00b"}), "data"),
        (("task.created", "c", None, None, {"x": 2**64}), "data"),
        (("task.created", "c", "t\x00"), "task_id"),
        (("task.created", "c", ""), "task_id"),
        (("task.created", "c", None, None, ["not", "a", "dict"]), "data"),
    ],
)
def test_bad_input_is_refused_naming_the_field(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        encode(build_event(*args))
    assert raised.value.field == field


def test_a_naive_timestamp_is_refused_and_the_default_is_now_in_utc() -> None:
    with pytest.raises(InvalidEvent) as raised:
        build_event("task.created", "c", timestamp=datetime(2026, 1, 1))
    assert raised.value.field == "timestamp"
    before = datetime.now(UTC)
    event = build_event("task.created", "c")
    assert event.timestamp.tzinfo is UTC and before <= event.timestamp <= datetime.now(UTC)


def test_timestamps_are_stored_as_utc_text_in_time_order() -> None:
    tokyo = timezone(timedelta(hours=9))
    event = build_event("task.created", "c", timestamp=datetime(2026, 1, 1, 9, tzinfo=tokyo))
    assert encode(event).timestamp == "2026-01-01T00:00:00.000000+00:00"


def test_deeply_nested_data_is_refused_not_crashed() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidEvent):
        encode(build_event("task.created", "c", data={"deep": deep}))


def test_events_are_frozen() -> None:
    event = build_event("task.created", "c", "t")
    with pytest.raises(ValueError, match="frozen"):
        event.task_id = "other"


# -- reading stored rows --------------------------------------------------------------------------


def test_a_v1_tool_completed_payload_is_upcast_to_the_current_class() -> None:
    v1 = '{"tool": "grep", "call_id": "c1", "duration": 1.25, "result": "3 matches"}'
    event = decode(row_of("tool.completed", v1, position=9))
    assert isinstance(event, ToolCompleted) and event.schema_version == 2
    assert event.data.duration_ms == 1250 and event.data.model_extra == {}
    assert encode(event).data == '{"tool":"grep","call_id":"c1","duration_ms":1250.0,"result":"3 matches"}'


def test_a_payload_from_a_newer_schema_is_reported_as_corrupt_with_its_position() -> None:
    with pytest.raises(CorruptEvent, match="newer") as raised:
        decode(row_of("task.created", None, position=4, version=7))
    assert raised.value.seq == 4


def test_a_corrupt_row_names_its_position_when_its_event_is_asked_for() -> None:
    row = row_of("bid.submitted", '{"bid_sats": -1}', position=12)
    with pytest.raises(CorruptEvent, match="seq 12") as raised:
        row.event  # noqa: B018 (the property decodes)
    assert raised.value.seq == 12 and "data.bid_sats" in raised.value.reason


@given(events())
def test_the_fast_encode_and_decode_equal_their_plain_oracles(event: Event) -> None:
    row = encode(event)
    assert row == encode_plain(event)
    stored = row._replace(position=7, stream_version=3)
    fast, plain = decode(stored), decode_plain(stored)
    assert fast == plain == event and fast.timestamp.tzinfo is plain.timestamp.tzinfo


junk = st.none() | st.text(max_size=12) | st.sampled_from(
    ['{"bid_sats": -1}', "[]", "{", '{"x": 1}', "null", '{"duration": 2}', '{"line": 1.5}'])


@given(kind=st.sampled_from([t.value for t in EventType]) | st.text(max_size=8),
       data=junk, stamp=st.sampled_from([STAMP, "yesterday", ""]), version=st.integers(0, 3))
def test_fast_decode_fails_exactly_like_the_plain_one(kind: str, data: str | None, stamp: str,
                                                     version: int) -> None:
    row = row_of(kind, data, stamp=stamp, version=version)

    def outcome(fn: Any) -> Any:
        try:
            return fn(row)
        except CorruptEvent as e:
            return (e.seq, e.reason)

    assert outcome(decode) == outcome(decode_plain)
