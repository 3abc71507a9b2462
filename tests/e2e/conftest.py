"""The demo database the CLI tests read, made once per session, and private copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.test_cli import ok


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "swarm.db"
    ok("demo", "--agents", "6", "--tasks", "60", "--days", "3", "--seed", "21", db=path)
    return path


@pytest.fixture
def db(demo_db: Path, tmp_path: Path) -> Path:
    """A private copy of the demo database, for tests that change it."""
    copy = tmp_path / "swarm.db"
    shutil.copy(demo_db, copy)
    return copy
