"""What every response carries and every request must show.

Headers: a Content-Security-Policy that allows only the view's own script, style and
connections (no inline script, no inline style, nothing from elsewhere, no framing), no MIME
sniffing, no referrer, no caching of the log's contents; and `Server-Timing: app;dur=<ms>`, the
time the server took to produce the response (the benchmark reads it).

The token, when the view has one, is checked on every request, the live stream and the API
included. It is accepted as `Authorization: Bearer <token>`, as `?token=<token>` (a page opened
that way sets an HttpOnly, SameSite=Strict cookie and is redirected to the same address without
it, so that the browser's later requests, the live stream's included, carry the cookie), or as
that cookie. A form POST must come from the view's own origin.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
COOKIE = "swarmlog_token"
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


class Guard:
    """ASGI middleware: the security headers and the server time on every HTTP response, and
    the token (if any) on every HTTP request."""

    def __init__(self, app: ASGIApp, token: str | None = None) -> None:
        self.app = app
        self.token = token
        self._cookie = None if token is None else _digest(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [h for h in HEADERS if h[0] not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                took = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={took:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await self._respond(scope, send_with_headers, *refusal)
            return
        if self.token is not None and self._by_query(scope) and scope["method"] == "GET" \
                and not scope["path"].startswith(("/api/", "/stream")):
            # Remember the token in a cookie, and take it out of the address bar and history.
            query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode(),
                                                  keep_blank_values=True) if k != "token"]
            target = scope["path"] + (f"?{urlencode(query)}" if query else "")
            secure = "; Secure" if scope.get("scheme") == "https" else ""
            cookie = f"{COOKIE}={self._cookie}; Path=/; HttpOnly; SameSite=Strict{secure}"
            await self._respond(scope, send_with_headers, 303, "text/plain", b"",
                                [(b"location", target.encode()), (b"set-cookie", cookie.encode())])
            return
        await self.app(scope, receive, send_with_headers)

    def _by_query(self, scope: Scope) -> bool:
        assert self.token is not None
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if key == "token" and hmac.compare_digest(value.encode(), self.token.encode()):
                return True
        return False

    def _allowed(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        given = _header(scope, b"authorization")
        if given is not None and given.lower().startswith("bearer ") and hmac.compare_digest(
                given[7:].strip().encode(), self.token.encode()):
            return True
        cookies = _header(scope, b"cookie")
        if cookies:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(cookies)
            except Exception:  # a malformed Cookie header: as if there were none
                jar = SimpleCookie()
            morsel = jar.get(COOKIE)
            if morsel is not None and self._cookie is not None and hmac.compare_digest(
                    morsel.value.encode(), self._cookie.encode()):
                return True
        return self._by_query(scope)

    def _refusal(self, scope: Scope) -> tuple[int, str, bytes, list[tuple[bytes, bytes]]] | None:
        if not self._allowed(scope):
            page = not scope["path"].startswith(("/api/", "/stream"))
            text = ("this swarmlog view needs its token: open it as /?token=<token>, or send "
                    "'Authorization: Bearer <token>'")
            if page:
                return 401, "text/html; charset=utf-8", (
                    "<!doctype html><title>swarmlog: token needed</title>"
                    f"<h1>Token needed</h1><p>{text.replace('<', '&lt;').replace('>', '&gt;')}</p>"
                ).encode(), [(b"www-authenticate", b"Bearer")]
            return 401, "application/json", f'{{"error": "{text}"}}'.encode(), [
                (b"www-authenticate", b"Bearer")]
        if scope["method"] not in ("GET", "HEAD"):
            origin = _header(scope, b"origin")
            host = _header(scope, b"host")
            if origin is not None and origin.split("://", 1)[-1] != host:
                return 403, "text/plain", b"cross-origin form refused", []
        return None

    @staticmethod
    async def _respond(scope: Scope, send: Send, status: int, media: str, body: bytes,
                       extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
        headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode()),
                   *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
