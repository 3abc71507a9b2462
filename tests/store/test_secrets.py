"""A PostgreSQL password never appears in any output: not in the location a log shows, not in an
error (a malformed URL included: a stray '%', an '@' or a '/' in the password, a libpq key=value
string), not in what the connection pool logs during an outage — which is one line a warning."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from domain.errors import StoreError
from store import open_store
from store.location import redact
from swarmlog.cli import cli

SECRET = "Zq8Xj3Kw"  # upper case: nothing else in these URLs is

# -- showing a location ----------------------------------------------------------------------------

lower = st.text("abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=8)
#: A password as someone types it into a URL, escaped or not: any of the characters that mean
#: something in a URL, and percent signs that escape something or not.
passwords = st.text("QXZJKW" + "@/?#%:=& +'\\", min_size=1, max_size=12).filter(
    lambda p: any(c.isupper() for c in p))
query_passwords = st.text("QXZJKW" + "@/?#%:+", min_size=1, max_size=12).filter(
    lambda p: any(c.isupper() for c in p))


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["postgresql", "postgres"]))
    user = draw(lower)
    password = draw(st.none() | passwords)
    userinfo = draw(st.sampled_from(["", f"{user}@", f"{user}:{password}@"] if password
                                    else ["", f"{user}@"]))
    host = draw(st.sampled_from(["", draw(lower), f"{draw(lower)}:5432", "h1:5432,h2:5433"]))
    path = draw(st.sampled_from(["", f"/{draw(lower)}"]))
    params = draw(st.lists(st.sampled_from(["sslmode=require", "user=me@corp", "host=/run/pg",
                                            "application_name=a@b"]), max_size=2))
    if draw(st.booleans()):
        params.insert(draw(st.integers(0, len(params))),
                      f"{draw(st.sampled_from(['password', 'PASSWORD']))}={draw(query_passwords)}")
    query = f"?{'&'.join(params)}" if params else ""
    return f"{scheme}://{userinfo}{host}{path}{query}"


@given(urls())
@example("postgresql://ann:p@ss@w0rd@db/log".replace("p@ss@w0rd", "QX@ZJ@KW"))
@example("postgresql://ann:QX%ZZ@db/log")
@example("postgresql://ann:QX/ZJ@db/log")
@example("postgresql://ann:QX?ZJ@db/log")
@example("postgresql://ann:QX#ZJ@db/log")
@example("postgresql://[::1:QXZJ@db/log")
@example("postgresql://db/log?password=QX%ZZ")
@example("postgresql://0:/?J@?sslmode=require")  # a "/" and a "?" in the password
@example("postgresql://0:5432?password=@J")  # an "@" in a query password, no "/" before it
def test_a_location_shows_no_piece_of_any_password(url: str) -> None:
    shown = redact(url)
    assert not any(c.isupper() for c in shown.removeprefix("postgres")), (url, shown)


@pytest.mark.parametrize(("given", "shown"), [
    ("host=db dbname=log password='p w' user=ann", "host=db dbname=log password=*** user=ann"),
    ("host=db password=p\\ QXZ user=ann", "host=db password=*** user=ann"),
    ("host=db password='unterminated QXZ", "host=db password=***"),
])
def test_a_key_value_string_shows_no_piece_of_its_password(given: str, shown: str) -> None:
    assert redact(given) == shown


# -- errors ----------------------------------------------------------------------------------------

MALFORMED = [
    f"postgresql://swarm:{SECRET}%ZZ@127.0.0.1:1/swarm",       # not a percent-escape
    f"postgresql://swarm:{SECRET[:4]}@{SECRET[4:]}@127.0.0.1:1/swarm",  # '@' in the password
    f"postgresql://swarm:{SECRET[:4]}/{SECRET[4:]}@127.0.0.1:1/swarm",  # '/' in the password
    f"postgresql://swarm@127.0.0.1:1/swarm?password={SECRET}%G0",
    f"postgresql://swarm@127.0.0.1:1/swarm?password={SECRET[:4]}&{SECRET[4:]}",
    f"postgresql://swarm:{SECRET}@[::1:1/swarm",                # an unclosed IPv6 bracket
    f"host=127.0.0.1 port=1 dbname=swarm password={SECRET}",    # libpq's key=value form
    f"host=127.0.0.1 port=1 password='{SECRET[:4]} {SECRET[4:]}'",
]


def pieces(secret: str = SECRET) -> list[str]:
    """The password and every part of it long enough to recognise."""
    return [secret[i:i + 3] for i in range(len(secret) - 2)]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_is_refused_in_one_line_without_its_password(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as raised:
        open_store(url)
    message = str(raised.value)
    assert "\n" not in message and not any(p in message for p in pieces()), message
    assert not any(tmp_path.iterdir())  # (no SQLite file of that name either)


@pytest.mark.parametrize("url", MALFORMED)
def test_the_cli_refuses_a_malformed_url_in_one_line_without_its_password(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["status", "--db", url])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert not any(p in result.output for p in pieces()), result.output
    assert not any(tmp_path.iterdir())  # (no SQLite file of that name either)


# -- an outage -------------------------------------------------------------------------------------


class Proxy:
    """A TCP port that forwards to the test server's socket, and can fail like a network: its
    connections cut, new ones refused."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.down = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while not self.down:
                client, _ = self.listener.accept()
                if self.down:
                    client.close()
                    return
                server = socket.socket(socket.AF_UNIX)
                server.connect(self.target)
                self.open += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def outage(self) -> None:
        self.down = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # (wakes the accepting thread)
        self.listener.close()
        for s in self.open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()


@pytest.fixture
def proxy(postgres_server: str) -> Iterator[tuple[Proxy, str]]:
    """(the proxy, a URL of a fresh database through it, with a password)."""
    from urllib.parse import parse_qs, urlsplit

    from tests import pg

    url = pg.create_database()
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query)["host"][0]
    port = parts.port or 5432
    running = Proxy(f"{socket_dir}/.s.PGSQL.{port}")
    yield running, f"postgresql://{parts.username}:{SECRET}@127.0.0.1:{running.port}{parts.path}"
    running.outage()


@pytest.mark.postgres
def test_an_outage_is_one_line_warnings_and_errors_without_the_password(
        proxy: tuple[Proxy, str], caplog: pytest.LogCaptureFixture) -> None:
    from store.postgres import PostgresStore

    running, url = proxy
    store = PostgresStore(url, connect_timeout=2)
    try:
        assert store.head() == 0
        caplog.set_level(logging.INFO)
        running.outage()
        errors = []
        for _ in range(3):
            with pytest.raises(StoreError) as raised:
                store.head()
            errors.append(str(raised.value))
        deadline = time.monotonic() + 30
        while not any(r.name.startswith("psycopg") and r.levelno >= logging.WARNING
                      for r in caplog.records):
            assert time.monotonic() < deadline, "the pool never warned of the outage"
            time.sleep(0.1)
    finally:
        store.close()
    warned = [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")]
    for text in [*errors, *warned]:
        assert "\n" not in text and not any(p in text for p in pieces()), text
    assert any("127.0.0.1" in text for text in warned), warned
