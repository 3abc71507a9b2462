"""The read models of a swarm as one projection: tasks, then the agents and the summary.

Each event is folded into the task read model first; what it did to a task (`TaskChange`) is
then folded into the agent roster and the summary, so the task lifecycle is followed once, by the
task decider, and the other two count its outcomes. They are snapshotted together, at one
position, under one name and version (bump it when any of the three folds changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from domain.codec import FoldRow, StoredEvent
from domain.events import Event, EventType
from projections import fast, summary
from projections.agents import AgentsState, agents_online, evolve_agents
from projections.base import Cold, Projection, dumps
from projections.summary import MINUTE_BUCKETS, SummaryState, evolve_summary
from projections.tasks import TasksState, evolve_tasks

_T = EventType


@dataclass(slots=True)
class ReadModels:
    """The three read models of a swarm, folded together."""

    tasks: TasksState = field(default_factory=TasksState)
    agents: AgentsState = field(default_factory=AgentsState)
    summary: SummaryState = field(default_factory=SummaryState)


class ReadModelsProjection(Projection[ReadModels]):
    """Tasks, agents and summary as one projection. `plain=True` folds stored rows through the
    typed events and `apply` (the oracle); by default through `projections.fast`."""

    name = "read_models"
    version = 1

    def __init__(self, *, plain: bool = False, minute_buckets: int = MINUTE_BUCKETS) -> None:
        self._plain = plain
        self._minute_buckets = minute_buckets  # other values than the default are for tests

    def initial(self) -> ReadModels:
        return ReadModels(summary=SummaryState(minute_buckets=self._minute_buckets))

    def apply(self, state: ReadModels, position: int, event: Event) -> ReadModels:
        change = evolve_tasks(state.tasks, position, event)
        evolve_agents(state.agents, position, event, change)
        evolve_summary(state.summary, position, event, change)
        return state

    def nonconforming(self, state: ReadModels, row: StoredEvent, reason: str,
                      salvaged: Event | None) -> ReadModels:
        summary.nonconforming(state.summary, row, reason, readable=salvaged is not None)
        return state

    def fold_scan(self, state: ReadModels, rows: Sequence[FoldRow],
                  full: Callable[[int], StoredEvent]) -> ReadModels:
        if self._plain:
            return super().fold_scan(state, rows, full)
        return fast.fold(state, rows, lambda m, position: self.fold_row(m, full(position)))

    def dump(self, state: ReadModels) -> str:
        return dumps({"tasks": state.tasks.dump(state.tasks.tasks.merged()),
                      "agents": state.agents.dump(state.agents.agents.merged()),
                      "summary": state.summary.dump()})

    def split(self, state: ReadModels) -> tuple[str, Iterable[tuple[str, str]]]:
        tasks, closed = state.tasks.split()
        agents, gone = state.agents.split()
        return dumps({"tasks": tasks, "agents": agents, "summary": state.summary.dump()}), \
            chain(closed, gone)

    def spill(self, state: ReadModels) -> None:
        state.tasks.spill()
        state.agents.spill()

    def attach(self, state: ReadModels, cold: Cold) -> None:
        state.tasks.attach(cold)
        state.agents.attach(cold)

    def load(self, text: str) -> ReadModels:
        raw = orjson.loads(text)
        return ReadModels(TasksState.load(raw["tasks"]), AgentsState.load(raw["agents"]),
                          SummaryState.load(raw["summary"]))


def counts(models: ReadModels) -> dict[str, Any]:
    """The summary as plain data (what a dashboard or `--json` shows)."""
    summary = models.summary
    by_type = {t.value: summary.by_type.get(t.value, 0) for t in EventType}
    by_type.update(summary.by_type)  # (types a newer swarmlog wrote, if any)
    return {
        "total": summary.total,
        "by_type": by_type,
        "by_source": dict(summary.by_source),
        "tasks_by_status": {k.value: n for k, n in summary.tasks_by_status.items()},
        "agents_online": agents_online(models.agents),
        "task_failures": by_type[_T.TASK_FAILED.value],
        "tool_failures": by_type[_T.TOOL_FAILED.value],
        "errors": by_type[_T.SYSTEM_ERROR.value],
        "warnings": by_type[_T.SYSTEM_WARNING.value],
    }

