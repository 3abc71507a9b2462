"""What the web view holds while it runs: the log (read-only), its read models kept caught up by
one follower thread, the hub that hands new events to the live streams, and the verifier.

The read models are folded once at start-up (from the newest snapshot) and then only the new
events are folded, whoever asks first: the follower thread, woken by the store's
`wait_for_append` (polling on SQLite, LISTEN/NOTIFY on PostgreSQL), or a request that finds the
log ahead of them. Every row folded is published to the hub exactly once, in log order, because
one lock covers folding and publishing. Nothing here writes to the log: it is opened read-only,
and no snapshot is ever stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.codec import StoredEvent
from domain.errors import SwarmlogError
from projections.models import ReadModels
from projections.verify import VerifyReport
from swarmlog.log import EventLog
from swarmlog.web.queries import rate_per_minute

log = logging.getLogger("swarmlog.web")

#: How long the follower waits for an append before looking again (and at `stopping`).
WAIT_SECONDS = 0.25
#: A live stream is sent at most this many events of one batch (the newest); it is told how
#: many it missed, and the page offers a reload.
MAX_BATCH = 200
#: Batches a slow client may have queued before it is told it fell behind.
QUEUE_SIZE = 64
#: The live summary is recomputed at most this often (seconds).
SUMMARY_EVERY = 0.2


@dataclass(frozen=True, slots=True)
class Batch:
    """New events for the live streams: the newest of them, how many older ones were left out,
    the position folded through, and (now and then) the overview's live figures."""

    rows: list[StoredEvent]
    skipped: int
    head: int
    summary: dict[str, Any] | None = None


@dataclass(eq=False)
class Subscription:
    """One live stream's queue, on its event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Batch | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE))
    lagged: bool = False

    def offer(self, batch: Batch | None) -> None:
        """(On the subscription's loop.) Queue a batch; a full queue marks the stream lagged."""
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.lagged = True


class Hub:
    """Hands batches from the folding thread to every live stream's event loop."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def subscribe(self) -> Subscription:
        """A new stream's subscription (call on its event loop)."""
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(sub)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def publish(self, batch: Batch | None) -> None:
        """Offer a batch to every stream (None: the streams end); from any thread."""
        with self._lock:
            subs = list(self._subscriptions)
        for sub in subs:
            with contextlib.suppress(RuntimeError):  # its loop is closed: it is going away
                sub.loop.call_soon_threadsafe(sub.offer, batch)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self.closed.set()
        self.publish(None)


def verdict(report: VerifyReport) -> dict[str, Any]:
    """What the integrity page and `/api/status` show of a verify report. (Read by name with
    defaults: the report grows as the integrity checks do.)"""
    problems = [str(p) for p in report.problems]
    count = getattr(report, "finding_count", getattr(report, "problem_count", len(problems)))
    return {"ok": report.ok, "events": report.events, "streams": report.streams,
            "snapshots": report.snapshots, "archives": report.archives,
            "nonconforming": getattr(report, "nonconforming", 0),
            "unchecksummed": getattr(report, "unchecksummed", 0),
            "problem_count": count, "problems": problems, "notes": list(report.notes)}


class Verifier:
    """Runs `verify` over the log in a thread of its own, one run at a time, and keeps the last
    report: the integrity page shows it without waiting for a whole-log check."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.report: dict[str, Any] | None = None  # see `verdict`
        self.error: str | None = None
        self.head = 0  # the head when the last run started
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.seconds = 0.0

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Start a run unless one is running; True if this call started one."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self.started_at = datetime.now(UTC)
            self._thread = threading.Thread(target=self._run, name="swarmlog-web-verify",
                                            daemon=True)
            self._thread.start()
            return True

    def wait(self, seconds: float) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(seconds)

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            self.head = self._log.store.head()
            self.report, self.error = verdict(self._log.verify()), None
        except SwarmlogError as e:
            self.error = str(e)
        except Exception as e:  # reported on the page; the server goes on
            log.exception("verify failed")
            self.error = f"{type(e).__name__}: {e}"
        self.seconds = time.perf_counter() - started
        self.finished_at = datetime.now(UTC)


class Viewer:
    """The log as the web view sees it: read-only, its read models caught up, live."""

    def __init__(self, log: EventLog,
                 live_summary: Callable[[ReadModels], dict[str, Any]] | None = None) -> None:
        self.log = log
        self.store = log.store
        self.hub = Hub()
        self.verifier = Verifier(log)
        self.stopping = threading.Event()
        self._live_summary = live_summary
        self._catching = threading.Lock()
        self._summary_at = 0.0
        self._summary_due = False
        self._follower: threading.Thread | None = None

    # -- read models ----------------------------------------------------------------------

    def start(self) -> None:
        """Fold the read models from their snapshots, then follow the log in a thread."""
        self.log.start()
        self._follower = threading.Thread(target=self._follow, name="swarmlog-web-follow",
                                          daemon=True)
        self._follower.start()

    @property
    def position(self) -> int:
        """The position the read models are folded through."""
        return self.log.runner.position

    def catch_up(self) -> None:
        """Fold what was appended since, and publish it to the live streams."""
        rows: list[StoredEvent] = []
        with self._catching:
            before = self.position
            self.log.runner.catch_up(on_event=rows.append)
            if rows or self._summary_due or self.position != before:
                # (Events a prune deleted before they were folded are not seen one by one: the
                # read models restart from its snapshot; the streams hear they were skipped.)
                self._publish(rows, self.position - before)

    def rate(self) -> float:
        """The log's recent rate, events a minute (see `queries.rate_per_minute`)."""
        with self.models() as models:
            return rate_per_minute(models.summary)

    @contextlib.contextmanager
    def models(self) -> Iterator[ReadModels]:
        """The read models, caught up, under the runner's lock: copy out what is needed."""
        self.catch_up()
        with self.log.runner.lock:
            yield self.log.runner.state("read_models")

    def _publish(self, rows: list[StoredEvent], folded: int) -> None:
        summary = None
        if self._live_summary is not None and self.hub.listeners:
            if time.monotonic() - self._summary_at >= SUMMARY_EVERY:
                with self.log.runner.lock:
                    summary = self._live_summary(self.log.runner.state("read_models"))
                self._summary_at = time.monotonic()
                self._summary_due = False
            else:
                self._summary_due = True  # sent by the follower's next round
        kept = rows[-MAX_BATCH:]
        self.hub.publish(Batch(kept, max(folded, len(rows)) - len(kept), self.position, summary))

    def _follow(self) -> None:
        while not self.stopping.is_set():
            try:
                self.catch_up()
                self.store.wait_for_append(self.position, WAIT_SECONDS)
            except SwarmlogError as e:  # e.g. the server went away: try again shortly
                log.warning("following %s: %s", self.log.location, e)
                self.stopping.wait(1.0)
            except Exception:
                log.exception("following %s failed; trying again", self.log.location)
                self.stopping.wait(1.0)

    # -- lifetime -------------------------------------------------------------------------

    def closing(self) -> None:
        """The server is going down: end the live streams now (safe from a signal handler)."""
        self.stopping.set()
        self.hub.close()

    def stop(self) -> None:
        """End the streams, stop the follower (it wakes within `WAIT_SECONDS`), wait for it."""
        self.closing()
        if self._follower is not None:
            self._follower.join(timeout=5)
        self.verifier.wait(5)
