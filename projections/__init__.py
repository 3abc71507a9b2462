"""Read models of the log (task state, agent roster, summary counts) and the runner that keeps
them folded: `ProjectionRunner(store).start()`, then query with `runner.query(name, fn, ...)`."""

from projections.agents import (
    AgentsState,
    AgentView,
    agents_online,
    all_agents,
    get_agent,
    idle_agents,
    online_agents,
)
from projections.base import Anomaly, Cold, Projection, Tiered
from projections.models import ReadModels, ReadModelsProjection, counts
from projections.runner import ProjectionRunner, default_projections
from projections.summary import MINUTE_BUCKETS, SummaryState, events_since
from projections.tasks import (
    TaskChange,
    TasksState,
    TaskView,
    all_tasks,
    get_task,
    open_tasks,
    tasks_by_status,
)

__all__ = [
    "MINUTE_BUCKETS",
    "AgentView",
    "AgentsState",
    "Anomaly",
    "Cold",
    "Projection",
    "ProjectionRunner",
    "ReadModels",
    "ReadModelsProjection",
    "SummaryState",
    "TaskChange",
    "TaskView",
    "TasksState",
    "Tiered",
    "agents_online",
    "all_agents",
    "all_tasks",
    "counts",
    "default_projections",
    "events_since",
    "get_agent",
    "get_task",
    "idle_agents",
    "online_agents",
    "open_tasks",
    "tasks_by_status",
]
