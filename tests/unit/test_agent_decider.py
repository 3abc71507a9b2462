"""The agent decider (`domain.agent`) and what the swarm decider (`domain.swarm`) adds to it,
with no store at all: Given the past events of an agent folded with `evolve`, When a command is
decided, Then these events, or this InvalidTransition. Also the presence table, `refusal`,
`follow_task`, and what each decision reads (`wanted`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce
from typing import Any

import pytest

from domain import agent, task
from domain.agent import ACTIVITY_TYPES, AGENT_EVENT_TYPES, TRANSITIONS, AgentState, Presence
from domain.commands import (
    CallTool,
    Command,
    FinishTool,
    PostTask,
    RecordError,
    RegisterAgent,
    RemoveAgent,
)
from domain.errors import InvalidEvent, InvalidTransition
from domain.events import Event, EventType
from domain.swarm import Situation, decide, wanted
from domain.task import TaskState, TaskStatus
from tests.strategies import EPOCH, ev

_T = EventType
_ON, _OFF = Presence.ONLINE, Presence.OFFLINE

# -- Given, When, Then ----------------------------------------------------------------------------

JOINED = [ev(_T.AGENT_JOINED, agent="a1", name="Ada", capabilities=["py"], persona_id="p1")]
LEFT = [*JOINED, ev(_T.AGENT_LEFT, agent="a1", reason="bye")]
CALLING = [*JOINED, ev(_T.TOOL_CALLED, "t1", "a1", tool="grep", call_id="c1")]


def past(*events: Event, agent_id: str = "a1") -> AgentState:
    """Given: the agent after these events."""
    return reduce(agent.evolve, events, agent.initial(agent_id))


def working(state: AgentState, task_id: str = "t1") -> AgentState:
    """Given: the agent, assigned `task_id`."""
    return agent.follow_task(state, task_id, assigned=True)


def a_task(status: TaskStatus, agent_id: str | None = "a1", task_id: str = "t1") -> TaskState:
    """Given: a task in `status`, held by `agent_id`."""
    return TaskState(task_id=task_id, status=status, agent_id=agent_id)


def when(command: Command, me: AgentState | None = None, held: TaskState | None = None
         ) -> list[tuple[str, str | None, str | None, dict[str, Any]]]:
    """When `command` is decided by the swarm's decider; Then (type, task, agent, payload) of
    each event it produces."""
    agents: Mapping[str, AgentState] = {} if me is None else {me.agent_id: me}
    return [(e.event_type.value, e.task_id, e.agent_id, e.data.model_dump(exclude_unset=True))
            for e in decide(command, Situation(held, agents))]


def refused(command: Command, me: AgentState | None = None, held: TaskState | None = None) -> str:
    """When `command` is decided; Then it is refused: the message."""
    with pytest.raises(InvalidTransition) as caught:
        when(command, me, held)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def register(name: str = "Ada", *caps: str, persona_id: str | None = None) -> RegisterAgent:
    return RegisterAgent(agent_id="a1", name=name, capabilities=caps, persona_id=persona_id,
                         at=EPOCH)


def remove(agent_id: str = "a1", reason: str = "crashed") -> RemoveAgent:
    return RemoveAgent(agent_id=agent_id, reason=reason, at=EPOCH)


def call(call_id: str = "c2", task_id: str | None = None) -> CallTool:
    return CallTool(agent_id="a1", tool="grep", call_id=call_id, arguments={"q": "x"},
                    task_id=task_id, at=EPOCH)


def finish(call_id: str = "c1", error: str | None = None, agent_id: str = "a1") -> FinishTool:
    return FinishTool(agent_id=agent_id, call_id=call_id, tool="grep", duration_ms=12.5,
                      result=None if error else {"n": 3}, error=error, at=EPOCH)


# -- the presence table ---------------------------------------------------------------------------


def test_an_agent_joins_leaves_and_may_rejoin() -> None:
    assert TRANSITIONS[None] == {_T.AGENT_JOINED: _ON}
    assert TRANSITIONS[_ON][_T.AGENT_LEFT] is _OFF
    assert TRANSITIONS[_OFF] == {_T.AGENT_JOINED: _ON}
    assert past().presence is None
    assert past(*JOINED).presence is _ON
    assert past(*LEFT).presence is _OFF
    assert past(*LEFT, *JOINED).presence is _ON
    assert not any(agent.is_terminal(past(*story)) for story in ((), JOINED, LEFT))


def test_the_table_refuses_a_second_join_a_second_leave_and_a_stranger_leaving() -> None:
    assert agent.refusal(past(*JOINED), ev(_T.AGENT_JOINED, agent="a1")) == "agent is online already"
    assert agent.refusal(past(*LEFT), ev(_T.AGENT_LEFT, agent="a1")) == "agent is offline (it left)"
    assert agent.refusal(past(), ev(_T.AGENT_LEFT, agent="a1")) == "unknown agent (it never joined)"
    assert agent.refusal(past(*LEFT), ev(_T.AGENT_JOINED, agent="a1")) is None


@pytest.mark.parametrize("kind", sorted(ACTIVITY_TYPES | {_T.TASK_ASSIGNED}))
def test_only_an_online_agent_works_or_is_assigned(kind: EventType) -> None:
    assert TRANSITIONS[_ON][kind] is _ON
    assert kind not in TRANSITIONS[_OFF] and kind not in TRANSITIONS[None]
    assert agent.refusal(past(*JOINED), ev(kind, agent="a1")) is None
    assert agent.refusal(past(*LEFT), ev(kind, agent="a1")) == "agent is offline (it left)"
    assert agent.refusal(past(), ev(kind, agent="a1")) == "unknown agent (it never joined)"
    with pytest.raises(InvalidTransition, match="it is offline"):
        agent.require(past(*LEFT), kind, "work as")


@pytest.mark.parametrize("kind", sorted(set(EventType) - AGENT_EVENT_TYPES))
def test_the_table_says_nothing_of_events_that_are_not_the_agents(kind: EventType) -> None:
    for story in ((), JOINED, LEFT):
        assert agent.refusal(past(*story), ev(kind, agent="a1")) is None


def test_the_coordinator_may_fail_the_task_of_an_agent_that_left() -> None:
    assert _T.TASK_FAILED not in ACTIVITY_TYPES and _T.TASK_FAILED not in AGENT_EVENT_TYPES
    assert task.require(a_task(TaskStatus.ASSIGNED), _T.TASK_FAILED) is TaskStatus.FAILED


def test_an_agent_is_available_when_online_without_a_task() -> None:
    assert agent.is_available(past(*JOINED))
    assert not agent.is_available(working(past(*JOINED)))
    assert not agent.is_available(past(*LEFT))
    assert not agent.is_available(past())


# -- evolve and follow_task ---------------------------------------------------------------------


def test_joining_records_the_profile_and_a_repeated_join_the_newest_word() -> None:
    me = past(*JOINED)
    assert (me.name, me.capabilities, me.persona_id) == ("Ada", ["py"], "p1")
    again = agent.evolve(me, ev(_T.AGENT_JOINED, agent="a1", capabilities=["sql"]))
    assert (again.name, again.capabilities, again.persona_id) == ("Ada", ["sql"], "p1")


def test_tool_calls_open_in_their_task_and_close_when_they_finish() -> None:
    me = past(*CALLING, ev(_T.TOOL_CALLED, agent="a1", call_id="c2"))
    assert me.open_calls == {"c1": "t1", "c2": None}
    me = agent.evolve(me, ev(_T.TOOL_COMPLETED, "t1", "a1", call_id="c1"))
    me = agent.evolve(me, ev(_T.TOOL_FAILED, agent="a1", call_id="c2"))
    assert me.open_calls == {}
    assert agent.evolve(me, ev(_T.TOOL_COMPLETED, agent="a1", call_id="c9")) == me


def test_leaving_drops_the_open_calls_but_keeps_the_task_until_it_fails() -> None:
    me = agent.evolve(working(past(*CALLING)), ev(_T.AGENT_LEFT, agent="a1"))
    assert (me.presence, me.open_calls, me.current_task) == (_OFF, {}, "t1")
    assert agent.evolve(me, ev(_T.AGENT_LEFT, agent="a1")) == me


def test_a_status_report_is_kept_and_changes_nothing_else() -> None:
    me = agent.evolve(past(*JOINED), ev(_T.AGENT_STATUS_CHANGED, agent="a1", status="busy"))
    assert me.status == "busy" and me.presence is _ON and me.current_task is None


def test_the_current_task_follows_its_assignment_and_its_end() -> None:
    me = working(past(*JOINED), "t1")
    assert me.current_task == "t1"
    assert agent.follow_task(me, "t2", assigned=False) == me  # another task's end
    assert agent.follow_task(me, "t1", assigned=False).current_task is None
    assert past(*JOINED).current_task is None  # (follow_task returned new states)


def test_evolve_ignores_what_is_not_about_the_agent() -> None:
    me = past(*JOINED)
    for kind in (_T.TASK_CREATED, _T.SYSTEM_INFO, _T.TIMMY_THOUGHT, _T.BID_SUBMITTED):
        assert agent.evolve(me, ev(kind, "t1", "a1")) == me


# -- joining and leaving ------------------------------------------------------------------------


def test_registering_an_agent_records_its_profile_and_a_repeat_is_harmless() -> None:
    assert when(register("Ada", "py", persona_id="p1")) == [
        ("agent.joined", None, "a1", {"name": "Ada", "capabilities": ["py"], "persona_id": "p1"})]
    assert when(register("Ada", "py"), past(*JOINED)) == []
    assert refused(register("Bob"), past(*JOINED)) == "cannot register 'a1': it is online"
    assert when(register("Ada", "sql"), past(*LEFT))[0][0] == "agent.joined"
    with pytest.raises(InvalidEvent, match="name"):
        when(register(""))


def test_removing_an_agent_is_harmless_once_it_left_and_refused_for_a_stranger() -> None:
    assert when(remove(), past(*JOINED)) == [("agent.left", None, "a1", {"reason": "crashed"})]
    assert when(remove(), past(*LEFT)) == []
    assert refused(remove("ghost")) == "cannot deregister 'ghost': it is unknown"


@pytest.mark.parametrize("status", [TaskStatus.ASSIGNED, TaskStatus.RUNNING])
def test_an_agent_leaving_fails_its_task_in_the_same_decision(status: TaskStatus) -> None:
    me = working(past(*JOINED))
    assert when(remove(), me, a_task(status)) == [
        ("agent.left", None, "a1", {"reason": "crashed"}),
        ("task.failed", "t1", "a1", {"reason": "crashed"})]


def test_an_agent_leaving_after_its_task_ended_fails_nothing() -> None:
    assert when(remove(), past(*JOINED), a_task(TaskStatus.RUNNING)) == [
        ("agent.left", None, "a1", {"reason": "crashed"})]  # not its task any more
    me = working(past(*JOINED))
    assert when(remove(), me, a_task(TaskStatus.COMPLETED)) == [
        ("agent.left", None, "a1", {"reason": "crashed"})]


# -- tool calls ---------------------------------------------------------------------------------


def test_an_online_agent_calls_a_tool_and_may_not_reuse_an_open_call_id() -> None:
    assert when(call("c2"), past(*CALLING)) == [
        ("tool.called", None, "a1", {"tool": "grep", "call_id": "c2", "arguments": {"q": "x"}})]
    assert refused(call("c1"), past(*CALLING)) == \
        "cannot start the tool call 'c1': it is open already (called by 'a1')"
    assert refused(call("c2"), past(*LEFT)) == "cannot call a tool as 'a1': it is offline"
    assert refused(call("c2"), past()) == "cannot call a tool as 'a1': it is unknown"


def test_a_tool_call_for_a_task_needs_that_task_running_by_the_caller() -> None:
    me = working(past(*JOINED))
    assert when(call("c2", "t1"), me, a_task(TaskStatus.RUNNING))[0][:3] == ("tool.called", "t1", "a1")
    assert refused(call("c2", "t1"), me, a_task(TaskStatus.ASSIGNED)) == \
        "cannot call a tool as 'a1' for 't1': it is assigned"
    assert refused(call("c2", "t1"), me, a_task(TaskStatus.RUNNING, "a2")) == \
        "cannot call a tool as 'a1' for 't1': it is running by 'a2'"
    assert refused(call("c2", "t1"), me) == "cannot call a tool as 'a1' for 't1': it is unknown"
    with pytest.raises(InvalidTransition) as caught:  # the agent's own decider, asked directly
        agent.decide(call("c2", "t1"), past(*LEFT))
    assert str(caught.value) == "cannot call a tool for 't1' as 'a1': it is offline"


def test_a_finished_call_is_recorded_in_the_stream_of_its_start() -> None:
    assert when(finish("c1"), past(*CALLING)) == [
        ("tool.completed", "t1", "a1", {"tool": "grep", "call_id": "c1", "duration_ms": 12.5,
                                        "result": {"n": 3}})]
    assert when(finish("c1", error="boom"), past(*CALLING)) == [
        ("tool.failed", "t1", "a1", {"tool": "grep", "call_id": "c1", "duration_ms": 12.5,
                                     "error": "boom"})]


def test_finishing_a_call_that_is_not_open_for_the_agent_is_refused() -> None:
    assert refused(finish("c404"), past(*CALLING)) == \
        "cannot finish the tool call 'c404': it is not open for 'a1'"
    someone_else = past(ev(_T.AGENT_JOINED, agent="a2"), agent_id="a2")
    assert refused(finish("c1", agent_id="a2"), someone_else) == \
        "cannot finish the tool call 'c1': it is not open for 'a2'"
    assert refused(finish("c1"), past(*CALLING, ev(_T.AGENT_LEFT, agent="a1"))) == \
        "cannot complete a tool call as 'a1': it is offline"


# -- the system ---------------------------------------------------------------------------------


def test_a_system_error_is_recorded_never_refused_and_reads_nothing() -> None:
    command = RecordError(message="disk full", error_type="OSError", detail={"free": 0},
                          task_id="t1", agent_id="ghost", at=EPOCH)
    assert when(command) == [("system.error", "t1", "ghost", {
        "message": "disk full", "error_type": "OSError", "detail": {"free": 0}})]
    assert wanted(command, Situation()) == (None, frozenset())


def test_the_agent_decider_refuses_what_is_not_a_command_of_an_agent() -> None:
    with pytest.raises(TypeError, match="not an agent command"):
        agent.decide(PostTask(task_id="t1", description="x", at=EPOCH),  # type: ignore[arg-type]
                     agent.initial("a1"))


# -- what a decision reads ----------------------------------------------------------------------


def test_an_agent_command_reads_its_agent() -> None:
    for command in (register(), call(), finish()):
        assert wanted(command, Situation()) == (None, frozenset({"a1"}))
    assert wanted(call(task_id="t1"), Situation()) == ("t1", frozenset({"a1"}))


def test_a_leaving_agent_reads_its_task_once_it_has_seen_it_and_then_stops_growing() -> None:
    seen = Situation()
    assert wanted(remove(), seen) == (None, frozenset({"a1"}))
    me = working(past(*JOINED), "t7")
    seen = Situation(None, {"a1": me})
    assert wanted(remove(), seen) == ("t7", frozenset({"a1"}))
    seen = Situation(a_task(TaskStatus.RUNNING, "a1", "t7"), {"a1": me})
    assert wanted(remove(), seen) == ("t7", frozenset({"a1"}))
