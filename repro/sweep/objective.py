"""The number a sweep optimises and where it comes from.

It is one metric of the experiment's main-run final evaluation: the checkpoint of the main
run's last phase, scored by the main run's `evaluate` stage, whose metrics file for it
(`metrics/<stage id>/<phase>.json`) holds `tasks.<task>.<metric>`. Running that stage as the
target of `dvc exp run` runs exactly what a trial needs: the experiment's training and
evaluation, and upstream of them only what the trial's settings change (everything else
comes from DVC's cache).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from repro.compile.errors import GraphError
from repro.compile.graph import OutputRef, StageGraph, _run_prefix
from repro.spec.schema import ExperimentSpec
from repro.stages.kind import per_checkpoint


class ObjectiveError(GraphError):
    """The objective cannot be found in the compiled graph; `field` is the spec field,
    `fix` says what to change."""


@dataclass(frozen=True)
class Objective:
    stage_id: str
    """The evaluate stage every trial targets, by its name in dvc.yaml."""
    metrics_file: str
    """The final checkpoint's metrics file (an output of that stage)."""
    task: str
    metric: str
    goal: Literal["minimize", "maximize"]

    @property
    def label(self) -> str:
        return f"{self.task} {self.metric}"

    def read(self, metrics: Any) -> float | None:
        """The objective from a parsed metrics file; None when absent or not a finite number."""
        try:
            value = metrics["tasks"][self.task][self.metric]
        except (KeyError, TypeError):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return float(value)

    def better(self, a: float, b: float) -> bool:
        """Whether `a` beats `b`."""
        return a < b if self.goal == "minimize" else a > b


def find_objective(spec: ExperimentSpec, graph: StageGraph) -> Objective:
    """The sweep objective of `spec` (which must have a `sweep`) in the compiled graph."""
    assert spec.sweep is not None
    obj = spec.sweep.objective
    main = _run_prefix(spec, spec.experiment.runs()[0])
    last = spec.training.stages[-1].name
    train = next((s for s in graph.stages.values() if s.kind == "train"
                  and s.config.experiment == spec.name  # type: ignore[attr-defined]
                  and s.label == f"{main}-{last}"), None)
    if train is None:
        raise ObjectiveError(f"experiment {spec.name!r} has no compiled training stage "
                             f"{last!r}", "experiment.name",
                             f"put the spec in the compiled specs folder and run `repro compile`")
    ref = OutputRef(train.id, "checkpoint")
    evaluate, key = next((s, key) for s in graph.stages.values() if s.kind == "evaluate"
                         and s.config.experiment == spec.name  # type: ignore[attr-defined]
                         for key, r in s.inputs if r == ref)
    metrics = evaluate.outputs()[per_checkpoint("metrics", key.split(":", 1)[1])]
    evaluation = spec.evaluation
    tasks = [t.task_name for t in evaluation.local_tasks] + evaluation.standard_tasks
    if obj.task not in tasks:
        raise ObjectiveError(
            f"task {obj.task!r} is not evaluated by experiment {spec.name!r}; it evaluates "
            f"{tasks}", "sweep.objective.task",
            "name one of those tasks, or add it to evaluation.tasks / evaluation.local_tasks")
    return Objective(graph.name(evaluate.id), str(metrics), obj.task, obj.metric, obj.goal)
