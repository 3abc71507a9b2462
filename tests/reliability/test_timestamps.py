"""Timestamps: the accepted range at every way in (the API, import, the demo), `verify` naming a
stored event outside it, and "recent" ending now."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from domain.codec import encode, timestamp_text
from domain.errors import InvalidEvent
from domain.events import EventType, SystemInfoLogged
from domain.ids import utc_now
from projections.summary import events_since
from store import stored_count
from swarmlog.cli import cli
from swarmlog.log import EventLog

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
