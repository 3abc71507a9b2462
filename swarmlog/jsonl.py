"""Export and import: the log's JSON lines (`store.archive`) out of a log and into another.

An export writes each stored row as a line. An import checks every line of a file before it
stores anything (each must be an event the API would accept), then appends them all in one
transaction, keeping their ids: all of a file, or nothing. Positions and stream versions are the
importing log's own. An event already in the log is skipped; so is a line repeating an earlier
line of the file; a line reusing an id with other content is an error naming both lines.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import IO, NamedTuple

from domain.codec import StoredEvent, check_timestamp, decode, encode
from domain.errors import CommitInDoubt, CorruptEvent, InvalidEvent, StoreError
from domain.ids import utc_now
from store import EVERYTHING, EventFilter, Store, first_stored
from store.archive import DAMAGED, from_line, read_lines, to_line

_BATCH = 2000
Progress = Callable[[int, int], None]


def export_rows(rows: Iterable[StoredEvent], out: IO[bytes]) -> int:
    """Write `rows` to `out` as JSON lines; returns how many."""
    buffer: list[bytes] = []
    count = 0
    for row in rows:
        buffer.append(to_line(row))
        if len(buffer) >= 1000:
            out.write(b"".join(buffer))
            count += len(buffer)
            buffer.clear()
    out.write(b"".join(buffer))
    out.flush()
    return count + len(buffer)


def export_events(store: Store, out: IO[bytes], where: EventFilter = EVERYTHING,
                  progress: Progress | None = None) -> int:
    """Write the events matching `where` to `out` as JSON lines, oldest first, streamed; returns
    how many. `progress(done, total)` counts positions passed of those stored (a time range is
    a stretch of positions, near enough), every thousand lines."""
    start, head = first_stored(store) - 1, store.head()

    def reported(rows: Iterable[StoredEvent]) -> Iterator[StoredEvent]:
        for n, row in enumerate(rows, start=1):
            yield row
            if progress is not None and n % 1000 == 0:
                progress(row.position - start, head - start)

    return export_rows(reported(store.query(where, before=head + 1)), out)


class ImportReport(NamedTuple):
    """What an import found and did."""

    lines: int  # event lines in the file
    added: int  # appended to the log
    present: int  # already in the log (same id)
    repeated: int  # lines repeating an earlier line of the file


def _checked(line: bytes, where: str, now: datetime) -> StoredEvent:
    """The row to append for one line: its event validated as the API would (its timestamp in
    the range accepted at `now`), then encoded."""
    row = from_line(line, where)
    try:
        event = decode(row)
        check_timestamp(event.timestamp, now)
        return encode(event)
    except CorruptEvent as e:
        raise InvalidEvent(where, e.reason) from None
    except InvalidEvent as e:
        raise InvalidEvent(where, str(e).removeprefix("invalid event: ")) from None


def _content(row: StoredEvent) -> int:
    return zlib.crc32(to_line(row._replace(hash=None)))


class JsonLines:
    """A JSON-lines file of events, plain or gzip-compressed ("-": standard input, read once
    and kept)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = "<stdin>" if path == "-" else path
        self._cached = sys.stdin.buffer.readlines() if path == "-" else None

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        if self._cached is not None:
            yield from ((n, line) for n, line in enumerate(self._cached, start=1) if line.strip())
            return
        number = 0
        try:
            for number, line in read_lines(self.path):
                yield number, line
        except DAMAGED as e:
            raise InvalidEvent(f"{self.name} line {number + 1}",
                               f"the compressed file is damaged or cut short ({e})") from None

    def rows(self) -> Iterator[tuple[int, StoredEvent]]:
        """(line number, row to append) of every line; InvalidEvent names a bad line."""
        now = utc_now()
        for number, line in self._lines():
            yield number, _checked(line, f"{self.name} line {number}", now)

    def check(self, progress: Progress | None = None) -> tuple[int, int]:
        """Check every line (and that no id is reused with other content); returns how many
        event lines there are, and how many of them repeat an earlier line. `progress(lines
        checked, 0)` every thousand lines (0: the total is not known yet)."""
        seen: dict[str, tuple[int, int]] = {}  # id -> (line number, content)
        repeated = 0
        for number, row in self.rows():
            if progress is not None and number % 1000 == 0:
                progress(number, 0)
            content = _content(row)
            earlier = seen.get(row.id)
            if earlier is None:
                seen[row.id] = (number, content)
            elif earlier[1] == content:
                repeated += 1
            else:
                raise InvalidEvent(f"{self.name} line {number}",
                                   f"id {row.id} is also on line {earlier[0]}, with other content")
        return len(seen) + repeated, repeated


def _same_event(a: StoredEvent, b: StoredEvent) -> bool:
    return (a.event_type, a.source, a.task_id, a.agent_id, a.data, a.timestamp) == \
        (b.event_type, b.source, b.task_id, b.agent_id, b.data, b.timestamp)


def import_rows(store: Store, source: JsonLines, progress: Progress | None = None,
                checked: tuple[int, int] | None = None) -> ImportReport:
    """Check every line of `source` (unless `checked` gives what `source.check()` returned),
    then append its events in file order, all in one transaction (see the module docstring)."""
    total, repeated = source.check() if checked is None else checked
    lines = 0
    batch: list[tuple[int, StoredEvent]] = []

    def flush() -> None:
        before = store.head()
        positions = store.append([row for _, row in batch])
        for (number, row), position in zip(batch, positions, strict=True):
            if position <= before:  # stored already: by an earlier import, or another writer
                stored = store.get(row.id)
                if stored is not None and not _same_event(stored, row):
                    raise InvalidEvent(f"{source.name} line {number}",
                                       f"id {row.id} is in the log already, with other content")
        batch.clear()
        if progress is not None:
            progress(lines, total)

    number = 0
    try:
        with store.transaction():
            start = store.head()
            for number, row in source.rows():
                lines += 1
                batch.append((number, row))
                if len(batch) >= _BATCH:
                    flush()
            if batch:
                flush()
            added = store.head() - start
    except CommitInDoubt as e:  # the connection lost while committing: all, or nothing
        raise CommitInDoubt(f"{e} (importing {source.name}: the whole file, or none of it; "
                            "import it again, which skips what is stored)") from e
    except StoreError as e:  # (a full disk, a lost server): the transaction took back it all
        raise StoreError(f"{e} (importing {source.name} line {number}: nothing of it was "
                         "stored)") from e
    return ImportReport(lines, added, lines - added - repeated, repeated)
