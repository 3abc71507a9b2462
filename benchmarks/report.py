"""Rows of the results table, their targets and verdicts, as markdown and as JSON."""

from __future__ import annotations

import platform
import sqlite3
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class Row:
    """One line of the table: swarmlog's figure against one baseline measured in the same run.

    `higher_is_better` says how `ratio = swarmlog / baseline` is read: for a rate (events/s) the
    target is a minimum ratio, for a time (seconds, ms) or a size it is a maximum.
    """

    operation: str
    unit: str
    swarmlog: float | None
    baseline_name: str
    baseline: float | None
    target: float | None = None
    higher_is_better: bool = True
    note: str = ""
    ratio: float | None = field(init=False, default=None)
    verdict: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if self.swarmlog is not None and self.baseline:
            self.ratio = self.swarmlog / self.baseline
        if self.swarmlog is None:
            self.verdict = "gap"
        elif self.target is None or self.ratio is None:
            self.verdict = "info"
        elif self.higher_is_better:
            self.verdict = "pass" if self.ratio >= self.target else "MISS"
        else:
            self.verdict = "pass" if self.ratio <= self.target else "MISS"

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "—"
        sign = ">=" if self.higher_is_better else "<="
        return f"{sign} {self.target:g}x {self.baseline_name}"


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "events/s":
        return f"{value:,.0f}/s"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:,.1f} ms"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:g} {unit}"


def markdown(rows: list[Row]) -> str:
    lines = ["| operation | swarmlog | baseline | ratio | target | verdict |",
             "|---|---:|---:|---:|---|---|"]
    for r in rows:
        base = "—" if r.baseline is None else f"{r.baseline_name} {_figure(r.baseline, r.unit)}"
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(f"| {r.operation} | {_figure(r.swarmlog, r.unit)} | {base} | {ratio} | "
                     f"{r.target_text} | {r.verdict} |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import os

    import pydantic

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "pydantic": pydantic.VERSION,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        from importlib.metadata import version

        info["eventsourcing"] = version("eventsourcing")
        info["orjson"] = version("orjson")
    except Exception:  # pragma: no cover - reporting only
        pass
    return info


def document(rows: list[Row], *, events: int, quick: bool, seconds: float,
             extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: the same figures as the table, plus what produced them."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": events,
        "quick": quick,
        "seconds": round(seconds, 1),
        "environment": environment(),
        "rows": [{**asdict(r), "target_text": r.target_text} for r in rows],
        **extra,
    }
