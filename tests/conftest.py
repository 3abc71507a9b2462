"""Shared fixtures: every store backend behind one `store` fixture, fresh per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from store import MemoryStore, SQLiteStore, Store
from tests import pg

settings.register_profile(
    "swarmlog", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("swarmlog")

StoreFactory = Callable[[], Store]


def _memory(tmp_path: Path) -> tuple[StoreFactory, str | None]:
    return MemoryStore, None


def _sqlite(tmp_path: Path) -> tuple[StoreFactory, str | None]:
    path = str(tmp_path / "log.db")
    return (lambda: SQLiteStore(path)), path


def _postgres(tmp_path: Path) -> tuple[StoreFactory, str | None]:
    from store.postgres import PostgresStore

    url = pg.create_database()  # on the session's server (see tests/pg.py)
    return (lambda: PostgresStore(url)), url


BACKENDS: dict[str, Callable[[Path], tuple[StoreFactory, str | None]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A URL of the session's PostgreSQL server: $SWARMLOG_TEST_POSTGRES_URL or an embedded one,
    started on first use. A server that cannot start fails the test; it is never skipped."""
    return pg.server_url()


@pytest.fixture(params=[pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else [])
                        for name in BACKENDS])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[StoreFactory, str | None]:
    """(a factory opening the same store again, its location for other processes or None)."""
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def store(backend: tuple[StoreFactory, str | None]) -> Iterator[Store]:
    opened = backend[0]()
    yield opened
    opened.close()
