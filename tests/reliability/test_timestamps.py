"""Timestamps: the accepted range at every way in (the API, import, the demo), `verify` naming a
stored event outside it, "recent" ending now, and any value in the timestamp column (written by
another client) read by every fold, query, command and page, and passed by a prune."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.codec import StoredEvent, encode, timestamp_text
from domain.errors import InvalidEvent, ProjectionError
from domain.events import AgentJoined, Event, EventType, SystemInfoLogged, TaskCreated
from domain.ids import utc_now
from projections.models import ReadModelsProjection, counts
from projections.summary import events_since
from store import stored_count
from swarmlog.cli import cli
from swarmlog.log import EventLog
from tests.strategies import event_sequences, stored

with warnings.catch_warnings():  # Starlette's test client would rather have httpx2 than httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from swarmlog.web import create_app

_T = EventType
YEAR_9999 = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def run(*args: str, db: Path) -> Result:
    result = CliRunner().invoke(cli, [*args, "--db", str(db)])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


# -- the accepted range: from the Unix epoch to five minutes after the append ---------------------


def out_of_range() -> list[datetime]:
    now = utc_now()
    return [YEAR_9999, now + timedelta(minutes=5, seconds=30),
            datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(1, 1, 1, tzinfo=UTC)]


def test_the_api_refuses_a_timestamp_outside_the_accepted_range_and_stores_nothing(
        tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log:
        log.log("system.info", "test")
        for moment in out_of_range():
            with pytest.raises(InvalidEvent, match="timestamp"):
                log.log("system.info", "test", timestamp=moment)
            with pytest.raises(InvalidEvent, match="timestamp"):
                log.append([SystemInfoLogged(source="test"),
                            SystemInfoLogged(source="test", timestamp=moment)])
        assert log.store.head() == 1 and stored_count(log.store) == 1
        # The edges are in: the epoch itself, and a clock a few minutes ahead of this one.
        log.log("system.info", "test", timestamp=datetime(1970, 1, 1, tzinfo=UTC))
        log.log("system.info", "test", timestamp=utc_now() + timedelta(minutes=4))
        assert log.store.head() == 3


def test_import_refuses_a_line_stamped_outside_the_range_and_names_it(tmp_path: Path) -> None:
    good = {"id": "e1", "event_type": "system.info", "source": "x",
            "timestamp": "2026-01-01T00:00:00.000000+00:00"}
    for n, moment in enumerate(out_of_range()):
        path = tmp_path / f"in{n}.jsonl"
        bad = {**good, "id": "e2", "timestamp": moment.isoformat()}
        path.write_text("\n".join(json.dumps(line) for line in (good, bad, {**good, "id": "e3"}))
                        + "\n")
        result = run("import", str(path), db=tmp_path / "log.db")
        assert result.exit_code == 2
        assert f"{path} line 2: timestamp" in result.stderr, result.stderr
        assert not (tmp_path / "log.db").exists()


def test_a_demo_stops_at_now_and_one_starting_later_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    later = (utc_now() + timedelta(minutes=1)).isoformat()
    result = run("demo", "--start", later, "--tasks", "5", db=db)
    assert result.exit_code == 2 and "is in the future" in result.stderr, result.output
    start = utc_now() - timedelta(hours=1)
    assert run("demo", "--days", "2", "--start", start.isoformat(), "--tasks", "40",
               db=db).exit_code == 0
    with EventLog(db) as log:
        stamps = [r.timestamp for r in log.read()]
        assert stamps and max(stamps) <= timestamp_text(utc_now())


def test_verify_names_a_stored_event_stamped_outside_the_range(tmp_path: Path) -> None:
    """A swarmlog before the range was enforced appended such events (validated, chained)."""
    with EventLog(tmp_path / "log.db") as log:
        log.log("system.info", "test")
        log.store.append([encode(SystemInfoLogged(source="old", timestamp=YEAR_9999))])
        log.store.append([encode(SystemInfoLogged(
            source="old", timestamp=datetime(1960, 1, 1, tzinfo=UTC)))])
        report = log.verify()
        assert [(f.kind, f.position) for f in report.findings] == [("invalid", 2), ("invalid", 3)]
        assert timestamp_text(YEAR_9999) in report.findings[0].detail
        # And everything else still works with them in the log.
        assert log.rebuild() == 3 and log.summary.total == 3
        assert log.snapshot()
        assert events_since(log.summary, 60, utc_now()) == {"system.info": 1}


# -- "recent" is between now minus the window and now -----------------------------------------------


def test_an_event_stamped_ahead_of_the_clock_is_not_recent_before_its_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.db"
    now = utc_now()
    with EventLog(path) as log:
        log.log("system.info", "test", timestamp=now - timedelta(minutes=1))
        log.log("system.error", "test", timestamp=now + timedelta(minutes=4))  # a clock ahead
        assert events_since(log.summary, 60, now) == {"system.info": 1}
    assert json.loads(run("summary", "--json", db=path).stdout)["last_window"] == {
        "system.info": 1}
    with TestClient(create_app(path)) as client:
        assert client.get("/api/summary").json()["last_window"] == {"system.info": 1}
        cards = client.get("/events").text.split('<section class="cards small">')[1]
        assert "<span>system.info</span>" in cards.split("</section>")[0]
        assert "<span>system.error</span>" not in cards.split("</section>")[0]
    monkeypatch.setenv("SWARMLOG_DB", str(path))
    from swarmlog import event_log

    assert event_log.get_event_summary(60) == {"system.info": 1}
    assert [e.event_type for e in event_log.get_recent_events(60)] == [_T.SYSTEM_INFO]


# -- any text in the timestamp column --------------------------------------------------------------

#: What another client may have written in the timestamp column.
STAMPS = ["", "yesterday", "zzzz", "x" * 3000, "\x00", "12345", "1e9", "🐝",
          "9999-12-31T23:59:59.999999+00:00", "9999-12-31T23:59:59-12:00",
          "0001-01-01T00:00:00.000000+00:00", "0001-01-01T00:00:00+14:00",
          "2026-11-29 10:00:00", "2026-11-29T10:00:00", "2026-11-29T10:00:00Z",
          "2026-11-29T10:00:00+14:00", "2026-02-30T00:00:00+00:00", "+275760-09-13T00:00:00Z"]
FOREIGN = [("task.bidding", "t1", None), ("agent.left", None, "a1"), ("system.info", None, None),
           ("task.failed", "t1", None)]


def write_as_another_client(path: Path, stamp: str) -> None:
    """A task and an agent logged by swarmlog a day ago, then rows another client inserted with
    `stamp` (one of them saying it was validated when appended)."""
    day_ago = utc_now() - timedelta(days=1)
    with EventLog(path) as log:
        log.append([TaskCreated(source="c", task_id="t1", timestamp=day_ago),
                    AgentJoined(source="c", agent_id="a1", timestamp=day_ago),
                    SystemInfoLogged(source="c", timestamp=day_ago)])
    raw = sqlite3.connect(path, isolation_level=None)
    for n, (kind, task, agent) in enumerate(FOREIGN):
        stream = f"task-{task}" if task else f"agent-{agent}" if agent else "system"
        (version,) = raw.execute("SELECT coalesce(max(version), 0) + 1 FROM swarmlog_streams "
                                 "WHERE stream_id = ?", (stream,)).fetchone()
        raw.execute("INSERT INTO event_log (id, event_type, source, task_id, agent_id, timestamp, "
                    "stream_id, stream_version, schema_version, conforms) "
                    "VALUES (?, ?, 'other', ?, ?, ?, ?, ?, 1, ?)",
                    (f"foreign-{n}", kind, task, agent, stamp, stream, version, n == 0 or None))
        raw.execute("INSERT INTO swarmlog_streams VALUES (?, ?) ON CONFLICT (stream_id) "
                    "DO UPDATE SET version = excluded.version", (stream, version))
    raw.close()


@st.composite
def restamped(draw: st.DrawFn, events: list[Event]) -> list[StoredEvent]:
    """The rows of `events`, some with any value in their timestamp column (text, or the BLOB
    SQLite lets another client store there), some of those still saying they were validated."""
    stamps = st.sampled_from(STAMPS) | st.text(max_size=40) | st.binary(max_size=8) | st.builds(
        lambda m: m.isoformat(), st.datetimes(timezones=st.none() | st.timezones()))
    return [row._replace(timestamp=draw(stamps), conforms=draw(st.sampled_from([True, None])))
            if draw(st.integers(0, 3)) == 0 else row for row in stored(events)]


@settings(max_examples=300)
@given(event_sequences(), st.data())
def test_any_timestamp_value_folds_the_same_fast_and_plain_and_never_raises(
        events: list[Event], data: st.DataObject) -> None:
    rows = data.draw(restamped(events), label="rows")
    plain, fast = (ReadModelsProjection(plain=flag, minute_buckets=3) for flag in (True, False))
    oracle = plain.fold_rows(plain.initial(), rows)
    folded = fast.fold_rows(fast.initial(), rows)
    assert fast.dump(folded) == plain.dump(oracle)
    assert counts(folded)["total"] == len(rows)
    now = data.draw(st.datetimes(timezones=st.just(UTC)), label="now")
    minutes = data.draw(st.floats(0, 1e300) | st.integers(0, 10**20), label="minutes")
    with contextlib.suppress(ProjectionError):  # (a window the buckets no longer hold)
        events_since(folded.summary, minutes, now)


@pytest.fixture(params=STAMPS, ids=lambda s: repr(s[:30]))
def foreign_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "log.db"
    write_as_another_client(path, request.param)
    yield path


READING = [["summary"], ["summary", "--json"], ["agents"], ["agents", "--csv"], ["events"],
           ["events", "--nl"], ["events", "--since", "2h"], ["events", "--until", "1h"],
           ["tail", "--json"], ["task", "t1"], ["task", "t1", "--json"], ["agent", "a1"],
           ["export"], ["status"], ["metrics"], ["rebuild"], ["snapshot"], ["verify"],
           ["verify", "--deep"]]
PAGES = ["/", "/events", "/events?since=2h", "/events?until=1h", "/tasks/t1", "/agents",
         "/integrity", "/api/summary", "/api/tasks/t1", "/api/events?since=1d", "/events/4"]


def test_every_command_page_and_facade_call_reads_any_timestamp_text(
        foreign_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for args in READING:
        result = run(*args, db=foreign_log)
        assert result.exit_code in (0, 1), (args, result.output)  # verify: 1 names the rows
    with TestClient(create_app(foreign_log)) as client:
        for page in PAGES:
            assert client.get(page).status_code == 200, page
    monkeypatch.setenv("SWARMLOG_DB", str(foreign_log))
    from swarmlog import event_log

    assert len(event_log.get_task_events("t1")) == 3
    event_log.get_recent_events(60)
    event_log.get_event_summary(60)
    event_log.list_events(limit=10)
    with EventLog(foreign_log) as log:
        summary = log.summary
        assert summary.total == 3 + len(FOREIGN)
        events_since(summary, 60, utc_now())
        events_since(summary, 24 * 60, utc_now())


def test_a_prune_passes_rows_stamped_at_no_time_or_an_impossible_one(foreign_log: Path,
                                                                     tmp_path: Path) -> None:
    """Retention goes by log order: the cut is the first row stamped at or after the cutoff,
    and no later than the prune itself. A row whose timestamp is not a time, or a time after
    the prune, never stops one (it could never be pruned), nor does it stop an archive."""
    archive = tmp_path / "archive"
    result = run("prune", "--older-than", "0s", "--archive", str(archive), db=foreign_log)
    assert result.exit_code == 0, result.output
    with EventLog(foreign_log) as log:
        assert stored_count(log.store) == 0, [r.timestamp for r in log.read()]
        assert log.summary.total == 3 + len(FOREIGN)


def test_a_prune_keeps_what_is_younger_than_the_cutoff(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    write_as_another_client(path, "2026-11-29T10:00:00+00:00")
    with EventLog(path) as log:
        assert log.prune(before=datetime(2026, 11, 29, 9, tzinfo=UTC)).removed == 3
        assert [r.id for r in log.read()] == [f"foreign-{n}" for n in range(len(FOREIGN))]
