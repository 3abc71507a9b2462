"""The typed events: what is accepted, what is refused (and how), and what round-trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.codec import (
    MAX_DATA_BYTES,
    EventView,
    build_event,
    decode,
    decode_plain,
    decode_view,
    encode,
    encode_plain,
    row_checksum,
)
from domain.errors import CorruptEvent, InvalidEvent
from domain.events import EVENT_CLASSES, Event, EventType, TaskAssigned, ToolCompleted
from store.memory import MemoryEventStore
from store.sqlite import SQLiteEventStore

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
ids = st.none() | text.filter(bool)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
non_negative = st.integers(0, 2**53)
seconds = st.floats(0, 1e9, allow_nan=False)
DECLARED: dict[str, st.SearchStrategy[Any]] = {
    "description": text, "reason": text, "name": text, "persona_id": text, "status": text,
    "tool": text, "call_id": text, "error": text, "message": text, "error_type": text,
    "thought_id": text, "content": text, "winner": text,
    "required_capabilities": st.lists(text, max_size=3), "capabilities": st.lists(text, max_size=3),
    "window_seconds": seconds, "duration_ms": seconds,
    "bid_sats": non_negative, "winning_bid": non_negative, "bid_count": non_negative,
    "result": json_values, "detail": json_values, "arguments": st.dictionaries(text, json_values),
}
zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])


@st.composite
def events(draw: st.DrawFn) -> Event:
    """Any valid event of any type: declared payload fields, extra keys, odd Unicode."""
    kind = draw(st.sampled_from(list(EventType)))
    cls = EVENT_CLASSES[kind]
    declared = list(cls.model_fields["data"].annotation.model_fields)  # type: ignore[union-attr]
    data = {name: draw(DECLARED[name]) for name in declared if draw(st.booleans())}
    extra = draw(st.dictionaries(text.filter(lambda k: k not in DECLARED), json_values, max_size=3))
    moment = draw(st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1), timezones=zones))
    return build_event(kind, draw(text.filter(bool)), draw(ids), draw(ids), {**data, **extra},
                       timestamp=moment)


@given(st.lists(events(), min_size=1, max_size=8))
def test_any_valid_event_survives_append_and_read_unchanged(batch: list[Event]) -> None:
    for store in (MemoryEventStore(), SQLiteEventStore(":memory:")):
        store.append(batch)
        assert [r.event for r in store.read()] == batch
        assert [encode(r.event) for r in store.read()] == [encode(e) for e in batch]


@given(events())
def test_encoding_is_stable_and_lossless(event: Event) -> None:
    row = encode(event)
    again = decode(1, row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[8])
    assert again == event and encode(again) == row
    assert again.data.model_extra == event.data.model_extra


def test_undeclared_payload_keys_are_kept_as_json() -> None:
    event = build_event("task.assigned", "coordinator", "t1", "a1",
                        {"bid_sats": 120, "note": {"nested": [1, 2.5, None, "x"]}})
    assert isinstance(event, TaskAssigned) and event.data.bid_sats == 120
    assert event.data.model_extra == {"note": {"nested": [1, 2.5, None, "x"]}}
    assert encode(event)[5] == '{"bid_sats":120,"note":{"nested":[1,2.5,null,"x"]}}'


def test_ids_may_be_missing_at_the_log_level() -> None:
    created = build_event(EventType.TASK_CREATED, "coordinator", data={"description": "x"})
    assert created.task_id is None and created.stream_id == "system"
    assert build_event("tool.called", "agent", task_id="t").stream_id == "task-t"
    assert build_event("agent.joined", "c", agent_id="a").stream_id == "agent-a"


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
        (("task.created", ""), "source"),
        (("task.exploded", "c"), "event_type"),
        (("task.created", "c", None, None, {"when": datetime.now()}), "data.when"),
        (("task.created", "c", None, None, {"x": float("nan")}), "data.x"),
        (("task.created", "c", None, None, {"x": float("inf")}), "data.x"),
        (("task.created", "c", None, None, {"blob": "x" * (MAX_DATA_BYTES + 1)}), "data"),
        (("task.created", "c", None, None, {"x": "\ud800"}), "data"),
        (("task.created", "c", None, None, {"x": "a\x00b"}), "data"),
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
    assert encode(event)[6] == "2026-01-01T00:00:00.000000+00:00"


def test_deeply_nested_data_is_refused_not_crashed() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidEvent):
        encode(build_event("task.created", "c", data={"deep": deep}))


def test_events_are_frozen() -> None:
    event = build_event("task.created", "c", "t")
    with pytest.raises(ValueError, match="frozen"):
        event.task_id = "other"  # type: ignore[misc]


def test_a_v1_tool_completed_payload_is_upcast_to_the_current_class() -> None:
    v1 = '{"tool": "grep", "call_id": "c1", "duration": 1.25, "result": "3 matches"}'
    event = decode(9, "e9", "tool.completed", "agent", None, "a1", v1,
                   "2026-01-01T00:00:00.000000+00:00", 1)
    assert isinstance(event, ToolCompleted) and event.schema_version == 2
    assert event.data.duration_ms == 1250 and event.data.model_extra == {}
    assert encode(event)[5] == '{"tool":"grep","call_id":"c1","duration_ms":1250.0,"result":"3 matches"}'


def test_a_payload_from_a_newer_schema_is_reported_as_corrupt_with_its_seq() -> None:
    with pytest.raises(CorruptEvent, match="newer") as raised:
        decode(4, "e4", "task.created", "c", None, None, None, "2026-01-01T00:00:00.000000+00:00", 7)
    assert raised.value.seq == 4


@given(events())
def test_the_fast_encode_and_decode_equal_their_plain_oracles(event: Event) -> None:
    row = encode(event)
    assert row == encode_plain(event)
    args = (7, row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[8])
    fast, plain = decode(*args), decode_plain(*args)
    assert fast == plain == event and fast.timestamp.tzinfo is plain.timestamp.tzinfo


junk = st.none() | st.text(max_size=12) | st.sampled_from(
    ['{"bid_sats": -1}', "[]", "{", '{"x": 1}', "null", '{"duration": 2}'])


@given(kind=st.sampled_from([t.value for t in EventType]) | st.text(max_size=8),
       data=junk, stamp=st.sampled_from(["2026-01-01T00:00:00.000000+00:00", "yesterday", ""]),
       version=st.integers(0, 3))
def test_fast_decode_fails_exactly_like_the_plain_one(kind: str, data: str | None, stamp: str,
                                                     version: int) -> None:
    def outcome(fn: Any) -> Any:
        try:
            return fn(3, "e3", kind, "src", "t", None, data, stamp, version)
        except CorruptEvent as e:
            return (e.seq, e.reason)

    assert outcome(decode) == outcome(decode_plain)


@given(events())
def test_a_row_with_its_checksum_is_read_as_a_view_equal_to_the_typed_event(event: Event) -> None:
    row = encode(event)
    args = (7, row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[8])
    view, typed = decode_view(*args, row_checksum(row)), decode(*args)
    assert isinstance(view, EventView)
    assert (view.id, view.event_type, view.source, view.task_id, view.agent_id, view.timestamp) == (
        typed.id, typed.event_type, typed.source, typed.task_id, typed.agent_id,  # type: ignore[attr-defined]
        typed.timestamp)
    payload = typed.data  # type: ignore[attr-defined]
    for name in type(payload).model_fields:
        assert getattr(view.data, name) == getattr(payload, name)
    assert view.data == payload.model_dump(exclude_unset=True)
    for name, value in (payload.model_extra or {}).items():  # undeclared keys too
        assert view.data[name] == value
    # Without its checksum, or with another one, the row is validated: the typed event.
    for other in (None, row_checksum(row) ^ 1):
        again = decode_view(*args, other)
        assert not isinstance(again, EventView) and again == typed


@given(kind=st.sampled_from([t.value for t in EventType]) | st.text(max_size=8),
       data=junk, stamp=st.sampled_from(["2026-01-01T00:00:00.000000+00:00", "yesterday", ""]),
       version=st.integers(0, 3), checksum=st.none() | st.integers(-1, 2**32 - 1))
def test_a_row_without_a_matching_checksum_is_validated_in_full(
        kind: str, data: str | None, stamp: str, version: int, checksum: int | None) -> None:
    row = ("e3", kind, "src", "t", None, data, stamp, "task-t", version)
    if checksum == -1:
        checksum = row_checksum(row)  # (as if forged)

    def outcome(fn: Any, *extra: Any) -> Any:
        try:
            return fn(3, "e3", kind, "src", "t", None, data, stamp, version, *extra)
        except CorruptEvent as e:
            return (e.seq, e.reason)

    if checksum != row_checksum(row):
        assert outcome(decode_view, checksum) == outcome(decode)
    else:  # a checksum that matches junk was forged: a view only of a JSON object at a good time
        got = outcome(decode_view, checksum)
        assert isinstance(got, EventView) or got == outcome(decode)
