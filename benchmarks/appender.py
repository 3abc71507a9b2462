"""Single-event appends from another process, as another coordinator makes them while this one
prunes: `python -m benchmarks.appender DB`. It opens the log, prints "ready", then appends one
event every 5 ms until its standard input closes, and prints the latency of each append
(seconds) as one JSON list."""

from __future__ import annotations

import sys
import threading
import time

import orjson

from domain.codec import build_event
from swarmlog.log import EventLog

PAUSE = 0.005


def main(path: str) -> None:
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    latencies: list[float] = []
    with EventLog(path) as log:
        log.append(build_event("system.info", "appender", None, None, {"message": "warm"}))
        print("ready", flush=True)
        while not done.is_set():
            event = build_event("system.info", "appender", None, None,
                                {"message": f"append {len(latencies)}"})
            started = time.perf_counter()
            log.append(event)
            latencies.append(time.perf_counter() - started)
            time.sleep(PAUSE)
    sys.stdout.write(orjson.dumps(latencies).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
