"""As the seed's tests do: the task queue and the event log redirected to a temporary file."""

import os

import pytest


@pytest.fixture(autouse=True)
def _isolate_db(tmp_path, monkeypatch):
    db = tmp_path / "swarm.db"
    monkeypatch.setattr("swarm.task_queue.DB_PATH", db)
    monkeypatch.setattr("swarm.event_log.DB_PATH", db)
    return db


@pytest.fixture
def expected_swarmlog() -> str | None:
    """Where swarmlog must have been imported from (set by the adoption test)."""
    return os.environ.get("EXPECTED_SWARMLOG")
