"""The pages: overview, events (and one event), task, agents, integrity. Each handler reads what
it needs (the read models under their lock, keyset pages from the store), then renders a
Jinja2 template, autoescaped: every value from the log is text to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from domain.codec import StoredEvent
from domain.events import EventType
from projections.agents import all_agents
from projections.tasks import get_task
from store import EventFilter, first_stored
from swarmlog import render
from swarmlog.web import overview, params, queries
from swarmlog.web.params import BadRequest
from swarmlog.web.present import payload
from swarmlog.web.state import Viewer
from swarmlog.web.timeline import build

#: A task page lists this many of its events (then links to the events page for the rest).
TASK_EVENTS = 500
ACTIVITY = 20


def viewer_of(request: Request) -> Viewer:
    viewer: Viewer = request.app.state.viewer
    return viewer


def render_page(request: Request, template: str, nav: str, code: int = 200, /,
                **context: Any) -> Response:
    """`template` rendered with `context`; `nav` names the page's place in the navigation."""
    viewer = viewer_of(request)
    response: Response = request.app.state.templates.TemplateResponse(
        request, template, {"nav": nav, "head": viewer.position, **context}, status_code=code)
    return response


def _now() -> datetime:
    return datetime.now(UTC)


def _stream_url(where: dict[str, Any], after: int) -> str:
    return "/stream?" + urlencode([*where.items(), ("after", after)], doseq=True)


# -- overview -----------------------------------------------------------------------------------


def overview_page(request: Request) -> Response:
    params.check_names(request.query_params, ())
    viewer = viewer_of(request)
    now = _now()
    with viewer.models() as models:
        figures = overview.figures(models)
        chart = overview.chart(models, now)
        head = viewer.position
    by_agent, latest, read = overview.failures(viewer, now)
    activity = list(viewer.store.query(before=head + 1, limit=ACTIVITY, newest_first=True))
    return render_page(request, "overview.html", "overview", f=figures, chart=chart,
                       by_agent=by_agent, latest_failures=latest, failures_read=read,
                       activity=activity, stream=_stream_url({}, head))


# -- events -------------------------------------------------------------------------------------


def known_types(viewer: Viewer) -> list[str]:
    """Every type the view offers: the catalogue's, and any other the log holds."""
    with viewer.models() as models:
        return sorted({t.value for t in EventType} | set(models.summary.by_type))


def listing(request: Request) -> tuple[Viewer, params.EventsQuery, queries.Page]:
    viewer = viewer_of(request)
    now = _now()
    query = params.events_query(request.query_params, known_types(viewer), now)
    page = queries.events(viewer.store, query.where, limit=query.limit, before=query.before,
                          after=query.after, rate=viewer.rate, now=now)
    return viewer, query, page


def events_page(request: Request) -> Response:
    viewer, query, page = listing(request)
    head = viewer.position
    given = {"type": list(query.types), **query.form}
    if query.limit != params.DEFAULT_LIMIT:
        given["limit"] = str(query.limit)

    def link(**change: Any) -> str:
        merged = {**given, "before": query.before, "after": query.after, **change}
        for key, value in change.items():
            if key == "type":  # a card toggles its type on its own
                merged["type"] = [] if value in query.types and len(query.types) == 1 else [value]
        pairs = [(k, v) for k, v in merged.items() if v not in (None, "", [])]
        return "/events" + (f"?{urlencode(pairs, doseq=True)}" if pairs else "")

    chips = []
    for kind in query.types:
        rest = [t for t in query.types if t != kind]
        chips.append((f"type {kind}", _without(given, "type", rest)))
    for key in ("task", "agent", "source", "since", "until"):
        if key in query.form:
            chips.append((f"{key} {query.form[key]}", _without(given, key, None)))
    now = _now()
    last_hour = sorted(viewer.store.count_by_type(now - timedelta(hours=1), now).items(),
                       key=lambda kv: (-kv[1], kv[0]))
    live = query.before is None and query.after is None
    where = {k: v for k, v in given.items() if k != "limit"}
    return render_page(request, "events.html", "events", q=query, page=page, link=link,
                       chips=chips, types=known_types(viewer), last_hour=last_hour, live=live,
                       stream=_stream_url(where, head))


def _without(given: dict[str, Any], key: str, rest: list[str] | None) -> str:
    kept = {**given, key: rest}
    pairs = [(k, v) for k, v in kept.items() if v not in (None, "", [])]
    return "/events" + (f"?{urlencode(pairs, doseq=True)}" if pairs else "")


def position_of(request: Request) -> int:
    text = request.path_params["position"]
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise BadRequest(f"an event's position is a whole number, not {text!r}")
    return int(text)


def event_at(viewer: Viewer, position: int) -> StoredEvent:
    """The stored event at a position, or a 404."""
    row = next(viewer.store.query(after=position - 1, limit=1), None) if position > 0 else None
    if row is None or row.position != position:
        raise HTTPException(404, f"no event at position {position} (pruned, or not appended yet)")
    return row


def event_page(request: Request) -> Response:
    params.check_names(request.query_params, ())
    row = event_at(viewer_of(request), position_of(request))
    data = render.event_row(row)["data"]
    pretty = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if data is not None \
        else (row.data or "(no data)")
    return render_page(request, "event.html", "events", row=row, pretty=pretty)


# -- task ---------------------------------------------------------------------------------------


def task_jump(request: Request) -> Response:
    params.check_names(request.query_params, ("id",))
    task_id = params.one(request.query_params, "id")
    if task_id is None:
        raise BadRequest("give the task's id: /task?id=<task id>")
    return RedirectResponse(f"/tasks/{quote(task_id.strip(), safe='')}", status_code=303)


def task_named(request: Request) -> tuple[Viewer, str, Any]:
    """The viewer, the task id in the path and its view from the read model (404 if none)."""
    params.check_names(request.query_params, ())
    viewer = viewer_of(request)
    task_id = params.text("task id", request.path_params["task_id"])
    with viewer.models() as models:
        view = get_task(models.tasks, task_id)
    if view is None:
        raise HTTPException(404, f"no task {task_id!r} in this log")
    return viewer, task_id, view


def task_page(request: Request) -> Response:
    viewer, task_id, view = task_named(request)
    rows = list(viewer.store.query(EventFilter(task_id=task_id), limit=TASK_EVENTS + 1))
    more = len(rows) > TASK_EVENTS
    rows = rows[:TASK_EVENTS]
    tool_errors = []
    for row in rows:
        if row.event_type == "tool.failed":
            data = payload(row)
            if isinstance(data, dict):
                tool_errors.append((str(data.get("tool") or "tool"),
                                    str(data.get("error") or "no error given")))
    first = first_stored(viewer.store)
    pruned = first if (first > 1 and (not rows or rows[0].event_type != "task.created")) else None
    state = render.task_row(view)
    duration = state["duration_seconds"]
    return render_page(
        request, "task.html", "task", t=state | {"anomalies": view.anomalies},
        bids=sorted(view.bids.items(), key=lambda kv: (kv[1], kv[0])),
        line=build(view, rows, _now()), rows=rows, more=more, tool_errors=tool_errors,
        duration="—" if duration is None else f"{duration:.1f} s", pruned_before=pruned)


# -- agents -------------------------------------------------------------------------------------

_COLUMNS = (("agent", "agent", False), ("presence", "presence", False),
            ("current_task", "current task", False), ("tasks_won", "won", True),
            ("tasks_completed", "completed", True), ("tasks_failed", "failed", True),
            ("sats_earned", "sats earned", True), ("tool_calls", "tool calls", True),
            ("tool_failures", "tool failures", True), ("failed_last_hour", "failed, last hour", True),
            ("capabilities", "capabilities", False))
_SORTS = {key for key, _, _ in _COLUMNS} - {"capabilities"}


def agents_page(request: Request) -> Response:
    params.check_names(request.query_params, ("sort",))
    sort = params.one(request.query_params, "sort") or "agent"
    if sort not in _SORTS:
        raise BadRequest(f"cannot sort by {sort!r}; by one of: {', '.join(sorted(_SORTS))}")
    viewer = viewer_of(request)
    with viewer.models() as models:
        rows = [render.agent_row(a) for a in all_agents(models.agents)]
    by_agent, _, _ = overview.failures(viewer, _now())
    failing = {f.agent_id: f.total for f in by_agent}
    for row in rows:
        row["failed_last_hour"] = failing.get(row["agent_id"], 0)
    rows.sort(key=lambda r: r["agent_id"])
    if sort == "presence":
        rows.sort(key=lambda r: r["presence"] != "online")
    elif sort == "current_task":
        rows.sort(key=lambda r: r["current_task"] is None)
    elif sort != "agent":
        rows.sort(key=lambda r: -r[sort])
    for row in rows:  # what the template shows, ready: a roster can be long
        row.update(
            quoted=quote(row["agent_id"], safe=""),
            task_quoted=quote(row["current_task"] or "", safe=""),
            row_class="online" if row["presence"] == "online" else "offline",
            presence_class=row["presence"].replace(" ", "-"),
            failed_class=" badtext" if row["tasks_failed"] else "",
            tool_class=" badtext" if row["tool_failures"] else "",
            hour_class=" badtext" if row["failed_last_hour"] else "",
            caps=", ".join(row["capabilities"]))
    online = sum(1 for r in rows if r["presence"] == "online")
    return render_page(request, "agents.html", "agents", agents=rows, online=online,
                       columns=_COLUMNS, sort=sort)


# -- integrity ----------------------------------------------------------------------------------


def integrity_page(request: Request) -> Response:
    params.check_names(request.query_params, ())
    viewer = viewer_of(request)
    verifier = viewer.verifier
    if verifier.started_at is None:
        verifier.start()
        verifier.wait(0.05)  # a small log is checked before the page is drawn
    viewer.catch_up()
    status = viewer.log.status()
    size = status["size_bytes"]
    shown = "—" if size is None else f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size} bytes"
    # Whether it runs, then its report, in that order: a run that ends meanwhile has left its
    # report (or its error) before it stopped running, so the page never shows neither.
    running = verifier.running
    return render_page(request, "integrity.html", "integrity", status=status, size=shown,
                       verifier=verifier, running=running, report=verifier.report,
                       error=verifier.error)


def verify_again(request: Request) -> Response:
    viewer_of(request).verifier.start()
    return RedirectResponse("/integrity", status_code=303)
