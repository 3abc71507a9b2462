"""The swarm's decider: the task and agent deciders composed, and what each decision reads.

A decision reads the states of one task and some agents (`Situation`); `wanted` says which, so
that the coordinator can load them and guard each one's stream with its expected version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from domain import agent, task
from domain.agent import AgentState
from domain.commands import (
    AgentCommand,
    CallTool,
    CloseBidding,
    Command,
    RecordError,
    RemoveAgent,
    TaskCommand,
    emit,
    text,
)
from domain.errors import InvalidTransition
from domain.events import Event, EventType
from domain.task import TaskState, TaskStatus

_T = EventType


@dataclass(frozen=True, slots=True)
class Situation:
    """The states a decision reads: one task (or none) and agents by id."""

    task: TaskState | None = None
    agents: Mapping[str, AgentState] = field(default_factory=dict)


def wanted(command: Command, seen: Situation) -> tuple[str | None, frozenset[str]]:
    """(task id, agent ids) whose states `command` reads, given what has been seen so far (a
    decision may read further once it sees more: the bidders of an auction, the task of a
    leaving agent). Repeat until the answer stops growing."""
    task_id: str | None = getattr(command, "task_id", None)
    agent_ids: set[str] = set()
    if isinstance(command, RecordError):
        return None, frozenset()  # a fact about the system: it reads nothing
    named: str | None = getattr(command, "agent_id", None)  # (a bidder, a starter, the agent)
    if named is not None:
        agent_ids.add(named)
    if isinstance(command, RemoveAgent):
        me = seen.agents.get(command.agent_id)
        task_id = None if me is None else me.current_task
    current = seen.task
    if task_id is not None and current is not None and current.task_id == task_id:
        if current.agent_id is not None:
            agent_ids.add(current.agent_id)
        if isinstance(command, CloseBidding):
            agent_ids.update(current.bids)
    return task_id, frozenset(agent_ids)


def decide(command: Command, situation: Situation) -> list[Event]:
    """The events `command` produces, `[]` for a harmless repeat, or InvalidTransition."""
    agents = situation.agents
    named = getattr(command, "task_id", None)
    if situation.task is not None and named is not None and situation.task.task_id != named:
        raise ValueError(f"the situation is of task {situation.task.task_id!r}, the command of "
                         f"{named!r}")
    match command:
        case TaskCommand():
            state = situation.task or task.initial(command.task_id)
            return task.decide(command, state, agents)
        case RemoveAgent():
            me = agents.get(command.agent_id) or agent.initial(command.agent_id)
            events = agent.decide(command, me)
            held = situation.task
            if events and held is not None and held.task_id == me.current_task \
                    and not task.is_terminal(held):
                # Its work cannot go on without it: the task fails in the same decision.
                task.require(held, _T.TASK_FAILED)
                events.append(emit(command, _T.TASK_FAILED, held.task_id, command.agent_id,
                                   reason=command.reason))
            return events
        case CallTool(task_id=str(task_id)):
            held = situation.task
            if held is None or held.status is not TaskStatus.RUNNING \
                    or held.agent_id != command.agent_id:
                current = "unknown" if held is None or held.status is None else held.status.value
                if held is not None and held.agent_id not in (None, command.agent_id):
                    current += f" by {held.agent_id!r}"
                raise InvalidTransition(task_id, current, f"call a tool as {command.agent_id!r} for")
            return agent.decide(command, agents.get(command.agent_id) or
                                agent.initial(command.agent_id))
        case AgentCommand():
            return agent.decide(command, agents.get(command.agent_id) or
                                agent.initial(command.agent_id))
        case RecordError():
            return [emit(command, _T.SYSTEM_ERROR, command.task_id, command.agent_id,
                         message=text("message", command.message),
                         error_type=command.error_type, detail=command.detail)]
    raise TypeError(f"not a command: {command!r}")
