"""A writer process for the store tests: `python -m tests.store.writer LOCATION NAME BATCHES SIZE`.

Appends BATCHES batches of SIZE bids (source NAME, agent NAME, task ids `<NAME>-<i % 7>`, bid_sats
counting from 0 in append order) and prints nothing."""

from __future__ import annotations

import sys

from domain.events import EventType
from store import open_store
from tests.strategies import ev, rows


def main() -> None:
    location, name, batches, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = open_store(location)
    try:
        for b in range(batches):
            store.append(rows(*(ev(EventType.BID_SUBMITTED, f"{name}-{i % 7}", name, source=name,
                                   bid_sats=b * size + i) for i in range(size))))
    finally:
        store.close()


if __name__ == "__main__":
    main()
