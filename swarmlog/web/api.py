"""The JSON API behind the pages, in the shapes of the CLI's --json (`swarmlog.render` rows):

- `/api/events`: a list of `event_row`s, newest first, filtered and paged as the events page
  is; the next (older) page is in the `Link` header (rel="next"), the newer one rel="prev";
- `/api/events/{position}`: one `event_row`;
- `/api/tasks/{id}`: `{"task": task_row, "timeline": [event_row, ...]}` (`swarmlog task --json`);
- `/api/agents`: the roster, `agent_row`s by id (`swarmlog agents --json`; `?online=1`);
- `/api/summary`: the counts of `swarmlog summary --json` (`?minutes=` the recent window);
- `/api/status`: `swarmlog status --json`, and the last verify run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from projections.agents import all_agents, online_agents
from projections.models import counts
from swarmlog import render
from swarmlog.web import params
from swarmlog.web.pages import event_at, listing, position_of, task_named, viewer_of
from swarmlog.web.params import BadRequest


class JSON(Response):
    """JSON as the CLI prints it (`render.dumps`: datetimes as ISO-8601, enums as values)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return render.dumps(content).encode()


def api_events(request: Request) -> JSON:
    _, _, page = listing(request)
    kept = [(k, v) for k, v in request.query_params.multi_items()
            if k not in ("before", "after", "token")]
    links = []
    if page.older is not None:
        links.append(f'</api/events?{urlencode([*kept, ("before", page.older)])}>; rel="next"')
    if page.newer is not None:
        links.append(f'</api/events?{urlencode([*kept, ("after", page.newer)])}>; rel="prev"')
    headers = {"link": ", ".join(links)} if links else None
    return JSON([render.event_row(r) for r in page.rows], headers=headers)


def api_event(request: Request) -> JSON:
    params.check_names(request.query_params, ())
    return JSON(render.event_row(event_at(viewer_of(request), position_of(request))))


def api_task(request: Request) -> JSON:
    viewer, task_id, view = task_named(request)
    timeline = [render.event_row(r) for r in viewer.log.events_of_task(task_id)]
    return JSON({"task": render.task_row(view), "timeline": timeline})


def _flag(request: Request, name: str) -> bool:
    value = params.one(request.query_params, name)
    if value is None or value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise BadRequest(f"{name!r} is 1 or 0 (true or false), not {value!r}")


def api_agents(request: Request) -> JSON:
    params.check_names(request.query_params, ("online",))
    online = _flag(request, "online")
    with viewer_of(request).models() as models:
        views = online_agents(models.agents) if online else all_agents(models.agents)
    return JSON([render.agent_row(v) for v in sorted(views, key=lambda v: v.agent_id)])


def api_summary(request: Request) -> JSON:
    params.check_names(request.query_params, ("minutes",))
    text = params.one(request.query_params, "minutes")
    try:
        minutes = 60.0 if text is None else float(text)
    except ValueError:
        minutes = -1.0
    if not 0 < minutes <= 10**7:
        raise BadRequest(f"'minutes' is a number of minutes above 0, not {text!r}")
    viewer = viewer_of(request)
    with viewer.models() as models:
        data = counts(models)
    data["window_minutes"] = minutes  # as `swarmlog summary --json` has it
    now = datetime.now(UTC)
    data["last_window"] = viewer.store.count_by_type(now - timedelta(minutes=minutes), now)
    return JSON(data)


def api_status(request: Request) -> JSON:
    params.check_names(request.query_params, ())
    viewer = viewer_of(request)
    viewer.catch_up()
    data = viewer.log.status()
    verifier = viewer.verifier
    report = verifier.report
    data["verify"] = None if report is None else {
        **report, "head": verifier.head, "finished_at": verifier.finished_at}
    data["verify_running"] = verifier.running
    return JSON(data)
