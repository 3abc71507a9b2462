"""What an SQLite log holds, to prove that something changed nothing: the file's bytes, and
every table's schema and rows, read through a read-only connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def contents(path: Path) -> tuple[bytes | None, str | None]:
    """(the file's bytes, a dump of its schema and rows); (None, None) when there is no file."""
    if not path.exists():
        return None, None
    data = path.read_bytes()
    if not data.startswith(b"SQLite format 3\x00"):
        return data, None
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return data, "\n".join(conn.iterdump())
    finally:
        conn.close()
