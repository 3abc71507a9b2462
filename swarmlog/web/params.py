"""Query parameters, read strictly: anything unknown or malformed is a `BadRequest` (a 400 that
says what would be valid), never a 500 and never silently ignored."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from starlette.datastructures import QueryParams

from store import EventFilter
from swarmlog.timeparse import MOMENT_HELP, parse_moment

#: The parameter that carries the access token (read by `security`, allowed everywhere).
TOKEN = "token"
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
_MAX_TEXT = 500


class BadRequest(Exception):
    """A request the view refuses: the message says what was wrong and what would be valid."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class EventsQuery:
    """What the events page and `/api/events` were asked for."""

    where: EventFilter = field(default_factory=EventFilter)
    limit: int = DEFAULT_LIMIT
    before: int | None = None
    after: int | None = None
    types: tuple[str, ...] = ()
    form: dict[str, str] = field(default_factory=dict)  # the text filters as given

    @property
    def filtered(self) -> bool:
        return self.where != EventFilter()


def check_names(params: QueryParams, allowed: Collection[str]) -> None:
    """Refuse any parameter not in `allowed` (the token is always allowed)."""
    unknown = sorted({k for k in params if k not in allowed and k != TOKEN})
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise BadRequest(f"unknown parameter {unknown[0]!r}; this page takes: {known}")


def one(params: QueryParams, name: str) -> str | None:
    """The single value of a parameter (None: absent or empty)."""
    values = params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"{name!r} was given {len(values)} times; give it once")
    if not values or values[0] == "":
        return None
    return text(name, values[0])


def text(name: str, value: str) -> str:
    if len(value) > _MAX_TEXT:
        raise BadRequest(f"{name!r} is {len(value)} characters long; at most {_MAX_TEXT}")
    if "\x00" in value:
        raise BadRequest(f"{name!r} holds a NUL character")
    return value


def integer(params: QueryParams, name: str, low: int, high: int | None = None) -> int | None:
    value = one(params, name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise BadRequest(f"{name!r} must be a whole number, not {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        span = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise BadRequest(f"{name!r} must be {span}, not {number}")
    return number


def moment(params: QueryParams, name: str, now: datetime) -> datetime | None:
    value = one(params, name)
    if value is None:
        return None
    try:
        return parse_moment(value, now)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name!r} is {value!r}, not {MOMENT_HELP}") from None


def event_types(params: QueryParams, known: Iterable[str]) -> tuple[str, ...]:
    """`type`, given once per type or comma-separated; each must be a type the log knows."""
    wanted: list[str] = []
    for value in params.getlist("type"):
        wanted += [t.strip() for t in text("type", value).split(",") if t.strip()]
    known_types = set(known)
    for kind in wanted:
        if kind not in known_types:
            raise BadRequest(f"unknown event type {kind!r}; known types: "
                             f"{', '.join(sorted(known_types))}")
    return tuple(sorted(set(wanted)))


FILTERS = ("type", "task", "agent", "source", "since", "until")
EVENTS_PARAMS = (*FILTERS, "before", "after", "limit")


def events_query(params: QueryParams, known_types: Iterable[str], now: datetime,
                 allowed: Collection[str] = EVENTS_PARAMS) -> EventsQuery:
    """The events filter and page: `type` (several), `task`, `agent`, `source`, `since`,
    `until` (a duration ago, 'now' or ISO-8601), `before` or `after` (a position), `limit`;
    only those in `allowed`."""
    check_names(params, allowed)
    types = event_types(params, known_types)
    since, until = moment(params, "since", now), moment(params, "until", now)
    if since is not None and until is not None and since >= until:
        raise BadRequest(f"'since' ({since.isoformat()}) must be before 'until' "
                         f"({until.isoformat()})")
    before, after = integer(params, "before", 1), integer(params, "after", 0)
    if before is not None and after is not None:
        raise BadRequest("give 'before' or 'after' (a position to page from), not both")
    limit = integer(params, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    task, agent, source = one(params, "task"), one(params, "agent"), one(params, "source")
    where = EventFilter(types=frozenset(types) or None, task_id=task, agent_id=agent,
                        source=source, since=since, until=until)
    form = {k: v for k in ("task", "agent", "source", "since", "until")
            if (v := one(params, k)) is not None}
    return EventsQuery(where, limit, before, after, types, form)
