"""The agent roster: presence, profile, current task, earnings, tool use, anomalies, queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.codec import build_event
from domain.events import Event, EventType
from domain.lifecycle import AgentPresence
from projections.agents import (
    AgentsProjection,
    AgentsState,
    get_agent,
    idle_agents,
    online_agents,
)
from projections.base import fold
from tests.strategies import recorded

_T = EventType
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def ev(kind: EventType, agent: str | None = "a1", task: str | None = None, minute: float = 0,
       **data: Any) -> Event:
    return build_event(kind, "coordinator", task, agent, data,
                       timestamp=T0 + timedelta(minutes=minute))


def roster(*events: Event) -> AgentsState:
    return fold(AgentsProjection(), recorded(events))


def won(task: str, agent: str = "a1", bid: int | None = 10, assigned: bool = True) -> list[Event]:
    """A task posted, bid on by `agent` and (if `assigned`) assigned to it."""
    out = [ev(_T.TASK_CREATED, None, task), ev(_T.TASK_BIDDING, None, task),
           ev(_T.BID_SUBMITTED, agent, task, bid_sats=bid if bid is not None else 7)]
    if assigned:
        out.append(ev(_T.TASK_ASSIGNED, agent, task, **({"bid_sats": bid} if bid else {})))
    return out


JOIN = ev(_T.AGENT_JOINED, name="Echo", capabilities=["search"], persona_id="p1", minute=1)


def test_an_agent_joins_with_its_profile_and_leaves_with_a_reason() -> None:
    state = roster(JOIN, ev(_T.AGENT_LEFT, reason="shutdown", minute=9))
    agent = get_agent(state, "a1")
    assert agent is not None
    assert (agent.name, agent.capabilities, agent.persona_id) == ("Echo", ["search"], "p1")
    assert agent.presence is AgentPresence.OFFLINE and not agent.online
    assert (agent.joined_at, agent.left_at) == (T0 + timedelta(minutes=1),
                                                 T0 + timedelta(minutes=9))
    assert agent.left_reason == "shutdown" and agent.anomaly_count == 0


def test_an_agent_may_rejoin_and_a_repeated_join_updates_its_profile() -> None:
    state = roster(JOIN, ev(_T.AGENT_LEFT), ev(_T.AGENT_JOINED, minute=5),
                   ev(_T.AGENT_JOINED, name="Echo 2", minute=6))
    agent = state.agents["a1"]
    assert agent.online and agent.joined_at == T0 + timedelta(minutes=5)
    assert agent.name == "Echo 2"
    assert [a.reason for a in agent.anomalies] == ["agent is online already"]


def test_winning_and_completing_a_task_earns_the_winning_bid() -> None:
    state = roster(JOIN, *won("t1", bid=25), ev(_T.TASK_STARTED, task="t1"))
    assert state.agents["a1"].current_task == "t1"
    assert idle_agents(state) == []
    state = fold(AgentsProjection(), recorded([ev(_T.TASK_COMPLETED, task="t1")], 7), state)
    agent = state.agents["a1"]
    assert (agent.tasks_won, agent.tasks_completed, agent.sats_earned) == (1, 1, 25)
    assert agent.current_task is None and agent.bids == 1
    assert [a.agent_id for a in idle_agents(state)] == ["a1"]


def test_an_assignment_without_bid_sats_earns_the_agents_bid() -> None:
    state = roster(JOIN, *won("t1", bid=None), ev(_T.TASK_STARTED, task="t1"),
                   ev(_T.TASK_COMPLETED, task="t1"))
    assert state.agents["a1"].sats_earned == 7


def test_a_failed_task_counts_against_its_agent_and_earns_nothing() -> None:
    state = roster(JOIN, *won("t1"), ev(_T.TASK_FAILED, None, "t1", reason="timeout"))
    agent = state.agents["a1"]
    assert (agent.tasks_won, agent.tasks_failed, agent.sats_earned) == (1, 1, 0)
    assert agent.current_task is None


def test_a_departed_agent_keeps_its_task_until_the_coordinator_fails_it() -> None:
    state = roster(JOIN, *won("t1"), ev(_T.AGENT_LEFT))
    assert state.agents["a1"].current_task == "t1" and not state.agents["a1"].online
    state = fold(AgentsProjection(), recorded([ev(_T.TASK_FAILED, "a1", "t1")], 7), state)
    agent = state.agents["a1"]
    assert (agent.current_task, agent.tasks_failed, agent.anomaly_count) == (None, 1, 0)


def test_work_by_an_unknown_or_departed_agent_is_an_anomaly_but_still_counted() -> None:
    state = roster(ev(_T.TOOL_CALLED, "ghost", call_id="c1"), JOIN, ev(_T.AGENT_LEFT),
                   ev(_T.TIMMY_THOUGHT, content="hm"))
    ghost, agent = state.agents["ghost"], state.agents["a1"]
    assert ghost.tool_calls == 1 and not ghost.online and ghost.joined_at is None
    assert [a.reason for a in ghost.anomalies] == ["unknown agent (it never joined)"]
    assert agent.thoughts == 1
    assert [a.reason for a in agent.anomalies] == ["agent is offline (it left)"]
    assert state.anomaly_count == 2


def test_an_assignment_to_an_unknown_agent_is_an_anomaly() -> None:
    state = roster(*won("t1", agent="a7"))
    agent = state.agents["a7"]
    assert agent.tasks_won == 1 and agent.current_task == "t1"
    assert agent.anomaly_count == 2  # its bid, and its assignment


def test_a_tool_result_needs_a_matching_call() -> None:
    state = roster(JOIN, ev(_T.TOOL_CALLED, call_id="c1"), ev(_T.TOOL_COMPLETED, call_id="c1"),
                   ev(_T.TOOL_COMPLETED, call_id="c1"), ev(_T.TOOL_FAILED, error="x"),
                   ev(_T.TOOL_CALLED, call_id="c2"), ev(_T.TOOL_CALLED, call_id="c2"))
    agent = state.agents["a1"]
    assert (agent.tool_calls, agent.tool_failures) == (3, 1)
    assert [a.reason for a in agent.anomalies] == [
        "no open tool.called with call_id 'c1'",
        "no call_id to match a tool.called",
        "call_id 'c2' is already open",
    ]
    assert state.open_calls == {"c2": "a1"}


def test_a_tool_result_from_another_agent_than_the_caller_is_an_anomaly() -> None:
    state = roster(JOIN, ev(_T.AGENT_JOINED, "a2"), ev(_T.TOOL_CALLED, call_id="c1"),
                   ev(_T.TOOL_COMPLETED, "a2", call_id="c1"))
    assert [a.reason for a in state.agents["a2"].anomalies] == ["call 'c1' was made by 'a1'"]


def test_agent_events_without_an_agent_id_are_anomalies_of_the_roster() -> None:
    state = roster(ev(_T.AGENT_JOINED, None), ev(_T.TOOL_CALLED, None, call_id="c1"))
    assert state.agents == {}
    assert [a.reason for a in state.anomalies] == ["no agent_id", "no agent_id"]
    assert state.open_calls == {"c1": None}  # still matched by call_id later


def test_an_agent_assigned_while_busy_is_an_anomaly() -> None:
    state = roster(JOIN, *won("t1"), *won("t2"))
    agent = state.agents["a1"]
    assert agent.current_task == "t2" and agent.tasks_won == 2
    assert [a.reason for a in agent.anomalies] == ["still on task 't1'"]


def test_online_and_idle_queries_return_copies_in_order_of_first_appearance() -> None:
    state = roster(ev(_T.AGENT_JOINED, "a2"), JOIN, ev(_T.AGENT_JOINED, "a3"),
                   ev(_T.AGENT_LEFT, "a3"), *won("t1", agent="a2"))
    assert [a.agent_id for a in online_agents(state)] == ["a2", "a1"]
    assert [a.agent_id for a in idle_agents(state)] == ["a1"]
    copy = get_agent(state, "a1")
    assert copy is not None
    copy.capabilities.append("x")
    assert state.agents["a1"].capabilities == ["search"]
    assert get_agent(state, "nobody") is None


def test_the_state_round_trips_through_json() -> None:
    projection = AgentsProjection()
    state = roster(JOIN, *won("t1"), ev(_T.TOOL_CALLED, call_id="c1"), ev(_T.AGENT_LEFT),
                   ev(_T.TOOL_FAILED, "ghost", call_id="c9"))
    assert projection.load(projection.dump(state)) == state
