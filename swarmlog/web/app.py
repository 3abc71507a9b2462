"""The Starlette application: routes, templates, errors, and the lifetime of the `Viewer`."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from swarmlog.log import EventLog
from swarmlog.web import api, live, overview, pages
from swarmlog.web.params import BadRequest
from swarmlog.web.present import BAD_TYPES, category, describe, preview, when
from swarmlog.web.security import Guard
from swarmlog.web.state import Viewer

HERE = Path(__file__).resolve().parent


def _version() -> str:
    try:
        return version("swarmlog")
    except PackageNotFoundError:
        return "0+unknown"


def _static_versions() -> dict[str, str]:
    """A content hash per static file, so that its address changes when it does."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10]
            for p in (HERE / "static").iterdir() if p.is_file()}


def templates(location: str) -> Jinja2Templates:
    """The page templates: autoescaped (every value from the log is text), undefined names an
    error rather than an empty string."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    hashes = _static_versions()
    env.globals.update(
        category=category, when=when, preview=preview, describe=describe, bad_types=BAD_TYPES,
        version=_version(), location=location,
        location_short=location if len(location) <= 48 else "…" + location[-47:],
        static=lambda name: f"/static/{name}?v={hashes.get(name, '')}")
    env.filters["quote"] = lambda text: quote(str(text), safe="")
    return Jinja2Templates(env=env)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/stream"))


def _error(request: Request, status: int, title: str, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    try:
        return pages.render_page(request, "error.html", "", status, status=status, title=title,
                                 message=message)
    except Exception:  # the error page itself failed (the log is gone?): plain text
        return Response(f"{status} {title}: {message}", status_code=status,
                        media_type="text/plain")


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return await run_in_threadpool(_error, request, 400, "bad request", exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "error")
    return await run_in_threadpool(_error, request, exc.status_code, title, str(exc.detail))


def routes() -> list[Route | Mount]:
    return [
        Route("/", pages.overview_page, name="overview"),
        Route("/events", pages.events_page, name="events"),
        Route("/events/{position}", pages.event_page, name="event"),
        Route("/task", pages.task_jump, name="task_jump"),
        Route("/tasks/{task_id:path}", pages.task_page, name="task"),
        Route("/agents", pages.agents_page, name="agents"),
        Route("/integrity", pages.integrity_page, name="integrity"),
        Route("/integrity/verify", pages.verify_again, methods=["POST"], name="verify"),
        Route("/stream", live.stream, name="stream"),
        Route("/api/events", api.api_events),
        Route("/api/events/{position}", api.api_event),
        Route("/api/tasks/{task_id:path}", api.api_task),
        Route("/api/agents", api.api_agents),
        Route("/api/summary", api.api_summary),
        Route("/api/status", api.api_status),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def create_app(log: EventLog | str | os.PathLike[str], *, token: str | None = None,
               close_log: bool | None = None) -> Starlette:
    """The web view of a log: an `EventLog` (opened read-only by the caller), or a path or URL
    to open read-only. With `token`, every request must show it (see `security`). The read
    models are folded and the follower started when the application starts (its lifespan), and
    stopped when it stops; a log opened here is closed then (`close_log` says otherwise)."""
    if not isinstance(log, EventLog):
        log = EventLog(log, read_only=True)
        close_log = True if close_log is None else close_log
    opened: EventLog = log
    viewer = Viewer(opened, live_summary=overview.figures)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(viewer.start)
        try:
            yield
        finally:
            await run_in_threadpool(viewer.stop)
            if close_log:
                opened.close()

    app = Starlette(routes=routes(), lifespan=lifespan,
                    middleware=[Middleware(Guard, token=token)],
                    exception_handlers={BadRequest: _bad_request, HTTPException: _http_error})
    app.state.viewer = viewer
    app.state.templates = templates(opened.location)
    return app


def viewer_of(app: Any) -> Viewer:
    """The `Viewer` of an application `create_app` made."""
    viewer: Viewer = app.state.viewer
    return viewer
