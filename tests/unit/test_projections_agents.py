"""The agent roster: presence, profile, current task, earnings, tool use, anomalies, queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.agent import AgentState, Presence
from domain.events import Event, EventType
from projections.agents import AgentsState, get_agent, idle_agents, online_agents
from projections.models import ReadModels, ReadModelsProjection
from tests.strategies import ev, stored

_T = EventType
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def fold(*events: Event) -> ReadModels:
    """The read models of `events` as the runner folds them (the fast row fold), checked
    against the plain fold of the typed events."""
    p = ReadModelsProjection()
    plain = p.initial()
    for position, event in enumerate(events, start=1):
        plain = p.apply(plain, position, event)
    fast = p.fold_rows(p.initial(), stored(events))
    assert fast == plain
    return fast


def roster(*events: Event) -> AgentsState:
    return fold(*events).agents


def won(task: str, agent: str = "a1", bid: int | None = 10, assigned: bool = True) -> list[Event]:
    """A task posted, bid on by `agent` and (if `assigned`) assigned to it."""
    out = [ev(_T.TASK_CREATED, task), ev(_T.TASK_BIDDING, task),
           ev(_T.BID_SUBMITTED, task, agent, bid_sats=7 if bid is None else bid)]
    if assigned:
        out.append(ev(_T.TASK_ASSIGNED, task, agent) if bid is None else
                   ev(_T.TASK_ASSIGNED, task, agent, bid_sats=bid))
    return out


JOIN = ev(_T.AGENT_JOINED, agent="a1", name="Echo", capabilities=["search"], persona_id="p1",
          at=T0, minute=1)


def test_an_agent_joins_with_its_profile_and_leaves_with_a_reason() -> None:
    state = roster(JOIN, ev(_T.AGENT_LEFT, agent="a1", reason="shutdown", at=T0, minute=9))
    agent = get_agent(state, "a1")
    assert agent is not None
    assert (agent.name, agent.capabilities, agent.persona_id) == ("Echo", ["search"], "p1")
    assert agent.presence is Presence.OFFLINE and not agent.online
    assert (agent.joined_at, agent.left_at) == (T0 + timedelta(minutes=1),
                                                 T0 + timedelta(minutes=9))
    assert agent.left_reason == "shutdown" and agent.anomaly_count == 0


def test_an_agent_may_rejoin_and_a_repeated_join_updates_its_profile() -> None:
    state = roster(JOIN, ev(_T.AGENT_LEFT, agent="a1"),
                   ev(_T.AGENT_JOINED, agent="a1", at=T0, minute=5),
                   ev(_T.AGENT_JOINED, agent="a1", name="Echo 2", at=T0, minute=6))
    agent = state.agents["a1"]
    assert agent.online and agent.joined_at == T0 + timedelta(minutes=5)
    assert (agent.name, agent.capabilities) == ("Echo 2", ["search"])  # unsaid fields stay
    assert [a.reason for a in agent.anomalies] == ["agent is online already"]


def test_winning_and_completing_a_task_earns_the_winning_bid() -> None:
    story = [JOIN, *won("t1", bid=25), ev(_T.TASK_STARTED, "t1", "a1")]
    working = roster(*story)
    assert working.agents["a1"].current_task == "t1"
    assert idle_agents(working) == []
    state = roster(*story, ev(_T.TASK_COMPLETED, "t1", "a1"))
    agent = state.agents["a1"]
    assert (agent.tasks_won, agent.tasks_completed, agent.sats_earned) == (1, 1, 25)
    assert agent.current_task is None and agent.bids == 1
    assert [a.agent_id for a in idle_agents(state)] == ["a1"]


def test_an_assignment_without_bid_sats_earns_the_agents_bid() -> None:
    state = roster(JOIN, *won("t1", bid=None), ev(_T.TASK_STARTED, "t1", "a1"),
                   ev(_T.TASK_COMPLETED, "t1", "a1"))
    assert state.agents["a1"].sats_earned == 7


def test_a_failed_task_counts_against_its_agent_and_earns_nothing() -> None:
    state = roster(JOIN, *won("t1"), ev(_T.TASK_FAILED, "t1", reason="timeout"))
    agent = state.agents["a1"]
    assert (agent.tasks_won, agent.tasks_failed, agent.sats_earned) == (1, 1, 0)
    assert agent.current_task is None


def test_a_departed_agent_keeps_its_task_until_the_coordinator_fails_it() -> None:
    story = [JOIN, *won("t1"), ev(_T.AGENT_LEFT, agent="a1")]
    gone = roster(*story)
    assert gone.agents["a1"].current_task == "t1" and not gone.agents["a1"].online
    state = roster(*story, ev(_T.TASK_FAILED, "t1", "a1", reason="agent left"))
    agent = state.agents["a1"]
    assert (agent.current_task, agent.tasks_failed, agent.anomaly_count) == (None, 1, 0)


def test_work_by_an_unknown_or_departed_agent_is_an_anomaly_but_still_counted() -> None:
    state = roster(ev(_T.TOOL_CALLED, agent="ghost", call_id="c1"), JOIN,
                   ev(_T.AGENT_LEFT, agent="a1"), ev(_T.TIMMY_THOUGHT, agent="a1", content="hm"))
    ghost, agent = state.agents["ghost"], state.agents["a1"]
    assert ghost.tool_calls == 1 and ghost.presence is None and ghost.joined_at is None
    assert [a.reason for a in ghost.anomalies] == ["unknown agent (it never joined)"]
    assert agent.thoughts == 1
    assert [a.reason for a in agent.anomalies] == ["agent is offline (it left)"]
    assert state.anomaly_count == 2


def test_an_assignment_to_an_unknown_agent_is_an_anomaly() -> None:
    state = roster(*won("t1", agent="a7"))
    agent = state.agents["a7"]
    assert agent.tasks_won == 1 and agent.current_task == "t1"
    assert agent.anomaly_count == 2  # its bid, and its assignment


def test_a_tool_result_needs_a_matching_open_call_of_the_same_agent() -> None:
    state = roster(JOIN, ev(_T.TOOL_CALLED, agent="a1", call_id="c1"),
                   ev(_T.TOOL_COMPLETED, agent="a1", call_id="c1"),
                   ev(_T.TOOL_COMPLETED, agent="a1", call_id="c1"),
                   ev(_T.TOOL_FAILED, agent="a1", error="x"),
                   ev(_T.TOOL_CALLED, "t1", "a1", call_id="c2"),
                   ev(_T.TOOL_CALLED, agent="a1", call_id="c2"))
    agent = state.agents["a1"]
    assert (agent.tool_calls, agent.tool_failures) == (3, 1)
    assert [a.reason for a in agent.anomalies] == [
        "no open tool.called with call_id 'c1'",
        "no call_id to match a tool.called",
        "call_id 'c2' is already open",
    ]
    assert agent.open_calls == {"c2": None}  # call id -> its task, as last called


def test_a_tool_result_from_another_agent_than_the_caller_is_an_anomaly() -> None:
    # Open calls are per agent: a2 has no call c1 to finish, and a1's stays open.
    state = roster(JOIN, ev(_T.AGENT_JOINED, agent="a2"),
                   ev(_T.TOOL_CALLED, agent="a1", call_id="c1"),
                   ev(_T.TOOL_COMPLETED, agent="a2", call_id="c1"))
    assert [a.reason for a in state.agents["a2"].anomalies] == [
        "no open tool.called with call_id 'c1'"]
    assert state.agents["a1"].open_calls == {"c1": None}


def test_leaving_ends_the_agents_open_calls() -> None:
    state = roster(JOIN, ev(_T.TOOL_CALLED, agent="a1", call_id="c1"),
                   ev(_T.AGENT_LEFT, agent="a1"), ev(_T.AGENT_JOINED, agent="a1"),
                   ev(_T.TOOL_COMPLETED, agent="a1", call_id="c1"))
    agent = state.agents["a1"]
    assert agent.open_calls == {}
    assert [a.reason for a in agent.anomalies] == ["no open tool.called with call_id 'c1'"]


def test_agent_events_without_an_agent_id_are_anomalies_of_the_roster() -> None:
    state = roster(ev(_T.AGENT_JOINED), ev(_T.TOOL_CALLED, call_id="c1"))
    assert state.agents == {}
    assert [a.reason for a in state.anomalies] == ["no agent_id", "no agent_id"]


def test_the_status_an_agent_reports_is_kept() -> None:
    state = roster(JOIN, ev(_T.AGENT_STATUS_CHANGED, agent="a1", status="busy", task="t1"),
                   ev(_T.AGENT_STATUS_CHANGED, agent="a1", status="idle"))
    assert state.agents["a1"].status == "idle" and state.anomaly_count == 0


def test_an_agent_assigned_while_busy_is_an_anomaly() -> None:
    state = roster(JOIN, *won("t1"), *won("t2"))
    agent = state.agents["a1"]
    assert agent.current_task == "t2" and agent.tasks_won == 2
    assert [a.reason for a in agent.anomalies] == ["still on task 't1'"]


def test_online_and_idle_queries_return_copies_in_order_of_first_appearance() -> None:
    state = roster(ev(_T.AGENT_JOINED, agent="a2"), JOIN, ev(_T.AGENT_JOINED, agent="a3"),
                   ev(_T.AGENT_LEFT, agent="a3"), *won("t1", agent="a2"))
    assert [a.agent_id for a in online_agents(state)] == ["a2", "a1"]
    assert [a.agent_id for a in idle_agents(state)] == ["a1"]
    copy = get_agent(state, "a1")
    assert copy is not None and isinstance(copy, AgentState)  # what the decider reads
    copy.capabilities.append("x")
    assert state.agents["a1"].capabilities == ["search"]
    assert get_agent(state, "nobody") is None


def test_the_state_round_trips_through_json() -> None:
    projection = ReadModelsProjection()
    state = fold(JOIN, *won("t1"), ev(_T.TOOL_CALLED, "t1", "a1", call_id="c1"),
                 ev(_T.AGENT_STATUS_CHANGED, agent="a1", status="busy"),
                 ev(_T.AGENT_JOINED, agent="a2"), ev(_T.AGENT_LEFT, agent="a2"),
                 ev(_T.TOOL_FAILED, agent="ghost", call_id="c9"))
    loaded = projection.load(projection.dump(state))
    assert loaded.agents == state.agents
    assert loaded.agents.agents["a1"].open_calls == {"c1": "t1"}
    assert loaded.agents.agents["ghost"].presence is None
