"""`/stream`: the live updates of the events and overview pages, as Server-Sent Events.

A stream takes the events page's filters and `after` (the position its page was drawn at; on a
reconnect the browser's `Last-Event-ID`). It first sends what matched since then (read from the
store), then every new matching event as the follower thread folds it (see `state.Viewer`), at
most one message per batch:

    id: <position folded through>
    event: batch
    data: {"rows": [<present.shown(row)>, ...], "skipped": N, "head": H, "summary": {...}|null}

No store call runs on the event loop: the backlog is read in a worker thread, and the new rows
come from the follower. A comment line every `KEEPALIVE` seconds keeps proxies from closing an
idle stream; when the server stops, every stream ends at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from domain.codec import StoredEvent
from store import EventFilter
from swarmlog.web import params, queries
from swarmlog.web.pages import known_types, viewer_of
from swarmlog.web.params import BadRequest
from swarmlog.web.present import shown
from swarmlog.web.state import MAX_BATCH, Batch, Viewer

KEEPALIVE = 15.0
#: A stream that starts (or resumes) further back than this many events asks for a reload.
BACKLOG = 10 * MAX_BATCH
_RELOAD = b"event: reload\ndata: {}\n\n"


def _message(rows: list[StoredEvent], skipped: int, head: int,
             summary: dict[str, object] | None) -> bytes:
    data = {"rows": [shown(r) for r in rows], "skipped": skipped, "head": head,
            "summary": summary}
    return (f"id: {head}\nevent: batch\ndata: ".encode()
            + orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS) + b"\n\n")


def _backlog(viewer: Viewer, where: EventFilter, after: int) -> list[StoredEvent] | None:
    """What matched after `after` and is folded already; None when that is too far back to
    send (the page had better reload)."""
    head = viewer.position
    if head - after > BACKLOG:
        return None
    return [r for r in viewer.store.read(after, head) if queries.matches(r, where)]


async def stream(request: Request) -> StreamingResponse:
    viewer = viewer_of(request)
    query = params.events_query(request.query_params,
                                await run_in_threadpool(known_types, viewer), datetime.now(UTC),
                                (*params.FILTERS, "after"))
    last_id = request.headers.get("last-event-id")
    after = params.integer(request.query_params, "after", 0)
    if last_id is not None:
        if not last_id.isascii() or not last_id.isdigit():
            raise BadRequest(f"Last-Event-ID is a position, not {last_id!r}")
        after = int(last_id)
    start = viewer.position if after is None else after
    sub = viewer.hub.subscribe()

    async def messages() -> AsyncIterator[bytes]:
        sent = start
        try:
            rows = await run_in_threadpool(_backlog, viewer, query.where, start)
            if rows is None:
                yield _RELOAD
                return
            if rows:
                sent = rows[-1].position
                yield _message(rows[-MAX_BATCH:], max(0, len(rows) - MAX_BATCH), sent, None)
            else:
                yield b": connected\n\n"
            while not viewer.stopping.is_set():
                try:
                    batch: Batch | None = await asyncio.wait_for(sub.queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if batch is None:
                    return
                if sub.lagged:  # it fell behind: the page should reload
                    yield _RELOAD
                    return
                fresh = [r for r in batch.rows if r.position > sent and
                         queries.matches(r, query.where)]
                sent = max(sent, batch.head)
                if fresh or batch.summary is not None:
                    yield _message(fresh, batch.skipped, sent, batch.summary)
        finally:
            viewer.hub.unsubscribe(sub)

    return StreamingResponse(messages(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})

