"""The lifecycle table: the task and agent state machines the coordinator and the folds share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidTransition
from domain.events import EventType
from domain.lifecycle import (
    AGENT_ACTIVITY_TYPES,
    OPEN_STATUSES,
    TASK_EVENT_TYPES,
    TASK_TRANSITIONS,
    TERMINAL_STATUSES,
    AgentPresence,
    TaskStatus,
    agent_transition,
    allowed_task_events,
    is_terminal,
    require_agent_transition,
    require_task_transition,
    task_transition,
)

_T = EventType
_S = TaskStatus


def walk(*kinds: EventType) -> TaskStatus | None:
    status: TaskStatus | None = None
    for kind in kinds:
        status = task_transition(status, kind)
        assert status is not None, kind
    return status


def test_the_happy_path_goes_created_bidding_assigned_running_completed() -> None:
    assert walk(_T.TASK_CREATED) is _S.CREATED
    assert walk(_T.TASK_CREATED, _T.TASK_BIDDING) is _S.BIDDING
    assert walk(_T.TASK_CREATED, _T.TASK_BIDDING, _T.BID_SUBMITTED, _T.BID_SUBMITTED,
                _T.AUCTION_CLOSED, _T.TASK_ASSIGNED) is _S.ASSIGNED
    assert walk(_T.TASK_CREATED, _T.TASK_BIDDING, _T.TASK_ASSIGNED, _T.TASK_STARTED,
                _T.TASK_COMPLETED) is _S.COMPLETED


@pytest.mark.parametrize("status", [_S.CREATED, _S.BIDDING, _S.ASSIGNED, _S.RUNNING])
def test_an_open_task_can_fail(status: TaskStatus) -> None:
    assert task_transition(status, _T.TASK_FAILED) is _S.FAILED


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (None, _T.TASK_BIDDING),  # nothing happens to a task before it is created
        (_S.CREATED, _T.TASK_CREATED),  # created twice
        (_S.CREATED, _T.BID_SUBMITTED),  # bids only while bidding
        (_S.ASSIGNED, _T.BID_SUBMITTED),
        (_S.BIDDING, _T.TASK_COMPLETED),  # completed before assigned
        (_S.BIDDING, _T.TASK_STARTED),
        (_S.ASSIGNED, _T.TASK_COMPLETED),  # completed before started
        (_S.RUNNING, _T.AUCTION_CLOSED),
    ],
)
def test_out_of_order_events_are_not_allowed(status: TaskStatus | None, kind: EventType) -> None:
    assert task_transition(status, kind) is None


@given(st.sampled_from(sorted(TERMINAL_STATUSES)), st.sampled_from(list(EventType)))
def test_terminal_statuses_are_absorbing(status: TaskStatus, kind: EventType) -> None:
    assert is_terminal(status)
    assert task_transition(status, kind) is None
    assert allowed_task_events(status) == frozenset()


@given(st.sampled_from([None, *TaskStatus]), st.sampled_from(list(EventType)))
def test_the_table_only_speaks_of_task_events(status: TaskStatus | None, kind: EventType) -> None:
    after = task_transition(status, kind)
    assert after is None or kind in TASK_EVENT_TYPES
    assert (after is not None) == (kind in allowed_task_events(status))


def test_every_status_is_reachable_and_every_open_one_can_finish() -> None:
    seen, frontier = set(), [None]
    while frontier:
        status = frontier.pop()
        for after in TASK_TRANSITIONS[status].values():
            if after not in seen:
                seen.add(after)
                frontier.append(after)
    assert seen == set(TaskStatus)
    assert all(task_transition(s, _T.TASK_FAILED) is _S.FAILED for s in OPEN_STATUSES)
    assert not any(is_terminal(s) for s in OPEN_STATUSES)


def test_an_invalid_task_command_names_the_task_its_status_and_the_attempt() -> None:
    with pytest.raises(InvalidTransition) as caught:
        require_task_transition("t1", _S.BIDDING, _T.TASK_STARTED)
    assert (caught.value.subject_id, caught.value.current, caught.value.attempted) == (
        "t1", "bidding", "start")
    assert str(caught.value) == "cannot start 't1': it is bidding"
    with pytest.raises(InvalidTransition, match="it is unknown"):
        require_task_transition("t9", None, _T.BID_SUBMITTED)
    assert require_task_transition("t1", _S.RUNNING, _T.TASK_COMPLETED) is _S.COMPLETED


def test_an_agent_joins_leaves_and_may_rejoin() -> None:
    online = agent_transition(None, _T.AGENT_JOINED)
    assert online is AgentPresence.ONLINE
    offline = agent_transition(online, _T.AGENT_LEFT)
    assert offline is AgentPresence.OFFLINE
    assert agent_transition(offline, _T.AGENT_JOINED) is AgentPresence.ONLINE
    assert agent_transition(online, _T.AGENT_JOINED) is None  # already online
    assert agent_transition(offline, _T.AGENT_LEFT) is None
    assert agent_transition(None, _T.AGENT_LEFT) is None


@pytest.mark.parametrize("kind", sorted(AGENT_ACTIVITY_TYPES | {_T.TASK_ASSIGNED}))
def test_only_an_online_agent_works_or_is_assigned(kind: EventType) -> None:
    assert agent_transition(AgentPresence.ONLINE, kind) is AgentPresence.ONLINE
    assert agent_transition(AgentPresence.OFFLINE, kind) is None
    assert agent_transition(None, kind) is None
    with pytest.raises(InvalidTransition, match="it is offline"):
        require_agent_transition("a1", AgentPresence.OFFLINE, kind)


def test_the_coordinator_may_fail_the_task_of_an_agent_that_left() -> None:
    assert _T.TASK_FAILED not in AGENT_ACTIVITY_TYPES
    assert require_task_transition("t1", _S.ASSIGNED, _T.TASK_FAILED) is _S.FAILED
