"""The task decider (`domain.task`, composed in `domain.swarm`), with no store at all: Given the
past events of a task folded with `evolve`, When a command is decided, Then these events, or
this InvalidTransition. Also the one transition table, and the auction rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import reduce
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import agent, task
from domain.agent import AgentState
from domain.commands import (
    CloseBidding,
    CompleteTask,
    FailTask,
    PostTask,
    RegisterAgent,
    StartTask,
    SubmitBid,
    TaskCommand,
)
from domain.errors import InvalidEvent, InvalidTransition
from domain.events import Event, EventType
from domain.swarm import Situation, decide, wanted
from domain.task import (
    LIFECYCLE_TYPES,
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    TaskState,
    TaskStatus,
)
from tests.strategies import EPOCH, ev

_T = EventType
_S = TaskStatus

# -- Given, When, Then ----------------------------------------------------------------------------

CREATED = [ev(_T.TASK_CREATED, "t1", description="index the docs")]
BIDDING = [*CREATED, ev(_T.TASK_BIDDING, "t1", window_seconds=30)]
ASSIGNED = [*BIDDING, ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=100),
            ev(_T.AUCTION_CLOSED, "t1"), ev(_T.TASK_ASSIGNED, "t1", "a1", bid_sats=100)]
RUNNING = [*ASSIGNED, ev(_T.TASK_STARTED, "t1", "a1")]
COMPLETED = [*RUNNING, ev(_T.TASK_COMPLETED, "t1", "a1", result="ok")]
FAILED = [*RUNNING, ev(_T.TASK_FAILED, "t1", "a1", reason="boom")]
STORIES = {_S.CREATED: CREATED, _S.BIDDING: BIDDING, _S.ASSIGNED: ASSIGNED, _S.RUNNING: RUNNING,
           _S.COMPLETED: COMPLETED, _S.FAILED: FAILED}


def past(*events: Event, task_id: str = "t1") -> TaskState:
    """Given: the task after these events."""
    return reduce(task.evolve, events, task.initial(task_id))


def online(agent_id: str, *capabilities: str) -> AgentState:
    """Given: an agent that joined with these capabilities."""
    return agent.evolve(agent.initial(agent_id), ev(_T.AGENT_JOINED, agent=agent_id,
                                                    name=agent_id, capabilities=list(capabilities)))


def busy(agent_id: str, task_id: str = "t0") -> AgentState:
    """Given: an online agent working on another task."""
    return agent.follow_task(online(agent_id), task_id, assigned=True)


def offline(agent_id: str) -> AgentState:
    """Given: an agent that joined and left."""
    return agent.evolve(online(agent_id), ev(_T.AGENT_LEFT, agent=agent_id, reason="bye"))


def roster(*agents: AgentState) -> dict[str, AgentState]:
    return {a.agent_id: a for a in agents}


def when(command: TaskCommand, state: TaskState | None = None,
         agents: Mapping[str, AgentState] | None = None) -> list[tuple[str, str | None, str | None,
                                                                        dict[str, Any]]]:
    """When `command` is decided in this situation; Then (type, task, agent, payload) of each
    event it produces."""
    return [(e.event_type.value, e.task_id, e.agent_id, e.data.model_dump(exclude_unset=True))
            for e in decide(command, Situation(state, agents or {}))]


def refused(command: TaskCommand, state: TaskState | None = None,
            agents: Mapping[str, AgentState] | None = None) -> InvalidTransition:
    """When `command` is decided; Then it is refused: the InvalidTransition."""
    with pytest.raises(InvalidTransition) as caught:
        decide(command, Situation(state, agents or {}))
    return caught.value


def close(task_id: str = "t1") -> CloseBidding:
    return CloseBidding(task_id=task_id, at=EPOCH)


def bid(agent_id: str, sats: int, task_id: str = "t1") -> SubmitBid:
    return SubmitBid(task_id=task_id, agent_id=agent_id, bid_sats=sats, at=EPOCH)


# -- the transition table -------------------------------------------------------------------------


def test_the_happy_path_goes_created_bidding_assigned_running_completed() -> None:
    assert [past(*STORIES[s]).status for s in (_S.CREATED, _S.BIDDING, _S.ASSIGNED, _S.RUNNING,
                                               _S.COMPLETED)] == [
        _S.CREATED, _S.BIDDING, _S.ASSIGNED, _S.RUNNING, _S.COMPLETED]
    done = past(*COMPLETED)
    assert (done.agent_id, done.winning_bid, done.bids, done.bid_count) == ("a1", 100, {"a1": 100}, 1)


def test_bids_and_the_auction_close_keep_the_task_bidding() -> None:
    state = past(*BIDDING, ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=5),
                 ev(_T.BID_SUBMITTED, "t1", "a2", bid_sats=3), ev(_T.AUCTION_CLOSED, "t1"))
    assert (state.status, state.bids, state.bid_count) == (_S.BIDDING, {"a1": 5, "a2": 3}, 2)


@pytest.mark.parametrize("status", sorted(OPEN_STATUSES))
def test_an_open_task_can_fail(status: TaskStatus) -> None:
    assert TRANSITIONS[status][_T.TASK_FAILED] is _S.FAILED
    state = past(*STORIES[status], ev(_T.TASK_FAILED, "t1", reason="given up"))
    assert state.status is _S.FAILED and task.is_terminal(state)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (_S.CREATED, _T.TASK_CREATED),  # created twice
        (_S.CREATED, _T.BID_SUBMITTED),  # bids only while bidding
        (_S.ASSIGNED, _T.BID_SUBMITTED),
        (_S.BIDDING, _T.TASK_COMPLETED),  # completed before assigned
        (_S.BIDDING, _T.TASK_STARTED),
        (_S.ASSIGNED, _T.TASK_COMPLETED),  # completed before started
        (_S.RUNNING, _T.AUCTION_CLOSED),
    ],
)
def test_out_of_order_events_are_refused_and_change_nothing(status: TaskStatus, kind: EventType) -> None:
    state = past(*STORIES[status])
    event = ev(kind, "t1", "a2", bid_sats=1)
    assert kind not in TRANSITIONS[status]
    assert task.refusal(state, event) == f"not allowed while the task is {status.value}"
    assert task.evolve(state, event) == state


def test_nothing_happens_to_a_task_before_it_is_created_but_the_fold_takes_it_as_created() -> None:
    assert set(TRANSITIONS[None]) == {_T.TASK_CREATED}
    # The decider refuses every command on an unknown task...
    assert str(refused(close())) == "cannot close the auction of 't1': it is unknown"
    # ...while a log whose task.created was lost (or logged without a task id) still folds.
    seen_late = past(ev(_T.TASK_BIDDING, "t1"), ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=4))
    assert (seen_late.status, seen_late.bids) == (_S.BIDDING, {"a1": 4})
    assert task.evolve(task.initial("t1"), ev(_T.TASK_CREATED, "t1")).status is _S.CREATED


@given(st.sampled_from(sorted(TERMINAL_STATUSES)), st.sampled_from(list(EventType)))
def test_terminal_statuses_are_absorbing(status: TaskStatus, kind: EventType) -> None:
    state = past(*STORIES[status])
    assert task.is_terminal(state) and TRANSITIONS[status] == {}
    assert task.evolve(state, ev(kind, "t1", "a1", bid_sats=1)) == state
    if kind in LIFECYCLE_TYPES:
        assert task.refusal(state, ev(kind, "t1", "a1", bid_sats=1)) is not None


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_every_command_on_a_finished_task_is_refused(status: TaskStatus) -> None:
    done = past(*STORIES[status])
    agents = roster(online("a1"))
    for command in (PostTask(task_id="t1", description="again", at=EPOCH), bid("a1", 1), close(),
                    StartTask(task_id="t1", at=EPOCH), CompleteTask(task_id="t1", at=EPOCH),
                    FailTask(task_id="t1", reason="x", at=EPOCH)):
        assert refused(command, done, agents).current == status.value


@given(st.sampled_from([*TaskStatus]), st.sampled_from(list(EventType)))
def test_the_table_only_speaks_of_task_lifecycle_events(status: TaskStatus, kind: EventType) -> None:
    state = past(*STORIES[status])
    after = task.evolve(state, ev(kind, "t1", "a9", bid_sats=7))
    if kind in LIFECYCLE_TYPES:
        assert after.status is TRANSITIONS[status].get(kind, status)
    else:
        assert after == state


def test_every_status_is_reachable_and_every_open_one_can_finish() -> None:
    seen: set[TaskStatus] = set()
    frontier: list[TaskStatus | None] = [None]
    while frontier:
        for after in TRANSITIONS[frontier.pop()].values():
            if after not in seen:
                seen.add(after)
                frontier.append(after)
    assert seen == set(TaskStatus)
    assert {kind for moves in TRANSITIONS.values() for kind in moves} == LIFECYCLE_TYPES
    assert all(TRANSITIONS[s][_T.TASK_FAILED] is _S.FAILED for s in OPEN_STATUSES)
    assert set(TaskStatus) == OPEN_STATUSES | TERMINAL_STATUSES
    assert not OPEN_STATUSES & TERMINAL_STATUSES


def test_an_invalid_move_names_the_task_its_status_and_the_attempt() -> None:
    with pytest.raises(InvalidTransition) as caught:
        task.require(past(*BIDDING), _T.TASK_STARTED)
    assert (caught.value.subject_id, caught.value.current, caught.value.attempted) == (
        "t1", "bidding", "start")
    assert str(caught.value) == "cannot start 't1': it is bidding"
    with pytest.raises(InvalidTransition, match="it is unknown"):
        task.require(task.initial("t9"), _T.BID_SUBMITTED)
    assert task.require(past(*RUNNING), _T.TASK_COMPLETED) is _S.COMPLETED


def test_the_fold_refuses_a_bid_or_an_assignment_it_cannot_apply() -> None:
    state = past(*BIDDING)
    assert task.refusal(state, ev(_T.BID_SUBMITTED, "t1", None, bid_sats=3)) == "no agent_id"
    assert task.refusal(state, ev(_T.BID_SUBMITTED, "t1", "a1")) == "no data.bid_sats"
    assert task.refusal(state, ev(_T.TASK_ASSIGNED, "t1")) == "no agent_id"
    assert task.evolve(state, ev(_T.TASK_ASSIGNED, "t1")) == state
    assert task.refusal(state, ev(_T.TASK_ASSIGNED, "t1", "a1")) is None


def test_an_assignment_without_its_bid_is_paid_the_winners_bid() -> None:
    state = past(*BIDDING, ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=42),
                 ev(_T.TASK_ASSIGNED, "t1", "a1"))
    assert (state.status, state.agent_id, state.winning_bid) == (_S.ASSIGNED, "a1", 42)


def test_evolve_returns_a_new_state_and_leaves_the_old_one_alone() -> None:
    before = past(*BIDDING)
    after = task.evolve(before, ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=9))
    assert (before.status, before.bids, after.bids) == (_S.BIDDING, {}, {"a1": 9})


# -- posting and bidding ------------------------------------------------------------------------


def test_posting_a_task_creates_it_and_opens_bidding() -> None:
    command = PostTask(task_id="t1", description="index the docs", required_capabilities=("py",),
                       window_seconds=45, at=EPOCH)
    assert when(command) == [
        ("task.created", "t1", None, {"description": "index the docs",
                                       "required_capabilities": ["py"]}),
        ("task.bidding", "t1", None, {"window_seconds": 45.0})]
    assert refused(command, past(*BIDDING)).current == "bidding"
    with pytest.raises(InvalidEvent, match="description"):
        when(PostTask(task_id="t2", description=" ", at=EPOCH))


def test_an_online_agent_bids_once_and_repeating_the_same_bid_is_harmless() -> None:
    agents = roster(online("a1"))
    assert when(bid("a1", 100), past(*BIDDING), agents) == [
        ("bid.submitted", "t1", "a1", {"bid_sats": 100})]
    state = past(*BIDDING, ev(_T.BID_SUBMITTED, "t1", "a1", bid_sats=100))
    assert when(bid("a1", 100), state, agents) == []
    assert refused(bid("a1", 90), state, agents).current == "bidding, and 'a1' already bid 100 sats"


def test_bids_are_refused_from_strangers_leavers_and_the_unqualified() -> None:
    needs_sql = past(ev(_T.TASK_CREATED, "t1", required_capabilities=["sql"]), ev(_T.TASK_BIDDING, "t1"))
    assert str(refused(bid("ghost", 1), needs_sql)) == "cannot bid on 't1' as 'ghost': it is unknown"
    assert refused(bid("a1", 1), needs_sql, roster(offline("a1"))).current == "offline"
    assert refused(bid("a1", 1), needs_sql, roster(online("a1", "py"))).current == \
        "bidding, but 'a1' lacks sql"
    assert when(bid("a1", 1), needs_sql, roster(online("a1", "py", "sql")))[0][0] == "bid.submitted"
    assert refused(bid("a1", 1), past(*ASSIGNED), roster(online("a1"))).current == "assigned"


# -- the auction ----------------------------------------------------------------------------------


def bids(*offers: tuple[str, int]) -> TaskState:
    """Given: a task open for bidding with these bids, in this order."""
    return past(*BIDDING, *(ev(_T.BID_SUBMITTED, "t1", a, bid_sats=s) for a, s in offers))


def test_lowest_bid_wins_ties_by_time() -> None:
    state = bids(("a1", 300), ("a2", 200), ("a3", 200), ("a4", 250))
    agents = roster(*(online(a) for a in ("a1", "a2", "a3", "a4")))
    assert task.auction_winner(state, agents) == ("a2", 200)  # 200, and earlier than a3's 200
    assert when(close(), state, agents) == [
        ("auction.closed", "t1", None, {"winner": "a2", "winning_bid": 200, "bid_count": 4}),
        ("task.assigned", "t1", "a2", {"bid_sats": 200}),
        ("agent.status_changed", None, "a2", {"status": "busy", "task": "t1"})]


def test_bidders_who_left_are_busy_or_unknown_cannot_win() -> None:
    state = bids(("gone", 10), ("busy", 20), ("ghost", 30), ("a3", 500))
    agents = roster(offline("gone"), busy("busy"), online("a3"))
    assert task.auction_winner(state, agents) == ("a3", 500)
    assert task.auction_winner(state, roster(offline("gone"), busy("busy"))) is None


def test_no_bids_fails_the_task_and_no_eligible_bid_says_so() -> None:
    assert when(close(), past(*BIDDING)) == [
        ("auction.closed", "t1", None, {"bid_count": 0}),
        ("task.failed", "t1", None, {"reason": "no bids"})]
    assert when(close(), bids(("busy", 20)), roster(busy("busy")))[1] == (
        "task.failed", "t1", None, {"reason": "no eligible bids (every bidder left or is busy)"})


def test_an_auction_closes_only_while_bidding() -> None:
    assert refused(close(), past(*ASSIGNED), roster(online("a1"))).current == "assigned"
    assert str(refused(close(), past(*CREATED))) == "cannot close the auction of 't1': it is created"


AGENT_IDS = ["a1", "a2", "a3", "a4"]


@given(offers=st.lists(st.tuples(st.sampled_from(AGENT_IDS), st.integers(0, 3)), max_size=6),
       availability=st.lists(st.sampled_from(["online", "busy", "offline", "unknown"]),
                             min_size=len(AGENT_IDS), max_size=len(AGENT_IDS)))
def test_the_winner_is_the_lowest_bid_by_an_available_agent_ties_to_the_earliest_bidder(
        offers: list[tuple[str, int]], availability: list[str]) -> None:
    make: dict[str, Callable[[str], AgentState]] = {"online": online, "busy": busy,
                                                    "offline": offline}
    agents = roster(*(make[how](a) for a, how in zip(AGENT_IDS, availability, strict=True)
                      if how in make))
    state = bids(*offers)
    eligible = [a for a in state.bids if a in agents and agent.is_available(agents[a])]
    won = task.auction_winner(state, agents)
    if not eligible:
        assert won is None
        return
    assert won is not None
    winner, sats = won
    order = list(state.bids)
    assert winner in eligible and sats == state.bids[winner]
    assert all(sats < state.bids[a] or (sats == state.bids[a] and order.index(winner) <= order.index(a))
               for a in eligible)


# -- working ------------------------------------------------------------------------------------


def test_the_assigned_agent_starts_and_no_one_else() -> None:
    agents = roster(online("a1"), online("a2"))
    assert when(StartTask(task_id="t1", at=EPOCH), past(*ASSIGNED), agents) == [
        ("task.started", "t1", "a1", {})]
    assert when(StartTask(task_id="t1", agent_id="a1", at=EPOCH), past(*ASSIGNED), agents)
    assert refused(StartTask(task_id="t1", agent_id="a2", at=EPOCH), past(*ASSIGNED), agents
                   ).current == "assigned to 'a1', not 'a2'"
    assert refused(StartTask(task_id="t1", at=EPOCH), past(*ASSIGNED), roster(offline("a1"))
                   ).current == "offline"
    assert refused(StartTask(task_id="t1", at=EPOCH), past(*RUNNING), agents).current == "running"
    assert str(refused(StartTask(task_id="t1", at=EPOCH), past(*BIDDING))) == \
        "cannot start 't1': it is bidding"


def test_completing_a_running_task_frees_its_agent() -> None:
    worker = agent.follow_task(online("a1"), "t1", assigned=True)
    assert when(CompleteTask(task_id="t1", result={"pages": 4}, at=EPOCH), past(*RUNNING),
                roster(worker)) == [
        ("task.completed", "t1", "a1", {"result": {"pages": 4}}),
        ("agent.status_changed", None, "a1", {"status": "idle", "task": "t1"})]
    assert refused(CompleteTask(task_id="t1", at=EPOCH), past(*ASSIGNED), roster(worker)
                   ).current == "assigned"


def test_failing_an_open_task_frees_its_agent_if_it_is_still_online() -> None:
    command = FailTask(task_id="t1", reason="flaky", at=EPOCH)
    assert when(command, past(*RUNNING), roster(online("a1"))) == [
        ("task.failed", "t1", "a1", {"reason": "flaky"}),
        ("agent.status_changed", None, "a1", {"status": "idle", "task": "t1"})]
    assert when(command, past(*RUNNING), roster(offline("a1"))) == [
        ("task.failed", "t1", "a1", {"reason": "flaky"})]
    assert when(command, past(*BIDDING)) == [("task.failed", "t1", None, {"reason": "flaky"})]
    with pytest.raises(InvalidEvent, match="reason"):
        when(FailTask(task_id="t1", reason=" ", at=EPOCH), past(*BIDDING))


# -- the pure core --------------------------------------------------------------------------------


def test_decide_is_a_pure_function_of_command_and_situation() -> None:
    state = bids(("a1", 50), ("a2", 40), ("a3", 40))
    agents = roster(*(online(a) for a in ("a1", "a2", "a3")))
    first, second = when(close(), state, agents), when(close(), state, agents)
    assert first == second and first[1][2] == "a2"
    assert state == bids(("a1", 50), ("a2", 40), ("a3", 40))  # the situation is not changed
    events = decide(CloseBidding(task_id="t1", at=EPOCH, source="swarm-7"), Situation(state, agents))
    assert all(e.timestamp == EPOCH and e.source == "swarm-7" for e in events)


def test_decide_refuses_what_is_not_a_command_of_a_task() -> None:
    with pytest.raises(TypeError, match="not a task command"):
        task.decide(RegisterAgent(agent_id="a1", name="x", at=EPOCH),  # type: ignore[arg-type]
                    task.initial("t1"), {})


# -- what a decision reads ----------------------------------------------------------------------


def test_a_task_command_reads_its_task_and_the_agents_it_names() -> None:
    nothing = Situation()
    assert wanted(bid("a1", 5), nothing) == ("t1", frozenset({"a1"}))
    assert wanted(FailTask(task_id="t1", reason="x", at=EPOCH), nothing) == ("t1", frozenset())
    assert wanted(StartTask(task_id="t1", at=EPOCH), Situation(past(*ASSIGNED))) == (
        "t1", frozenset({"a1"}))


def test_closing_an_auction_reads_every_bidder_once_it_has_seen_the_bids() -> None:
    state = bids(("a1", 5), ("a2", 4))
    assert wanted(close(), Situation()) == ("t1", frozenset())
    assert wanted(close(), Situation(state)) == ("t1", frozenset({"a1", "a2"}))
    # What another task's state says is not read.
    assert wanted(close("t2"), Situation(state)) == ("t2", frozenset())
