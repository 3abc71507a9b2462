"""Times as people type them on a command line: durations ("90s", "2h", "1h30m", "30d") and
moments (a duration ago, "now", or an ISO-8601 date or time; without an offset it is UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")

DURATION_HELP = "a duration like 90s, 15m, 2h, 1h30m, 30d or 2w"
MOMENT_HELP = f"{DURATION_HELP} (that long ago), 'now', or an ISO-8601 date/time (UTC if no offset)"


def parse_duration(text: str) -> timedelta:
    """`text` as a timedelta, or ValueError naming what would be valid."""
    cleaned = text.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(cleaned):
        raise ValueError(f"{text!r} is not {DURATION_HELP}")
    total = timedelta()
    for amount, unit in _PART.findall(cleaned):
        total += timedelta(**{_UNITS[unit]: float(amount)})
    return total


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """`text` as a timezone-aware UTC datetime, or ValueError naming what would be valid."""
    now = now or datetime.now(UTC)
    cleaned = text.strip()
    if cleaned.lower() == "now":
        return now
    if _WHOLE.fullmatch(cleaned.lower().replace(" ", "")):
        return now - parse_duration(cleaned)
    try:
        moment = datetime.fromisoformat(cleaned.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not {MOMENT_HELP}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
