"""Events to storage rows and back: validation at the edge, upcasting of old payloads on read.

A storage row is the ADR 017 row plus `stream_id` and `schema_version`:
(id, event_type, source, task_id, agent_id, data, timestamp, stream_id, schema_version), where
`data` is the payload as compact JSON text (None when the payload is empty) and `timestamp` is
UTC ISO-8601 with microseconds, so that text order is time order.
"""

from __future__ import annotations

import json
import re
import reprlib
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from domain.errors import CorruptEvent, InvalidEvent
from domain.events import EVENT_CLASSES, AnyEvent, Event, EventType

#: The largest payload (`data` as stored JSON) one event may carry, in bytes.
MAX_DATA_BYTES = 64 * 1024

Row = tuple[str, str, str, str | None, str | None, str | None, str, str, int]

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


def _check_storable(blob: bytes) -> None:
    """Refuse a payload that could not be stored and read back exactly: too big, a NUL
    character (PostgreSQL cannot store one), or an integer beyond 64 bits (read back as float)."""
    if len(blob) > MAX_DATA_BYTES:
        raise InvalidEvent("data", f"is {len(blob)} bytes as JSON; the limit is {MAX_DATA_BYTES}")
    if b"\\u0000" in blob and _NUL_ESCAPE.search(blob):
        raise InvalidEvent("data", "contains a NUL character (\\u0000), which cannot be stored")
    # `_LONG_DIGITS.search(blob)`, in two C loops: every digit becomes "0", then a substring
    # search. The same answer (only digits become "0"), at a quarter of the cost: the regex
    # took 1.1 us a payload, a third of `encode` (measured).
    if _NINETEEN_ZEROS in blob.translate(_DIGITS_AS_ZERO):
        json.loads(blob, parse_int=_whole_number)  # rare: only then look at the integers


def encode_plain(event: Event) -> Row:
    """The storage row of a typed event, step by step: the oracle `encode` must always equal."""
    try:
        blob = event.data.model_dump_json(exclude_unset=True).encode()  # type: ignore[attr-defined]
    except (PydanticSerializationError, UnicodeEncodeError) as e:
        raise InvalidEvent("data", f"cannot be serialised as JSON: {e}") from None
    _check_storable(blob)
    return (
        event.id,
        event.event_type.value,  # type: ignore[attr-defined]
        event.source,
        event.task_id,
        event.agent_id,
        None if blob == b"{}" else blob.decode(),
        event.timestamp.isoformat(timespec="microseconds"),
        event.stream_id,
        event.schema_version,  # type: ignore[attr-defined]
    )


def encode(event: Event) -> Row:
    """The storage row of a typed event; refuses payloads that cannot be stored faithfully.

    The append hot path (profiled: `model_dump_json` and `isoformat` were two thirds of it). It is
    `encode_plain` with two shortcuts that give the same bytes: the payload's serializer is called
    directly for bytes (`model_dump_json` wraps the same call in a str, which was encoded back),
    and a validated timestamp (UTC, with microseconds) is formatted by orjson, 3x faster than
    `isoformat`; any other timestamp takes `isoformat`. (And an event type's text is looked up:
    `Enum.value` is a Python-level property.)
    """
    data = event.data  # type: ignore[attr-defined]
    try:
        blob = data.__pydantic_serializer__.to_json(data, exclude_unset=True)
    except (PydanticSerializationError, UnicodeEncodeError) as e:
        raise InvalidEvent("data", f"cannot be serialised as JSON: {e}") from None
    _check_storable(blob)
    moment = event.timestamp
    if moment.tzinfo is UTC and moment.microsecond:
        stamp = _dumps(moment)[1:-1].decode()  # orjson omits a zero fraction: isoformat below
    else:
        stamp = moment.isoformat(timespec="microseconds")
    return (
        event.id,
        _TEXT_OF[event.event_type],  # type: ignore[attr-defined]
        event.source,
        event.task_id,
        event.agent_id,
        None if blob == b"{}" else blob.decode(),
        stamp,
        event.stream_id,
        event.schema_version,  # type: ignore[attr-defined]
    )


def decode_plain(
    seq: int,
    id: str,
    event_type: str,
    source: str,
    task_id: str | None,
    agent_id: str | None,
    data: str | bytes | None,
    timestamp: str,
    schema_version: int,
) -> Event:
    """The typed event of a stored row, step by step: the oracle `decode` must always equal."""
    try:
        kind = EventType(event_type)
        payload = orjson.loads(data) if data else {}
        if not isinstance(payload, dict):
            raise ValueError(f"data is a JSON {type(payload).__name__}, not an object")
        if schema_version != CURRENT_VERSION[kind]:
            payload = upcast(kind, schema_version, payload)
        return _ADAPTER.validate_python(
            {
                "id": id,
                "event_type": kind,
                "source": source,
                "task_id": task_id,
                "agent_id": agent_id,
                "data": payload,
                "timestamp": timestamp,
            }
        )
    except ValidationError as e:
        field, message = _field_of(e)
        raise CorruptEvent(seq, f"{field}: {message}") from None
    except (ValueError, orjson.JSONDecodeError, TypeError) as e:
        raise CorruptEvent(seq, str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def decode(
    seq: int,
    id: str,
    event_type: str,
    source: str,
    task_id: str | None,
    agent_id: str | None,
    data: str | bytes | None,
    timestamp: str,
    schema_version: int,
) -> Event:
    """The typed event of a stored row (upcast if it is older), or CorruptEvent naming `seq`.

    The read hot path: every row is still validated in full (the log is read by other SQLite
    clients' rows too, and a corrupt row must be reported, never folded). What is skipped is the
    Python around the validation (an Enum call, the TypeAdapter wrapper): the common row — a known
    type at its current version with a JSON-object payload — is validated in one call. Any other
    row, and any failure, goes to `decode_plain`, which gives the same event or names the error.
    """
    try:
        kind = _KINDS.get(event_type)
        if kind is not None and schema_version == CURRENT_VERSION[kind]:
            payload = _loads(data) if data else {}
            if type(payload) is dict:
                return _validate(
                    {
                        "id": id,
                        "event_type": kind,
                        "source": source,
                        "task_id": task_id,
                        "agent_id": agent_id,
                        "data": payload,
                        "timestamp": timestamp,
                    }
                )
    except Exception:  # the plain path below reports it, with its seq
        pass
    return decode_plain(seq, id, event_type, source, task_id, agent_id, data, timestamp,
                        schema_version)


# -- rows the store vouches for -----------------------------------------------------------------
#
# Validating every row again on read is the price of a log other SQLite clients can write to: a
# row this codec did not encode must be checked before a fold trusts it. A row it did encode was
# validated on its way in, and reading it back with a typed event costs a full validation again
# (4 us a row, two thirds of a rebuild, profiled). So each stored row carries `checksum`, the
# CRC-32 of its fields computed when it was encoded; a bulk fold reads a row whose checksum
# matches as a light `EventView` (no validation: the same fields, plain values), and validates
# any other row (no checksum: written by something else; a mismatch: changed since) in full.
# CRC-32 detects accidental change (a bit flip, a stray UPDATE with the guards dropped); it is
# not a signature, and a client forging rows can forge it too, as it could forge anything else.


def checksum(id: str, event_type: str, source: str, task_id: str | None, agent_id: str | None,
             data: str | None, timestamp: str, schema_version: int) -> int:
    """The CRC-32 of the fields of a stored row that `decode` reads."""
    return zlib.crc32(f"{id}\x1f{event_type}\x1f{source}\x1f{task_id}\x1f{agent_id}\x1f{data}"
                      f"\x1f{timestamp}\x1f{schema_version}".encode())


def row_checksum(row: Row) -> int:
    """`checksum` of a storage row."""
    id_, kind, source, task_id, agent_id, data, stamp, _stream, schema_version = row
    return checksum(id_, kind, source, task_id, agent_id, data, stamp, schema_version)


class PayloadView(dict[str, Any]):
    """The payload of an `EventView`: every key, and each as an attribute, None when absent, as
    the typed payload's declared fields are (no declared field shares a name with a dict
    method: the tests compare every one with the typed payload's)."""

    __slots__ = ()
    __getattr__ = dict.get  # C-level: a fold reads a field or two of every event


class EventView(NamedTuple):
    """A stored event read without validation, because its row's checksum shows it is as this
    codec encoded it from a validated event: the typed event's fields, for folds to read."""

    id: str
    event_type: EventType
    source: str
    task_id: str | None
    agent_id: str | None
    data: PayloadView
    timestamp: datetime


_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__
_fromisoformat = datetime.fromisoformat


def vouched_for(id: str, event_type: str, source: str, task_id: str | None,
                agent_id: str | None, data: str | None, timestamp: str, schema_version: int,
                stored_checksum: int | None) -> bool:
    """Whether a stored row is as this codec encoded it from a validated event: its checksum
    matches, and it is of a known type at its current version (nothing to upcast)."""
    kind = _KINDS.get(event_type)
    return (stored_checksum is not None and kind is not None
            and schema_version == CURRENT_VERSION[kind]
            and stored_checksum == zlib.crc32(  # `checksum`, inlined: a rebuild's hot path
                f"{id}\x1f{event_type}\x1f{source}\x1f{task_id}\x1f{agent_id}\x1f{data}"
                f"\x1f{timestamp}\x1f{schema_version}".encode()))


def decode_view(
    seq: int,
    id: str,
    event_type: str,
    source: str,
    task_id: str | None,
    agent_id: str | None,
    data: str | None,
    timestamp: str,
    schema_version: int,
    stored_checksum: int | None,
) -> EventView | Event:
    """An `EventView` of a stored row its checksum vouches for; else the typed event, validated
    in full as `decode` does (or CorruptEvent)."""
    if vouched_for(id, event_type, source, task_id, agent_id, data, timestamp, schema_version,
                   stored_checksum):
        try:
            payload = _loads(data) if data else {}
            if type(payload) is dict:
                return _new_tuple(EventView, (id, _KINDS[event_type], source, task_id, agent_id,
                                              PayloadView(payload), _fromisoformat(timestamp)))
        except Exception:  # only a forged checksum gets here: `decode` says what is wrong
            pass
    return decode(seq, id, event_type, source, task_id, agent_id, data, timestamp, schema_version)


def timestamp_text(moment: datetime) -> str:
    """A timezone-aware datetime in the stored timestamp format (for range queries)."""
    if moment.tzinfo is None:
        raise InvalidEvent("timestamp", f"{moment.isoformat()} is naive; give a timezone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
