"""Attacks on the one fold read path with rows another SQLite client wrote: SQLite is dynamically
typed, so a TEXT column holds whatever a plain `sqlite3` INSERT gives it (a BLOB stays a BLOB;
a TEXT value need not be valid UTF-8). README, "What is folded was validated; nothing stored is
fatal": such a row is folded the typed way and counted as an anomaly, the fast fold derives the
plain fold's read models, and the log lists, folds and verifies (`verify` names the row, it
never raises for what it finds)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.codec import StoredEvent, build_event
from domain.events import Event
from projections.models import ReadModelsProjection
from projections.runner import ProjectionRunner
from store import SQLiteStore
from swarmlog.log import EventLog
from tests.strategies import event_sequences, stored

_COLUMNS = ("id", "event_type", "source", "task_id", "agent_id", "data", "timestamp", "stream_id",
            "stream_version", "schema_version", "conforms")
#: A bid another client inserts, as swarmlog would have stored it, but for one column.
_BID = {"id": "foreign-1", "event_type": "bid.submitted", "source": "other", "task_id": "t1",
        "agent_id": "a1", "data": '{"bid_sats": 5}',
        "timestamp": "2026-01-01T00:00:00.000000+00:00", "stream_id": "task-t1",
        "stream_version": 99, "schema_version": 1, "conforms": None}
_TEXT = "2026-01-01T00:00:00.000000+00:00"

#: (column, value as bound by sqlite3, conforms): what the other client wrote. `conforms` NULL
#: is what any other client leaves; 1 is a client that copies swarmlog's flag.
ODD = [
    pytest.param("data", b'{"bid_sats": 5}', None, id="data-json-as-blob"),
    pytest.param("data", b"\xff\xfe", None, id="data-binary-blob"),
    pytest.param("event_type", b"bid.submitted", None, id="event_type-blob"),
    pytest.param("source", b"other", None, id="source-blob"),
    pytest.param("source", b"other", 1, id="source-blob-flagged-conforming"),
    pytest.param("timestamp", _TEXT.encode(), 1, id="timestamp-blob-flagged-conforming"),
    pytest.param("timestamp", _TEXT.encode(), None, id="timestamp-blob"),
    pytest.param("task_id", b"t1", 1, id="task_id-blob-flagged-conforming"),
    pytest.param("agent_id", b"a1", None, id="agent_id-blob"),
    pytest.param("schema_version", "one", 1, id="schema_version-text"),
    pytest.param("conforms", "yes", "yes", id="conforms-text"),
]


def _log_with_foreign_row(path: Path, column: str, value: Any, conforms: Any) -> None:
    with EventLog(path) as log:
        log.append([build_event("agent.joined", "s", None, "a1", {"name": "a1"}),
                    build_event("task.created", "s", "t1", None, {}),
                    build_event("task.bidding", "s", "t1", None, {})])
    row = dict(_BID, conforms=conforms)
    row[column] = value
    with sqlite3.connect(path) as raw:
        raw.execute(f"INSERT INTO event_log ({', '.join(_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(_COLUMNS))})", [row[c] for c in _COLUMNS])


@pytest.mark.parametrize(("column", "value", "conforms"), ODD)
def test_a_row_with_odd_sqlite_types_is_never_fatal(tmp_path: Path, column: str, value: Any,
                                                    conforms: Any) -> None:
    """Flaws (each a case that fails):
    - `data` as a BLOB: the typed way (`codec._fields`: `row.data.encode()`) raises
      AttributeError, so start-up fails ("a fold must never raise") and `verify` crashes;
      the fast fold meanwhile reads the blob with `orjson.loads` and folds the bid;
    - `timestamp` as a BLOB flagged conforming: the fast fold's `datetime.fromisoformat(ts)`
      raises TypeError, which it does not catch (only ValueError), so start-up fails;
    - `event_type` or `source` as a BLOB: the summary counts it under a bytes key, and every
      snapshot (hence every prune, and `catch_up` after `SNAPSHOT_AFTER` events) then fails in
      `orjson.dumps` ("Dict key must a type serializable")."""
    path = tmp_path / "log.db"
    _log_with_foreign_row(path, column, value, conforms)
    p = ReadModelsProjection()
    folded = {}
    for plain in (False, True):
        runner = ProjectionRunner(SQLiteStore(path), [ReadModelsProjection(plain=plain)])
        runner.start()
        folded[plain] = p.dump(runner.state("read_models"))
    assert folded[False] == folded[True]
    log = EventLog(path)
    log.snapshot()  # (the inserted row has no hash: the snapshot has no digest, and that is fine)
    report = log.verify()
    assert not report.ok and any(f.position == 4 for f in report.findings)
    log.close()
    assert p.dump(EventLog(path).models) == folded[True]


def test_one_row_of_text_that_is_not_utf8_leaves_the_log_readable(tmp_path: Path) -> None:
    """Any client can store TEXT that is not UTF-8 (`CAST(x'..' AS TEXT)`). Python's sqlite3
    raises on fetching it, and every read pages through it: start-up, `verify`, listing and
    export all fail with "cannot read ...: Could not decode to UTF-8", for the whole log, for
    good. Flaw: the store reads every TEXT column with the default `text_factory`; a row it
    cannot decode should be read another way (as bytes, with the replacement character) and
    named by `verify`, not stop the log."""
    path = tmp_path / "log.db"
    with EventLog(path) as log:
        log.append([build_event("agent.joined", "s", None, "a1", {"name": "a1"})])
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO event_log (id, event_type, source, data, timestamp, stream_id, "
                    "stream_version, schema_version) VALUES ('foreign-1', 'system.info', 'other', "
                    "CAST(X'7B22FF223A317D' AS TEXT), ?, 'system', 1, 1)", (_TEXT,))
    log = EventLog(path)
    assert log.models.summary.total == 2
    assert len(list(log.read())) == 2
    report = log.verify()
    assert any(f.position == 2 for f in report.findings)
    log.close()


# -- the fast fold against the plain fold, on rows as SQLite can hand them back -----------------

#: The columns SQLite declares TEXT (a BLOB stays a BLOB there) and INTEGER (text that is no
#: number, a REAL or a BLOB stays as it is).
_TEXT_COLUMNS = ("event_type", "source", "task_id", "agent_id", "data", "timestamp")
_INTEGER_COLUMNS = ("schema_version", "conforms")


@st.composite
def as_sqlite_may_return(draw: st.DrawFn, events: list[Event]) -> list[StoredEvent]:
    """The rows of `events`, some with one column as another client may have stored it, the
    others as swarmlog stored them (so the fast fold meets them in its common case)."""
    out = []
    for row in stored(events):
        if draw(st.integers(0, 3)) == 0:
            column = draw(st.sampled_from(_TEXT_COLUMNS + _INTEGER_COLUMNS))
            value = getattr(row, column)
            if column in _TEXT_COLUMNS:
                changed: Any = None if value is None else value.encode()
            else:
                changed = draw(st.sampled_from([b"\x01", "yes", 1.5, 0.0]))
            row = row._replace(**{column: changed})
        out.append(row)
    return out


@settings(max_examples=200)
@given(event_sequences(), st.data())
def test_the_fast_fold_equals_the_plain_fold_on_rows_with_sqlite_types(
        events: list[Event], data: st.DataObject) -> None:
    """The README's property ("the fast fold derives the same read models as the typed fold
    for any log, tampered rows included"), with the tampering SQLite allows: neither fold
    raises, and they agree (the summary's notes of the log aside, as in
    test_projections_properties). Fails now: see the cases above."""
    rows = data.draw(as_sqlite_may_return(events), label="rows")
    plain, fast = ReadModelsProjection(plain=True), ReadModelsProjection()
    oracle = plain.fold_rows(plain.initial(), rows)
    folded = fast.fold_rows(fast.initial(), rows)
    assert _without_notes(fast, folded) == _without_notes(plain, oracle)


def _without_notes(p: ReadModelsProjection, models: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = orjson.loads(p.dump(models))
    del dumped["summary"]["anomalies"], dumped["summary"]["anomaly_count"]
    return dumped


# -- a row without a hash ------------------------------------------------------------------------


def test_appends_after_a_row_without_a_hash_go_on_and_verify_names_only_that_row(
        tmp_path: Path) -> None:
    """A row another client inserted at the head has no hash: every later append used to fail
    ("the chain hash at position 4 is missing"). The chain now runs through such a row by its
    content (as `verify` follows it): appends go on, and `verify` names that row alone."""
    path = tmp_path / "log.db"
    _log_with_foreign_row(path, "source", "other", None)
    with EventLog(path) as log:
        log.append([build_event("task.created", "s", "t2", None, {})])
        log.append([build_event("task.bidding", "s", "t2", None, {})])
        assert [r.position for r in log.read()] == [1, 2, 3, 4, 5, 6]
        report = log.verify()  # (the row's stream version, 99, is named too)
        assert ("inserted", 4) in [(f.kind, f.position) for f in report.findings]
        assert {f.position for f in report.findings if f.table == "event_log"} == {4}, \
            report.problems


@pytest.mark.parametrize("archived", [False, True], ids=["unarchived", "archived"])
def test_read_models_stay_recoverable_after_a_prune_of_a_row_without_a_hash(
        tmp_path: Path, archived: bool) -> None:
    """A prune whose cut is such a row: its snapshots used to get no digest (no chain hash at
    the cut), so after the rows were deleted no start-up could trust them, and without an
    archive the read models could not be recovered at all. Now the cut is bound to the chain as
    appends chain it, start-up and rebuild recover the read models, and `verify` names the
    foreign row (in the archive, when there is one) and nothing else."""
    path = tmp_path / "log.db"
    _log_with_foreign_row(path, "source", "other", None)
    p = ReadModelsProjection()
    with EventLog(path) as log:
        expected = p.dump(log.models)
        report = log.prune(before=datetime(2100, 1, 1, tzinfo=UTC),
                           archive=tmp_path / "archive" if archived else None)
        assert report.removed == 4
        assert all(s.digest is not None for s in log.store.snapshots())
    with EventLog(path) as log:
        assert p.dump(log.models) == expected
        log.rebuild()
        assert p.dump(log.models) == expected
        log.append([build_event("task.created", "s", "t2", None, {})])
        report = log.verify()
        assert [(f.kind, f.position) for f in report.findings] == (
            [("inserted", 4)] if archived else []), report.problems
