"""Archive segments: written whole or not at all, hashed as written, read back as typed events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.codec import build_event
from domain.errors import StoreError
from domain.events import EventType
from store.archive import read_segment, segment_name, sha256_of, to_line, write_segment
from store.base import Recorded


def records(n: int) -> list[Recorded]:
    events = [build_event(EventType.BID_SUBMITTED, "x", f"t{i % 7}", "a", {"bid_sats": i})
              for i in range(n)]
    return [Recorded(i + 1, e.stream_id, i // 7 + 1, e) for i, e in enumerate(events)]


def test_a_segment_reads_back_as_written_and_its_hash_is_the_files(tmp_path: Path) -> None:
    written = records(2500)  # more than one chunk of the writer thread
    path, digest = write_segment(tmp_path, 1, 2500, (to_line(r) for r in written))
    assert Path(path).name == segment_name(1, 2500) and digest == sha256_of(path)
    assert list(read_segment(path, digest)) == written
    assert [p.name for p in tmp_path.iterdir()] == [segment_name(1, 2500)]


def test_a_failure_while_producing_the_lines_leaves_no_file(tmp_path: Path) -> None:
    def lines() -> Iterator[bytes]:
        for n, r in enumerate(records(3000)):
            if n == 2100:
                raise RuntimeError("the fold failed")
            yield to_line(r)

    with pytest.raises(RuntimeError, match="the fold failed"):
        write_segment(tmp_path, 1, 3000, lines())
    assert list(tmp_path.iterdir()) == []


def test_a_failure_to_write_is_a_store_error_and_leaves_no_file(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the archive folder should be")
    with pytest.raises(StoreError, match="cannot write the archive segment"):
        write_segment(blocked, 1, 10, (to_line(r) for r in records(10)))
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-folder"]
