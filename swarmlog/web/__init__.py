"""`swarmlog serve`: a live, read-only web view of a log (Starlette, Jinja2, Server-Sent Events).

Pages: the overview (`/`), events (`/events`, one event at `/events/<position>`), a task
(`/tasks/<id>`), the agents (`/agents`) and the log's integrity (`/integrity`); live updates at
`/stream`; a JSON API at `/api/...` in the shapes of the CLI's `--json`. See `app.create_app`.
"""

from swarmlog.web.app import create_app, viewer_of

__all__ = ["create_app", "viewer_of"]
