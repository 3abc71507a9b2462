"""The ADR 017 facade checks every argument before it does anything. What it cannot take raises
an exception of swarmlog's own, in one line: a `SwarmlogError` — `InvalidEvent`, or
`InvalidArgument`, which is also the `TypeError` or `ValueError` the seed's module raised, so
its callers' `except` clauses still catch it. The log stays exactly as it was. Every public
function is driven, with values of every wrong type and range."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import InvalidArgument, SwarmlogError
from swarmlog import event_log
from tests.fingerprint import contents


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


circular: dict[str, Any] = {}
circular["self"] = circular

hostile = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.sampled_from([-1, 0, 1, 60, 10**6, 10**8, 2**63, -(2**63) - 1, 10**30]),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 1e-300]),
    st.text(max_size=8), st.sampled_from(["", "\x00", "\ud800", "task.created", "60", "🐝"]),
    st.binary(max_size=4), st.sampled_from([event_log.EventType.TASK_CREATED, object(), {1, 2},
                                            (1,), [1], {"bid_sats": 1}, {(1, 2): 3},
                                            {"x": object()}, {"x": b"bytes"}, print,
                                            lambda entry: None]),
    st.builds(lambda: circular), st.builds(lambda: {"deep": deep(5000)}))

FUNCTIONS = {name: getattr(event_log, name) for name in event_log.__all__
             if inspect.isfunction(getattr(event_log, name))}


#: A good value for some parameters, so that a call gets past them to the others.
PLAUSIBLE: dict[str, Any] = {
    "event_type": st.sampled_from(list(event_log.EventType)), "source": st.just("coordinator"),
    "task_id": st.just("t1"), "agent_id": st.just("a1"), "data": st.just({"bid_sats": 1}),
    "event_id": st.just("e1"), "limit": st.just(10), "offset": st.just(0),
    "minutes": st.just(60), "older_than_days": st.just(30)}


@st.composite
def calls(draw: st.DrawFn, function: Callable[..., Any]) -> dict[str, Any]:
    """Keyword arguments for `function`: each parameter left out (its default), good, or
    hostile (new parameters are hostile or left out)."""
    chosen = {}
    for name, param in inspect.signature(function).parameters.items():
        if param.default is inspect.Parameter.empty or draw(st.booleans()):
            chosen[name] = draw(st.one_of(PLAUSIBLE.get(name, hostile), hostile))
    return chosen


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "seed.db"
    monkeypatch.setattr(event_log, "DB_PATH", path)
    event_log.log_event("task.created", "coordinator", "t1", data={"description": "x"})
    yield path
    event_log._log().close()


def test_every_public_function_is_driven() -> None:
    assert set(FUNCTIONS) >= {"log_event", "get_event", "list_events", "get_task_events",
                              "get_agent_events", "get_recent_events", "get_event_summary",
                              "prune_events", "subscribe"}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_facade_call_returns_or_raises_one_line_of_its_own_and_changes_nothing(
        name: str, log_file: Path, data: st.DataObject) -> None:
    function = FUNCTIONS[name]
    kwargs = data.draw(calls(function), label="arguments")
    before = contents(log_file)[1]
    try:
        returned = function(**kwargs)
    except SwarmlogError as e:
        assert "\n" not in str(e), str(e)
        assert contents(log_file)[1] == before
    else:
        if name == "subscribe":
            returned()


@pytest.mark.parametrize(("call", "seed_raised"), [
    (lambda: event_log.log_event("task.created", "c", data={"x": {1, 2}}), TypeError),
    (lambda: event_log.log_event("task.created", "c", data=circular), ValueError),
    (lambda: event_log.log_event("task.created", "c", data={"deep": deep(5000)}), RecursionError),
    (lambda: event_log.prune_events(999_999), OverflowError),
    (lambda: event_log.get_event(5), None),
    (lambda: event_log.list_events(offset=10**30), None),
    (lambda: event_log.subscribe("not a function"), None),
], ids=["set", "circular", "deep", "prune 999999 days", "int id", "huge offset", "subscribe"])
def test_what_the_seed_raised_bare_is_invalid_argument_and_still_what_it_was(
        log_file: Path, call: Callable[[], Any], seed_raised: type[BaseException] | None) -> None:
    with pytest.raises(InvalidArgument) as raised:
        call()
    if seed_raised in (TypeError, ValueError):  # callers that caught the seed's still do
        assert isinstance(raised.value, seed_raised)
