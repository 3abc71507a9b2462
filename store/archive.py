"""The log's one JSON-lines format (export, import, archive segments), and archive segments.

One line per event: its stored row as a JSON object, `data` as the payload's JSON value::

    {"position": 7, "id": "...", "event_type": "bid.submitted", "source": "coordinator",
     "task_id": "t1", "agent_id": "a1", "data": {"bid_sats": 120},
     "timestamp": "2025-01-01T10:00:00.000000+00:00", "stream_id": "task-t1",
     "stream_version": 3, "schema_version": 1, "conforms": true, "hash": "5e1c…"}

A segment is such lines, gzip-compressed, written by a prune for the range it removed, named by
that range (`events-000000000001-000000005000.jsonl.gz`), fsynced, and identified by its SHA-256
(recorded in `prunes`). `swarmlog export` writes the same lines; `swarmlog import` reads them,
plain or compressed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from domain.codec import StoredEvent, check_integers
from domain.errors import InvalidEvent, StoreError

_TEXT = ("id", "event_type", "source", "timestamp")
#: Every key a line may have (what `to_line` writes, and the lines of earlier exports).
_KEYS = ("position", "id", "event_type", "source", "task_id", "agent_id", "data", "data_text",
         "timestamp", "stream_id", "stream_version", "schema_version", "conforms", "hash",
         "checksum")  # (checksum: lines written before the integrity chain; ignored)
_GZIP_MAGIC = b"\x1f\x8b"


def _payload(text: str | None) -> dict[str, Any]:
    """The line's `data`: the payload's JSON value; and `data_text`, the stored text itself,
    whenever that value does not give it back byte for byte (other spacing or escapes, as the
    ADR 017 module wrote; or text that is not JSON at all)."""
    if text is None:
        return {"data": None}
    blob = text.encode()
    try:
        value = orjson.loads(blob)
        same = orjson.dumps(value) == blob
    except (orjson.JSONDecodeError, TypeError):  # not JSON, or nested deeper than orjson writes
        return {"data": None, "data_text": text}
    # A value that is not an object ("null", "[1,2]") keeps its text too: `from_line` reads a
    # bare `data` only as an object (null: no payload).
    if type(value) is dict and same:
        return {"data": orjson.Fragment(blob)}
    return {"data": value, "data_text": text}


def to_line(row: StoredEvent) -> bytes:
    """One row as a JSON line (with its trailing newline): `from_line` gives it back exactly,
    its link in the integrity chain (`hash`, hexadecimal) included."""
    return orjson.dumps({
        "position": row.position, "id": row.id, "event_type": row.event_type,
        "source": row.source, "task_id": row.task_id, "agent_id": row.agent_id,
        **_payload(row.data),
        "timestamp": row.timestamp, "stream_id": row.stream_id,
        "stream_version": row.stream_version, "schema_version": row.schema_version,
        "conforms": None if row.conforms is None else bool(row.conforms),
        "hash": None if row.hash is None else row.hash.hex(),
    }) + b"\n"


def from_line(line: bytes | str, where: str) -> StoredEvent:
    """The row on one line, unvalidated (InvalidEvent naming `where` if it is not a row at all).
    Positions and stream versions default to 0: an importing log assigns its own."""
    try:
        obj: Any = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise InvalidEvent(where, f"not JSON ({e})") from None
    try:  # orjson read an integer beyond 64 bits as a float: refused, as the API refuses it
        check_integers(line if isinstance(line, bytes) else line.encode())
    except InvalidEvent as e:
        raise InvalidEvent(where, str(e).removeprefix("invalid event: data: ")) from None
    except RecursionError:
        raise InvalidEvent(where, "nested too deeply to be stored") from None
    if not isinstance(obj, dict):
        raise InvalidEvent(where, f"is a JSON {type(obj).__name__}, not an object")
    unknown = sorted(set(obj) - set(_KEYS))
    if unknown:  # a misspelt key would otherwise be dropped without a word
        raise InvalidEvent(where, f"unknown keys {', '.join(unknown)}; a line has "
                                  f"{', '.join(_KEYS)}")
    missing = [k for k in _TEXT if obj.get(k) is None]
    if missing:
        raise InvalidEvent(where, f"missing {', '.join(missing)}")
    wrong = [k for k in (*_TEXT, "task_id", "agent_id")
             if obj.get(k) is not None and not isinstance(obj[k], str)]
    wrong += [k for k in ("position", "stream_version", "schema_version")
              if obj.get(k) is not None and type(obj[k]) is not int]
    if wrong:
        raise InvalidEvent(where, f"{', '.join(wrong)} of the wrong type")
    if obj.get("schema_version") is not None and obj["schema_version"] < 1:
        raise InvalidEvent(where, f"schema_version {obj['schema_version']} is not a version "
                                  "(they start at 1)")
    data, text = obj.get("data"), obj.get("data_text")
    if text is not None and not isinstance(text, str):
        raise InvalidEvent(where, "data_text of the wrong type")
    if text is None and data is not None:
        if not isinstance(data, dict):
            raise InvalidEvent(where, f"data is a JSON {type(data).__name__}, not an object")
        try:
            text = orjson.dumps(data).decode()
        except TypeError as e:  # nested deeper than orjson writes ("Recursion limit reached")
            raise InvalidEvent(where, f"data cannot be stored: {e}") from None
    stream = obj.get("stream_id") or ("task-" + obj["task_id"] if obj.get("task_id") else
                                      "agent-" + obj["agent_id"] if obj.get("agent_id") else
                                      "system")
    link = obj.get("hash")
    try:
        digest = None if link is None else bytes.fromhex(link)
    except (TypeError, ValueError):
        raise InvalidEvent(where, "hash is not hexadecimal") from None
    return StoredEvent(
        obj.get("position") or 0, obj["id"], obj["event_type"], obj["source"], obj.get("task_id"),
        obj.get("agent_id"), text,
        obj["timestamp"], stream, obj.get("stream_version") or 0,
        obj.get("schema_version") or 1, obj.get("conforms"), digest)


#: What reading a compressed file that is damaged or cut short raises.
DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile)


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a JSON-lines file, gzip-compressed or not (blank lines skipped);
    one of `DAMAGED` when a compressed file is damaged or cut short."""
    with open(path, "rb") as raw:
        packed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        with gzip.open(raw) if packed else contextlib.nullcontext(raw) as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    yield number, line


def segment_name(first: int, last: int) -> str:
    return f"events-{first:012d}-{last:012d}.jsonl.gz"


def write_segment(directory: str | os.PathLike[str], first: int, last: int,
                  lines: Iterable[bytes]) -> tuple[str, str]:
    """Write one compressed segment of JSON lines (`to_line`) durably: a temp file,
    fsync, rename, fsync the directory; returns (path, sha256 of the file). A failure, or an
    exception from `lines`, leaves no file behind."""
    folder = Path(directory)
    final = folder / segment_name(first, last)
    temp = final.with_suffix(".tmp")
    digest = hashlib.sha256()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(temp, "wb") as raw:
            # Level 1: a third of level 6's time for a quarter more bytes (a prune holds the
            # write lock while it archives). The file is hashed as it is written.
            with gzip.GzipFile(fileobj=_Hashing(raw, digest), mode="wb", compresslevel=1,
                               mtime=0) as packed:
                _pipe(lines, packed.write)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp, final)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        _discard(temp)
        raise StoreError(f"cannot write the archive segment in {folder}: {e}") from e
    except BaseException:
        _discard(temp)
        raise
    return str(final), digest.hexdigest()


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):  # (it may never have been made)
        path.unlink(missing_ok=True)


class _Hashing:
    """A file that hashes what is written to it."""

    def __init__(self, raw: BinaryIO, digest: Any) -> None:
        self.raw, self.digest = raw, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _pipe(lines: Iterable[bytes], write: Callable[[bytes], Any]) -> None:
    """`write` the lines, a thousand at a time, from a second thread: zlib and hashlib let go
    of the GIL while they work, so what produces the lines (a prune's fold of the same rows)
    goes on meanwhile (a tenth off a 1M-event prune on two cores, measured)."""
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    failed: list[BaseException] = []

    def drain() -> None:
        while (chunk := chunks.get()) is not None:
            if not failed:
                try:
                    write(chunk)
                except BaseException as e:  # handed to the caller's thread below
                    failed.append(e)

    worker = threading.Thread(target=drain, name="swarmlog-archive", daemon=True)
    worker.start()
    try:
        batch: list[bytes] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= 1000:
                chunks.put(b"".join(batch))
                batch.clear()
                if failed:
                    break
        if batch and not failed:
            chunks.put(b"".join(batch))
    finally:
        chunks.put(None)
        worker.join()
    if failed:
        raise failed[0]


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_segment(path: str | os.PathLike[str], sha256: str | None = None) -> Iterator[StoredEvent]:
    """The rows of a segment, in position order; checks the hash first when given."""
    try:
        if sha256 is not None and sha256_of(path) != sha256:
            raise StoreError(f"archive segment {path} does not match its recorded SHA-256")
        for number, line in read_lines(path):
            yield from_line(line, f"{path} line {number}")
    except (OSError, *DAMAGED) as e:
        raise StoreError(f"cannot read archive segment {path}: {e}") from e
