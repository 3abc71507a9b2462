"""SQL shared by the SQL backends: the WHERE clause of a filtered query, keyset paging."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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


def keyset_pages(fetch: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]], select: str,
                 where: str, params: Sequence[Any], mark: str, *, page: int, after: int = 0,
                 limit: int | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of `select` (whose first column is `seq`) after position `after`, in position
    order, `page` rows per query: each page a fresh statement keyed on the last seq, so no
    statement or connection is held between pages and memory is one page."""
    left = limit
    while left is None or left > 0:
        size = page if left is None else min(page, left)
        rows = fetch(f"{select} WHERE seq > {mark} {where} ORDER BY seq LIMIT {mark}",
                     (after, *params, size))
        yield rows
        if len(rows) < size:
            return
        after = rows[-1][0]
        if left is not None:
            left -= len(rows)
