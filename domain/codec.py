"""Events to stored rows and back: validation at the edge, upcasting of old payloads on read.

A stored row (`StoredEvent`) is the ADR 017 row plus its position, stream, versions, whether it
conforms to its type's schema, and its hash in the log's integrity chain: the one shape of a
stored event everywhere.
"""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from domain.errors import CorruptEvent, InvalidEvent
from domain.events import EVENT_CLASSES, AnyEvent, Event, EventType

#: The largest payload (`data` as stored JSON) one event may carry, in bytes.
MAX_DATA_BYTES = 64 * 1024
#: The earliest time an event may be stamped with: the Unix epoch.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
#: How far after the moment of its append an event may be stamped: clocks differ by that much.
#: Later is a wrong clock or a typo, which would count as "recent" and stop every prune.
CLOCK_SKEW = timedelta(minutes=5)

_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)
# The hot paths call these directly (see `encode` and `decode`).
_validate = _ADAPTER.validator.validate_python
_loads = orjson.loads
_dumps = orjson.dumps
_KINDS: dict[str, EventType] = {t.value: t for t in EventType}
_TEXT_OF: dict[EventType, str] = {t: t.value for t in EventType}
_SHORT = reprlib.Repr()  # bounded reprs: hostile input may be huge or nested thousands deep
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60
_LONG_DIGITS = re.compile(rb"\d{19}")  # an integer that may not fit in 64 bits
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_ZEROS = b"0" * 19
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
#: (event_type, from_version) -> function turning a payload of that version into the next one.
UPCASTERS: dict[tuple[EventType, int], Upcaster] = {}
#: The current schema version of each event type.
CURRENT_VERSION: dict[EventType, int] = {
    t: cls.model_fields["schema_version"].default for t, cls in EVENT_CLASSES.items()
}


def upcaster(event_type: EventType, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register `fn` to upgrade payloads of `event_type` stored at `from_version` by one version."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


@upcaster(EventType.TOOL_COMPLETED, 1)
def _tool_completed_duration_to_ms(data: dict[str, Any]) -> dict[str, Any]:
    """v1 recorded `duration` in seconds; v2 records `duration_ms`."""
    data = dict(data)
    if "duration" in data and "duration_ms" not in data:
        seconds = data.pop("duration")
        data["duration_ms"] = seconds * 1000 if isinstance(seconds, int | float) else seconds
    return data


def upcast(event_type: EventType, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Upgrade a stored payload from `version` to the current version of its type."""
    current = CURRENT_VERSION[event_type]
    if version > current:
        raise ValueError(
            f"schema_version {version} of {event_type.value} is newer than this swarmlog "
            f"understands ({current}); upgrade swarmlog"
        )
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise ValueError(f"no upcaster for {event_type.value} from version {version}")
        data = step(data)
        version += 1
    return data


def _field_of(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    # A discriminated union puts the class tag first ("task.assigned"); it is not a field.
    if loc and loc[0] in EventType._value2member_map_:
        loc = loc[1:]
    # JsonValue reports the branch it tried ("x.list.0.float"); keep the path only.
    kinds = {"list", "dict", "str", "int", "float", "bool"}
    parts = [p for p in loc if p not in kinds]
    path = ".".join(parts[:6]) + (".…" if len(parts) > 6 else "") if parts else "event"
    # The only pattern on text fields is the one refusing NUL (see domain.events).
    message = ("must not contain a NUL character" if first["type"] == "string_pattern_mismatch"
               else first["msg"])
    return path, f"{message} (got {_SHORT.repr(first.get('input'))})"


def build_event(
    event_type: EventType | str,
    source: str,
    task_id: str | None = None,
    agent_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    *,
    timestamp: datetime | None = None,
    id: str | None = None,
) -> Event:
    """Validate loose arguments (the ADR 017 call shape) into a typed event, or raise InvalidEvent."""
    try:
        kind = EventType(event_type)
    except ValueError:
        valid = ", ".join(t.value for t in EventType)
        raise InvalidEvent("event_type", f"{event_type!r} is not one of: {valid}") from None
    if data is not None and not isinstance(data, Mapping):
        raise InvalidEvent("data", f"must be a dict or None, got {type(data).__name__}")
    fields: dict[str, Any] = {"source": source, "task_id": task_id, "agent_id": agent_id}
    if data:
        fields["data"] = data
    if timestamp is not None:
        fields["timestamp"] = timestamp
    if id is not None:
        fields["id"] = id
    try:
        return EVENT_CLASSES[kind].model_validate(fields)
    except ValidationError as e:
        raise InvalidEvent(*_field_of(e)) from None


def _whole_number(text: str) -> int:
    number = int(text)
    if not -(2**63) <= number < 2**64:
        shown = text if len(text) <= 30 else text[:30] + "…"
        raise InvalidEvent("data", f"the integer {shown} does not fit in 64 bits; "
                                   "send it as a string")
    return number


def check_storable(blob: bytes) -> None:
    """Refuse a payload that could not be stored and read back exactly: too big, a NUL
    character (PostgreSQL cannot store one), or an integer beyond 64 bits (read back as float)."""
    if len(blob) > MAX_DATA_BYTES:
        raise InvalidEvent("data", f"is {len(blob)} bytes as JSON; the limit is {MAX_DATA_BYTES}")
    if b"\\u0000" in blob and _NUL_ESCAPE.search(blob):
        raise InvalidEvent("data", "contains a NUL character (\\u0000), which cannot be stored")
    check_integers(blob)


def check_integers(blob: bytes) -> None:
    """Refuse JSON holding an integer beyond 64 bits, which JSON parsers (orjson too) read back
    as a float: InvalidEvent("data", ...)."""
    # `_LONG_DIGITS.search(blob)`, in two C loops: every digit becomes "0", then a substring
    # search. The same answer (only digits become "0"), at a quarter of the cost: the regex
    # took 1.1 us a payload, a third of `encode` (measured).
    if _NINETEEN_ZEROS in blob.translate(_DIGITS_AS_ZERO):
        json.loads(blob, parse_int=_whole_number)  # rare: only then look at the integers


class StoredEvent(NamedTuple):
    """An event as the log holds it: the one row type of swarmlog.

    Its text fields are as stored (`data` is the payload's JSON text, None when there is none;
    `timestamp` UTC ISO-8601 with microseconds, so that text order is time order). `decode` makes
    the typed event of it. A row not yet appended has position and stream version 0.
    """

    position: int
    id: str
    event_type: str
    source: str
    task_id: str | None
    agent_id: str | None
    data: str | None
    timestamp: str
    stream_id: str
    stream_version: int
    schema_version: int
    #: True: validated as its type when appended (folds need not validate it again); False: it
    #: does not conform to its type's schema; None: written by something else, not checked.
    conforms: bool | None
    #: Its link in the log's integrity chain (`store.chain`), made when it is appended (None: not
    #: appended yet, or written behind swarmlog's back).
    hash: bytes | None

    @property
    def event(self) -> Event:
        """The typed event of the row (validated; CorruptEvent naming its position if it is
        not one)."""
        return decode(self)


#: What a fold reads of a stored row: (position, event_type, source, task_id, agent_id, data,
#: timestamp, schema_version, conforms), the columns of `StoredEvent` every fold needs. A row a
#: fold takes the typed way is read whole (see `projections.base.Projection.fold_scan`).
FoldRow = tuple[int, str, str, str | None, str | None, str | None, str, int, bool | None]


def fold_row(row: StoredEvent) -> FoldRow:
    """The columns of a stored row that a fold reads. A row whose text columns are not all text
    (another client's BLOB, say) is not vouched for, whatever it says (`conforms` None): a fold
    takes it the typed way, which names it (`decode`). (The SQLite store reads every text column
    as text: see `store.sqlite`; this is for rows from anywhere else.)"""
    position, _, kind, source, task_id, agent_id, data, stamp, _, _, schema, conforms, _ = row
    if not (type(kind) is str and type(source) is str and type(stamp) is str
            and (task_id is None or type(task_id) is str)  # (inline: prunes fold every row
            and (agent_id is None or type(agent_id) is str)  # through here)
            and (data is None or type(data) is str)):
        conforms = None
    return (position, kind, source, task_id, agent_id, data, stamp, schema, conforms)


_TEXT_COLUMNS = ("id", "event_type", "source", "timestamp")
_OPTIONAL_TEXT_COLUMNS = ("task_id", "agent_id", "data")


def odd_column(row: StoredEvent) -> str | None:
    """Why a row's text columns are not what a row holds (None: each is text, or None where
    that is allowed): another client can store anything in them (SQLite is dynamically typed)."""
    for name in _TEXT_COLUMNS:
        value = getattr(row, name)
        if type(value) is not str:
            return f"{name} is {_kind_of(value)}, not text"
    for name in _OPTIONAL_TEXT_COLUMNS:
        value = getattr(row, name)
        if value is not None and type(value) is not str:
            return f"{name} is {_kind_of(value)}, not text"
    return None


def _kind_of(value: object) -> str:
    return ("a BLOB" if isinstance(value, bytes | bytearray | memoryview)
            else "NULL" if value is None else f"a {type(value).__name__}")


def as_text(value: object) -> str:
    """A stored value shown as text, whatever another client stored: bytes decoded (what is not
    UTF-8 replaced), anything else its `str`."""
    if type(value) is str:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def encode_plain(event: Event) -> StoredEvent:
    """The row of a typed event, step by step: the oracle `encode` must always equal."""
    try:
        blob = event.data.model_dump_json(exclude_unset=True).encode()
    except (PydanticSerializationError, UnicodeEncodeError) as e:
        raise InvalidEvent("data", f"cannot be serialised as JSON: {e}") from None
    check_storable(blob)
    data = None if blob == b"{}" else blob.decode()
    stamp = event.timestamp.isoformat(timespec="microseconds")
    kind = event.event_type.value
    return StoredEvent(0, event.id, kind, event.source, event.task_id, event.agent_id, data, stamp,
                       event.stream_id, 0, event.schema_version, True, None)


def encode(event: Event) -> StoredEvent:
    """The row of a typed event (to append); refuses payloads that cannot be stored faithfully.

    The append hot path (profiled: `model_dump_json` and `isoformat` were two thirds of it). It is
    `encode_plain` with two shortcuts that give the same bytes: the payload's serializer is called
    directly for bytes (`model_dump_json` wraps the same call in a str, which was encoded back),
    and a validated timestamp (UTC, with microseconds) is formatted by orjson, 3x faster than
    `isoformat`; any other timestamp takes `isoformat`. (And an event type's text is looked up:
    `Enum.value` is a Python-level property.)
    """
    data = event.data
    try:
        blob = data.__pydantic_serializer__.to_json(data, exclude_unset=True)
    except (PydanticSerializationError, UnicodeEncodeError) as e:
        raise InvalidEvent("data", f"cannot be serialised as JSON: {e}") from None
    check_storable(blob)
    moment = event.timestamp
    if moment.tzinfo is UTC and moment.microsecond:
        stamp = _dumps(moment)[1:-1].decode()  # orjson omits a zero fraction: isoformat below
    else:
        stamp = moment.isoformat(timespec="microseconds")
    text = None if blob == b"{}" else blob.decode()
    id_, kind, source, task_id, agent_id = (event.id, _TEXT_OF[event.event_type], event.source,
                                            event.task_id, event.agent_id)
    version = event.schema_version
    return _new_tuple(StoredEvent, (
        0, id_, kind, source, task_id, agent_id, text, stamp, event.stream_id, 0, version, True,
        None))


def _fields(row: StoredEvent) -> dict[str, Any]:
    """What the typed event of a row is validated from (its payload upcast if older)."""
    odd = odd_column(row)
    if odd is not None:  # (pydantic would take a BLOB for text: it is not what was appended)
        raise ValueError(odd)
    kind = _KINDS.get(row.event_type)
    if kind is None:
        raise ValueError(f"event_type: {row.event_type!r} is not one of: {', '.join(_KINDS)}")
    if row.data:
        try:  # what an append refuses cannot be read back exactly either
            check_storable(row.data.encode())
        except InvalidEvent as e:
            raise ValueError(str(e).removeprefix("invalid event: ")) from None
    payload = orjson.loads(row.data) if row.data else {}
    if not isinstance(payload, dict):
        raise ValueError(f"data is a JSON {type(payload).__name__}, not an object")
    if row.schema_version != CURRENT_VERSION[kind]:
        payload = upcast(kind, row.schema_version, payload)
    return {"id": row.id, "event_type": kind, "source": row.source, "task_id": row.task_id,
            "agent_id": row.agent_id, "data": payload, "timestamp": row.timestamp}


def decode_plain(row: StoredEvent) -> Event:
    """The typed event of a stored row, step by step: the oracle `decode` must always equal."""
    try:
        return _ADAPTER.validate_python(_fields(row))
    except ValidationError as e:
        field, message = _field_of(e)
        raise CorruptEvent(row.position, f"{field}: {message}") from None
    except (ValueError, orjson.JSONDecodeError, TypeError) as e:
        raise CorruptEvent(row.position, str(e).splitlines()[0] if str(e) else type(e).__name__) \
            from None


def decode(row: StoredEvent) -> Event:
    """The typed event of a stored row (upcast if it is older), or CorruptEvent naming its
    position.

    Every row is validated in full: this is how a row is checked (a listing asks for its typed
    event; a fold asks only for rows it cannot vouch for). What is skipped is the Python around
    the validation (an Enum call, the TypeAdapter wrapper): the common row, a known type at its
    current version with a JSON-object payload, is validated in one call. Any other row, and any
    failure, goes to `decode_plain`, which gives the same event or names the error.
    """
    try:
        kind = _KINDS.get(row.event_type)
        data = row.data
        if kind is not None and row.schema_version == CURRENT_VERSION[kind] \
                and type(row.source) is str and type(row.timestamp) is str \
                and (not data or (len(data) <= _MAX_CHARS and _plain_numbers(data))):
            payload = _loads(data) if data else {}
            if type(payload) is dict:
                event: Event = _validate({"id": row.id, "event_type": kind, "source": row.source,
                                  "task_id": row.task_id, "agent_id": row.agent_id,
                                  "data": payload, "timestamp": row.timestamp})
                return event
    except Exception:  # the plain path below reports it, with its position
        pass
    return decode_plain(row)


_MAX_CHARS = MAX_DATA_BYTES // 4  # text this short is within MAX_DATA_BYTES as UTF-8
_DIGIT_RUN = re.compile(r"\d{19}")


def _plain_numbers(text: str) -> bool:
    """No run of 19 digits (an integer that may not fit in 64 bits, which JSON parsers read
    back as a float) and no NUL escape: the common payload, which `check_storable` passes."""
    return "\\u0000" not in text and _DIGIT_RUN.search(text) is None


_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__


def check_timestamp(moment: datetime, now: datetime) -> None:
    """Refuse a timestamp outside the accepted range: from `EARLIEST` to `CLOCK_SKEW` after
    `now`, the moment of the append (InvalidEvent naming it)."""
    if moment < EARLIEST:
        raise InvalidEvent("timestamp", f"{moment.isoformat()} is before {EARLIEST.isoformat()}, "
                                        "the earliest time an event may have")
    if moment > now + CLOCK_SKEW:
        raise InvalidEvent("timestamp", f"{moment.isoformat()} is in the future: an event may be "
                                        f"stamped at most {CLOCK_SKEW.seconds // 60} minutes "
                                        f"after it is appended ({now.isoformat()})")


def timestamp_text(moment: datetime) -> str:
    """A timezone-aware datetime in the stored timestamp format (for range queries)."""
    if moment.tzinfo is None:
        raise InvalidEvent("timestamp", f"{moment.isoformat()} is naive; give a timezone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
