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
import errno
import gzip
import hashlib
import logging
import os
import queue
import re
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from domain.codec import StoredEvent, check_integers
from domain.errors import InvalidEvent, StoreError
from store.base import Store, first_stored

try:
    import fcntl
except ImportError:  # (not on Windows: temporary files are then never taken for a killed prune's)
    fcntl = None  # type: ignore[assignment]

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
    """Write one compressed segment of JSON lines (`to_line`) durably; returns (path, sha256 of
    the file). It is written to a new temporary file of an unpredictable name (made with
    O_EXCL and O_NOFOLLOW: never through a link someone planted), locked while it is written
    (see `tidy_segments`), fsynced, and given its final name only if nothing has that name: a
    segment is never written over a file, or through a link, that is there (StoreError). A
    failure, or an exception from `lines`, leaves no file behind."""
    folder = Path(directory)
    final = folder / segment_name(first, last)
    digest = hashlib.sha256()
    temp: Path | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = _temporary(folder, final.name)
        with os.fdopen(fd, "wb") as raw:  # (closing it lets go of the lock)
            # Level 1: a third of level 6's time for a quarter more bytes (a prune holds the
            # write lock while it archives). The file is hashed as it is written.
            with gzip.GzipFile(fileobj=_Hashing(raw, digest), mode="wb", compresslevel=1,
                               mtime=0) as packed:
                _pipe(lines, packed.write)
            raw.flush()
            os.fsync(raw.fileno())
            _place(temp, final)
            temp = None
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


def _temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new file for the segment `name`, private, of an unpredictable name, locked."""
    while True:
        fd, made = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # A tidy that took it for a killed prune's, before it was locked, removed it:
                # make another.
                if os.stat(made, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
                    os.close(fd)
                    continue
            return fd, Path(made)
        except BaseException:
            os.close(fd)
            _discard(Path(made))
            raise


def _place(temp: Path, final: Path) -> None:
    """Give the written `temp` the name `final`, which nothing may hold (not even a link)."""
    try:
        os.link(temp, final, follow_symlinks=False)
    except FileExistsError:
        raise StoreError(f"cannot write the archive segment {final}: it already exists (a "
                         "segment of another log, or something else): move it away, or "
                         "archive elsewhere") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(final):  # a file system without hard links: look, then rename
            raise StoreError(f"cannot write the archive segment {final}: it already "
                             "exists: move it away, or archive elsewhere") from None
        os.rename(temp, final)
        return
    os.unlink(temp)


def _discard(path: Path | None) -> None:
    with contextlib.suppress(OSError):  # (it may never have been made)
        if path is not None:
            path.unlink(missing_ok=True)


#: What `write_segment` writes, and what earlier versions wrote first ("events-...jsonl.tmp").
_SEGMENT = re.compile(r"events-(\d{12})-(\d{12})\.jsonl\.gz")
_TEMPORARY = re.compile(r"\.events-\d{12}-\d{12}\.jsonl\.gz\.\w+\.tmp|events-\d{12}-\d{12}\.jsonl\.tmp")


def tidy_segments(directory: str | os.PathLike[str], store: Store) -> list[str]:
    """Remove from an archive folder what killed prunes of this log left, and say what, one
    line each (also logged as warnings): temporary files no live writer holds, and whole
    segments of events the log still stores — a prune killed after it wrote its segment and
    before it committed deleted nothing, so no prune record names them — once their first line
    is the log's own row at that position. Anything else (another log's segments, links, other
    files) is left alone. Run it where no other prune of the log runs (in the prune's write
    transaction)."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    first, head, done = first_stored(store), store.head(), []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if not entry.is_file(follow_symlinks=False):
            continue
        if _TEMPORARY.fullmatch(entry.name):
            if _remove_unless_held(path):
                done.append(f"removed {path}: a partial segment a killed prune left")
        elif (found := _SEGMENT.fullmatch(entry.name)) is not None:
            low, high = int(found[1]), int(found[2])
            if first <= low <= high <= head and _first_line(path) == _line_at(store, low):
                _discard(path)
                done.append(f"removed {path}: a killed prune wrote it, and the log still "
                            f"stores events {low}..{high}")
    for line in done:
        logging.getLogger("swarmlog").warning("%s", line)
    return done


def _remove_unless_held(path: Path) -> bool:
    """Remove a temporary segment unless a live writer holds its lock."""
    if fcntl is None:
        return False  # (no locks to tell a live writer by)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
            return False
        path.unlink()
        return True
    except OSError:  # held (BlockingIOError), or gone meanwhile
        return False
    finally:
        os.close(fd)


def _first_line(path: Path) -> bytes | None:
    """The first line of a segment, read without following a link (None: not readable)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as raw, gzip.open(raw) as lines:
            return lines.readline()
    except (OSError, EOFError, zlib.error):
        return None


def _line_at(store: Store, position: int) -> bytes | None:
    row = next(iter(store.read(position - 1, position)), None)
    return None if row is None or row.position != position else to_line(row)


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
