"""Hostile input, fuzzed: stored and read back exactly, or refused with InvalidEvent — never a
crash, never a partial batch, for the API and for `swarmlog import`."""

from __future__ import annotations

import json
import math
import tempfile
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import event, given, settings
from hypothesis import strategies as st

from domain.codec import MAX_DATA_BYTES, encode
from domain.errors import InvalidEvent
from domain.events import EventType
from store import SQLiteStore, stored_count
from swarmlog.cli import cli
from swarmlog.log import EventLog

any_text = st.text(max_size=30) | st.sampled_from(
    ["", "\x00", "a\x00b", "\ud800", "'; DROP TABLE event_log; --", '" OR 1=1 --', "🐝" * 5,
     "\u202e\u200b", "x" * 300, "%s %d {0}", "\\u0000"])
numbers = (st.integers() | st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, 2**64,
                                                           -(2**63) - 1, 10**40]))
leaves = st.none() | st.booleans() | numbers | any_text
json_like = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(any_text, inner, max_size=3), max_leaves=15)


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"d": [value]}
    return value


payloads = (st.none() | st.dictionaries(any_text, json_like, max_size=4)
            | st.builds(lambda n: {"deep": deep(n)}, st.integers(1, 600))
            | st.builds(lambda n: {"blob": "x" * n}, st.integers(MAX_DATA_BYTES - 40, MAX_DATA_BYTES + 40))
            | st.sampled_from([{"bid_sats": -1}, {"bid_sats": 1.5}, {"bid_sats": 2**70},
                               {"duration_ms": math.inf}, [1, 2], "text"]))
zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=23, minutes=59))])
moments = st.none() | st.datetimes(timezones=zones) | st.datetimes()  # naive ones too


kinds = st.sampled_from([*EventType] * 4 + ["task.exploded", "", "TASK.CREATED", "task.created\x00"])
sources = st.just("coordinator") | any_text


@settings(max_examples=300)
@given(kind=kinds, source=sources,
       task_id=st.none() | any_text, agent_id=st.none() | any_text, data=payloads, at=moments)
def test_the_api_stores_exactly_or_refuses_cleanly(kind: Any, source: Any, task_id: Any,
                                                   agent_id: Any, data: Any, at: Any) -> None:
    log = EventLog(SQLiteStore(":memory:"))
    log.log("system.info", "fuzz")
    try:
        stored = log.log(kind, source, task_id, agent_id, data, timestamp=at)
    except InvalidEvent as e:
        event(f"refused: {e.field.split('.')[0]}")
        assert log.store.head() == 1 and stored_count(log.store) == 1
        return
    event("stored")
    (read,) = list(log.read(after=1))
    assert read == stored  # the row as `log` returned it
    assert encode(read.event) == read._replace(position=0, stream_version=0, hash=None)  # its event
    assert log.store.head() == 2


#: Few ids, so that lines reuse an id with other content.
line_ids = st.sampled_from(["e1", "e2", "e3"])
event_lines = st.builds(json.dumps, st.fixed_dictionaries(
    {"id": line_ids, "event_type": kinds, "source": sources, "timestamp": st.sampled_from(
        ["2026-01-01T00:00:00.000000+00:00", "2026-01-01", "not a time", "9999-12-31T23:59:59Z"]),
     "data": payloads}))


@st.composite
def hostile_files(draw: st.DrawFn) -> list[str]:
    """Lines of a file to import: mostly event-shaped, some text, some repeating earlier ones."""
    lines = draw(st.lists(event_lines | event_lines | event_lines | any_text, min_size=1,
                          max_size=6))
    repeats = draw(st.lists(st.sampled_from(lines), max_size=2))
    return draw(st.permutations(lines + repeats))


@settings(max_examples=120)
@given(lines=hostile_files())
def test_import_of_hostile_lines_stores_all_of_a_file_or_nothing(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source, db = Path(tmp) / "in.jsonl", Path(tmp) / "log.db"
        text = ("\n".join(lines) + "\n").encode("utf-8", errors="surrogatepass")
        source.write_bytes(text)
        result = CliRunner().invoke(cli, ["import", str(source), "--db", str(db)])
        assert "Traceback" not in result.output
        assert result.exit_code in (0, 2), result.output
        event(f"exit {result.exit_code}")
        if result.exit_code == 2:
            assert "error:" in result.output
            assert not db.exists()  # every line is checked before the database is made
            return
        # Every line held an event: each id is stored once (a line repeating an earlier one
        # is skipped; an id reused with other content would have refused the file).
        ids = [json.loads(line)["id"] for line in text.split(b"\n") if line.strip()]
        with EventLog(db) as log:
            assert sorted(r.id for r in log.read()) == sorted(set(ids))
        if len(ids) > len(set(ids)):
            event("repeated lines")
            assert f"{len(ids) - len(set(ids))} repeated an earlier line" in result.output
