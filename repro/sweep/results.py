"""DVC experiments -> trial results. The report is always built from what DVC recorded
(`dvc exp show`), never from the driver's memory, so `--report-only` and a finished sweep
give the same report, and a trial's values are the ones it actually ran with."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from repro.spec.search import Scalar
from repro.sweep.dvc import ExpRecord
from repro.sweep.keys import get_path
from repro.sweep.objective import Objective

Status = Literal["completed", "failed"]


@dataclass(frozen=True)
class TrialResult:
    name: str
    index: int
    point: dict[str, Scalar]
    """Parameter name -> the value the experiment ran with."""
    status: Status
    value: float | None = None
    """The objective (None unless completed)."""
    error: str | None = None
    """Why it failed."""


def trial_index(sweep: str, name: str) -> int | None:
    """The index of a trial named `<sweep>-<index>`, else None."""
    m = re.fullmatch(re.escape(sweep) + r"-(\d+)", name)
    return int(m.group(1)) if m else None


def recorded_point(record: ExpRecord, keys: Mapping[str, tuple[str, ...]]) -> dict[str, Scalar]:
    """Each parameter's value in the experiment's params.yaml (at its first key; the
    sweep sets all of a parameter's keys together). Parameters whose key is absent are left
    out."""
    point: dict[str, Scalar] = {}
    for name, ks in keys.items():
        try:
            point[name] = get_path(record.params, ks[0])
        except KeyError:
            continue
    return point


def same_value(a: Any, b: Any) -> bool:
    """Equal as settings: 0.1 == 0.1000000000001 (a float through YAML and back), 2 == 2.0,
    but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return a == b


def same_point(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)


def result_of(record: ExpRecord, index: int, keys: Mapping[str, tuple[str, ...]],
              objective: Objective) -> TrialResult | None:
    """The result of a finished experiment; None while it is queued or running."""
    point = recorded_point(record, keys)
    if record.state == "failed":
        return TrialResult(record.name, index, point, "failed",
                           error=record.error or "the experiment failed")
    if record.state != "success":
        return None
    metrics = record.metrics.get(objective.metrics_file)
    value = objective.read(metrics)
    if value is None:
        why = ("its metrics file is missing" if metrics is None else
               f"tasks.{objective.task}.{objective.metric} is missing or not a number")
        return TrialResult(record.name, index, point, "failed",
                           error=f"{objective.metrics_file}: {why}")
    return TrialResult(record.name, index, point, "completed", value=value)


def collect_results(records: Mapping[str, ExpRecord], sweep: str,
                    keys: Mapping[str, tuple[str, ...]], objective: Objective) -> list[TrialResult]:
    """Finished trials of a sweep (experiments named `<sweep>-<index>`), by index."""
    out = []
    for name, record in records.items():
        index = trial_index(sweep, name)
        result = result_of(record, index, keys, objective) if index is not None else None
        if result is not None:
            out.append(result)
    return sorted(out, key=lambda r: r.index)
