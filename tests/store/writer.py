"""A writer process for the store tests: `python -m tests.store.writer LOCATION NAME BATCHES SIZE`.

Appends BATCHES batches of SIZE events for task ids `<NAME>-<i>` and prints nothing."""

from __future__ import annotations

import sys

from domain.events import BidSubmitted
from swarm.log import open_store


def main() -> None:
    location, name, batches, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = open_store(location)
    for b in range(batches):
        store.append([
            BidSubmitted(source=name, task_id=f"{name}-{i % 7}", agent_id=name,
                         data={"bid_sats": b * size + i})
            for i in range(size)
        ])
    store.close()


if __name__ == "__main__":
    main()
