"""The demo swarm: a deterministic simulation driven through the real `Coordinator`.

Agents with capabilities join (most at the start, some later), bid in sats on the tasks they can
do, win auctions, call tools (with durations and some failures), complete or fail their tasks,
leave (failing the task in hand) and rejoin; now and then the system logs an error. Time is
simulated and spread over days, so there is something to prune; it stops at the wall clock (an
event is never stamped later than now), leaving whatever was still running open.

Same seed and start -> the same events, byte for byte: every random choice comes from one seeded
generator, and event ids are UUIDv7-shaped values made from the simulated time and a second seeded
generator. Ids of tasks, agents and tool calls carry the run (`r1-t0001`, `r1-a01`, `r1-c00001`):
a second demo on the same database is run 2, beside run 1 rather than colliding with it.
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from reprlib import repr as shown
from typing import Any

from domain.errors import InvalidArgument, InvalidEvent, InvalidTransition
from domain.ids import utc_now
from swarmlog.coordinator import Coordinator, Decision
from swarmlog.log import EventLog

_CAPABILITIES = ("python", "sql", "search", "http", "shell", "summarize", "vision", "translate")
_NAMES = ("Ada", "Basil", "Cleo", "Dax", "Echo", "Fern", "Gale", "Hex", "Iris", "Juno", "Kai",
          "Lumen", "Mira", "Nox", "Orin", "Pax", "Quill", "Rune", "Sage", "Tess", "Umber", "Vega",
          "Wren", "Zed")
#: (description, required capabilities, typical price in sats)
_TEMPLATES = (
    ("Summarise the {} report", ("summarize",), 300),
    ("Scrape competitor prices from {}", ("http", "search"), 800),
    ("Fix the failing test in {}", ("python", "shell"), 1500),
    ("Write the weekly SQL report on {}", ("sql",), 900),
    ("Describe the screenshots of {}", ("vision",), 600),
    ("Translate the {} release notes", ("translate",), 400),
    ("Research prior art for {}", ("search", "summarize"), 700),
    ("Benchmark the {} endpoint", ("http", "python"), 1100),
)
_SUBJECTS = ("billing", "search-api", "onboarding", "payments", "auth", "mobile", "ledger", "docs",
             "checkout", "inventory", "alerts", "exports")
_TOOLS = {"python": "python_exec", "sql": "sql_query", "search": "web_search", "http": "http_get",
          "shell": "shell", "summarize": "llm_complete", "vision": "image_describe",
          "translate": "llm_complete"}
_TOOL_ERRORS = ("timeout after 30s", "HTTP 503 from upstream", "permission denied",
                "rate limited (429)")
_TASK_FAILURES = ("tests still failing", "gave up after 3 retries", "output did not validate",
                  "model refused the request")
_LEAVE_REASONS = (("maintenance", 3), ("crashed", 3), ("rate limited", 2), ("scaled down", 1))
_SYSTEM_ERRORS = (
    ("database connection pool exhausted", "PoolTimeout", "db"),
    ("LLM provider returned 502", "UpstreamError", "llm-gateway"),
    ("heartbeat missed for 3 agents", "HeartbeatTimeout", "scheduler"),
    ("disk usage above 90%", "ResourceWarning", "storage"),
)


#: How big and how long a demo can be.
MAX_AGENTS, MAX_TASKS, MAX_DAYS = 10_000, 1_000_000, 36_525


def _whole(name: str, value: object, least: int, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise InvalidArgument(name, f"must be a whole number from {least} to {most:,}, got {shown(value)}")


@dataclass(frozen=True)
class DemoConfig:
    """How big the swarm is and how it behaves. `start` None: `default_start(days)`.
    InvalidArgument names a value out of range."""

    agents: int = 20
    tasks: int = 500
    seed: int = 42
    failure_rate: float = 0.1
    days: float = 7.0
    start: datetime | None = None

    def __post_init__(self) -> None:
        _whole("agents", self.agents, 1, MAX_AGENTS)
        _whole("tasks", self.tasks, 0, MAX_TASKS)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidArgument("seed", f"must be a whole number, got {shown(self.seed)}")
        for name, value, most in (("failure_rate", self.failure_rate, 1), ("days", self.days, MAX_DAYS)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 <= value <= most or (name == "days" and value == 0):
                raise InvalidArgument(name, f"must be a number from 0 to {most:,}"
                                            f"{' (not 0)' if name == 'days' else ''}, got {shown(value)}")
        if self.start is not None:
            if not isinstance(self.start, datetime) or self.start.utcoffset() is None:
                raise InvalidArgument("start", f"must be a timezone-aware datetime, got {shown(self.start)}")
            try:  # (the run's last tasks end a little after its span)
                self.start.astimezone(UTC) + timedelta(days=self.days + 1)
            except OverflowError:
                raise InvalidArgument("start", f"{self.start.isoformat()} and {self.days:g} days "
                                               "after it do not fit before the year 10000") from None


@dataclass
class DemoResult:
    """What a demo run did."""

    run: int
    prefix: str
    start: datetime
    end: datetime
    tasks: int = 0
    commands: int = 0
    events: int = 0
    refused: int = 0  # commands the coordinator refused (late bids): nothing was appended
    late_bids: int = 0


def default_start(days: float, now: datetime | None = None) -> datetime:
    """`days` days and half an hour before now, to the minute: the swarm's last work is recent
    (and never in the future: a task takes well under half an hour)."""
    moment = (now or utc_now()) - timedelta(days=days, minutes=30)
    return moment.replace(second=0, microsecond=0)


class SeededIds:
    """UUIDv7-shaped ids from simulated time and a seeded generator: reproducible, time-ordered."""

    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed)
        self._last_ms = -1
        self._counter = 0

    def __call__(self, at: datetime) -> str:
        ms = max(int(at.timestamp() * 1000), self._last_ms)
        if ms == self._last_ms:
            self._counter += 1
            if self._counter > 0xFFF:
                ms, self._counter = ms + 1, 0
        else:
            self._counter = self._rng.getrandbits(10)
        self._last_ms = ms
        value = (ms << 80) | (0x7 << 76) | (self._counter << 64) | (0b10 << 62) | self._rng.getrandbits(62)
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def next_run(log: EventLog) -> int:
    """1 + the highest demo run the roster knows (every run registers at least one agent)."""
    pattern = re.compile(r"r(\d+)-")
    runs = [int(m.group(1)) for key in log.agents.agents.merged() if (m := pattern.match(key))]
    return max(runs, default=0) + 1


@dataclass
class _Agent:
    agent_id: str
    name: str
    capabilities: tuple[str, ...]
    price_factor: float
    online: bool = False
    task: str | None = None


@dataclass
class _Task:
    task_id: str
    capabilities: tuple[str, ...]
    price: int
    agent: str | None = None
    active: bool = True
    tools_left: int = 0
    tool_failed: bool = False
    open_call: tuple[str, str] | None = None  # (call id, tool)
    call_started: datetime | None = None


@dataclass
class _Sim:
    config: DemoConfig
    coordinator: Coordinator
    rng: random.Random
    result: DemoResult
    progress: Callable[[int, int], None] | None
    until: datetime  # the time the demo runs at: what would come later has not happened yet
    agents: dict[str, _Agent] = field(default_factory=dict)
    tasks: dict[str, _Task] = field(default_factory=dict)
    queue: list[tuple[datetime, int, str, tuple[Any, ...]]] = field(default_factory=list)
    seq: int = 0
    calls: int = 0
    done: int = 0

    def at(self, when: datetime, action: str, *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, action, args))

    def command(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.result.commands += 1
        return fn(*args, **kwargs)

    def finished(self, task: _Task) -> None:
        task.active = False
        if task.agent is not None:
            self.agents[task.agent].task = None
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.config.tasks)

    # -- actions ------------------------------------------------------------------------------

    def join(self, now: datetime, agent: _Agent) -> None:
        self.command(self.coordinator.register_agent, agent.agent_id, agent.name, agent.capabilities,
                     at=now)
        agent.online = True
        self.at(now + timedelta(hours=self.rng.expovariate(1 / 48)), "leave", agent.agent_id)

    def leave(self, now: datetime, agent: _Agent) -> None:
        reason = self.rng.choices([r for r, _ in _LEAVE_REASONS], [w for _, w in _LEAVE_REASONS])[0]
        self.command(self.coordinator.remove_agent, agent.agent_id, reason, at=now)
        agent.online = False
        if agent.task is not None:  # the coordinator failed it in the same call
            self.finished(self.tasks[agent.task])
        back = now + timedelta(minutes=self.rng.uniform(10, 12 * 60))
        if back < self.result.end:
            self.at(back, "join", agent.agent_id)

    def post(self, now: datetime, number: int) -> None:
        template, caps, price = self.rng.choice(_TEMPLATES)
        description = template.format(self.rng.choice(_SUBJECTS))
        task_id = f"{self.result.prefix}t{number:04d}"
        window = self.rng.choice((30, 60, 90, 120))
        self.command(self.coordinator.post_task, description, task_id=task_id,
                     required_capabilities=caps, window_seconds=window, at=now)
        self.tasks[task_id] = _Task(task_id, caps, price)
        able = [a for a in self.agents.values()
                if a.online and a.task is None and set(caps) <= set(a.capabilities)]
        for agent in self.rng.sample(able, min(len(able), 6)):
            self.at(now + timedelta(seconds=self.rng.uniform(1, window - 1)), "bid", task_id,
                    agent.agent_id)
        close = now + timedelta(seconds=window)
        self.at(close, "close", task_id)
        if able and self.rng.random() < 0.03:
            late = self.rng.choice(able)
            self.at(close + timedelta(seconds=self.rng.uniform(1, 30)), "late_bid", task_id,
                    late.agent_id)

    def bid(self, now: datetime, task: _Task, agent: _Agent) -> None:
        if not agent.online or agent.task is not None:  # gone, or busy since it decided to bid
            return
        sats = int(round(task.price * agent.price_factor * self.rng.uniform(0.8, 1.25), -1))
        self.command(self.coordinator.submit_bid, task.task_id, agent.agent_id, sats, at=now)

    def late_bid(self, now: datetime, task: _Task, agent: _Agent) -> None:
        if not agent.online:
            return
        self.result.late_bids += 1
        try:
            self.command(self.coordinator.submit_bid, task.task_id, agent.agent_id, task.price, at=now)
        except InvalidTransition:
            self.result.refused += 1

    def close(self, now: datetime, task: _Task) -> None:
        winner = self.command(self.coordinator.close_bidding, task.task_id, at=now)
        if winner is None:
            self.finished(task)
            return
        task.agent = winner
        self.agents[winner].task = task.task_id
        task.tools_left = self.rng.randint(1, 4)
        self.at(now + timedelta(seconds=self.rng.uniform(2, 20)), "start", task.task_id)

    def start(self, now: datetime, task: _Task) -> None:
        self.command(self.coordinator.start_task, task.task_id, at=now)
        self.at(now + timedelta(seconds=self.rng.uniform(5, 120)), "call", task.task_id)

    def call(self, now: datetime, task: _Task) -> None:
        assert task.agent is not None
        tool = _TOOLS[self.rng.choice(task.capabilities)]
        self.calls += 1
        call_id = f"{self.result.prefix}c{self.calls:05d}"
        arguments = {"step": task.tools_left, "input": f"{task.task_id}/{self.rng.randrange(1000)}"}
        self.command(self.coordinator.record_tool_call, task.agent, tool, arguments,
                     task_id=task.task_id, call_id=call_id, at=now)
        task.open_call, task.call_started = (call_id, tool), now
        duration_ms = round(self.rng.lognormvariate(math.log(900), 1.0), 1)
        self.at(now + timedelta(milliseconds=duration_ms), "tool_result", task.task_id, duration_ms)

    def tool_result(self, now: datetime, task: _Task, duration_ms: float) -> None:
        assert task.agent is not None and task.open_call is not None
        call_id, tool = task.open_call
        failed = self.rng.random() < self.config.failure_rate
        if failed:
            task.tool_failed = True
            error: str | None = self.rng.choice(_TOOL_ERRORS)
            result = None
        else:
            error, result = None, {"bytes": self.rng.randrange(200, 20000)}
        self.command(self.coordinator.record_tool_result, task.agent, call_id, tool=tool,
                     duration_ms=duration_ms, result=result, error=error, at=now)
        task.open_call = None
        task.tools_left -= 1
        pause = timedelta(seconds=self.rng.uniform(5, 300))
        self.at(now + pause, "call" if task.tools_left > 0 else "finish", task.task_id)

    def finish(self, now: datetime, task: _Task) -> None:
        chance = 0.5 if task.tool_failed else self.config.failure_rate
        if self.rng.random() < chance:
            self.command(self.coordinator.fail_task, task.task_id, self.rng.choice(_TASK_FAILURES),
                         at=now)
        else:
            summary = {"summary": f"done: {task.task_id}", "tokens": self.rng.randrange(500, 50000)}
            self.command(self.coordinator.complete_task, task.task_id, summary, at=now)
        self.finished(task)

    def system_error(self, now: datetime) -> None:
        message, error_type, component = self.rng.choice(_SYSTEM_ERRORS)
        self.command(self.coordinator.record_error, message, error_type=error_type,
                     detail={"component": component}, at=now)

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        while self.queue:
            now, _, action, args = heapq.heappop(self.queue)
            if now > self.until:
                return
            if action == "join":
                self.join(now, self.agents[args[0]])
            elif action == "leave":
                if now < self.result.end:  # no departures once the last task is posted
                    self.leave(now, self.agents[args[0]])
            elif action == "post":
                self.post(now, args[0])
            elif action == "error":
                self.system_error(now)
            else:
                task = self.tasks[args[0]]
                if not task.active:  # failed when its agent left: its later steps do not happen
                    continue
                if action == "bid":
                    self.bid(now, task, self.agents[args[1]])
                elif action == "late_bid":
                    self.late_bid(now, task, self.agents[args[1]])
                elif action == "close":
                    self.close(now, task)
                elif action == "start":
                    self.start(now, task)
                elif action == "call":
                    self.call(now, task)
                elif action == "tool_result":
                    self.tool_result(now, task, args[1])
                else:
                    self.finish(now, task)


class _Counting(Coordinator):
    """A coordinator that counts the events it appended (another writer's are not its own)."""

    appended = 0

    def commit(self, decision: Decision) -> list[int]:
        positions = super().commit(decision)
        self.appended += len(decision.events)
        return positions


def run_demo(log: EventLog, config: DemoConfig,
             progress: Callable[[int, int], None] | None = None) -> DemoResult:
    """Simulate the swarm through a `Coordinator` on `log`, then snapshot the read models (so
    that a reader, and the SQL views of the read models, start from the head); `progress(done,
    total)` per task. `DemoResult.events` counts the events this run appended, whoever else
    appends to the log meanwhile. The simulation stops at now; a start after now is refused."""
    start = config.start or default_start(config.days)
    span = timedelta(days=config.days)
    now = utc_now()
    if start > now:
        raise InvalidEvent("start", f"{start.isoformat()} is in the future: nothing would have "
                                    "happened yet (an event is never stamped later than now)")
    run = next_run(log)
    rng = random.Random(f"swarmlog-demo:{config.seed}")
    coordinator = _Counting(log, new_id=SeededIds(f"swarmlog-demo-ids:{config.seed}:{run}"))
    result = DemoResult(run, f"r{run}-", start.astimezone(UTC), start + span, tasks=config.tasks)
    sim = _Sim(config, coordinator, rng, result, progress, now)

    for i in range(config.agents):
        caps = tuple(sorted(rng.sample(_CAPABILITIES, rng.randint(3, 5))))
        agent_id = f"{result.prefix}a{i + 1:02d}"
        name = _NAMES[i % len(_NAMES)] + ("" if i < len(_NAMES) else f"-{i // len(_NAMES) + 1}")
        agent = sim.agents[agent_id] = _Agent(agent_id, name, caps, rng.uniform(0.7, 1.3))
        offset = rng.uniform(0, 60) if i < max(1, round(config.agents * 0.8)) \
            else rng.uniform(0, 0.6) * span.total_seconds()
        sim.at(start + timedelta(seconds=offset), "join", agent.agent_id)
    for number, offset in enumerate(sorted(rng.uniform(60, span.total_seconds())
                                           for _ in range(config.tasks)), start=1):
        sim.at(start + timedelta(seconds=offset), "post", number)
    for _ in range(max(3, config.tasks // 50)):
        sim.at(start + timedelta(seconds=rng.uniform(0, span.total_seconds())), "error")
    sim.run()
    result.events = coordinator.appended
    log.snapshot()
    return result
