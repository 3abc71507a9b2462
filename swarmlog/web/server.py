"""Running the view under uvicorn, so that it stops cleanly: on Ctrl-C (or SIGTERM) the live
streams end at once (uvicorn waits for open responses before it runs the application's
shutdown), then the follower thread stops and the log is closed."""

from __future__ import annotations

import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette

from swarmlog.web.app import viewer_of


class Server(uvicorn.Server):
    """A uvicorn server that ends the view's live streams as soon as it is asked to stop."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 8000,
                 **options: Any) -> None:
        self.viewer = viewer_of(app)
        options.setdefault("log_level", "warning")
        options.setdefault("timeout_graceful_shutdown", 3)
        super().__init__(uvicorn.Config(app, host=host, port=port, lifespan="on", **options))

    def handle_exit(self, sig: int, frame: Any) -> None:
        # (From a signal handler: the streams are ended from a thread of their own.)
        threading.Thread(target=self.viewer.closing, daemon=True).start()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Stop from another thread (as a signal would)."""
        self.viewer.closing()
        self.should_exit = True
