"""Read models of the log (task state, agent roster, summary counts) and the runner that keeps
them folded: `ProjectionRunner(store).start()`, then query with `runner.query(name, fn, ...)`."""

from projections.agents import (
    AgentsProjection,
    AgentsState,
    AgentView,
    all_agents,
    get_agent,
    idle_agents,
    online_agents,
)
from projections.base import Anomaly, Projection, apply_many, fold
from projections.runner import ProjectionRunner, default_projections
from projections.summary import (
    MINUTE_BUCKETS,
    SummaryProjection,
    SummaryState,
    counts,
    events_since,
)
from projections.tasks import (
    TasksProjection,
    TasksState,
    TaskView,
    all_tasks,
    count_by_status,
    get_task,
    open_tasks,
    tasks_by_status,
)

__all__ = [
    "MINUTE_BUCKETS",
    "AgentView",
    "AgentsProjection",
    "AgentsState",
    "Anomaly",
    "Projection",
    "ProjectionRunner",
    "SummaryProjection",
    "SummaryState",
    "TaskView",
    "TasksProjection",
    "TasksState",
    "all_agents",
    "all_tasks",
    "apply_many",
    "count_by_status",
    "counts",
    "default_projections",
    "events_since",
    "fold",
    "get_agent",
    "get_task",
    "idle_agents",
    "online_agents",
    "open_tasks",
    "tasks_by_status",
]
