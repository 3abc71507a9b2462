"""What only the PostgreSQL backend has to prove: gap-free tailing under concurrent writers,
LISTEN wake-ups, its schema, guards, migrations and connection errors. Runs on a real server."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

import store.postgres as pg_store
from domain.codec import encode
from domain.errors import ConcurrencyError, CorruptEvent, StoreError
from domain.events import BidSubmitted, SystemErrorLogged, TaskCreated, ToolCalled
from store.postgres import PostgresEventStore
from store.postgres_schema import SCHEMA_VERSION
from tests import pg

pytestmark = pytest.mark.postgres


@pytest.fixture
def url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database of the session's server."""
    fresh = pg.create_database()
    yield fresh
    pg.drop_database(pg.name_of(fresh))


@pytest.fixture
def store(url: str) -> Iterator[PostgresEventStore]:
    opened = PostgresEventStore(url)
    yield opened
    opened.close()


def bid(task: str, agent: str, sats: int) -> BidSubmitted:
    return BidSubmitted(source="test", task_id=task, agent_id=agent, data={"bid_sats": sats})


def raw(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


class Rollback(Exception):
    """Raised inside a writer's transaction to roll it back."""


def test_a_tailing_reader_sees_every_committed_event_once_in_position_order(url: str) -> None:
    committed: set[str] = set()
    rolled_back: set[str] = set()
    seen: list[tuple[int, str]] = []
    passes_with_news = 0
    done = threading.Event()
    errors: list[BaseException] = []

    def write(name: str, seed: int) -> None:
        rng = random.Random(seed)
        store = PostgresEventStore(url)  # each writer its own store: its own connections
        try:
            for round_ in range(20):
                batch = [bid(f"{name}-{rng.randrange(3)}", name, round_ * 10 + i)
                         for i in range(rng.randint(1, 4))]
                ids = {e.id for e in batch}
                try:
                    with store.transaction():
                        store.append(batch)
                        if rng.random() < 0.4:  # positions taken, commit held back
                            store._execute("SELECT pg_sleep(%s)", (rng.uniform(0.005, 0.03),))
                        if rng.random() < 0.25:
                            raise Rollback
                except Rollback:
                    rolled_back.update(ids)
                else:
                    committed.update(ids)
        except BaseException as e:
            errors.append(e)
            raise
        finally:
            store.close()

    def tail() -> None:
        nonlocal passes_with_news
        store = PostgresEventStore(url)
        last = 0
        try:
            while True:
                finished = done.is_set()  # looked at before the read: the last pass sees all
                news = [(r.position, r.event.id) for r in store.read(after=last)]
                if news:
                    passes_with_news += 1
                    seen.extend(news)
                    last = news[-1][0]
                if finished:
                    return
                store.wait_for_append(last, timeout=0.2)
        except BaseException as e:
            errors.append(e)
            raise
        finally:
            store.close()

    reader = threading.Thread(target=tail)
    reader.start()
    writers = [threading.Thread(target=write, args=(f"w{n}", n)) for n in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=60)
    done.set()
    reader.join(timeout=60)

    assert not errors
    assert committed and rolled_back, "the random schedule should both commit and roll back"
    missed = committed - {i for _, i in seen}
    assert not missed, f"the reader skipped {len(missed)} committed events"
    assert not rolled_back & {i for _, i in seen}
    positions = [p for p, _ in seen]
    assert positions == list(range(1, len(committed) + 1))  # in order, once each, no gaps
    assert passes_with_news > 1, "the reader should have tailed the log while it grew"
    with PostgresEventStore(url) as store:
        assert store.head() == store.count() == len(committed)


def test_one_store_shared_by_threads_hands_out_each_position_once(store: PostgresEventStore) -> None:
    def write(n: int) -> list[int]:
        return [p for i in range(25) for p in store.append([bid(f"t{n}", "a", i)])]

    results: list[list[int]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, write(n)))
               for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p for r in results for p in r) == list(range(1, 101))
    assert all(r == sorted(r) for r in results)


def test_wait_for_append_is_woken_by_a_notification_from_another_connection(
        url: str, store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_store, "_SAFETY_POLL", 30.0)  # only NOTIFY can wake it in time
    appended_at: list[float] = []

    def append_elsewhere() -> None:
        with PostgresEventStore(url) as other:
            time.sleep(0.3)
            other.append([bid("t", "a", 1)])
            appended_at.append(time.monotonic())

    writer = threading.Thread(target=append_elsewhere)
    writer.start()
    assert store.wait_for_append(0, timeout=10) is True
    woke_at = time.monotonic()
    writer.join()
    assert woke_at - appended_at[0] < 1.0
    assert store.wait_for_append(1, timeout=0.1) is False


def test_wait_for_append_polls_when_listen_is_refused(
        url: str, store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_store, "CHANNEL", "not a channel")  # LISTEN fails: a syntax error
    timer = threading.Timer(0.2, lambda: store.append([bid("t", "a", 1)]))
    timer.start()
    started = time.monotonic()
    assert store.wait_for_append(0, timeout=10) is True
    assert time.monotonic() - started < 2.0
    timer.join()
    assert store.head() == 1  # the connection went back to the pool in working order


def test_update_delete_and_truncate_through_raw_sql_are_refused(url: str,
                                                                store: PostgresEventStore) -> None:
    store.append([TaskCreated(source="test", task_id="t1")])
    with raw(url) as conn:
        for statement in ("UPDATE event_log SET source = 'forged'", "DELETE FROM event_log",
                          "TRUNCATE event_log"):
            with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT source FROM event_log").fetchall() == [("test",)]


def test_delete_is_allowed_only_inside_a_transaction_that_opened_the_prune_gate(
        url: str, store: PostgresEventStore) -> None:
    store.append([bid("t", "a", n) for n in range(3)])
    with raw(url) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL swarmlog.prune = 'on'")
            conn.execute("DELETE FROM event_log WHERE seq = 1")
        with pytest.raises(psycopg.errors.RestrictViolation):
            conn.execute("DELETE FROM event_log WHERE seq = 2")  # the gate closed at commit
    assert [r.position for r in store.read()] == [2, 3]


def test_an_append_through_the_store_is_refused_by_nothing_but_the_guards(
        store: PostgresEventStore) -> None:
    store.append([bid("t", "a", n) for n in range(3)])
    with pytest.raises(StoreError, match="append-only"), store.transaction():
        store._execute("UPDATE event_log SET source = 'forged'")
    assert store.delete_through(1) == 1 and store.head() == 3


def test_data_keeps_its_exact_json_text(url: str, store: PostgresEventStore) -> None:
    event = ToolCalled(source="agent", agent_id="a", data={
        "tool": "search", "zeta": 1, "alpha": {"z": [1.5e-7, 2**63 - 1], "a": "ünïcødé ✓ \"q\""},
        "arguments": {"b": None, "a": True}})
    store.append([event])
    (back,) = store.read()
    assert encode(back.event) == encode(event)
    with raw(url) as conn:
        assert conn.execute("SELECT data::text FROM event_log").fetchone() == (encode(event)[5],)
        assert conn.execute("SELECT data->'alpha'->>'a' FROM event_log").fetchone() == (
            "ünïcødé ✓ \"q\"",)


def test_a_concurrency_error_leaves_the_callers_transaction_usable(
        store: PostgresEventStore) -> None:
    store.append([TaskCreated(source="test", task_id="t1")])
    with store.transaction():
        with pytest.raises(ConcurrencyError):
            store.append([bid("t1", "a", 1)], expected_version=0)
        store.append([bid("t1", "a", 2)], expected_version=1)
    assert [r.stream_version for r in store.read_task("t1")] == [1, 2]


def test_a_writer_that_holds_the_lock_too_long_gives_a_clear_error(url: str,
                                                                   store: PostgresEventStore) -> None:
    with PostgresEventStore(url, lock_timeout=0.2) as impatient:
        with store.transaction():
            store.append([bid("t", "a", 1)])
            with pytest.raises(StoreError, match=r"locked by another writer for 0\.2s"):
                impatient.append([bid("t", "a", 2)])
        assert impatient.append([bid("t", "a", 3)]) == [2]


def test_concurrent_openers_of_a_new_database_migrate_it_once(url: str) -> None:
    errors: list[BaseException] = []

    def open_and_append(n: int) -> None:
        try:
            with PostgresEventStore(url) as store:
                store.append([bid(f"t{n}", "a", n)])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_and_append, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with raw(url) as conn:
        assert conn.execute("SELECT version FROM swarmlog_migrations").fetchall() == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert conn.execute("SELECT head FROM log_head").fetchone() == (6,)


def test_a_database_from_a_newer_swarmlog_is_refused(url: str) -> None:
    PostgresEventStore(url).close()
    with raw(url) as conn:
        conn.execute("INSERT INTO swarmlog_migrations (version, name) VALUES (%s, 'future')",
                     (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this swarmlog"):
        PostgresEventStore(url)


def test_an_event_log_table_swarmlog_did_not_create_is_left_alone(url: str) -> None:
    with raw(url) as conn:
        conn.execute("CREATE TABLE event_log (id text PRIMARY KEY, payload text)")
    with pytest.raises(StoreError, match="did not create"):
        PostgresEventStore(url)


def test_an_unreachable_server_gives_an_error_naming_the_url_without_its_password() -> None:
    url = "postgresql://swarm:s3cret-pw@/swarmlog?host=/nonexistent/socket/dir"
    with pytest.raises(StoreError) as raised:
        PostgresEventStore(url, connect_timeout=2)
    message = str(raised.value)
    assert "postgresql://swarm@/swarmlog?host=/nonexistent/socket/dir" in message
    assert "s3cret" not in message


def test_a_missing_database_gives_a_clear_error(postgres_server: str) -> None:
    with pytest.raises(StoreError, match="swarmlog_no_such_db"):
        PostgresEventStore(pg.with_database(postgres_server, "swarmlog_no_such_db"))


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("data", '{"bid_sats": -5}', "bid_sats"), ("event_type", "task.exploded", "task.exploded"),
     ("data", "[1, 2]", "not an object")],
)
def test_a_corrupt_row_raises_corrupt_event_naming_its_seq(url: str, store: PostgresEventStore,
                                                           column: str, value: str,
                                                           reason: str) -> None:
    store.append([bid("t", "a", 1)])
    with raw(url) as conn:  # someone tampering behind swarmlog's back
        conn.execute("ALTER TABLE event_log DISABLE TRIGGER event_log_no_update")
        conn.execute(f"UPDATE event_log SET {column} = %s", (value,))
    with pytest.raises(CorruptEvent) as raised:
        list(store.read())
    assert raised.value.seq == 1 and reason in str(raised.value).lower()


def test_the_schema_has_the_adr_columns_and_indexes(url: str, store: PostgresEventStore) -> None:
    with raw(url) as conn:
        columns = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'event_log'").fetchall())
        indexes = [row[0].replace('"', "") for row in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'event_log'")]
    assert columns == {
        "seq": "bigint", "id": "text", "event_type": "text", "source": "text", "task_id": "text",
        "agent_id": "text", "data": "json", "timestamp": "text", "stream_id": "text",
        "stream_version": "bigint", "schema_version": "integer", "checksum": "bigint"}
    for column in ("task_id", "agent_id", "timestamp", "event_type"):
        assert any(f"({column}, seq)" in sql for sql in indexes), column
    assert any("(stream_id, stream_version)" in sql and "UNIQUE" in sql for sql in indexes)


def test_a_system_event_without_payload_round_trips_as_null_data(url: str,
                                                                 store: PostgresEventStore) -> None:
    event = SystemErrorLogged(source="test")
    store.append([event])
    with raw(url) as conn:
        assert conn.execute("SELECT data FROM event_log").fetchone() == (None,)
    found = store.get(event.id)
    assert found is not None and found.event == event and found.stream_id == "system"


def test_wait_for_append_keeps_waiting_by_polling_when_its_listener_dies(
        url: str, store: PostgresEventStore) -> None:
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(store.wait_for_append(0, timeout=10)))
    waiter.start()
    with raw(url) as conn:
        deadline = time.monotonic() + 5
        while not conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE query LIKE 'LISTEN%%' AND state = 'idle'").fetchall():
            assert time.monotonic() < deadline, "the waiter never listened"
            time.sleep(0.01)
    time.sleep(0.1)
    started = time.monotonic()
    store.append([bid("t", "a", 1)])
    waiter.join(timeout=10)
    assert woke == [True] and time.monotonic() - started < 1.0


@pytest.mark.parametrize(("given", "shown"), [
    ("postgresql://ann:pw@db.example:5432/log", "postgresql://ann@db.example:5432/log"),
    ("postgresql://ann@db/log?password=pw&sslmode=require", "postgresql://ann@db/log?sslmode=require"),
    ("postgresql:///log?host=/run/pg", "postgresql:///log?host=/run/pg"),
    ("host=db dbname=log password='p w' user=ann", "host=db dbname=log password=*** user=ann"),
])
def test_messages_show_the_url_without_its_password(given: str, shown: str) -> None:
    assert pg_store.redact(given) == shown
