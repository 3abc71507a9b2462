"""Coordinator processes racing on one store, for the concurrency tests.

`python -m tests.racers` is a racer: it reads jobs from stdin, one JSON object a line, and
answers each with one JSON line. A job names the store (`location`: an SQLite path or a
PostgreSQL URL), the racer's `name` (also the `source` of what it appends), a `barrier`
directory shared by the `racers` racing together, and its `rounds`: one command or null per
round. In each round every racer decides its command against the read models (`prepare`),
waits at the barrier until every racer has decided, and commits, so that all of them decide on
the same log and commit at once. A racer whose commit raises ConcurrencyError decides again and
retries, at most `retries` times, then gives up. The answer lists one outcome per round:
"appended", "repeat" (a harmless repeat: nothing to append), "refused" (InvalidTransition), each
after a "conflict, " per ConcurrencyError, or "conflict, gave up"; any other exception is
answered as "error: ...", and the racer goes on with the next job.

`Racers` (the test side) starts racers once and runs jobs on them.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from domain.commands import (
    CloseBidding,
    Command,
    CompleteTask,
    FailTask,
    RegisterAgent,
    RemoveAgent,
    StartTask,
    SubmitBid,
)
from domain.errors import ConcurrencyError, InvalidTransition
from domain.ids import utc_now
from swarmlog.coordinator import Coordinator
from swarmlog.log import EventLog

ROOT = Path(__file__).resolve().parents[1]
BARRIER_SECONDS = 10.0

#: A command as JSON ([verb, *args]) -> the command, at a time, from a source.
COMMANDS: dict[str, Callable[..., Command]] = {
    "close": lambda at, source, t: CloseBidding(task_id=t, at=at, source=source),
    "start": lambda at, source, t: StartTask(task_id=t, at=at, source=source),
    "complete": lambda at, source, t: CompleteTask(task_id=t, result="ok", at=at, source=source),
    "fail": lambda at, source, t: FailTask(task_id=t, reason="given up", at=at, source=source),
    "bid": lambda at, source, t, a, sats: SubmitBid(task_id=t, agent_id=a, bid_sats=sats, at=at,
                                                    source=source),
    "register": lambda at, source, a: RegisterAgent(agent_id=a, name=f"agent {a}", at=at,
                                                    source=source),
    "remove": lambda at, source, a: RemoveAgent(agent_id=a, reason="crashed", at=at, source=source),
}


def command(spec: Sequence[Any], source: str, at: datetime | None = None) -> Command:
    """The command a JSON spec (["close", "t1"]) stands for."""
    verb, *args = spec
    return COMMANDS[verb](utc_now() if at is None else at, source, *args)


def _wait(barrier: Path, round_: int, racers: int, name: str) -> None:
    (barrier / f"{round_}-{name}").touch()
    deadline = time.monotonic() + BARRIER_SECONDS
    while sum(1 for p in barrier.iterdir() if p.name.startswith(f"{round_}-")) < racers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: the other racers never reached round {round_}")
        time.sleep(0.001)


def _decide(coordinator: Coordinator, spec: Sequence[Any], name: str) -> Any:
    try:
        return coordinator.prepare(command(spec, name))
    except InvalidTransition:
        return None


def race(job: dict[str, Any]) -> list[str]:
    """Run one racer's rounds of a job; its outcomes."""
    name, barrier, racers = job["name"], Path(job["barrier"]), job["racers"]
    outcomes = []
    with EventLog(job["location"]) as log:
        coordinator = Coordinator(log, source=name)
        for round_, spec in enumerate(job["rounds"]):
            decision = None if spec is None else _decide(coordinator, spec, name)
            _wait(barrier, round_, racers, name)
            if spec is None:
                outcomes.append("idle")
                continue
            conflicts = ""
            for attempt in range(job.get("retries", 0) + 1):
                if attempt:
                    decision = _decide(coordinator, spec, name)
                if decision is None:
                    outcomes.append(conflicts + "refused")
                    break
                if not decision.events:
                    outcomes.append(conflicts + "repeat")
                    break
                try:
                    coordinator.commit(decision)
                except ConcurrencyError:
                    conflicts += "conflict, "
                else:
                    outcomes.append(conflicts + "appended")
                    break
            else:
                outcomes.append(conflicts + "gave up")
    return outcomes


def main() -> None:
    for line in sys.stdin:
        job = json.loads(line)
        try:
            answer: dict[str, Any] = {"name": job["name"], "outcomes": race(job)}
        except Exception as e:
            answer = {"name": job["name"], "error": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


class Racers:
    """`count` racer processes, started once; `run` races them on one store."""

    def __init__(self, count: int) -> None:
        self.processes = [
            subprocess.Popen([sys.executable, "-m", "tests.racers"], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            for _ in range(count)]
        self._jobs = 0

    def run(self, location: str, barrier_root: Path, rounds: Sequence[Sequence[Any]], *,
            retries: int = 3, timeout: float = 30.0) -> dict[str, list[str]]:
        """Race `rounds[i]` (one command spec or None a round) on racer i, all of them at once;
        each racer's outcomes by its name ("racer-1"...)."""
        self._jobs += 1
        barrier = barrier_root / f"barrier-{self._jobs}"
        barrier.mkdir()
        busy = self.processes[: len(rounds)]
        for i, (process, theirs) in enumerate(zip(busy, rounds, strict=True), start=1):
            assert process.stdin is not None
            process.stdin.write(json.dumps({
                "location": location, "name": f"racer-{i}", "barrier": str(barrier),
                "racers": len(rounds), "rounds": list(theirs), "retries": retries}) + "\n")
            process.stdin.flush()
        answers: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        for process in busy:  # every answer is read, so that the next job starts in step
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = process.stdout.readline() if ready else ""
            if not line:
                raise AssertionError(f"a racer did not answer (exit code {process.poll()})")
            answer = json.loads(line)
            answers[answer["name"]] = answer
        failed = [a for a in answers.values() if "error" in a]
        if failed:
            raise AssertionError("\n".join(f"{a['name']} failed: {a['traceback']}" for a in failed))
        return {name: a["outcomes"] for name, a in answers.items()}

    def close(self) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
