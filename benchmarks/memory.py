"""Fold memory, measured in a fresh process: `python -m benchmarks.memory DB [rebuild|start]`.

Prints one JSON object: the resident set size before the fold (imports done, log open read-only),
the peak during it (the kernel's high-water mark `VmHWM`, reset just before; not `ru_maxrss`,
which survives exec and so starts at the forking parent's size) and the size after it with the
read models still held. `rebuild` refolds the whole log; `start` is a start-up without snapshots
(the same fold, through the runner's catch-up path). A fold whose memory is bounded by what is
open peaks alike on a log ten times longer with as many tasks open.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from typing import Any

import orjson
import psutil


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


class _Sampler(threading.Thread):
    """Where the high-water mark cannot be reset: sample the RSS every few milliseconds."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_mb()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.002):
            self.peak = max(self.peak, _rss_mb())


def measure(path: str, fold: str = "rebuild") -> dict[str, Any]:
    from swarmlog.log import EventLog

    log = EventLog(path, read_only=True)
    log.store.head()  # the connection and its caches are warm before the baseline
    gc.collect()
    before = _rss_mb()
    sampler = None if _reset_peak() else _Sampler()
    if sampler is not None:
        sampler.start()
    started = time.perf_counter()
    read = log.rebuild() if fold == "rebuild" else log.start()
    seconds = time.perf_counter() - started
    if sampler is None:
        peak = _peak_mb()
    else:
        sampler.done.set()
        sampler.join()
        peak = sampler.peak
    gc.collect()
    after = _rss_mb()
    held = [log.runner.state(p.name) for p in log.projections]  # the read models stay alive
    result = {
        "events": read,
        "seconds": seconds,
        "rss_before_mb": before,
        "peak_method": "VmHWM" if sampler is None else "sampled",
        "peak_mb": peak,
        "rss_after_mb": after,
        "peak_growth_mb": peak - before,
        "kept_growth_mb": after - before,
    }
    del held
    log.close()
    return result


if __name__ == "__main__":
    sys.stdout.write(orjson.dumps(measure(*sys.argv[1:3])).decode() + "\n")
