"""Events for the tests: the one `ev()` helper, and hypothesis strategies for every type, valid
swarm stories, nonsense and random timestamps.

`ev(kind, task, agent, **data)` builds one event (at a fixed time unless `at=` says otherwise).
`any_events()` draws events of every type with ids from small pools (so they collide), ids
sometimes missing and payload fields sometimes absent: what a careless caller could log.
`swarm_stories()` draws event sequences the coordinator could have produced (the lifecycle
holds). `event_sequences()` mixes both, including stories with events dropped, repeated or
shuffled. `stored()` numbers events as a store would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from domain.codec import StoredEvent, build_event, encode
from domain.events import Event, EventType
from store.base import Store
from store.chain import GENESIS, Chain

_T = EventType

TASK_IDS = ["t1", "t2", "t3", "t4"]
AGENT_IDS = ["a1", "a2", "a3", "a4"]
CALL_IDS = ["c1", "c2", "c3"]
SOURCES = ["coordinator", "agent", "seed"]

#: Three days, so that per-minute buckets both collide and fall out of a small bucket range.
EPOCH = datetime(2025, 3, 1, tzinfo=UTC)
timestamps = st.datetimes(
    EPOCH.replace(tzinfo=None), (EPOCH + timedelta(days=3)).replace(tzinfo=None),
    timezones=st.just(UTC),
)
sats = st.integers(0, 1000)


def ev(kind: EventType | str, task: str | None = None, agent: str | None = None, *,
       at: datetime = EPOCH, minute: float = 0, source: str = "test", id: str | None = None,
       **data: Any) -> Event:
    """One event of `kind` for `task` and `agent`, at `at` plus `minute` minutes, with `data`
    as its payload."""
    return build_event(kind, source, task, agent, data, id=id,
                       timestamp=at + timedelta(minutes=minute))
words = st.sampled_from(["", "index docs", "fix bug", "no bids", "agent left", "boom"])

_PAYLOADS: dict[EventType, dict[str, st.SearchStrategy[Any]]] = {
    _T.TASK_CREATED: {"description": words, "required_capabilities": st.lists(words, max_size=2)},
    _T.TASK_BIDDING: {"window_seconds": st.floats(0, 600)},
    _T.TASK_ASSIGNED: {"bid_sats": sats},
    _T.TASK_COMPLETED: {"result": st.none() | words},
    _T.TASK_FAILED: {"reason": words},
    _T.AGENT_JOINED: {"name": words, "capabilities": st.lists(words, max_size=2),
                      "persona_id": words},
    _T.AGENT_LEFT: {"reason": words},
    _T.AGENT_STATUS_CHANGED: {"status": st.sampled_from(["idle", "busy"]), "task": st.sampled_from(TASK_IDS)},
    _T.BID_SUBMITTED: {"bid_sats": sats},
    _T.AUCTION_CLOSED: {"winner": st.sampled_from(AGENT_IDS), "winning_bid": sats},
    _T.TOOL_CALLED: {"tool": words, "call_id": st.sampled_from(CALL_IDS)},
    _T.TOOL_COMPLETED: {"tool": words, "call_id": st.sampled_from(CALL_IDS),
                        "duration_ms": st.floats(0, 1e4)},
    _T.TOOL_FAILED: {"tool": words, "call_id": st.sampled_from(CALL_IDS), "error": words},
    _T.SYSTEM_ERROR: {"message": words, "error_type": words},
    _T.SYSTEM_WARNING: {"message": words},
    _T.SYSTEM_INFO: {"message": words},
    _T.TIMMY_THOUGHT: {"content": words},
    _T.ERROR_CAPTURED: {"error_type": words, "message": words, "line": st.integers(0, 10**6)},
    _T.BUG_REPORT_CREATED: {"error_hash": words, "title": words},
}


@st.composite
def any_events(draw: st.DrawFn, kinds: Sequence[EventType] = tuple(EventType)) -> Event:
    """An event of any of `kinds`, ids from small pools or missing, payload fields or not."""
    kind = draw(st.sampled_from(list(kinds)))
    fields = _PAYLOADS.get(kind, {})
    data = {name: draw(s) for name, s in fields.items() if draw(st.booleans())}
    if draw(st.integers(0, 9)) == 0:
        data["note"] = "an undeclared key"
    return build_event(
        kind,
        draw(st.sampled_from(SOURCES)),
        draw(st.none() | st.sampled_from(TASK_IDS)),
        draw(st.none() | st.sampled_from(AGENT_IDS)),
        data,
        timestamp=draw(timestamps),
    )


# -- valid stories: a tiny coordinator -----------------------------------------------------------


@dataclass
class _Swarm:
    """Just enough state to emit only events the lifecycle allows."""

    online: set[str] = field(default_factory=set)
    busy: dict[str, str] = field(default_factory=dict)  # agent -> its assigned/running task
    status: dict[str, str] = field(default_factory=dict)  # task -> status
    bids: dict[str, dict[str, int]] = field(default_factory=dict)
    worker: dict[str, str] = field(default_factory=dict)  # task -> assigned agent
    calls: dict[str, str] = field(default_factory=dict)  # open call -> agent
    next_task: int = 0
    next_call: int = 0


def _moves(s: _Swarm) -> list[str]:
    """The moves the lifecycle allows now: task progress first and thrice (hypothesis favours
    early entries), so that stories get far; the rest after."""
    progress: list[str] = []
    other: list[str] = []
    for t, status in s.status.items():
        if status == "created":
            progress.append(f"open {t}")
            other.append(f"fail {t}")
        elif status == "bidding":
            if any(a in s.online and a not in s.busy for a in s.bids[t]):
                progress.append(f"assign {t}")
            if s.online:
                progress.append(f"bid {t}")
            other += [f"close {t}", f"fail {t}"]
        elif status == "assigned":
            if s.worker[t] in s.online:
                progress.append(f"start {t}")
            other.append(f"fail {t}")
        elif status == "running":
            progress.append(f"complete {t}")
            other.append(f"fail {t}")
    moves = progress * 3
    if len(s.online) < 2 and set(AGENT_IDS) - s.online:
        moves.append("join")
    if sum(status not in ("completed", "failed") for status in s.status.values()) < 3:
        moves.append("post")
    if s.calls:
        moves.append("finish")
    if s.online:
        moves += ["call", "leave", "thought"]
    if set(AGENT_IDS) - s.online:
        moves.append("join")
    return [*moves, *other, "system"]


def _step(draw: st.DrawFn, s: _Swarm, move: str) -> list[Event]:
    verb, _, t = move.partition(" ")

    def event(kind: EventType, task: str | None = None, agent: str | None = None,
              **data: Any) -> Event:
        return ev(kind, task, agent, at=draw(timestamps), source="coordinator", **data)

    if verb == "join":
        a = draw(st.sampled_from(sorted(set(AGENT_IDS) - s.online)))
        s.online.add(a)
        return [event(_T.AGENT_JOINED, agent=a, name=f"agent {a}", capabilities=["code"])]
    if verb == "leave":
        a = draw(st.sampled_from(sorted(s.online)))
        s.online.discard(a)
        s.calls = {c: x for c, x in s.calls.items() if x != a}  # its open calls end with it
        out = [event(_T.AGENT_LEFT, agent=a, reason="bye")]
        if a in s.busy:  # the coordinator fails the task of an agent that leaves
            task = s.busy.pop(a)
            s.status[task] = "failed"
            out.append(event(_T.TASK_FAILED, task, a, reason="agent left"))
        return out
    if verb == "post":
        s.next_task += 1
        task = f"t{s.next_task}"
        s.status[task], s.bids[task] = "created", {}
        return [event(_T.TASK_CREATED, task, description=f"task {task}")]
    if verb == "open":
        s.status[t] = "bidding"
        return [event(_T.TASK_BIDDING, t, window_seconds=30.0)]
    if verb == "bid":
        a = draw(st.sampled_from(sorted(s.online)))
        amount = draw(sats)
        s.bids[t][a] = amount  # a new bid replaces the agent's earlier one
        return [event(_T.BID_SUBMITTED, t, a, bid_sats=amount)]
    if verb == "close":
        return [event(_T.AUCTION_CLOSED, t, bid_count=len(s.bids[t]))]
    if verb == "assign":
        eligible = [(b, a) for a, b in s.bids[t].items() if a in s.online and a not in s.busy]
        amount, a = min(eligible)
        s.status[t], s.worker[t], s.busy[a] = "assigned", a, t
        given = draw(st.booleans())  # absent: the projections use the agent's bid
        return [event(_T.TASK_ASSIGNED, t, a, **({"bid_sats": amount} if given else {}))]
    if verb == "start":
        s.status[t] = "running"
        return [event(_T.TASK_STARTED, t, s.worker[t])]
    if verb in ("complete", "fail"):
        a = s.worker.get(t)
        if a is not None and s.busy.get(a) == t:
            del s.busy[a]
        if verb == "complete":
            s.status[t] = "completed"
            return [event(_T.TASK_COMPLETED, t, a, result="ok")]
        s.status[t] = "failed"
        return [event(_T.TASK_FAILED, t, a, reason="gave up")]
    if verb == "call":
        a = draw(st.sampled_from(sorted(s.online)))
        s.next_call += 1
        call = f"call{s.next_call}"
        s.calls[call] = a
        return [event(_T.TOOL_CALLED, s.busy.get(a), a, tool="grep", call_id=call)]
    if verb == "finish":
        call = draw(st.sampled_from(sorted(s.calls)))
        a = s.calls.pop(call)
        if a not in s.online:  # its agent left: the result is lost, nothing is logged
            return []
        kind = draw(st.sampled_from([_T.TOOL_COMPLETED, _T.TOOL_FAILED]))
        return [event(kind, None, a, tool="grep", call_id=call)]
    if verb == "thought":
        return [event(_T.TIMMY_THOUGHT, agent=draw(st.sampled_from(sorted(s.online))), content="hm")]
    kind = draw(st.sampled_from([_T.SYSTEM_ERROR, _T.SYSTEM_WARNING, _T.SYSTEM_INFO]))
    return [event(kind, message="disk full")]


@st.composite
def swarm_stories(draw: st.DrawFn, max_steps: int = 40) -> list[Event]:
    """Events a correct coordinator could have appended, in order (timestamps random)."""
    swarm = _Swarm()
    events: list[Event] = []
    for _ in range(draw(st.integers(0, max_steps))):
        events += _step(draw, swarm, draw(st.sampled_from(_moves(swarm))))
    return events


def _mangled(story: list[Event], draw: st.DrawFn) -> list[Event]:
    ops: list[Callable[[list[Event]], list[Event]]] = [
        lambda es: [e for e in es if draw(st.integers(0, 4))],  # drop some
        lambda es: es + draw(st.lists(st.sampled_from(es), max_size=5)) if es else es,  # repeat
        lambda es: draw(st.permutations(es)),  # shuffle
    ]
    return draw(st.sampled_from(ops))(story)


@st.composite
def event_sequences(draw: st.DrawFn, max_size: int = 40) -> list[Event]:
    """Valid stories, broken stories and nonsense (the store holds whatever was logged)."""
    kind = draw(st.sampled_from(["story", "broken", "nonsense", "mixed"]))
    if kind == "story":
        return draw(swarm_stories(max_size))
    if kind == "broken":
        return _mangled(draw(swarm_stories(max_size)), draw)
    nonsense = draw(st.lists(any_events(), max_size=max_size))
    if kind == "nonsense":
        return nonsense
    story = draw(swarm_stories(max_size // 2))
    return story + nonsense[: max_size // 2]


def rows(*events: Event) -> list[StoredEvent]:
    """Events encoded for `Store.append` (validated as `EventLog.append` does)."""
    return [encode(e) for e in events]


def stored(events: Sequence[Event], start: int = 1) -> list[StoredEvent]:
    """`events` as a store would hold them: encoded, numbered from `start`, each stream's
    versions counted from 1, chained (unkeyed) from the genesis hash."""
    versions: dict[str, int] = {}
    rows = []
    previous = GENESIS
    for i, event in enumerate(events):
        version = versions[event.stream_id] = versions.get(event.stream_id, 0) + 1
        row = encode(event)._replace(position=start + i, stream_version=version)
        previous = Chain().link(previous, row)
        rows.append(row._replace(hash=previous))
    return rows


def fixed_story(tasks: int = 8) -> list[Event]:
    """A deterministic valid story: agents join, tasks go through auctions, tool calls, an
    agent leaves mid-task (and its task fails), errors are logged. About 12 events a task."""
    clock = iter(EPOCH + timedelta(seconds=17 * i) for i in range(10**6))

    def event(kind: EventType, task: str | None = None, agent: str | None = None,
              **data: Any) -> Event:
        return ev(kind, task, agent, at=next(clock), source="coordinator", **data)

    out = [event(_T.AGENT_JOINED, agent=a, name=a, capabilities=["code"]) for a in AGENT_IDS]
    for n in range(1, tasks + 1):
        t, a = f"t{n}", AGENT_IDS[n % len(AGENT_IDS)]
        out += [event(_T.TASK_CREATED, t, description=f"task {n}"), event(_T.TASK_BIDDING, t)]
        out += [event(_T.BID_SUBMITTED, t, b, bid_sats=10 * n + i) for i, b in enumerate(AGENT_IDS)]
        out += [event(_T.AUCTION_CLOSED, t), event(_T.TASK_ASSIGNED, t, AGENT_IDS[0], bid_sats=10 * n)]
        if n % 4 == 3:  # the winner leaves; the coordinator fails its task, and it rejoins
            out += [event(_T.AGENT_LEFT, agent=AGENT_IDS[0]),
                    event(_T.TASK_FAILED, t, AGENT_IDS[0], reason="agent left"),
                    event(_T.AGENT_JOINED, agent=AGENT_IDS[0])]
            continue
        out += [event(_T.TASK_STARTED, t, AGENT_IDS[0]),
                event(_T.TOOL_CALLED, t, AGENT_IDS[0], call_id=f"c{n}", tool="grep"),
                event(_T.TOOL_COMPLETED, t, AGENT_IDS[0], call_id=f"c{n}", duration_ms=3.0),
                event(_T.TIMMY_THOUGHT, agent=a, content="hm")]
        if n % 5 == 0:
            out += [event(_T.SYSTEM_ERROR, message="flaky"), event(_T.TASK_FAILED, t, reason="flaky")]
        else:
            out.append(event(_T.TASK_COMPLETED, t, AGENT_IDS[0], result="ok"))
    return out


def remove_prefix(store: Store, first: int, last: int, cutoff: str,
                  archive_path: str | None = None, archive_sha256: str | None = None) -> int:
    """The store's half of a prune, whole: record it, then delete its rows (in steps of 1,000);
    returns how many were deleted."""
    store.record_prune(first, last, cutoff, archive_path, archive_sha256)
    removed = 0
    while step := store.delete_pruned(1000):
        removed += step
    return removed
