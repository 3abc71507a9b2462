"""SQL shared by the SQL backends: the WHERE clause of a filtered query."""

from __future__ import annotations

from typing import Any

from domain.codec import timestamp_text
from domain.events import EventType


def filters(mark: str, **given: Any) -> tuple[list[str], list[Any]]:
    """(conditions, parameters) for the given filters, skipping those that are None; `mark` is
    the driver's placeholder (`?` for sqlite3, `%s` for psycopg). `since` and `until` bound the
    timestamp (since <= timestamp < until); any other name is a column equal to its value."""
    where: list[str] = []
    params: list[Any] = []
    for name, value in given.items():
        if value is None:
            continue
        if name == "since":
            where.append(f"timestamp >= {mark}")
            params.append(timestamp_text(value))
        elif name == "until":
            where.append(f"timestamp < {mark}")
            params.append(timestamp_text(value))
        else:
            where.append(f"{name} = {mark}")
            params.append(value.value if isinstance(value, EventType) else value)
    return where, params
