"""SQL views of the read models, for Datasette and any SQLite client: `swarmlog_tasks` and
`swarmlog_agents`, one row per task or agent as of the newest snapshot.

A snapshot keeps what is open in its own JSON (`swarmlog_snapshots.state`) and each closed task
and offline agent as an item beside it (`swarmlog_snapshot_items`, the newest item of each key at
or before the snapshot); a view unites the two and spreads each entry's JSON into columns. So the
views cost nothing to keep: they are current at each snapshot (every `SNAPSHOT_AFTER` events in
a running log, at every prune, after `swarmlog snapshot` and at the end of `swarmlog demo`). They
are named `swarmlog_*` because a host project's file may have its own `tasks` and `agents`.
Defined on SQLite (whenever a snapshot is stored); PostgreSQL has no such views yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from projections.agents import AgentView
from projections.base import Projection
from projections.models import ReadModelsProjection
from projections.tasks import TaskView

#: Entry fields the views leave out: lists kept for the fold itself (anomalies are counted).
_LEFT_OUT = {"anomalies", "open_calls"}


def _select(projection: Projection[Any], kind: str, path: str, key: str, columns: list[str],
            extra: Sequence[str] = ()) -> str:
    """The SELECT of one view: the entries at `path` of the newest snapshot's state, and those
    kept as items whose keys start with `kind:`, each entry's fields as columns."""
    name, version = projection.name, projection.version
    prefix = f"{kind}:"
    spread = ",\n  ".join([f"{key}",
                           *(f"json_extract(entry, '$.{c}') AS {c}" for c in columns if c != key),
                           *extra, "as_of_position"])
    return f"""WITH snap AS (
  SELECT position, state FROM swarmlog_snapshots
  WHERE projection = '{name}' AND version = {version}
  ORDER BY position DESC, id DESC LIMIT 1
), held AS (
  SELECT j.key AS {key}, j.value AS entry FROM snap, json_each(snap.state, '{path}') AS j
), kept AS (
  SELECT substr(i.key, {len(prefix) + 1}) AS {key}, i.state AS entry
  FROM snap, swarmlog_snapshot_items AS i
  WHERE i.projection = '{name}' AND i.version = {version}
    AND i.key >= '{prefix}' AND i.key < '{kind};'
    AND i.position = (SELECT max(k.position) FROM swarmlog_snapshot_items AS k
                      WHERE k.projection = i.projection AND k.version = i.version
                        AND k.key = i.key AND k.position <= snap.position)
    AND substr(i.key, {len(prefix) + 1}) NOT IN (SELECT {key} FROM held)
), entries AS (
  SELECT *, (SELECT position FROM snap) AS as_of_position FROM held
  UNION ALL SELECT *, (SELECT position FROM snap) FROM kept
)
SELECT
  {spread}
FROM entries"""


def _columns(view: type) -> list[str]:
    return [f.name for f in fields(view) if f.name not in _LEFT_OUT]


def read_model_views(projections: Sequence[Projection[Any]]) -> dict[str, str]:
    """The views' SELECTs by name, for the read models among `projections` (none if absent)."""
    models = next((p for p in projections if isinstance(p, ReadModelsProjection)), None)
    if models is None:
        return {}
    duration = ("round((julianday(coalesce(json_extract(entry, '$.completed_at'), "
                "json_extract(entry, '$.failed_at'))) - julianday(json_extract(entry, "
                "'$.started_at'))) * 86400, 3) AS duration_seconds")
    return {
        "swarmlog_tasks": _select(models, "task", "$.tasks.tasks", "task_id",
                                  _columns(TaskView), [duration]),
        "swarmlog_agents": _select(models, "agent", "$.agents.agents", "agent_id",
                                   _columns(AgentView)),
    }
