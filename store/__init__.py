"""Persistence of the log: the EventStore protocol and its backends."""

from store.base import EventStore, PruneRecord, Recorded, SnapshotRecord
from store.memory import MemoryEventStore
from store.sqlite import SQLiteEventStore

__all__ = [
    "EventStore",
    "MemoryEventStore",
    "PruneRecord",
    "Recorded",
    "SQLiteEventStore",
    "SnapshotRecord",
]
