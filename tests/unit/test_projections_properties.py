"""Properties the read models keep on any event sequence: the fold is total and counts every
anomaly, a valid story has none, the fast row fold equals the plain one, chunks, snapshots and
JSON round trips change nothing, and the three read models agree on the facts they share."""

from __future__ import annotations

from collections import Counter
from typing import Any
from unittest.mock import patch

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import projections.base
from domain.codec import StoredEvent
from domain.events import Event, EventType
from domain.task import LIFECYCLE_TYPES, TaskStatus
from projections.base import MAX_ANOMALIES, Cold
from projections.models import ReadModels, ReadModelsProjection, counts
from projections.tasks import TOOL_TYPES
from store import MemoryStore
from tests.strategies import event_sequences, stored, swarm_stories

_T = EventType
#: A tiny bucket range, so that sweeping and dropping old minutes happen in short sequences.
BUCKETS = 3


def projection(*, plain: bool = False) -> ReadModelsProjection:
    return ReadModelsProjection(plain=plain, minute_buckets=BUCKETS)


def plain_fold(events: list[Event]) -> ReadModels:
    """The definition: each typed event through `ReadModelsProjection.apply`."""
    p = projection(plain=True)
    state = p.initial()
    for position, event in enumerate(events, start=1):
        state = p.apply(state, position, event)
    return state


def fast_fold(rows: list[StoredEvent]) -> ReadModels:
    p = projection()
    return p.fold_rows(p.initial(), rows)


@st.composite
def some_unvouched(draw: st.DrawFn, events: list[Event]) -> list[StoredEvent]:
    """The rows of `events`, some of them marked as not checked when appended (written by
    something else): the fast fold must take those through the plain one."""
    return [row._replace(conforms=None) if draw(st.integers(0, 3)) == 0 else row
            for row in stored(events)]


@settings(max_examples=150)
@given(event_sequences())
def test_folds_never_raise_and_count_every_anomaly(events: list[Event]) -> None:
    models = plain_fold(events)
    for model, entities in ((models.tasks, models.tasks.tasks), (models.agents, models.agents.agents)):
        on_entities = sum(e.anomaly_count for e in entities.values())
        assert model.anomaly_count == on_entities + len(model.anomalies)
        assert all(len(e.anomalies) == min(e.anomaly_count, MAX_ANOMALIES)
                   for e in entities.values())
    no_task_id = sum(1 for e in events if e.event_type in LIFECYCLE_TYPES and e.task_id is None)
    assert sum(a.reason == "no task_id" for a in models.tasks.anomalies) == no_task_id
    named, unknown = set(), set()  # tasks named by the lifecycle so far; tools' unknown tasks
    for e in events:
        if e.event_type in LIFECYCLE_TYPES and e.task_id is not None:
            named.add(e.task_id)
        elif e.event_type in TOOL_TYPES and e.task_id is not None and e.task_id not in named:
            unknown.add(e.task_id)
    assert {a.reason for a in models.tasks.anomalies} - {"no task_id"} == {
        f"unknown task {t!r}" for t in unknown}


@settings(max_examples=100)
@given(swarm_stories())
def test_a_valid_story_has_no_anomalies(events: list[Event]) -> None:
    for models in (plain_fold(events), fast_fold(stored(events))):
        tasks, agents = models.tasks, models.agents
        assert tasks.anomaly_count == 0, [t.anomalies for t in tasks.tasks.values()] + [tasks.anomalies]
        assert agents.anomaly_count == 0, [a.anomalies for a in agents.agents.values()] + [agents.anomalies]


@settings(max_examples=300)
@given(event_sequences(), st.data())
def test_the_fast_fold_equals_the_plain_fold(events: list[Event], data: st.DataObject) -> None:
    p = projection()
    oracle = plain_fold(events)
    for rows in (stored(events), data.draw(some_unvouched(events), label="rows")):
        fast = fast_fold(rows)
        assert p.dump(fast) == p.dump(oracle)
        assert fast == oracle
    # And the projection's own oracle mode (typed events decoded from the rows) is the same fold.
    plain = projection(plain=True)
    assert plain.fold_rows(plain.initial(), stored(events)) == oracle


_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=3),
    st.lists(st.integers(-9, 9), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(-9, 9), max_size=2))


@st.composite
def tampered(draw: st.DrawFn, events: list[Event]) -> list[StoredEvent]:
    """The rows of `events`, some changed behind swarmlog's back but still saying they were
    validated when appended: a payload field of any JSON type, a payload that is no object or no
    JSON, a type or a timestamp that is not one, flags of every kind."""
    out = []
    for row in stored(events):
        change = draw(st.integers(0, 9))
        if change == 0 and row.data:
            payload = orjson.loads(row.data)
            key = draw(st.sampled_from(sorted(payload)))
            payload[key] = draw(_JUNK)
            row = row._replace(data=orjson.dumps(payload).decode())
        elif change == 1:
            row = row._replace(data=draw(st.sampled_from(["[1, 2]", "{broken", "7", '"x"'])))
        elif change == 2:
            row = row._replace(event_type=draw(st.sampled_from(["task.teleported", ""])))
        elif change == 3:
            row = row._replace(timestamp=draw(st.sampled_from(
                ["yesterday", row.timestamp[:16] + "junk", row.timestamp.replace("+00:00", ""),
                 row.timestamp.replace("+00:00", "+02:00")])))
        elif change == 4:
            row = row._replace(conforms=draw(st.sampled_from([False, None])))
        out.append(row)
    return out


def _without_notes_of_the_log(p: ReadModelsProjection, models: ReadModels) -> dict[str, Any]:
    dumped: dict[str, Any] = orjson.loads(p.dump(models))
    del dumped["summary"]["anomalies"], dumped["summary"]["anomaly_count"]
    return dumped


@settings(max_examples=300)
@given(event_sequences(), st.data())
def test_the_fast_fold_derives_the_plain_folds_read_models_whatever_was_done_to_the_rows(
        events: list[Event], data: st.DataObject) -> None:
    """A row changed behind swarmlog's back, still saying it was validated when appended, never
    breaks the fast fold, nor makes it derive anything the plain fold does not: every value it
    keeps is checked, and a row it cannot use goes the plain way. What it cannot tell is a
    changed field it does not read: only the plain fold (and `verify`) notes that one."""
    rows = data.draw(tampered(events), label="rows")
    plain, fast = projection(plain=True), projection()
    oracle = plain.fold_rows(plain.initial(), rows)  # never raises: what does not conform is noted
    folded = fast.fold_rows(fast.initial(), rows)
    assert _without_notes_of_the_log(fast, folded) == _without_notes_of_the_log(plain, oracle)
    assert counts(folded)["total"] == len(rows)
    assert {a.position for a in folded.summary.anomalies} <= {
        a.position for a in oracle.summary.anomalies}


def snapshot_and_resume(p: ReadModelsProjection, head: list[StoredEvent],
                        tail: list[StoredEvent]) -> ReadModels:
    """What a runner does: fold `head`, store it as a snapshot (closed tasks and offline agents
    as items, out of memory), load that snapshot back and fold `tail` onto it."""
    store = MemoryStore()
    at = head[-1].position if head else 0
    text, items = p.split(p.fold_rows(p.initial(), head))
    store.save_snapshot(p.name, p.version, at, text, items)
    loaded = p.load(text)
    p.attach(loaded, Cold(store, p.name, p.version, at))
    assert all(t.is_open for t in loaded.tasks.tasks.values())
    assert all(a.online for a in loaded.agents.agents.values())
    return p.fold_rows(loaded, tail)


@settings(max_examples=150)
@given(event_sequences(), st.booleans(), st.data())
def test_incremental_chunks_equal_one_rebuild_equal_snapshot_plus_tail(
    events: list[Event], plain: bool, data: st.DataObject
) -> None:
    p, rows = projection(plain=plain), stored(events)
    rebuilt = plain_fold(events)

    state, i = p.initial(), 0
    while i < len(rows):
        size = data.draw(st.integers(1, 7), label="chunk")
        state = p.fold_rows(state, rows[i : i + size])
        i += size
    assert state == rebuilt

    cut = data.draw(st.integers(0, len(rows)), label="snapshot at")
    resumed = snapshot_and_resume(p, rows[:cut], rows[cut:])
    assert resumed == rebuilt
    assert p.dump(resumed) == p.dump(rebuilt)


@settings(max_examples=150)
@given(event_sequences(), st.data())
def test_spilling_closed_entries_and_snapshotting_them_changes_no_state(
    events: list[Event], data: st.DataObject
) -> None:
    """What a long fold does (a rebuild, a start-up without snapshots): after each page, closed
    tasks and offline agents leave memory for a scratch file once there are more than
    `SPILL_AT` entries; a snapshot stores them as items, and folding goes on from it (in the
    same state, or in one loaded from the snapshot). Here the limit is one entry."""
    p, rows = projection(), stored(events)
    store = MemoryStore()
    with patch.object(projections.base, "SPILL_AT", 1):
        state, i = p.initial(), 0
        while i < len(rows):
            size = data.draw(st.integers(1, 7), label="page")
            state = p.fold_rows(state, rows[i : i + size])
            i = min(i + size, len(rows))
            p.spill(state)
            assert state == plain_fold(events[:i])
            if data.draw(st.integers(0, 3), label="snapshot") == 0:
                text, items = p.split(state)
                store.save_snapshot(p.name, p.version, rows[i - 1].position, text, items)
                if data.draw(st.booleans(), label="reload it"):
                    state = p.load(text)
                p.attach(state, Cold(store, p.name, p.version, rows[i - 1].position))
                assert all(t.is_open for t in state.tasks.tasks.values())
    rebuilt = plain_fold(events)
    assert state == rebuilt
    assert p.dump(state) == p.dump(rebuilt)


@settings(max_examples=100)
@given(event_sequences(), st.data())
def test_every_state_round_trips_through_json_exactly(
    events: list[Event], data: st.DataObject
) -> None:
    p = projection()
    cut = data.draw(st.integers(0, len(events)), label="prefix")
    state = plain_fold(events[:cut])
    text = p.dump(state)
    assert p.load(text) == state
    assert p.dump(p.load(text)) == text


@settings(max_examples=150)
@given(event_sequences())
def test_the_summary_and_the_roster_agree_with_the_tasks(events: list[Event]) -> None:
    """The task lifecycle is folded once; what the roster and the summary say about tasks is
    derived from it, so it must match a count of the tasks read model on every log."""
    models = plain_fold(events)
    tasks = list(models.tasks.tasks.values())
    agents = list(models.agents.agents.values())
    summary = models.summary

    statuses = Counter(t.status for t in tasks)
    assert summary.tasks_by_status == {s: statuses[s] for s in TaskStatus}
    assert None not in statuses  # every task the log named has a status
    last_word: dict[str, EventType] = {}  # agent -> its latest join or departure
    for e in events:
        if e.agent_id is not None and e.event_type in (_T.AGENT_JOINED, _T.AGENT_LEFT):
            last_word[e.agent_id] = e.event_type
    online = {a for a, kind in last_word.items() if kind is _T.AGENT_JOINED}
    assert {a.agent_id for a in agents if a.online} == online
    assert counts(models)["agents_online"] == len(online)

    for agent in agents:
        won = [t for t in tasks if t.agent_id == agent.agent_id]
        done = [t for t in won if t.status is TaskStatus.COMPLETED]
        assert agent.tasks_won == len(won)
        assert agent.tasks_completed == len(done)
        assert agent.tasks_failed == sum(t.status is TaskStatus.FAILED for t in won)
        assert agent.sats_earned == sum(t.winning_bid or 0 for t in done)
        if agent.current_task is not None:  # the task it holds is open and assigned to it
            held = models.tasks.tasks[agent.current_task]
            assert held.is_open and held.agent_id == agent.agent_id
    assert all(t.agent_id in models.agents.agents for t in tasks if t.agent_id is not None)

    assert summary.total == len(events)
    assert summary.by_type == Counter(e.event_type.value for e in events)
    assert summary.by_source == Counter(e.source for e in events)
