"""Persistence of the log: the store protocols, their backends, the one JSON-lines format."""

from __future__ import annotations

import os

from domain.errors import StoreError
from store.base import (
    EVERYTHING,
    DataCondition,
    EventFilter,
    EventLogStore,
    PruneRecord,
    SnapshotRecord,
    SnapshotStore,
    Store,
    ViewStore,
    first_stored,
    prefix_end,
    stored_count,
)
from store.location import is_key_value, is_url, redact
from store.memory import MemoryStore
from store.sqlite import SQLiteStore

__all__ = [
    "EVERYTHING",
    "DataCondition",
    "EventFilter",
    "EventLogStore",
    "MemoryStore",
    "PruneRecord",
    "SQLiteStore",
    "SnapshotRecord",
    "SnapshotStore",
    "Store",
    "ViewStore",
    "first_stored",
    "is_url",
    "open_store",
    "prefix_end",
    "redact",
    "stored_count",
]


def open_store(location: str | os.PathLike[str], *, create: bool = True,
               read_only: bool = False) -> Store:
    """A store for an SQLite file path or a `postgresql://` URL; `read_only` opens one that
    must exist, and creates, migrates and writes nothing."""
    text = str(location)
    if is_key_value(text) and not os.path.exists(text):
        raise StoreError(f"cannot open {redact(text)}: that is libpq's key=value form; give a "
                         "postgresql:// URL (anything else is an SQLite file's path)")
    if is_url(text):
        try:
            from store.postgres import PostgresStore
        except ImportError as e:
            raise StoreError(f"cannot open {redact(text)}: the PostgreSQL backend is not "
                             f"available ({e})") from e
        return PostgresStore(text, read_only=read_only)
    return SQLiteStore(text, create=create, read_only=read_only)
