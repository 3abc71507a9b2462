"""A long-running EventLog keeps its start-up short and its memory to what is open: it stores a
snapshot every SNAPSHOT_AFTER folded events, and each snapshot moves closed tasks to the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.codec import build_event
from domain.events import Event, EventType
from projections.tasks import all_tasks, count_by_status
from swarm import log as log_module
from swarm.log import EventLog

_T = EventType


def lifecycle(n: int) -> list[Event]:
    """Task n from creation to completion by agent a1 (who joined first)."""
    t = f"t{n}"
    return [build_event(_T.TASK_CREATED, "c", t), build_event(_T.TASK_BIDDING, "c", t),
            build_event(_T.BID_SUBMITTED, "a1", t, "a1", {"bid_sats": n}),
            build_event(_T.TASK_ASSIGNED, "c", t, "a1", {"bid_sats": n}),
            build_event(_T.TASK_STARTED, "a1", t, "a1"),
            build_event(_T.TASK_COMPLETED, "a1", t, "a1")]


def test_a_long_running_log_snapshots_as_it_folds(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "SNAPSHOT_AFTER", 30)
    path = tmp_path / "log.db"
    with EventLog(path) as writer, EventLog(path) as reader:
        writer.log(_T.AGENT_JOINED, "c", agent_id="a1")
        assert reader.start() == 1 and reader.store.snapshots() == []
        for n in range(1, 20):  # 114 events, caught up every 6
            writer.append(lifecycle(n))
            reader.catch_up()
        positions = sorted({s.position for s in reader.store.snapshots()})
        assert positions == [31, 61, 91]  # at the first catch-up 30 events past the last
        in_memory = reader.tasks.tasks  # closed tasks left at the snapshot at 91
        assert set(in_memory) == {f"t{n}" for n in range(16, 20)}  # closed after 91
        assert count_by_status(reader.tasks)["completed"] == 19
        assert [t.task_id for t in all_tasks(reader.tasks)] == [f"t{n}" for n in range(1, 20)]
        assert reader.agents.agents["a1"].sats_earned == sum(range(1, 20))
    with EventLog(path) as restarted, EventLog(path) as rebuilt:
        assert restarted.start() == 115 - 91
        rebuilt.rebuild()
        for p in restarted.projections:
            assert p.dump(restarted.runner.state(p.name)) == p.dump(rebuilt.runner.state(p.name))


def test_a_start_up_that_folds_many_events_leaves_a_snapshot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "SNAPSHOT_AFTER", 30)
    path = tmp_path / "log.db"
    with EventLog(path) as writer:
        writer.append([e for n in range(1, 5) for e in lifecycle(n)])  # 24 events
        assert writer.start() == 24 and writer.store.snapshots() == []
        writer.append([e for n in range(5, 11) for e in lifecycle(n)])  # 36 more
    with EventLog(path) as log:
        assert log.start() == 60
        assert {s.position for s in log.store.snapshots()} == {60}
        assert len(log.tasks.tasks) == 0  # every task is closed: all of them in the store
    with EventLog(path) as log:
        assert log.start() == 0
        assert count_by_status(log.tasks)["completed"] == 10
