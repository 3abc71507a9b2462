"""Retention refuses an age below zero (a cutoff in the future would prune the whole log, young
events included) and one that reaches before year 1, wherever an age is given: `EventLog.prune`,
the facade's `prune_events`, `swarmlog prune --older-than`. The log stays exactly as it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from domain.errors import InvalidArgument, SwarmlogError
from domain.events import EventType
from swarmlog.cli import cli
from swarmlog.log import EventLog
from tests.fingerprint import contents


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    with EventLog(path) as log:
        for n in range(5):
            log.log(EventType.BID_SUBMITTED, "coordinator", "t1", "a1", {"bid_sats": n})
    return path


@pytest.mark.parametrize("age", [timedelta(days=-1), timedelta(microseconds=-1),
                                 timedelta(days=-999_999_999)], ids=str)
def test_a_negative_age_is_refused_and_nothing_is_pruned(path: Path, age: timedelta) -> None:
    before = contents(path)
    with EventLog(path) as log, pytest.raises(InvalidArgument, match=r"older_than.*negative"):
        log.prune(older_than=age, archive=path.parent / "archive")
    assert contents(path) == before
    assert not (path.parent / "archive").exists()


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"older_than": timedelta(days=999_999_999)}, "older_than"),
    ({"older_than": 30}, "older_than"),
    ({"older_than": "30d"}, "older_than"),
    ({"before": "2026-01-01"}, "before"),
    ({"before": datetime(2026, 1, 1)}, "before"),  # naive
    ({"before": datetime.min.replace(tzinfo=timezone(timedelta(hours=1)))}, "before"),
    ({}, "prune"),
    ({"older_than": timedelta(days=1), "before": datetime.now(UTC)}, "prune"),
], ids=lambda v: repr(v)[:40])
def test_an_age_or_cutoff_that_is_no_time_is_one_clear_error(path: Path, kwargs: dict[str, Any],
                                                             named: str) -> None:
    before = contents(path)
    with EventLog(path) as log, pytest.raises(InvalidArgument) as raised:
        log.prune(**kwargs)
    assert raised.value.field == named and "\n" not in str(raised.value)
    assert contents(path) == before


@pytest.mark.parametrize("days", [-1, -0.5, -1e-9, 999_999, 1e300, float("nan"), float("inf"),
                                  "30", None, True])
def test_prune_events_refuses_what_is_no_age(path: Path, monkeypatch: pytest.MonkeyPatch,
                                             days: Any) -> None:
    from swarmlog import event_log

    monkeypatch.setattr(event_log, "DB_PATH", path)
    before = contents(path)
    with pytest.raises(SwarmlogError, match="older_than_days"):
        event_log.prune_events(days)
    event_log._log().close()
    assert contents(path) == before


def test_prune_events_of_zero_days_prunes_what_is_older_than_now(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmlog import event_log

    monkeypatch.setattr(event_log, "DB_PATH", path)
    assert event_log.prune_events(0) == 5


@pytest.mark.parametrize("age", ["-1d", "-0s", "99999999d", "9999999999999d", "1e3d"])
def test_prune_older_than_a_negative_or_endless_age_is_refused_on_one_line(path: Path,
                                                                            age: str) -> None:
    before = contents(path)
    result = CliRunner().invoke(cli, ["prune", f"--older-than={age}", "--db", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "--older-than" in result.stderr, result.stderr
    assert contents(path) == before
