"""Events as the ADR 017 module accepted them: kept whole, and flagged when they do not conform.

The typed API refuses an event that does not fit its type's schema. The seed's module refused
nothing it could store: an empty source, a bid of `12.5` sats, a payload of any size, text with NUL
characters. Its callers do not expect a refusal, so the facade stores such an event as it was
given (`encode_as_given`), flagged as not conforming (`StoredEvent.conforms` False; `decode` says
why). A fold reads from such a row what does conform (`salvage`), and counts the row as an anomaly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

import orjson
from pydantic import TypeAdapter, ValidationError

from domain.codec import (
    CURRENT_VERSION,
    StoredEvent,
    build_event,
    check_storable,
    decode,
    timestamp_text,
    upcast,
)
from domain.errors import CorruptEvent, InvalidEvent
from domain.events import EVENT_CLASSES, Event, EventType, Payload
from domain.ids import new_event_id, utc_now


def _text(name: str, value: object, *, optional: bool) -> str | None:
    """An envelope value as the seed's module stored it: text (SQLite stored numbers as text)."""
    if value is None:
        if optional:
            return None
        raise InvalidEvent(name, "must be text, got None (the ADR 017 table needs one)")
    return value if isinstance(value, str) else str(value)


def _stream(task_id: str | None, agent_id: str | None) -> str:
    if task_id is not None:
        return f"task-{task_id}"
    return "system" if agent_id is None else f"agent-{agent_id}"


def encode_as_given(event_type: EventType | str, source: object, task_id: object = None,
                    agent_id: object = None, data: Any = None, *,
                    timestamp: datetime | None = None) -> StoredEvent:
    """The row of an event given in the ADR 017 call shape, stored as the seed's module stored it:
    the payload's text is `json.dumps(data)` (its spacing, the caller's key order; None for no
    data), and the row conforms when the typed event validates and the text can be read back
    exactly. Raises what `json.dumps` raises for data that is not JSON (as the seed did), and
    InvalidEvent for an unknown type or a missing source (which the seed could not store)."""
    try:
        kind = EventType(event_type)
    except ValueError:
        valid = ", ".join(t.value for t in EventType)
        raise InvalidEvent("event_type", f"{event_type!r} is not one of: {valid}") from None
    text = json.dumps(data) if data else None  # TypeError, ValueError: as the seed's module
    source_text = _text("source", source, optional=False)
    task_text = _text("task_id", task_id, optional=True)
    agent_text = _text("agent_id", agent_id, optional=True)
    moment = utc_now() if timestamp is None else timestamp
    event_id = new_event_id()
    try:
        build_event(kind, source, task_id, agent_id, data, timestamp=moment,  # type: ignore[arg-type]
                    id=event_id)
        if text is not None:
            check_storable(text.encode())
        conforms = True
    except InvalidEvent:
        conforms = False
    stamp = timestamp_text(moment)
    assert source_text is not None
    return StoredEvent(
        0, event_id, kind.value, source_text, task_text, agent_text, text, stamp,
        _stream(task_text, agent_text), 0, CURRENT_VERSION[kind], conforms, None)


@cache
def _field_adapter(payload: type[Payload], name: str) -> TypeAdapter[Any]:
    field = payload.model_fields[name]
    annotation: Any = field.annotation
    return TypeAdapter(Annotated[(annotation, *field.metadata)] if field.metadata else annotation)


def salvage(row: StoredEvent) -> Event | None:
    """The typed event made of what conforms in a row that does not decode: its envelope as
    stored (an empty source stays empty), the payload fields that validate (the others are left
    out), its undeclared keys; None when its type is unknown or its timestamp is not a time."""
    kind = EventType._value2member_map_.get(row.event_type)
    if not isinstance(kind, EventType) or type(row.source) is not str \
            or not all(v is None or type(v) is str for v in (row.task_id, row.agent_id)):
        return None  # (an envelope that is not text: nothing of it can be kept as it is)
    try:
        moment = datetime.fromisoformat(row.timestamp)
        if moment.tzinfo is None:
            return None
        moment = moment.astimezone(UTC)
    except (ValueError, TypeError, OverflowError):
        return None
    try:
        payload = orjson.loads(row.data) if type(row.data) is str and row.data else {}
        if isinstance(payload, dict) and row.schema_version != CURRENT_VERSION[kind]:
            payload = upcast(kind, row.schema_version, payload)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        payload = {}
    cls = EVENT_CLASSES[kind]
    payload_class: type[Payload] = cls.model_fields["data"].annotation  # type: ignore[assignment]
    kept: dict[str, Any] = {}
    for name, value in (payload.items() if isinstance(payload, dict) else ()):
        if name in payload_class.model_fields:
            try:
                kept[name] = _field_adapter(payload_class, name).validate_python(value)
            except ValidationError:
                continue
        elif isinstance(name, str):
            kept[name] = value
    return cls.model_construct(
        id=row.id, source=row.source, task_id=row.task_id, agent_id=row.agent_id,
        timestamp=moment, data=payload_class.model_construct(**kept))


def nonconformity(row: StoredEvent) -> str | None:
    """Why a row is not a typed event of its type, read back exactly (None: it is one)."""
    try:
        decode(row)
    except CorruptEvent as e:
        return e.reason
    if type(row.data) is str:
        try:
            check_storable(row.data.encode())
        except InvalidEvent as e:
            return f"data: {e}".replace("invalid event: data: ", "")
    return None
