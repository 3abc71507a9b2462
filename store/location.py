"""Where a log lives: an SQLite file path or a PostgreSQL URL, and how to name it safely."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


def is_url(location: str) -> bool:
    """Whether `location` names a PostgreSQL server rather than an SQLite file."""
    return location.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL (or key=value DSN) without its password, for messages."""
    if "://" not in url:
        return re.sub(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", "password=***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}@{hosts}"
    query = "&".join(p for p in parts.query.split("&") if not p.lower().startswith("password="))
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))
