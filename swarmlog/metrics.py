"""The log's health for a monitoring system, in Prometheus' text exposition format.

`exposition(log)` is what `swarmlog metrics` prints and what a web view serves at /metrics
(with `CONTENT_TYPE`). It reads the store and folds nothing: a read model's live lag is there
only when this log has folded it (a long-running process); the lag of its newest snapshot, what
a reader opening the log would fold, is always there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple

from swarmlog.log import EventLog

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Sample(NamedTuple):
    """One value of a metric, with its labels."""

    name: str
    labels: dict[str, str]
    value: float


class Metric(NamedTuple):
    """A metric family: its name, help text, type, and samples."""

    name: str
    help: str
    type: str
    samples: list[Sample]


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def collect(log: EventLog) -> list[Metric]:
    """The log's metrics: events stored by type, positions, read-model lag, the last prune, the
    database's size."""
    status = log.status()
    by_type = log.store.count_by_type()

    def one(name: str, help: str, value: float, kind: str = "gauge") -> Metric:
        return Metric(name, help, kind, [Sample(name, {}, value)])

    found = [
        Metric("swarmlog_events_stored", "Events stored now, by type (pruned ones are not).",
               "gauge", [Sample("swarmlog_events_stored", {"type": t}, n)
                         for t, n in sorted(by_type.items())]),
        one("swarmlog_head_position", "The last position ever assigned: every event ever "
            "appended, pruned ones included.", status["head"]),
        one("swarmlog_first_position", "The position of the oldest event still stored.",
            status["first_position"]),
    ]
    models = status["projections"]
    found.append(Metric(
        "swarmlog_snapshot_lag_events", "Events after each read model's newest snapshot: what a "
        "reader opening the log folds.", "gauge",
        [Sample("swarmlog_snapshot_lag_events", {"model": name}, m["to_fold"])
         for name, m in models.items()]))
    live = [Sample("swarmlog_read_model_lag_events", {"model": name}, m["lag"])
            for name, m in models.items() if m["lag"] is not None]
    if live:
        found.append(Metric("swarmlog_read_model_lag_events", "Events appended that this "
                            "process's read models have not folded yet.", "gauge", live))
    prunes = status["prunes"]
    found.append(one("swarmlog_prunes_total", "Prunes recorded.", len(prunes), "counter"))
    found.append(one("swarmlog_pruned_events_total", "Events removed by every prune.",
                     sum(p["removed"] for p in prunes), "counter"))
    if prunes:
        last = prunes[-1]
        found.append(one("swarmlog_last_prune_timestamp_seconds", "When the latest prune ran "
                         "(Unix time).", _seconds(last["pruned_at"])))
        found.append(one("swarmlog_last_prune_cutoff_timestamp_seconds", "The cutoff of the "
                         "latest prune (Unix time): older events were removed.",
                         _seconds(last["cutoff"])))
    if status["size_bytes"] is not None:
        found.append(one("swarmlog_database_size_bytes", "The space the log's database takes.",
                         status["size_bytes"]))
    return found


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def lines(metrics: list[Metric]) -> Iterator[str]:
    """The text exposition of metrics, line by line."""
    for metric in metrics:
        yield f"# HELP {metric.name} {metric.help}"
        yield f"# TYPE {metric.name} {metric.type}"
        for sample in metric.samples:
            name = sample.name
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            yield f"{name}{{{labels}}} {_number(sample.value)}" if labels else \
                f"{name} {_number(sample.value)}"


def exposition(log: EventLog) -> str:
    """The metrics as Prometheus text (serve it with `CONTENT_TYPE`)."""
    return "\n".join(lines(collect(log))) + "\n"
