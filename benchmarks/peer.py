"""The peer baseline: the `eventsourcing` library (9.5.x) on its own SQLite persistence.

The equivalent of a swarmlog stream is an aggregate: one per task, one per agent, one for the
system, each with the same events in the same order (its creation event is the stream's first
event). Events carry the same fields as swarmlog's (id, type, source, ids, payload, timestamp).
The library's defaults are kept — its JSON transcoder, its SQLite datastore (WAL; the SQLite
build's default `synchronous`) — because those are what its users get.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from benchmarks.workload import Spec


def stream_of(spec: Spec) -> str:
    """The swarmlog stream of a spec (and the name of the peer's aggregate)."""
    if spec.task_id is not None:
        return f"task-{spec.task_id}"
    if spec.agent_id is not None:
        return f"agent-{spec.agent_id}"
    return "system"


class Stream(Aggregate):
    """A task, an agent or the system, with the little state a reader of its history wants."""

    @staticmethod
    def create_id(stream: str) -> UUID:
        return uuid5(NAMESPACE_URL, stream)

    def __init__(self, stream: str, event_id: str, event_type: str, source: str,
                 task_id: str | None, agent_id: str | None, data: dict[str, Any],
                 at: datetime) -> None:
        self.stream = stream
        self.last_type = event_type
        self.count = 1
        self.data: dict[str, Any] = dict(data)

    @event("Recorded")
    def record(self, event_id: str, event_type: str, source: str, task_id: str | None,
               agent_id: str | None, data: dict[str, Any], at: datetime) -> None:
        self.last_type = event_type
        self.count += 1
        self.data.update(data)


class SwarmApp(Application):
    """The peer's application: aggregates saved through its SQLite recorder."""

    name = "swarm"


def open_app(path: str) -> SwarmApp:
    return SwarmApp(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path})


class PeerLog:
    """Feeds specs to aggregates (outside the timed part) and saves them (the timed part)."""

    def __init__(self, path: str) -> None:
        if os.path.exists(path):
            raise FileExistsError(path)
        self.app = open_app(path)
        self.aggregates: dict[str, Stream] = {}

    def stage(self, specs: Iterable[Spec]) -> list[Stream]:
        """Trigger one aggregate event per spec; returns the aggregates holding pending events."""
        touched: dict[str, Stream] = {}
        for s in specs:
            name = stream_of(s)
            agg = self.aggregates.get(name)
            if agg is None:
                agg = self.aggregates[name] = Stream(name, s.id, s.event_type, s.source, s.task_id,
                                                     s.agent_id, s.data, s.timestamp)
            else:
                agg.record(s.id, s.event_type, s.source, s.task_id, s.agent_id, s.data, s.timestamp)
            touched[name] = agg
        return list(touched.values())

    def save(self, aggregates: list[Stream]) -> None:
        """One `Application.save`: every pending event in one recorder transaction."""
        self.app.save(*aggregates)

    def read_all(self, page: int = 1000) -> int:
        """Read every event back through the notification log and decode it (mapper)."""
        recorder, mapper = self.app.recorder, self.app.mapper
        start, n = 1, 0
        while True:
            notifications = recorder.select_notifications(start, page)
            if not notifications:
                return n
            for notification in notifications:
                mapper.to_domain_event(notification)
            n += len(notifications)
            start = notifications[-1].id + 1

    def reconstruct(self, names: Iterable[str]) -> int:
        """Rebuild the named aggregates from their events; returns how many events that took."""
        n = 0
        for name in names:
            n += self.app.repository.get(Stream.create_id(name)).version
        return n

    def close(self) -> None:
        self.app.close()
