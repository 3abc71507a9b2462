"""The web view's event pages equal the plain answer (every stored row, filtered, newest first,
cut into pages) whichever way they are read: a narrow time range on the timestamp index, a wide
one walked from the newest end, several types merged from their own walks."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from domain.codec import StoredEvent
from domain.ids import utc_now
from store import EventFilter
from swarmlog.log import EventLog
from swarmlog.web import queries
from tests.web.conftest import FAILED_TASK

NOW = utc_now()
FILTERS = [
    EventFilter(),
    EventFilter(types=frozenset({"task.failed"})),
    EventFilter(types=frozenset({"task.failed", "tool.failed", "system.error"})),
    EventFilter(types=frozenset({"bid.submitted", "agent.joined"}), source="coordinator"),
    EventFilter(agent_id="a-fixer"),
    EventFilter(task_id=FAILED_TASK, types=frozenset({"tool.called", "tool.failed"})),
    EventFilter(source="tests"),
    EventFilter(since=NOW - timedelta(minutes=30)),
    EventFilter(since=NOW - timedelta(minutes=50), until=NOW - timedelta(minutes=20)),
    EventFilter(until=NOW - timedelta(minutes=90)),
    EventFilter(since=NOW - timedelta(hours=1), types=frozenset({"task.failed", "tool.failed"})),
    EventFilter(since=NOW - timedelta(hours=3), until=NOW, types=frozenset({"system.error"})),
    EventFilter(since=NOW + timedelta(hours=1)),
]


@pytest.fixture(scope="module")
def log(template_log: Path) -> EventLog:
    return EventLog(template_log, read_only=True)


def plain(log: EventLog, where: EventFilter) -> list[StoredEvent]:
    return sorted((r for r in log.read() if queries.matches(r, where)),
                  key=lambda r: -r.position)


def described(where: EventFilter) -> str:
    """A filter's non-empty fields, sets sorted and times from NOW (the same id in every
    process)."""
    values = {f.name: getattr(where, f.name) for f in dataclasses.fields(where)}
    return ",".join(f"{k}={sorted(v) if isinstance(v, frozenset) else v}"
                    if not isinstance(v, datetime)
                    else f"{k}=NOW{'+' if v >= NOW else '-'}{abs(v - NOW)}"
                    for k, v in values.items() if v is not None and v != ())


@pytest.mark.parametrize("where", FILTERS, ids=described)
@pytest.mark.parametrize("rate", [0.0, 1e9], ids=["narrow", "wide"])
def test_pages_by_position_equal_the_plain_answer(log: EventLog, where: EventFilter,
                                                   rate: float) -> None:
    wanted = plain(log, where)
    walked: list[StoredEvent] = []
    before = None
    while True:
        page = queries.events(log.store, where, limit=17, before=before, rate=lambda: rate,
                              now=NOW)
        walked += page.rows
        if page.older is None:
            break
        before = page.older
    assert [r.position for r in walked] == [r.position for r in wanted]
    if len(wanted) > 20:  # and back up again from an older position
        newer = queries.events(log.store, where, limit=5, after=wanted[12].position,
                               rate=lambda: rate, now=NOW)
        assert [r.position for r in newer.rows] == [r.position for r in wanted[7:12]]
        assert newer.older == wanted[11].position and newer.newer == wanted[7].position
