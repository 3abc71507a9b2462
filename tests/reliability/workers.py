"""Processes the reliability tests start, kill and watch: `python -m tests.reliability.workers
KIND LOCATION [ARGS]`.

- `append LOCATION NAME`: append batches forever; every event says its batch and its size.
- `snapshot LOCATION NAME`: append and snapshot in turn, forever.
- `tail LOCATION OUT SECONDS`: tail the log for SECONDS (and until the writers stop) and write
  every position and id seen.
- `write LOCATION NAME SECONDS`: append small batches for SECONDS; write how many and any error.
- `singles LOCATION NAME SECONDS OUT`: append single events and small batches (some to the
  shared `system` stream) for SECONDS; write the position each append returned for each id.
"""

from __future__ import annotations

import json
import random
import sys
import time

from domain.codec import StoredEvent, encode
from domain.errors import SwarmlogError
from domain.events import BidSubmitted, SystemInfoLogged
from store import open_store
from swarmlog.log import EventLog


def batch(name: str, number: int, size: int) -> list[StoredEvent]:
    """Batch `number` of `name`, encoded for `Store.append`: each event says its batch and size.
    (Encoded here, not with `tests.strategies.rows`: importing hypothesis would double the
    start-up that the kill tests wait out.)"""
    return [encode(BidSubmitted(source=name, task_id=f"{name}-t{(number + i) % 13}",
                                agent_id=f"a{i % 5}", data={"bid_sats": i, "batch": number,
                                                            "size": size}))
            for i in range(size)]


def append_forever(location: str, name: str) -> None:
    store = open_store(location)
    rng = random.Random(name)
    number = 0
    while True:
        number += 1
        store.append(batch(name, number, rng.randint(1, 60)))
        time.sleep(0.002)  # a swarm's pace, not a benchmark's: keeps the checks after a kill quick


def snapshot_forever(location: str, name: str) -> None:
    log = EventLog(location)
    number = 0
    while True:
        number += 1
        log.store.append(batch(name, number, 200))
        log.snapshot()


def tail(location: str, out: str, seconds: float) -> None:
    store = open_store(location)
    seen: list[tuple[int, str]] = []
    after, deadline = 0, time.monotonic() + seconds
    while True:
        for recorded in store.read(after=after):
            seen.append((recorded.position, recorded.id))
            after = recorded.position
        # Past SECONDS, read on until the writers (started after this reader, and perhaps slowed
        # by a busy machine) have been quiet for two seconds.
        late = time.monotonic() >= deadline
        if not store.wait_for_append(after, 2.0 if late else 0.2) and late:
            break
    with open(out, "w") as f:
        json.dump(seen, f)


def write(location: str, name: str, seconds: float, out: str) -> None:
    store = open_store(location)
    appended, errors, number = 0, [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        number += 1
        try:
            appended += len(store.append(batch(name, number, 1 + number % 20)))
        except SwarmlogError as e:  # must not happen within the busy timeout
            errors.append(str(e))
    with open(out, "w") as f:
        json.dump({"appended": appended, "errors": errors}, f)


def singles(location: str, name: str, seconds: float, out: str) -> None:
    store = open_store(location)
    rng = random.Random(name)
    positions: dict[str, int] = {}
    errors, number = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        number += 1
        rows = (batch(name, number, 1) if number % 3 else batch(name, number, rng.randint(2, 5)))
        if number % 10 == 0:  # a stream every writer appends to
            rows.append(encode(SystemInfoLogged(source=name, data={"message": f"{number}",
                                                                   "batch": number})))
        try:
            positions.update(zip((r.id for r in rows), store.append(rows), strict=True))
        except SwarmlogError as e:  # must not happen
            errors.append(str(e))
    store.close()
    with open(out, "w") as f:
        json.dump({"positions": positions, "errors": errors}, f)


if __name__ == "__main__":
    kind, location, *rest = sys.argv[1:]
    if kind == "append":
        append_forever(location, rest[0])
    elif kind == "snapshot":
        snapshot_forever(location, rest[0])
    elif kind == "tail":
        tail(location, rest[0], float(rest[1]))
    elif kind == "write":
        write(location, rest[0], float(rest[1]), rest[2])
    elif kind == "singles":
        singles(location, rest[0], float(rest[1]), rest[2])
