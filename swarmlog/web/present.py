"""How an event looks on a page: its category (the badge's colour), a one-line description
and the start of its data. Plain strings only: the templates escape them, and the script puts
them into the page as text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from domain.codec import StoredEvent
from swarmlog.render import event_row

#: Types drawn as failures wherever they appear.
BAD_TYPES = frozenset({"task.failed", "tool.failed", "system.error", "error.captured"})
#: The categories of the chart, in stacking order, and the label of each.
CATEGORIES = ("task", "bid", "tool", "agent", "system", "other")
_CATEGORY = {"auction": "bid", "timmy": "agent", "error": "system", "bug_report": "system"}
#: Where a short description of an event is found in its data, first found first.
_DESCRIBED_BY = ("reason", "error", "message", "description", "title", "content", "status",
                 "tool")
PREVIEW = 96


def category(event_type: str) -> str:
    """task, bid, tool, agent, system or other: the colour of an event type's badge."""
    head = event_type.split(".", 1)[0]
    head = _CATEGORY.get(head, head)
    return head if head in CATEGORIES else "other"


def when(timestamp: str | datetime | None) -> str:
    """A stored timestamp (or a datetime) as 'YYYY-MM-DD HH:MM:SS' (UTC)."""
    if timestamp is None:
        return ""
    if isinstance(timestamp, datetime):
        return timestamp.strftime("%Y-%m-%d %H:%M:%S")
    return timestamp[:19].replace("T", " ")


def payload(row: StoredEvent) -> Any:
    """The event's data as a JSON value (its text when it is not JSON; None without data)."""
    if row.data is None:
        return None
    try:
        return orjson.loads(row.data)
    except orjson.JSONDecodeError:
        return row.data


def preview(row: StoredEvent, width: int = PREVIEW) -> str:
    """The start of the event's data, on one line."""
    text = row.data or ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def describe(row: StoredEvent) -> str:
    """A short description from the data (a reason, an error, a message...), or ''."""
    data = payload(row)
    if isinstance(data, dict):
        for key in _DESCRIBED_BY:
            value = data.get(key)
            if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "":
                text = str(value)
                if key == "status":
                    text = f"status {text}"
                elif key == "tool" and "bid_sats" not in data:
                    text = f"tool {text}"
                return text if len(text) <= 140 else text[:139] + "…"
        if "bid_sats" in data:
            return f"{data['bid_sats']} sats"
    return ""


def shown(row: StoredEvent) -> dict[str, Any]:
    """An event as a live stream sends it: the JSON row (`render.event_row`, as the API and the
    CLI's --json give it) and what the page shows of it."""
    return {"event": event_row(row), "category": category(row.event_type),
            "bad": row.event_type in BAD_TYPES, "when": when(row.timestamp),
            "preview": preview(row), "description": describe(row)}
