"""An append never reports failure for an event it stored, and a retry of the same event never
stores it twice: the event pruned before it is read back, the connection lost after the commit,
the answer to the COMMIT lost on the way (a real TCP proxy between client and server loses it),
the server out of reach after that."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from domain.codec import StoredEvent
from domain.errors import CommitInDoubt
from domain.events import BidSubmitted, SystemInfoLogged, TaskCreated
from domain.ids import utc_now
from store.postgres import PostgresStore
from swarmlog.jsonl import JsonLines, export_events, import_rows
from swarmlog.log import EventLog
from tests import pg
from tests.proxy import Proxy

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def stored_ids(url: str) -> list[str]:
    """The ids stored, asked straight of the server (not through the proxy)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [i for (i,) in conn.execute("SELECT id FROM event_log ORDER BY seq")]


@pytest.fixture
def url(postgres_server: str) -> Iterator[str]:
    fresh = pg.create_database()
    EventLog(fresh).close()  # migrated, straight
    yield fresh
    pg.drop_database(pg.name_of(fresh))


@pytest.fixture
def proxy(url: str) -> Iterator[Proxy]:
    through = Proxy(url)
    yield through
    through.close()


# -- pruned before the read-back -------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_event_pruned_before_it_is_read_back_is_still_reported_stored(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    location = str(tmp_path / "log.db") if backend == "sqlite" else request.getfixturevalue("url")
    with EventLog(location) as log, EventLog(location) as pruner:
        # Between the append's commit and its read-back (where subscribers hear of it), another
        # process prunes everything older than now: the event, stamped long ago, among them.
        def prune_all(row: StoredEvent) -> None:
            pruner.prune(before=utc_now())

        log.subscribe(prune_all)
        row = log.log("system.info", "test", timestamp=LONG_AGO)
        assert (row.position, row.source) == (1, "test")
        assert log.get(row.id) is None and pruner.store.prunes()[0].last_position == 1


# -- the connection lost after the commit ------------------------------------------------------------


@pytest.mark.postgres
def test_a_connection_lost_after_the_commit_does_not_fail_the_append(url: str,
                                                                     proxy: Proxy) -> None:
    with EventLog(proxy.url) as log:
        log.subscribe(lambda row: proxy.drop_all())  # after the commit, before the read-back
        row = log.log("system.info", "test", data={"n": 1})
        assert row.position == 1 and stored_ids(url) == [row.id]
        again = log.log("system.info", "test", data={"n": 2})  # the pool connects anew
        assert again.position == 2


# -- the answer to the COMMIT lost ------------------------------------------------------------------


@pytest.mark.postgres
def test_an_append_whose_commit_answer_is_lost_is_reported_stored_and_stored_once(
        url: str, proxy: Proxy) -> None:
    with EventLog(proxy.url) as log:
        proxy.lose_next_commit_answer()
        first = log.log("task.created", "test", task_id="t1")
        assert first.position == 1
        # With expected versions: the retry finds the batch stored, not a conflict.
        bids = [BidSubmitted(source="test", task_id="t1", agent_id=f"a{i}", data={"bid_sats": i})
                for i in range(3)]
        proxy.lose_next_commit_answer()
        assert log.append(bids, expected={"task-t1": 1}) == [2, 3, 4]
        assert stored_ids(url) == [first.id, *(b.id for b in bids)]


@pytest.mark.postgres
def test_the_facade_reports_an_event_whose_commit_answer_is_lost_as_stored_once(
        url: str, proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmlog import event_log

    monkeypatch.setattr(event_log, "DB_PATH", proxy.url)
    assert event_log.get_event("none") is None  # (the log is open)
    heard: list[event_log.EventLogEntry] = []
    unsubscribe = event_log.subscribe(heard.append)
    try:
        proxy.lose_next_commit_answer()
        entry = event_log.log_event(event_log.EventType.TASK_CREATED, "coordinator",
                                    task_id="t1", data={"description": "index docs"})
    finally:
        unsubscribe()
    assert entry.position == 1 and stored_ids(url) == [entry.id]
    assert heard == [entry]
    assert [e.id for e in event_log.get_task_events("t1")] == [entry.id]


@pytest.mark.postgres
def test_when_the_server_stays_out_of_reach_the_error_says_so_and_a_retry_stores_once(
        url: str, proxy: Proxy) -> None:
    with EventLog(PostgresStore(proxy.url, connect_timeout=1)) as log:
        events = [TaskCreated(source="test", task_id="t1"), SystemInfoLogged(source="test")]
        proxy.lose_next_commit_answer(then_refuse=True)
        with pytest.raises(CommitInDoubt, match="cannot tell whether") as raised:
            log.append(events)
        assert raised.value.event_ids == tuple(e.id for e in events)
        assert f"events {events[0].id} and 1 more" in str(raised.value)
        assert stored_ids(url) == [e.id for e in events]  # (it was committed)
    proxy.refusing.clear()
    with EventLog(proxy.url) as back:  # (a new pool: the old one backs off before reconnecting)
        assert back.append(events) == [1, 2]  # the same events again: stored once
    assert stored_ids(url) == [e.id for e in events]


def test_a_row_read_back_is_the_stored_row(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.db") as log:
        log.log("system.info", "test")
        row = log.log("task.created", "test", task_id="t1")
        assert isinstance(row, StoredEvent) and row.stream_version == 1 and row.hash is not None
        assert row == log.get(row.id)


@pytest.mark.postgres
def test_an_import_whose_commit_answer_is_lost_says_so_and_importing_again_stores_it_once(
        url: str, proxy: Proxy, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    with EventLog(url) as source:
        source.append([TaskCreated(source="test", task_id=f"t{n}") for n in range(5)])
        with path.open("wb") as out:
            export_events(source.store, out)
    copy = pg.create_database()
    EventLog(copy).close()
    through = Proxy(copy)
    try:
        with EventLog(through.url) as log:
            through.lose_next_commit_answer()
            with pytest.raises(CommitInDoubt, match="the whole file, or none of it; import it "
                                                    "again"):
                import_rows(log.store, JsonLines(str(path)))
            again = import_rows(log.store, JsonLines(str(path)))
            assert (again.added, again.present) == (0, 5)
            assert stored_ids(copy) == stored_ids(url)
    finally:
        through.close()
