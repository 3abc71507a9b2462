"""Where a log lives: an SQLite file path or a PostgreSQL URL, and how to name it safely.

A password must never reach any output. libpq reads a URL's credentials up to its first '@'
(unless a '/' comes first) and quotes back, in its errors, what it cannot read — a stray '%'
escape, the host it made of the rest of a password with an '@' in it. So a URL libpq would
misread is refused before libpq sees it (`url_problem`), in words that quote none of it, and a
location is shown the way libpq reads it, without its password (`redact`).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_KEY_PASSWORD = re.compile(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*(?:'|$)|(?:\\.|[^\s\\])+\\?)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY_VALUE = re.compile(r"(?i)(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|"
                        r"service|sslmode|connect_timeout)\s*=")


def is_url(location: str) -> bool:
    """Whether `location` names a PostgreSQL server rather than an SQLite file."""
    return location.startswith(("postgresql://", "postgres://"))


def is_key_value(location: str) -> bool:
    """Whether `location` looks like libpq's `key=value` form (`host=db password=...`)."""
    return not is_url(location) and _KEY_VALUE.search(location) is not None


def url_problem(url: str) -> str | None:
    """What in a postgresql:// URL libpq would misread, or quote back in an error — in words
    that quote none of it; None when libpq reads it as it is meant."""
    rest = url.partition("://")[2]
    if _BAD_ESCAPE.search(rest):
        return "a '%' that is not a percent-escape (%XX): write a '%' as %25"
    slash = rest.find("/")
    head, tail = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    if head.count("@") > 1:
        return "an '@' in its user or password: write it as %40"
    if "@" in head and "@" not in head.partition("?")[0]:  # libpq takes what precedes as a user
        return "an '@' in a query parameter (with no '/' before the '?'): write it as %40"
    path, _, query = tail.partition("?")
    if "@" in path:
        return "an '@' after its host, or a '/' in its user or password: write them as %40 and %2F"
    if any("=" not in param for param in query.split("&") if param):
        return "a query parameter without '=' (write an '&' in a value as %26)"
    if any(not _NAME.fullmatch(unquote(param.partition("=")[0]))
           for param in query.split("&") if param):
        return ("a query parameter whose name is not a name (a '/' or '?' in the user or "
                "password? write them as %2F and %3F)")
    host = head.rpartition("@")[2].partition("?")[0]
    if host.count("[") != host.count("]"):
        return "an unclosed '[' in its host"
    return None


def redact(url: str) -> str:
    """The URL (or key=value string) without its password, for messages; a URL libpq would
    misread (see `url_problem`) is shown as its scheme only."""
    if "://" not in url:
        return _KEY_PASSWORD.sub("password=***", url)
    scheme, _, rest = url.partition("://")
    if url_problem(url) is not None:
        return f"{scheme}://…"
    slash = rest.find("/")
    at = rest.find("@", 0, len(rest) if slash < 0 else slash)
    if at >= 0:  # (libpq's reading: the credentials end at the first '@' before any '/')
        rest = rest[:at].partition(":")[0] + rest[at:]
    base, mark, query = rest.partition("?")
    if mark:
        kept = [p for p in query.split("&") if unquote(p.partition("=")[0]).lower() != "password"]
        rest = base + (f"?{'&'.join(kept)}" if kept else "")
    return f"{scheme}://{rest}"


def passwords(location: str) -> list[str]:
    """The passwords a location holds, as written and as libpq reads them: text no output may
    contain (see `scrub`)."""
    found: list[str] = []
    if "://" not in location:
        found = [m.group(1).strip("'") for m in _KEY_PASSWORD.finditer(location)]
    else:
        rest = location.partition("://")[2]
        slash = rest.find("/")
        at = rest.find("@", 0, len(rest) if slash < 0 else slash)
        if at >= 0 and ":" in rest[:at]:
            found.append(rest[:at].partition(":")[2])
        query = rest.partition("?")[2]
        found += [p.partition("=")[2] for p in query.split("&")
                  if unquote(p.partition("=")[0]).lower() == "password"]
    found += [unquote(p) for p in found]
    return sorted({p for p in found if p}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret in it (three characters or more) replaced by `***`."""
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
