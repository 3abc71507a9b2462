"""A deterministic swarm: task auctions with several bids, tool calls, joins and leaves, failures.

`swarm_specs(n, seed, end)` yields `n` plain event specs, the same ones for the same arguments
and the same swarm (kinds, tasks, agents, payloads, gaps) for any `end`, so that two runs measure
the same swarm. The timestamps are laid out backwards from `end`, so that "the last 60 minutes"
of the log holds what a live swarm of this rate would have there. Every backend of the suite is
fed from these specs: typed swarmlog events, pre-serialised rows for raw SQLite, aggregate
events for the peer.

The mix at 1M events: ~71k tasks (created, bidding, 2-6 bids, auction closed, assigned, started,
0-4 tool calls completing or failing, completed or failed; ~2% fail for want of a bid or of a
bidder still free, ~9% fail at work), ~5% agent traffic (joins, leaves, status reports, thoughts)
and ~0.5% system messages. About 15 tasks are in flight at once, so one task's events are spread
across the log. It is a swarm as the coordinator runs it: a winner is online and free, and works
until its task ends, so a fold of it notes no anomaly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from domain.codec import build_event
from domain.events import Event

#: Mean gap between events, seconds: 2 events/s, ~7,200 in an hour, ~5.8 days for 1M events.
MEAN_GAP = 0.5
IN_FLIGHT = 15
AGENTS = 240
TOOLS = ("web.search", "fs.read", "fs.write", "python.run", "git.diff", "http.get", "sql.query")
WORDS = ("index", "docs", "summarise", "thread", "refactor", "module", "fetch", "prices",
         "translate", "report", "classify", "tickets", "scrape", "changelog", "review", "patch")


class Spec(NamedTuple):
    """One event as loose data: what a caller of `log_event` would pass."""

    id: str
    event_type: str
    source: str
    task_id: str | None
    agent_id: str | None
    data: dict[str, Any]
    timestamp: datetime


def _uuid7(ms: int, counter: int, rng: random.Random) -> str:
    value = (ms << 80) | (0x7 << 76) | ((counter & 0xFFF) << 64) | (0b10 << 62) | rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Task:
    __slots__ = ("bidders", "calls", "id", "stage", "wanted", "winner", "winning_bid")

    def __init__(self, task_id: str) -> None:
        self.id = task_id
        self.stage = "new"
        self.bidders: list[tuple[str, int]] = []
        self.winner: str | None = None
        self.winning_bid = 0
        self.calls = 0
        self.wanted = 0


def swarm_specs(n: int, seed: int = 17, end: datetime | None = None) -> Iterator[Spec]:
    """`n` event specs of a plausible swarm, deterministic for (n, seed, end)."""
    rng = random.Random(seed)
    # The ids' random bits come from their own generator: how many a stamp draws depends on
    # where `end` falls within a millisecond, and drawn from `rng` they made every run a
    # different swarm (164 agents online at the end in one run, 120 in the next).
    id_bits = random.Random(seed + 1)
    end = (end or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(seconds=n * MEAN_GAP)
    start_us = int(start.timestamp() * 1_000_000)
    clock_us = 0
    last_ms, counter = -1, 0
    agents = [f"agent-{i:04d}" for i in range(AGENTS)]
    online: list[str] = []
    busy: set[str] = set()  # the winners of open tasks: online until their task ends
    offline = list(agents)
    tasks: list[_Task] = []
    next_task = 0
    emitted = 0

    def stamp() -> tuple[str, datetime]:
        nonlocal clock_us, last_ms, counter
        clock_us += max(1, int(rng.expovariate(1 / MEAN_GAP) * 1_000_000))
        us = start_us + clock_us
        ms = us // 1000
        if ms > last_ms:
            last_ms, counter = ms, id_bits.getrandbits(10)
        else:
            counter += 1
        moment = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
        return _uuid7(ms, counter, id_bits), moment

    def spec(kind: str, source: str, task: str | None, agent: str | None,
             data: dict[str, Any]) -> Spec:
        event_id, moment = stamp()
        return Spec(event_id, kind, source, task, agent, data, moment)

    def sentence(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    def join() -> Spec:
        agent = offline.pop(rng.randrange(len(offline)))
        online.append(agent)
        caps = rng.sample(TOOLS, 3)
        return spec("agent.joined", "coordinator", None, agent,
                    {"name": agent.replace("agent-", "Agent "), "capabilities": caps,
                     "persona_id": f"persona-{rng.randrange(12)}"})

    while emitted < n:
        roll = rng.random()
        if len(online) - len(busy) < 8 or (roll < 0.004 and offline):
            out = join()
        elif roll < 0.008 and len(online) - len(busy) > 12:
            idle = [a for a in online if a not in busy]  # an agent at work finishes first
            agent = idle[rng.randrange(len(idle))]
            online.remove(agent)
            offline.append(agent)
            out = spec("agent.left", "coordinator", None, agent,
                       {"reason": rng.choice(("shutdown", "timeout", "scaled down"))})
        elif roll < 0.025:
            agent = rng.choice(online)
            out = spec("agent.status_changed", agent, None, agent,
                       {"status": rng.choice(("idle", "busy", "degraded"))})
        elif roll < 0.045:
            agent = rng.choice(online)
            out = spec("timmy.thought", agent, None, agent,
                       {"thought_id": f"th-{emitted}", "content": sentence(rng.randint(6, 16))})
        elif roll < 0.050:
            kind = rng.choice(("system.info", "system.info", "system.warning", "system.error"))
            data: dict[str, Any] = {"message": sentence(5)}
            if kind == "system.error":
                data.update(error_type="TimeoutError", detail={"retries": rng.randint(1, 5)})
            out = spec(kind, "system", None, None, data)
        else:
            if len(tasks) < IN_FLIGHT:
                tasks.append(_Task(f"task-{next_task:07d}"))
                next_task += 1
            task = rng.choice(tasks)
            out = _advance(task, rng, online, busy, spec, sentence)
            if task.stage == "done":
                tasks.remove(task)
        yield out
        emitted += 1


def _advance(task: _Task, rng: random.Random, online: list[str], busy: set[str], spec: Any,
             sentence: Any) -> Spec:
    """The next event of one task's lifecycle, as a coordinator runs it: any online agent may
    bid, the cheapest bidder still online and free wins, and works until the task ends."""
    t = task.id
    if task.stage == "new":
        task.stage = "created"
        return spec("task.created", "coordinator", t, None,
                    {"description": sentence(rng.randint(4, 10)),
                     "required_capabilities": rng.sample(TOOLS, 2)})
    if task.stage == "created":
        task.stage = "bidding"
        task.wanted = 0 if rng.random() < 0.04 else rng.randint(2, 6)
        return spec("task.bidding", "coordinator", t, None, {"window_seconds": 15.0})
    if task.stage == "bidding":
        if len(task.bidders) < task.wanted:
            bidder = rng.choice(online)
            sats = rng.randint(10, 5000)
            task.bidders.append((bidder, sats))
            return spec("bid.submitted", bidder, t, bidder, {"bid_sats": sats})
        free = [b for b in task.bidders if b[0] in online and b[0] not in busy]
        if not free:
            task.stage = "done"
            return spec("task.failed", "coordinator", t, None,
                        {"reason": "no bids" if not task.bidders else "no bidder free"})
        winner, sats = min(free, key=lambda b: b[1])
        busy.add(winner)
        task.winner, task.winning_bid = winner, sats
        task.stage = "closed"
        return spec("auction.closed", "coordinator", t, None,
                    {"winner": winner, "winning_bid": sats, "bid_count": len(task.bidders)})
    agent: str | None = task.winner
    if task.stage == "closed":
        task.stage = "assigned"
        return spec("task.assigned", "coordinator", t, agent, {"bid_sats": task.winning_bid})
    if task.stage == "assigned":
        task.stage = "running"
        task.calls = rng.randint(0, 4)
        return spec("task.started", agent, t, agent, {})
    if task.stage == "running" and task.calls > 0:
        task.stage = "calling"
        tool = rng.choice(TOOLS)
        return spec("tool.called", agent, t, agent,
                    {"tool": tool, "call_id": f"{t}-c{task.calls}",
                     "arguments": {"query": sentence(3), "limit": rng.randint(1, 50)}})
    if task.stage == "calling":
        task.stage = "running"
        task.calls -= 1
        call = {"tool": rng.choice(TOOLS), "call_id": f"{t}-c{task.calls + 1}",
                "duration_ms": round(rng.uniform(5, 4000), 1)}
        if rng.random() < 0.1:
            return spec("tool.failed", agent, t, agent, {**call, "error": "rate limited"})
        return spec("tool.completed", agent, t, agent, {**call, "result": sentence(6)})
    task.stage = "done"
    busy.discard(agent)  # type: ignore[arg-type]
    if rng.random() < 0.09:
        return spec("task.failed", "coordinator", t, agent, {"reason": "tool errors exhausted"})
    return spec("task.completed", agent, t, agent, {"result": {"summary": sentence(8), "ok": True}})


def to_event(s: Spec) -> Event:
    """What `log_event` does with loose arguments: validate them into a typed event."""
    return build_event(s.event_type, s.source, s.task_id, s.agent_id, s.data,
                       timestamp=s.timestamp, id=s.id)
