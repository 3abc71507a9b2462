"""The log's one JSON-lines format (`to_line`/`from_line`/`read_lines`) and archive segments:
written whole or not at all, hashed as written, read back as the stored rows."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from domain.codec import StoredEvent
from domain.errors import InvalidEvent, StoreError
from domain.events import EventType
from store.archive import (
    from_line,
    read_lines,
    read_segment,
    segment_name,
    sha256_of,
    to_line,
    write_segment,
)
from tests.strategies import any_events, ev, fixed_story, stored


def bids(n: int) -> list[StoredEvent]:
    return stored([ev(EventType.BID_SUBMITTED, f"t{i % 7}", "a", minute=i, bid_sats=i)
                   for i in range(n)])


def unchecked(row: StoredEvent) -> StoredEvent:
    """A row as a line gives it back: all of it, its link in the integrity chain included."""
    return row


# -- one row, one line -----------------------------------------------------------------------------


def test_a_line_is_the_row_as_a_json_object_with_its_payload_as_json() -> None:
    (row,) = stored([ev(EventType.BID_SUBMITTED, "t1", "a1", source="coordinator", bid_sats=120)])
    line = to_line(row)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "position": 1, "id": row.id, "event_type": "bid.submitted", "source": "coordinator",
        "task_id": "t1", "agent_id": "a1", "data": {"bid_sats": 120},
        "timestamp": "2025-03-01T00:00:00.000000+00:00", "stream_id": "task-t1",
        "stream_version": 1, "schema_version": 1, "conforms": True, "hash": row.hash.hex()}
    assert from_line(line, "here") == unchecked(row)


def test_every_row_of_a_story_reads_back_from_its_line() -> None:
    story = stored(fixed_story(tasks=6))
    assert [from_line(to_line(r), f"line {r.position}") for r in story] == [
        unchecked(r) for r in story]


# Payload texts as other writers spell them: the ADR 017 module's `json.dumps` (spaces, ASCII
# escapes), other key orders and number forms, JSON that is not an object, text that is not JSON.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)


def _orjson_spelling(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits: the standard library's spelling instead
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_spellings = st.sampled_from([
    _orjson_spelling,
    json.dumps,
    lambda v: json.dumps(v, ensure_ascii=False, indent=1),
    lambda v: json.dumps(v, separators=(",", ":"), sort_keys=True),
])
_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
payload_texts = (
    st.none()
    | st.builds(lambda spell, v: spell(v), _spellings,
                st.dictionaries(st.text(max_size=6), _json_values, max_size=4))
    | st.builds(lambda spell, v: spell(v), _spellings, _json_values)
    | _texts
)


@st.composite
def stored_rows(draw: st.DrawFn) -> StoredEvent:
    """A row as a store may hold it: one swarmlog wrote, or one another client wrote (any payload
    text, unknown types, conformance unknown or refused, any hash or none)."""
    (row,) = stored([draw(any_events())])
    if draw(st.booleans()):
        row = row._replace(
            data=draw(payload_texts), conforms=draw(st.sampled_from([None, False, True])),
            hash=draw(st.none() | st.binary(min_size=32, max_size=32)),
            event_type=draw(st.sampled_from([row.event_type, "task.exploded", "x"])),
            source=draw(_texts), id=draw(_texts.filter(bool)),
            task_id=draw(st.none() | _texts), agent_id=draw(st.none() | _texts),
            schema_version=draw(st.integers(1, 5)))
    return row._replace(position=draw(st.integers(1, 2**62)),
                        stream_version=draw(st.integers(1, 2**62)))


@given(stored_rows())
@example(stored([ev(EventType.SYSTEM_INFO)])[0]._replace(data="[1,2]"))
@example(stored([ev(EventType.SYSTEM_INFO)])[0]._replace(data="null"))
@example(stored([ev(EventType.SYSTEM_INFO)])[0]._replace(data='{"b": 1, "a": "\\u00e9"}'))
@example(stored([ev(EventType.SYSTEM_INFO)])[0]._replace(data="{not json"))
@example(stored([ev(EventType.SYSTEM_INFO)])[0]._replace(data=""))
def test_from_line_gives_back_the_row_to_line_wrote(row: StoredEvent) -> None:
    line = to_line(row)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert from_line(line, "line 1") == unchecked(row)


def test_a_payload_in_another_spelling_keeps_its_text_beside_its_value() -> None:
    (row,) = stored([ev(EventType.SYSTEM_INFO)])
    row = row._replace(data='{"message": "caf\\u00e9",  "n": 1.0}')
    written = json.loads(to_line(row))
    assert written["data"] == {"message": "café", "n": 1.0}
    assert written["data_text"] == row.data
    assert from_line(to_line(row), "x").data == row.data


def test_a_line_from_another_tool_gets_defaults_for_what_it_leaves_out() -> None:
    line = ('{"id": "e1", "event_type": "task.created", "source": "seed", "task_id": "t1", '
            '"data": {"description": "x"}, "timestamp": "2025-03-01T00:00:00.000000+00:00"}')
    assert from_line(line, "line 1") == StoredEvent(
        0, "e1", "task.created", "seed", "t1", None, '{"description":"x"}',
        "2025-03-01T00:00:00.000000+00:00", "task-t1", 0, 1, None, None)
    agent = from_line('{"id": "e2", "event_type": "agent.joined", "source": "s", "agent_id": "a",'
                      ' "timestamp": "t"}', "line 2")
    assert (agent.stream_id, agent.data) == ("agent-a", None)
    assert from_line('{"id": "e3", "event_type": "system.info", "source": "s", "timestamp": "t"}',
                     "line 3").stream_id == "system"


@pytest.mark.parametrize(("line", "reason"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "a JSON list, not an object"),
    ('{"event_type": "x", "source": "s"}', "missing id, timestamp"),
    ('{"id": 1, "event_type": "x", "source": "s", "timestamp": "t"}', "id of the wrong type"),
    ('{"id": "e", "event_type": "x", "source": "s", "timestamp": "t", "position": "7"}',
     "position of the wrong type"),
    ('{"id": "e", "event_type": "x", "source": "s", "timestamp": "t", "data": [1]}',
     "data is a JSON list"),
    ('{"id": "e", "event_type": "x", "source": "s", "timestamp": "t", "data_text": 5}',
     "data_text of the wrong type"),
])
def test_a_line_that_is_not_a_row_is_refused_naming_where_it_is(line: str, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=r"export\.jsonl line 7") as raised:
        from_line(line, "export.jsonl line 7")
    assert reason in str(raised.value)


# -- files: plain or compressed --------------------------------------------------------------------


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_read_lines_numbers_the_lines_of_a_plain_or_compressed_file(tmp_path: Path,
                                                                    packed: bool) -> None:
    text = b'{"a": 1}\n\n  \n{"b": 2}\n{"c": 3}'
    path = tmp_path / ("lines.jsonl.gz" if packed else "lines.jsonl")
    path.write_bytes(gzip.compress(text) if packed else text)
    assert [(n, json.loads(line)) for n, line in read_lines(path)] == [
        (1, {"a": 1}), (4, {"b": 2}), (5, {"c": 3})]


# -- segments --------------------------------------------------------------------------------------


def test_a_segment_reads_back_as_written_and_its_hash_is_the_files(tmp_path: Path) -> None:
    written = bids(2500)  # more than one chunk of the writer thread
    path, digest = write_segment(tmp_path, 1, 2500, (to_line(r) for r in written))
    assert Path(path).name == segment_name(1, 2500) == "events-000000000001-000000002500.jsonl.gz"
    assert digest == sha256_of(path)
    assert list(read_segment(path, digest)) == [unchecked(r) for r in written]
    assert list(read_segment(path)) == [unchecked(r) for r in written]
    assert [p.name for p in tmp_path.iterdir()] == [segment_name(1, 2500)]
    assert [from_line(line, "x") for _, line in read_lines(path)] == [unchecked(r) for r in written]


def test_a_segment_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    path, digest = write_segment(tmp_path, 1, 10, (to_line(r) for r in bids(10)))
    other = "0" * 64
    with pytest.raises(StoreError, match="does not match its recorded SHA-256"):
        list(read_segment(path, other))
    assert len(list(read_segment(path, digest))) == 10


def test_a_truncated_segment_is_a_store_error_naming_it(tmp_path: Path) -> None:
    path, _ = write_segment(tmp_path, 1, 500, (to_line(r) for r in bids(500)))
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=f"cannot read archive segment {path}"):
        list(read_segment(path))


def test_a_missing_segment_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot read archive segment"):
        list(read_segment(tmp_path / segment_name(1, 5)))


def test_a_bad_line_in_a_segment_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    lines: list[Any] = [to_line(r) for r in bids(3)]
    lines[1] = b'{"not": "a row"}\n'
    path, digest = write_segment(tmp_path, 1, 3, lines)
    with pytest.raises(InvalidEvent, match=f"{path} line 2"):
        list(read_segment(path, digest))


def test_a_failure_while_producing_the_lines_leaves_no_file(tmp_path: Path) -> None:
    def lines() -> Iterator[bytes]:
        for n, r in enumerate(bids(3000)):
            if n == 2100:
                raise RuntimeError("the fold failed")
            yield to_line(r)

    with pytest.raises(RuntimeError, match="the fold failed"):
        write_segment(tmp_path, 1, 3000, lines())
    assert list(tmp_path.iterdir()) == []


def test_a_failure_to_write_is_a_store_error_and_leaves_no_file(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the archive folder should be")
    with pytest.raises(StoreError, match="cannot write the archive segment"):
        write_segment(blocked, 1, 10, (to_line(r) for r in bids(10)))
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-folder"]
