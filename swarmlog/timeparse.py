"""Times as people type them on a command line: durations ("90s", "2h", "1h30m", "30d") and
moments (a duration ago, "now", or an ISO-8601 date or time; without an offset it is UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")

#: The longest "recent" window, in minutes (about 190 years).
MAX_WINDOW_MINUTES = 10**8

DURATION_HELP = "a duration like 90s, 15m, 2h, 1h30m, 30d or 2w"
MOMENT_HELP = f"{DURATION_HELP} (that long ago), 'now', or an ISO-8601 date/time (UTC if no offset)"


def parse_duration(text: str) -> timedelta:
    """`text` as a timedelta, or ValueError naming what would be valid."""
    cleaned = text.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(cleaned):
        raise ValueError(f"{text!r} is not {DURATION_HELP}")
    total = timedelta()
    try:
        for amount, unit in _PART.findall(cleaned):
            total += timedelta(**{_UNITS[unit]: float(amount)})
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any time a date can be ago") from None
    return total


def ago(duration: timedelta, now: datetime | None = None) -> datetime:
    """The moment `duration` before `now` (UTC), or ValueError if that is before year 1."""
    try:
        return (now or datetime.now(UTC)) - duration
    except OverflowError:
        raise ValueError(f"{_spoken(duration)} ago is before year 1") from None


def _spoken(duration: timedelta) -> str:
    return f"{duration.days:,} days" if duration.days else str(duration)


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """`text` as a timezone-aware UTC datetime, or ValueError naming what would be valid."""
    now = now or datetime.now(UTC)
    cleaned = text.strip()
    if cleaned.lower() == "now":
        return now
    if _WHOLE.fullmatch(cleaned.lower().replace(" ", "")):
        return ago(parse_duration(cleaned), now)
    try:
        moment = datetime.fromisoformat(cleaned.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not {MOMENT_HELP}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC") from None
