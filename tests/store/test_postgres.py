"""What only the PostgreSQL backend has to prove: gap-free tailing under concurrent writers,
LISTEN wake-ups, its writer lock, its schema and migrations, its own guards (TRUNCATE, the prune
gate) and connection errors. Runs on a real server. Everything both database backends do alike
is in test_contract.py."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import store.postgres as pg_store
from domain.codec import encode
from domain.errors import StoreError
from domain.events import Event, EventType
from store.chain import GENESIS
from store.location import redact
from store.postgres import PostgresStore
from store.postgres_schema import MIGRATIONS, SCHEMA_VERSION
from store.schema import _crc
from tests import pg
from tests.strategies import ev, remove_prefix, rows

pytestmark = pytest.mark.postgres

_T = EventType


@pytest.fixture
def url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database of the session's server."""
    fresh = pg.create_database()
    yield fresh
    pg.drop_database(pg.name_of(fresh))


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(url)
    yield opened
    opened.close()


def bid(task: str, agent: str, amount: int) -> Event:
    return ev(_T.BID_SUBMITTED, task, agent, bid_sats=amount)


def raw(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


class Rollback(Exception):
    """Raised inside a writer's transaction to roll it back."""


# -- tailing and waking ----------------------------------------------------------------------------


def test_a_tailing_reader_sees_every_committed_event_once_in_position_order(url: str) -> None:
    committed: set[str] = set()
    rolled_back: set[str] = set()
    seen: list[tuple[int, str]] = []
    passes_with_news = 0
    done = threading.Event()
    errors: list[BaseException] = []

    def write(name: str, seed: int) -> None:
        rng = random.Random(seed)
        store = PostgresStore(url)  # each writer its own store: its own connections
        try:
            for round_ in range(20):
                batch = rows(*(bid(f"{name}-{rng.randrange(3)}", name, round_ * 10 + i)
                               for i in range(rng.randint(1, 4))))
                ids = {r.id for r in batch}
                try:
                    with store.transaction():
                        store.append(batch)
                        if rng.random() < 0.4:  # positions taken, commit held back
                            store.raw("SELECT pg_sleep(%s)", (rng.uniform(0.005, 0.03),))
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
        store = PostgresStore(url)
        last = 0
        try:
            while True:
                finished = done.is_set()  # looked at before the read: the last pass sees all
                news = [(r.position, r.id) for r in store.read(after=last)]
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
    with PostgresStore(url) as store:
        assert store.head() == len(committed) == len(list(store.read()))


def test_wait_for_append_is_woken_by_a_notification_from_another_connection(
        url: str, store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_store, "_SAFETY_POLL", 30.0)  # only NOTIFY can wake it in time
    appended_at: list[float] = []

    def append_elsewhere() -> None:
        with PostgresStore(url) as other:
            time.sleep(0.3)
            other.append(rows(bid("t", "a", 1)))
            appended_at.append(time.monotonic())

    writer = threading.Thread(target=append_elsewhere)
    writer.start()
    assert store.wait_for_append(0, timeout=10) is True
    woke_at = time.monotonic()
    writer.join()
    assert woke_at - appended_at[0] < 1.0
    assert store.wait_for_append(1, timeout=0.1) is False


def test_a_notification_on_the_channel_from_elsewhere_does_not_end_the_wait(
        url: str, store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another schema's log shares the channel: its payload is a hint, the head decides.
    monkeypatch.setattr(pg_store, "_SAFETY_POLL", 30.0)

    def notify() -> None:
        with raw(url) as conn:
            conn.execute(f"SELECT pg_notify('{pg_store.CHANNEL}', '99')")

    timer = threading.Timer(0.1, notify)
    timer.start()
    started = time.monotonic()
    assert store.wait_for_append(0, timeout=0.6) is False
    assert time.monotonic() - started >= 0.5
    timer.join()


def test_wait_for_append_polls_when_listen_is_refused(
        store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_store, "CHANNEL", "not a channel")  # LISTEN fails: a syntax error
    timer = threading.Timer(0.2, lambda: store.append(rows(bid("t", "a", 1))))
    timer.start()
    started = time.monotonic()
    assert store.wait_for_append(0, timeout=10) is True
    assert time.monotonic() - started < 2.0
    timer.join()
    assert store.head() == 1  # the connection went back to the pool in working order


def test_wait_for_append_keeps_waiting_by_polling_when_its_listener_dies(
        url: str, store: PostgresStore) -> None:
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
    store.append(rows(bid("t", "a", 1)))
    waiter.join(timeout=10)
    assert woke == [True] and time.monotonic() - started < 1.0


# -- the writer lock -------------------------------------------------------------------------------


def test_a_writer_that_holds_the_lock_too_long_gives_a_clear_error(url: str,
                                                                   store: PostgresStore) -> None:
    with PostgresStore(url, lock_timeout=0.2) as impatient:
        with store.transaction():
            store.append(rows(bid("t", "a", 1)))
            with pytest.raises(StoreError, match=r"locked by another writer for 0\.2s"):
                impatient.append(rows(bid("t", "a", 2)))
        assert impatient.append(rows(bid("t", "a", 3))) == [2]


def test_a_rolled_back_append_leaves_no_gap_in_positions(url: str, store: PostgresStore) -> None:
    store.append(rows(bid("t", "a", 1)))
    with pytest.raises(Rollback), store.transaction():
        assert store.append(rows(bid("t", "a", 2), bid("t", "a", 3))) == [2, 3]
        raise Rollback
    assert store.append(rows(bid("t", "a", 4))) == [2]
    with raw(url) as conn:
        assert conn.execute("SELECT head FROM swarmlog_head").fetchone() == (2,)
        assert conn.execute("SELECT version FROM swarmlog_streams").fetchall() == [(2,)]


# -- guards only PostgreSQL has ----------------------------------------------------------------------


def test_truncate_through_raw_sql_is_refused(url: str, store: PostgresStore) -> None:
    store.append(rows(ev(_T.TASK_CREATED, "t1")))
    with raw(url) as conn:
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            conn.execute("TRUNCATE event_log")
        assert conn.execute("SELECT count(*) FROM event_log").fetchone() == (1,)


def test_delete_is_allowed_only_inside_a_transaction_that_opened_the_prune_gate(
        url: str, store: PostgresStore) -> None:
    store.append(rows(*(bid("t", "a", n) for n in range(3))))
    with raw(url) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL swarmlog.prune = 'on'")
            conn.execute("DELETE FROM event_log WHERE seq = 1")
        with pytest.raises(psycopg.errors.RestrictViolation):
            conn.execute("DELETE FROM event_log WHERE seq = 2")  # the gate closed at commit
    assert [r.position for r in store.read()] == [2, 3]


def test_the_stores_own_connection_is_held_to_the_guards_and_errors_are_store_errors(
        store: PostgresStore) -> None:
    store.append(rows(*(bid("t", "a", n) for n in range(3))))
    with pytest.raises(StoreError, match="append-only: UPDATE is not allowed"), \
            store.transaction():
        store._execute("UPDATE event_log SET source = 'forged'")
    assert {r.source for r in store.read()} == {"test"}
    assert remove_prefix(store, 1, 1, "2025-03-01T00:00:00.000000+00:00", None, None) == 1
    assert store.head() == 3


def test_the_payload_is_queryable_with_postgresql_json_operators(url: str,
                                                                 store: PostgresStore) -> None:
    event = ev(_T.TOOL_CALLED, agent="a", tool="search",
               arguments={"query": 'ünïcødé ✓ "q"', "n": 2})
    store.append(rows(event))
    with raw(url) as conn:
        assert conn.execute("SELECT data::text FROM event_log").fetchone() == (encode(event).data,)
        # `data` is text (a payload stored as the ADR 017 module took it need not be JSON): a
        # conforming row's payload is JSON, queried through jsonb.
        assert conn.execute("SELECT data::jsonb->'arguments'->>'query', "
                            "(data::jsonb->'arguments'->>'n')::int FROM event_log WHERE conforms"
                            ).fetchone() == ('ünïcødé ✓ "q"', 2)


# -- schema and migrations -------------------------------------------------------------------------


def test_the_schema_has_the_adr_columns_and_indexes_ending_in_the_position(
        url: str, store: PostgresStore) -> None:
    with raw(url) as conn:
        columns = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'event_log'").fetchall())
        indexes = [row[0].replace('"', "") for row in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'event_log'")]
    assert columns == {
        "seq": "bigint", "id": "text", "event_type": "text", "source": "text", "task_id": "text",
        "agent_id": "text", "data": "text", "timestamp": "text", "stream_id": "text",
        "stream_version": "bigint", "schema_version": "integer", "hash": "bytea",
        "conforms": "boolean"}
    for column in ("task_id", "agent_id", "timestamp", "event_type"):
        assert any(f"({column}, seq)" in sql for sql in indexes), column
    assert any("(stream_id, stream_version)" in sql and "UNIQUE" in sql for sql in indexes)


def test_concurrent_openers_of_a_new_database_migrate_it_once(url: str) -> None:
    errors: list[BaseException] = []

    def open_and_append(n: int) -> None:
        try:
            with PostgresStore(url) as store:
                store.append(rows(bid(f"t{n}", "a", n)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_and_append, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with raw(url) as conn:
        assert conn.execute("SELECT version FROM swarmlog_migrations ORDER BY version").fetchall(
            ) == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert conn.execute("SELECT head FROM swarmlog_head").fetchone() == (6,)


def test_a_version_3_database_is_upgraded_and_keeps_its_rows_conforming(url: str) -> None:
    with raw(url) as conn, conn.transaction():
        for version, name, sql in MIGRATIONS[:3]:
            conn.execute(sql.encode())
            conn.execute("INSERT INTO swarmlog_migrations (version, name) VALUES (%s, %s)",
                         (version, name))
        r = encode(ev(_T.TASK_CREATED, "t1"))
        conn.execute("INSERT INTO event_log (seq, id, event_type, source, task_id, agent_id, data,"
                     " timestamp, stream_id, stream_version, schema_version, checksum) VALUES "
                     "(1, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s)",
                     (r.id, r.event_type, r.source, r.task_id, r.agent_id, r.data, r.timestamp,
                      r.stream_id, r.schema_version, _crc(r)))
        conn.execute("UPDATE log_head SET head = 1")  # (a version 3 database's own names)
        conn.execute("INSERT INTO streams VALUES ('task-t1', 1)")
    with PostgresStore(url) as store:
        (stored,) = store.read()  # conforming, and chained (0006)
        assert stored._replace(hash=None) == r._replace(position=1, stream_version=1, conforms=True)
        assert stored.hash == store.chain.link(GENESIS, stored._replace(hash=None))
        assert store.append(rows(ev(_T.TASK_BIDDING, "t1")), expected={"task-t1": 1}) == [2]
    with raw(url) as conn:
        # From now on a row another client inserts says nothing about its conformance.
        conn.execute("INSERT INTO event_log (seq, id, event_type, source, timestamp, stream_id, "
                     "stream_version) VALUES (3, 'theirs', 'system.info', 'x', 't', 'system', 1)")
        assert conn.execute("SELECT conforms FROM event_log WHERE seq = 3").fetchone() == (None,)
        assert conn.execute("SELECT max(version) FROM swarmlog_migrations").fetchone() == (
            SCHEMA_VERSION,)


def test_a_database_from_a_newer_swarmlog_is_refused(url: str) -> None:
    PostgresStore(url).close()
    with raw(url) as conn:
        conn.execute("INSERT INTO swarmlog_migrations (version, name) VALUES (%s, 'future')",
                     (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        PostgresStore(url)


def test_an_event_log_table_swarmlog_did_not_create_is_left_alone(url: str) -> None:
    with raw(url) as conn:
        conn.execute("CREATE TABLE event_log (id text PRIMARY KEY, payload text)")
    with pytest.raises(StoreError, match="did not create"):
        PostgresStore(url)
    with raw(url) as conn:
        assert conn.execute("SELECT to_regclass('swarmlog_migrations')").fetchone() == (None,)


# -- connection errors and what they show ----------------------------------------------------------


def test_an_unreachable_server_gives_an_error_naming_the_url_without_its_password() -> None:
    url = "postgresql://swarm:s3cret-pw@/swarmlog?host=/nonexistent/socket/dir"
    with pytest.raises(StoreError) as raised:
        PostgresStore(url, connect_timeout=2)
    message = str(raised.value)
    assert "cannot open postgresql://swarm@/swarmlog?host=/nonexistent/socket/dir" in message
    assert "s3cret" not in message


def test_a_missing_database_gives_a_clear_error(postgres_server: str) -> None:
    with pytest.raises(StoreError, match="swarmlog_no_such_db"):
        PostgresStore(pg.with_database(postgres_server, "swarmlog_no_such_db"))


@pytest.mark.parametrize(("given", "shown"), [
    ("postgresql://ann:pw@db.example:5432/log", "postgresql://ann@db.example:5432/log"),
    ("postgres://ann:p%40ss@db/log", "postgres://ann@db/log"),
    ("postgresql://ann@db/log?password=pw&sslmode=require", "postgresql://ann@db/log?sslmode=require"),
    ("postgresql://ann@db/log?sslmode=require&PASSWORD=pw", "postgresql://ann@db/log?sslmode=require"),
    ("postgresql:///log?host=/run/pg", "postgresql:///log?host=/run/pg"),
    ("host=db dbname=log password='p w' user=ann", "host=db dbname=log password=*** user=ann"),
    ("host=db PASSWORD = secret user=ann", "host=db password=*** user=ann"),
])
def test_messages_show_the_url_without_its_password(given: str, shown: str) -> None:
    assert redact(given) == shown
