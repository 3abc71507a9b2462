"""A long-running EventLog keeps its start-up short and its memory to what is open: it stores a
snapshot every SNAPSHOT_AFTER folded events, and each snapshot moves closed tasks to the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.codec import build_event
from domain.events import Event, EventType
from domain.task import TaskStatus
from projections.tasks import all_tasks, tasks_by_status
from swarmlog import log as log_module
from swarmlog.log import EventLog

_T = EventType


def lifecycle(n: int, at: datetime | None = None) -> list[Event]:
    """Task n from creation to completion by agent a1 (who joined first)."""
    t = f"t{n}"
    steps = [(_T.TASK_CREATED, "c", None, None), (_T.TASK_BIDDING, "c", None, None),
             (_T.BID_SUBMITTED, "a1", "a1", {"bid_sats": n}),
             (_T.TASK_ASSIGNED, "c", "a1", {"bid_sats": n}), (_T.TASK_STARTED, "a1", "a1", None),
             (_T.TASK_COMPLETED, "a1", "a1", None)]
    return [build_event(kind, source, t, agent, data, timestamp=at) for kind, source, agent, data
            in steps]


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
        positions = sorted(s.position for s in reader.store.snapshots())
        assert positions == [31, 61, 91]  # at the first catch-up 30 events past the last, once
        in_memory = reader.tasks.tasks  # closed tasks left at the snapshot at 91
        assert set(in_memory) == {f"t{n}" for n in range(16, 20)}  # closed after 91
        assert len(tasks_by_status(reader.tasks, TaskStatus.COMPLETED)) == 19
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
        assert [s.position for s in log.store.snapshots()] == [60]
        assert len(log.tasks.tasks) == 0  # every task is closed: all of them in the store
    with EventLog(path) as log:
        assert log.start() == 0
        assert len(tasks_by_status(log.tasks, TaskStatus.COMPLETED)) == 10


def test_old_snapshots_are_retired_but_not_the_one_at_the_prune_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "SNAPSHOT_AFTER", 30)
    path, t0 = tmp_path / "log.db", datetime(2026, 1, 1, tzinfo=UTC)

    def positions(log: EventLog) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for s in log.store.snapshots(with_state=False):
            found.setdefault(s.projection, []).append(s.position)
        return found

    with EventLog(path) as log:
        log.log(_T.AGENT_JOINED, "c", agent_id="a1", timestamp=t0)
        for n in range(1, 31):  # 180 events, a snapshot every 30
            log.append(lifecycle(n, at=t0 + timedelta(hours=n)))
            log.catch_up()
        assert positions(log) == {"read_models": [121, 151, 181]}
        report = log.prune(before=t0 + timedelta(hours=10, minutes=30), archive=tmp_path / "a")
        assert (report.first_position, report.last_position) == (1, 61)
        log.append(lifecycle(31, at=t0 + timedelta(hours=31)))
        log.snapshot()  # keeps the newest three and the one at the cut
        assert positions(log) == {"read_models": [151, 181, 61, 187]}
    with EventLog(path) as restarted, EventLog(path) as rebuilt:
        restarted.start()
        rebuilt.rebuild()
        for p in restarted.projections:
            assert p.dump(restarted.runner.state(p.name)) == p.dump(rebuilt.runner.state(p.name))
        assert len(tasks_by_status(restarted.tasks, TaskStatus.COMPLETED)) == 31
