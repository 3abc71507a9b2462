"""Archive segments and JSON lines: the log's own interchange format.

One line per event: the storage row with its position and stream version, `data` as a JSON
object. A segment is such lines, gzip-compressed, written by a prune for the range it removed,
named by that range (`events-000000000001-000000005000.jsonl.gz`), fsynced, and identified by
its SHA-256 (recorded in `prunes`). `swarmlog export` writes the same lines uncompressed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

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
