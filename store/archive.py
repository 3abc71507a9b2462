"""Archive segments and JSON lines: the log's own interchange format.

One line per event: the storage row with its position and stream version, `data` as a JSON
object. A segment is such lines, gzip-compressed, written by a prune for the range it removed,
named by that range (`events-000000000001-000000005000.jsonl.gz`), fsynced, and identified by
its SHA-256 (recorded in `prunes`). `swarmlog export` writes the same lines uncompressed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from domain.codec import decode, encode
from domain.errors import CorruptEvent, InvalidEvent, StoreError
from store.base import Recorded, StoredRow

_KEYS = ("id", "event_type", "source", "task_id", "agent_id", "data", "timestamp", "schema_version")


def to_line(recorded: Recorded) -> bytes:
    """One event as a JSON line (with its trailing newline)."""
    id_, kind, source, task, agent, data, ts, stream, schema = encode(recorded.event)
    return row_line((recorded.position, id_, kind, source, task, agent, data, ts, stream,
                     recorded.stream_version, schema, None))


def row_line(stored: StoredRow) -> bytes:
    """The JSON line of a row as it is stored (a prune archives rows, not re-encodings)."""
    position, id_, kind, source, task, agent, data, ts, stream, stream_version, schema, _ = stored
    return orjson.dumps({
        "position": position, "stream_id": stream, "stream_version": stream_version, "id": id_,
        "event_type": kind, "source": source, "task_id": task, "agent_id": agent,
        "data": None if data is None else orjson.Fragment(data), "timestamp": ts,
        "schema_version": schema,
    }) + b"\n"


def from_line(line: bytes | str, number: int) -> Recorded:
    """The event of one JSON line (`number` names it in errors), validated like an append."""
    try:
        obj: dict[str, Any] = orjson.loads(line)
        if not isinstance(obj, dict):
            raise ValueError("a line must be a JSON object")
        missing = [k for k in ("event_type", "source", "timestamp") if k not in obj]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        data = obj.get("data")
        event = decode(
            int(obj.get("position") or 0), str(obj.get("id") or ""), obj["event_type"], obj["source"],
            obj.get("task_id"), obj.get("agent_id"),
            None if data is None else orjson.dumps(data), obj["timestamp"],
            int(obj.get("schema_version") or 1),
        )
        encode(event)  # the same refusals as an append (size, NUL characters)
    except (ValueError, TypeError, CorruptEvent, InvalidEvent) as e:
        reason = e.reason if isinstance(e, CorruptEvent) else str(e)
        raise InvalidEvent(f"line {number}", reason) from None
    return Recorded(int(obj.get("position") or 0), event.stream_id,
                    int(obj.get("stream_version") or 0), event)


def segment_name(first: int, last: int) -> str:
    return f"events-{first:012d}-{last:012d}.jsonl.gz"


def write_segment(directory: str | os.PathLike[str], first: int, last: int,
                  lines: Iterable[bytes]) -> tuple[str, str]:
    """Write one compressed segment of JSON lines (`to_line`, `row_line`) durably: a temp file,
    fsync, rename, fsync the directory; returns (path, sha256 of the file)."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / segment_name(first, last)
        temp = final.with_suffix(".tmp")
        with open(temp, "wb") as raw:
            # Level 1: a third of level 6's time for a quarter more bytes (a prune holds the
            # write lock while it archives); lines go to zlib a thousand at a time.
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as packed:
                chunk: list[bytes] = []
                for line in lines:
                    chunk.append(line)
                    if len(chunk) >= 1000:
                        packed.write(b"".join(chunk))
                        chunk.clear()
                packed.write(b"".join(chunk))
            raw.flush()
            os.fsync(raw.fileno())
        digest = sha256_of(temp)
        os.replace(temp, final)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise StoreError(f"cannot write the archive segment in {folder}: {e}") from e
    return str(final), digest


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_segment(path: str | os.PathLike[str], sha256: str | None = None) -> Iterator[Recorded]:
    """The typed events of a segment, in position order; checks the hash first when given."""
    try:
        if sha256 is not None and sha256_of(path) != sha256:
            raise StoreError(f"archive segment {path} does not match its recorded SHA-256")
        with gzip.open(path, "rb") as lines:
            for number, line in enumerate(lines, start=1):
                yield from_line(line, number)
    except (OSError, EOFError) as e:
        raise StoreError(f"cannot read archive segment {path}: {e}") from e
