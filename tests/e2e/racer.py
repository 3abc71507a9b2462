"""A racing coordinator for the concurrency tests:
`python -m tests.e2e.racer DB TASK_ID NAME BARRIER_DIR`.

Decides `close_bidding(TASK_ID)` against the current read models, waits until every racer has
decided (a file per racer in BARRIER_DIR; two racers), then commits. Prints `won NAME` or
`ConcurrencyError NAME`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from domain.errors import ConcurrencyError
from domain.ids import utc_now
from swarm.commands import CloseBidding
from swarm.coordinator import Coordinator
from swarm.log import EventLog

RACERS = 2


def main() -> None:
    db, task_id, name, barrier = sys.argv[1:5]
    with EventLog(db) as log:
        coordinator = Coordinator(log, source=name)
        decision = coordinator.prepare(CloseBidding(task_id=task_id, at=utc_now(), source=name))
        Path(barrier, name).touch()
        deadline = time.monotonic() + 30
        while len(list(Path(barrier).iterdir())) < RACERS:
            if time.monotonic() > deadline:
                sys.exit(f"{name}: the other racer never decided")
            time.sleep(0.002)
        try:
            coordinator.commit(decision)
        except ConcurrencyError:
            print(f"ConcurrencyError {name}")
        else:
            print(f"won {name}")


if __name__ == "__main__":
    main()
