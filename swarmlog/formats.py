"""The streamed output formats of the listings: an indented JSON array, JSON lines, CSV, TSV.

Each writer takes an iterable and writes as it goes, a thousand records at a time, so that a
listing of the whole log costs one page of memory, whatever its length.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import IO, Any

import orjson

from swarmlog.render import plain

_CHUNK = 1000


def write_json_lines(lines: Iterable[bytes], out: IO[bytes]) -> int:
    """Write ready JSON lines (each ending in a newline); returns how many."""
    count, chunk = 0, []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= _CHUNK:
            out.write(b"".join(chunk))
            count += len(chunk)
            chunk.clear()
    out.write(b"".join(chunk))
    out.flush()
    return count + len(chunk)


def json_line(row: Mapping[str, Any]) -> bytes:
    """One record as a JSON line."""
    return orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS, default=plain) + b"\n"


def write_json_array(rows: Iterable[Any], out: IO[bytes]) -> int:
    """Write records as one indented JSON array, exactly as `dumps(list(rows))` would, without
    holding the list; returns how many."""
    count, chunk = 0, []
    for row in rows:
        text = orjson.dumps(row, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
                            default=plain)
        chunk.append((b"[\n  " if count == 0 else b",\n  ") + text.replace(b"\n", b"\n  "))
        count += 1
        if len(chunk) >= _CHUNK:
            out.write(b"".join(chunk))
            chunk.clear()
    chunk.append(b"[]\n" if count == 0 else b"\n]\n")
    out.write(b"".join(chunk))
    out.flush()
    return count


def cell(value: Any) -> str:
    """A value as a CSV cell: empty for null, true/false, ISO-8601 times, compact JSON for
    lists and objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=plain).decode()


def write_delimited(columns: Sequence[str], records: Iterable[Sequence[Any]], out: IO[bytes],
                    delimiter: str = ",", header: bool = True) -> int:
    """Write a header and records as CSV (or TSV, with a tab); returns how many records."""
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(columns)
    count = 0
    for record in records:
        writer.writerow([cell(v) for v in record])
        count += 1
        if count % _CHUNK == 0:
            out.write(text.getvalue().encode())
            text.seek(0)
            text.truncate()
    out.write(text.getvalue().encode())
    out.flush()
    return count
