"""The read models' fast fold: stored rows folded straight into tasks, agents and summary.

This is the performance layer, and the only one. The plain fold (`ReadModelsProjection.apply`:
each row decoded to its typed event, then `evolve_tasks`, `evolve_agents`, `evolve_summary`) is
the definition; this fold gives the same state for every log (tested against it with hypothesis)
by taking the common case of each event type inline — a row validated when it was appended
(`conforms`), of its type's current version, a known task in a status the table allows, an
online agent — and handing anything else to the plain fold, row by row. What it saves is the
validation of each row (its payload is read with one `orjson.loads`, its timestamp parsed only
where a time is kept), the replacement of a task's or agent's state per event, and three
dispatches per event instead of one.

Each handler checks everything it needs before it changes anything, and returns `SLOW` (having
changed nothing) when the row is not its common case; otherwise the task move it made, as
(status before, status after), for the summary, or None. A row says it was validated when it
was appended, but another client could have changed it since: so a handler also checks the type
of every value it keeps, and any value, or payload, it cannot use sends the row the plain way
(which validates it, and folds what conforms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import orjson

from domain.agent import Presence
from domain.codec import CURRENT_VERSION, FoldRow
from domain.events import EventType
from domain.task import TaskStatus
from projections.agents import AgentView
from projections.summary import SLOT, bucket_of, minute_of
from projections.tasks import TaskView

if TYPE_CHECKING:
    from projections.models import ReadModels

_T = EventType
_S = TaskStatus
_ONLINE = Presence.ONLINE
_OFFLINE = Presence.OFFLINE
_OPEN = (_S.CREATED, _S.BIDDING, _S.ASSIGNED, _S.RUNNING)
_loads = orjson.loads
_time = datetime.fromisoformat
_EMPTY: dict[str, Any] = {}

SLOW: Final = object()
Move = tuple[TaskStatus | None, TaskStatus]
Handler = Callable[["ReadModels", int, "str | None", "str | None", "str | None", datetime], Any]


def _payload(data: str | None) -> dict[str, Any]:
    payload = _loads(data) if data else _EMPTY
    if type(payload) is not dict:
        raise ValueError("not a JSON object")  # (a changed row: the plain way, see fold)
    return payload


def _text(value: Any) -> bool:
    """A value a read model keeps as optional text."""
    return value is None or type(value) is str


def _texts(value: Any) -> bool:
    """A value a read model keeps as an optional list of text."""
    return value is None or (type(value) is list and all(type(v) is str for v in value))


def _sats(value: Any) -> bool:
    return type(value) is int and value >= 0


# -- tasks --------------------------------------------------------------------------------------


def _created(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
             data: str | None, moment: datetime) -> Any:
    if task_id is None or m.tasks.tasks.recall(task_id) is not None:
        return SLOW  # no task_id, or a second creation: anomalies
    payload = _payload(data)
    caps, description = payload.get("required_capabilities"), payload.get("description")
    if not (_texts(caps) and _text(description)):
        return SLOW
    m.tasks.tasks[task_id] = TaskView(
        task_id=task_id, status=_S.CREATED, required_capabilities=caps,
        description=description, created_at=moment, first_position=position)
    return (None, _S.CREATED)


def _bidding(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
             data: str | None, moment: datetime) -> Any:
    view = m.tasks.tasks.get(task_id)  # type: ignore[arg-type]  # (None is never a key)
    if view is None or view.status is not _S.CREATED:
        return SLOW
    view.status, view.bidding_at = _S.BIDDING, moment
    return (_S.CREATED, _S.BIDDING)


def _bid(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
         data: str | None, moment: datetime) -> Any:
    view = m.tasks.tasks.get(task_id)  # type: ignore[arg-type]
    bidder = m.agents.agents.get(agent_id)  # type: ignore[arg-type]
    if view is None or view.status is not _S.BIDDING or bidder is None \
            or bidder.presence is not _ONLINE:
        return SLOW
    sats = _payload(data).get("bid_sats")
    if not _sats(sats):
        return SLOW
    view.bids[agent_id] = sats  # type: ignore[index, assignment]  # (checked: an id, sats)
    view.bid_count += 1
    bidder.bids += 1
    return (_S.BIDDING, _S.BIDDING)


def _closed(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
            data: str | None, moment: datetime) -> Any:
    view = m.tasks.tasks.get(task_id)  # type: ignore[arg-type]
    if view is None or view.status is not _S.BIDDING:
        return SLOW
    view.auction_closed_at = moment
    return (_S.BIDDING, _S.BIDDING)


def _assigned(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
              data: str | None, moment: datetime) -> Any:
    view = m.tasks.tasks.get(task_id)  # type: ignore[arg-type]
    winner = m.agents.agents.get(agent_id)  # type: ignore[arg-type]
    if view is None or view.status is not _S.BIDDING or winner is None \
            or winner.presence is not _ONLINE or winner.current_task is not None:
        return SLOW
    sats = _payload(data).get("bid_sats")
    if sats is not None and not _sats(sats):
        return SLOW
    view.status, view.agent_id, view.assigned_at = _S.ASSIGNED, agent_id, moment
    view.winning_bid = view.bids.get(agent_id) if sats is None else sats  # type: ignore[arg-type]
    winner.current_task = task_id
    winner.tasks_won += 1
    return (_S.BIDDING, _S.ASSIGNED)


def _work(before: TaskStatus, after: TaskStatus) -> Handler:
    """task.started or task.completed by the assigned agent, online."""

    def handle(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
               data: str | None, moment: datetime) -> Any:
        view = m.tasks.tasks.get(task_id)  # type: ignore[arg-type]
        worker = m.agents.agents.get(agent_id)  # type: ignore[arg-type]
        if view is None or view.status is not before or agent_id != view.agent_id \
                or worker is None or worker.presence is not _ONLINE:
            return SLOW
        view.status = after
        if after is _S.RUNNING:
            view.started_at = moment
        else:
            view.completed_at = moment
            worker.tasks_completed += 1
            worker.sats_earned += view.winning_bid or 0
            if worker.current_task == task_id:
                worker.current_task = None
        return (before, after)

    return handle


def _failed(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
            data: str | None, moment: datetime) -> Any:
    view = m.tasks.tasks.get(task_id)  # type: ignore[arg-type]
    if view is None or view.status not in _OPEN:
        return SLOW
    worker = None
    if view.agent_id is not None:
        worker = m.agents.agents.get(view.agent_id)
        if worker is None:
            return SLOW
    reason = _payload(data).get("reason")
    if not _text(reason):
        return SLOW
    before = view.status
    view.status, view.failed_at, view.failure_reason = _S.FAILED, moment, reason
    if worker is not None:
        worker.tasks_failed += 1
        if worker.current_task == task_id:
            worker.current_task = None
    return (before, _S.FAILED)


# -- agents -------------------------------------------------------------------------------------


def _joined(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
            data: str | None, moment: datetime) -> Any:
    if agent_id is None:
        return SLOW
    roster = m.agents.agents
    view = roster.recall(agent_id)
    if view is not None and view.presence is _ONLINE:
        return SLOW  # joined twice: an anomaly
    payload = _payload(data)
    name, caps, persona = (payload.get("name"), payload.get("capabilities"),
                           payload.get("persona_id"))
    if not (_text(name) and _texts(caps) and _text(persona)):
        return SLOW
    if view is None:
        view = roster[agent_id] = AgentView(agent_id=agent_id, first_position=position)
    view.presence, view.joined_at = _ONLINE, moment
    if name is not None:
        view.name = name
    if caps is not None:
        view.capabilities = caps
    if persona is not None:
        view.persona_id = persona
    return None


def _left(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
          data: str | None, moment: datetime) -> Any:
    view = m.agents.agents.get(agent_id)  # type: ignore[arg-type]
    if view is None or view.presence is not _ONLINE:
        return SLOW
    reason = _payload(data).get("reason")
    if not _text(reason):
        return SLOW
    view.presence, view.open_calls = _OFFLINE, {}
    view.left_at, view.left_reason = moment, reason
    return None


def _status_changed(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
                    data: str | None, moment: datetime) -> Any:
    view = m.agents.agents.get(agent_id)  # type: ignore[arg-type]
    if view is None or view.presence is not _ONLINE:
        return SLOW
    status = _payload(data).get("status")
    if not _text(status):
        return SLOW
    view.status = status
    return None


def _thought(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
             data: str | None, moment: datetime) -> Any:
    view = m.agents.agents.get(agent_id)  # type: ignore[arg-type]
    if view is None or view.presence is not _ONLINE:
        return SLOW
    view.thoughts += 1
    return None


def _tool_called(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
                 data: str | None, moment: datetime) -> Any:
    caller = m.agents.agents.get(agent_id)  # type: ignore[arg-type]
    view = None if task_id is None else m.tasks.tasks.get(task_id)
    if caller is None or caller.presence is not _ONLINE or (task_id is not None and view is None):
        return SLOW
    call_id = _payload(data).get("call_id")
    if not _text(call_id) or call_id in caller.open_calls:
        return SLOW  # called twice: an anomaly
    caller.tool_calls += 1
    if call_id is not None:
        caller.open_calls[call_id] = task_id
    if view is not None:
        view.tool_calls += 1
    return None


def _tool_finished(failed: bool) -> Handler:
    def handle(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
               data: str | None, moment: datetime) -> Any:
        caller = m.agents.agents.get(agent_id)  # type: ignore[arg-type]
        view = None if task_id is None else m.tasks.tasks.get(task_id)
        if caller is None or caller.presence is not _ONLINE or \
                (task_id is not None and view is None):
            return SLOW
        call_id = _payload(data).get("call_id")
        if type(call_id) is not str or call_id not in caller.open_calls:
            return SLOW  # a result without its call: an anomaly
        del caller.open_calls[call_id]
        if failed:
            caller.tool_failures += 1
            if view is not None:
                view.tool_failures += 1
        return None

    return handle


def _counted(m: ReadModels, position: int, task_id: str | None, agent_id: str | None,
             data: str | None, moment: datetime) -> Any:
    return None  # only the summary counts it


HANDLERS: dict[str, Handler] = {
    _T.TASK_CREATED: _created,
    _T.TASK_BIDDING: _bidding,
    _T.BID_SUBMITTED: _bid,
    _T.AUCTION_CLOSED: _closed,
    _T.TASK_ASSIGNED: _assigned,
    _T.TASK_STARTED: _work(_S.ASSIGNED, _S.RUNNING),
    _T.TASK_COMPLETED: _work(_S.RUNNING, _S.COMPLETED),
    _T.TASK_FAILED: _failed,
    _T.AGENT_JOINED: _joined,
    _T.AGENT_LEFT: _left,
    _T.AGENT_STATUS_CHANGED: _status_changed,
    _T.TIMMY_THOUGHT: _thought,
    _T.TOOL_CALLED: _tool_called,
    _T.TOOL_COMPLETED: _tool_finished(failed=False),
    _T.TOOL_FAILED: _tool_finished(failed=True),
    **{kind: _counted for kind in (_T.SYSTEM_ERROR, _T.SYSTEM_WARNING, _T.SYSTEM_INFO,
                                   _T.ERROR_CAPTURED, _T.BUG_REPORT_CREATED)},
}
assert set(HANDLERS) == {t.value for t in EventType}, "every event type has a fast handler"
_CURRENT = {kind.value: version for kind, version in CURRENT_VERSION.items()}


def fold(m: ReadModels, rows: Iterable[FoldRow],
         slow: Callable[[ReadModels, int], ReadModels]) -> ReadModels:
    """Fold rows into the read models: the same state as the plain fold of each row (`slow`,
    given the row's position, folds the whole row the typed way; it also takes every row that
    is not a handler's common case)."""
    summary = m.summary
    by_type, by_source, statuses = summary.by_type, summary.by_source, summary.tasks_by_status
    handlers, current = HANDLERS.get, _CURRENT
    # Consecutive events mostly share a minute: its bucket is kept by the text of the minute.
    minute_text: str | None = None
    bucket: list[int] | None = None
    moment = datetime.min
    for row in rows:
        position, kind, source, task_id, agent_id, data, ts, schema, conforms = row
        handler = handlers(kind)
        try:
            if handler is None or not conforms or schema != current[kind]:
                moved = SLOW
            else:
                moment = _time(ts)
                if moment.tzinfo is not UTC:
                    raise ValueError("not a UTC time")
                moved = handler(m, position, task_id, agent_id, data, moment)
        except (ValueError, TypeError):  # a payload or time that is not what it says (a time
            # that is no text at all: a BLOB another client wrote): the plain way
            moved = SLOW
        if moved is SLOW:
            slow(m, position)
            minute_text = None  # the plain fold may have swept the bucket away
            continue
        summary.total += 1
        by_type[kind] = by_type.get(kind, 0) + 1
        by_source[source] = by_source.get(source, 0) + 1
        if ts[:16] != minute_text:
            minute_text = ts[:16]
            bucket = bucket_of(summary, minute_of(moment))
        if bucket is not None:
            bucket[SLOT[kind]] += 1
        if moved is not None:
            before, after = cast(Move, moved)
            if before is None:
                statuses[after] += 1
            elif before is not after:
                statuses[before] -= 1
                statuses[after] += 1
    return m
