"""How big the stage graph of a set of specs will be, counted from the specs alone, before
anything is built (repro.compile.graph.compile_graph checks it first).

Each spec is bounded at validation (repro.spec.base: train stages, snapshot evaluations,
ladder runs per experiment), but a graph is the sum of every spec compiled together, and
its cost is more than its stage count: every run's evaluate stage's params section repeats
the experiment's evaluation settings and reads every local task and checkpoint, every train stage reads every
dataset of its mixture. The time and memory of `repro compile` (and of `repro plan`, which
builds one experiment's graph) grow with the values written to params.yaml plus the inputs
written to dvc.yaml, so both are bounded here: measured on a 2-core machine shared with
other jobs, about 0.3 ms per stage and 7 µs per value or input, so a graph at both limits
compiles in under 20 s and 300 MB (the issue's bound for any spec: 30 s and 1 GB).

Counts are upper bounds: a stage two experiments share (the same curated data) is counted
for each, and every evaluation is counted as if `checkpoints: every_stage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from repro.compile.errors import GraphError
from repro.spec.schema import ExperimentSpec

MAX_GRAPH_STAGES = 20_000
"""Stages of one compiled graph (the quickstart has about 100; SmolLM3-3B's reproduction
with an evaluation every 50B tokens about 500)."""
MAX_GRAPH_SIZE = 1_500_000
"""Settings values and keys (params.yaml) plus stage inputs (dvc.yaml) of one compiled
graph; a graph of this size takes about 10 s and 200 MB to compile."""


LADDER_RUN_COST = 3_000
"""A ladder run is validated as a whole experiment before its stages are built (about
25 ms, as long as writing 3,000 values): counted as that many on top of its stages."""


def _values(obj: Any) -> int:
    """Scalars and containers in a JSON-like tree, mapping keys included (each is a YAML
    node to write)."""
    if isinstance(obj, dict):
        return 1 + len(obj) + sum(_values(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return 1 + sum(_values(v) for v in obj)
    return 1


@dataclass
class Expansion:
    """What one spec adds to the graph, by part (stages, and values + inputs)."""

    experiment: str
    stages: dict[str, int] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    """Evaluated runs (ladder runs x runs for a ladder), read by reports and fits."""
    evaluations: int = 0
    trains: int = 0

    def add(self, part: str, stages: int, size: int) -> None:
        self.stages[part] = self.stages.get(part, 0) + stages
        self.size[part] = self.size.get(part, 0) + size

    @property
    def total_stages(self) -> int:
        return sum(self.stages.values())

    @property
    def total_size(self) -> int:
        return sum(self.size.values())


PART_FIELD = {
    "datasets": "datasets",
    "training": "experiment.replicas",
    "evaluation": "evaluation.every_tokens",
    "ladder": "ladder.sizes",
    "report": "report.experiments",
}
"""The spec field to change when a part is what makes a graph too big."""


def _per_phase(mixture: dict[str, float]) -> int:
    """What a train stage adds for its phase: its mixture and max_epochs (a key and a value
    per dataset each), a tokens input per dataset, and a few scalars."""
    return 5 * len(mixture) + 9


def expansion(spec: ExperimentSpec) -> Expansion:
    """Upper bounds of the stages and size one spec compiles into (a ladder spec: its runs)."""
    out = Expansion(spec.name)
    datasets = spec.datasets
    local_tasks = len(spec.evaluation.local_tasks)
    for ds in datasets.values():
        # source?, curate, split, decontaminate?, tokenize, funnel: the curate config holds
        # the dataset's settings, the others a few values; decontamination reads every task
        out.add("datasets", 6, 2 * _values(ds.model_dump(mode="json")) + 60 + local_tasks)
    out.add("datasets", 1 + local_tasks,  # tokenizer, one evaltasks stage per task
            _values(spec.tokenizer.model_dump(mode="json")) + 30 * local_tasks
            + 2 * len(datasets))
    tr = spec.training
    train_base = (_values(tr.model_dump(mode="json", exclude={"stages"}))
                  + _values(spec.model.model_dump(mode="json")) + 20)
    eval_size = _values(spec.evaluation.model_dump(mode="json")) + 12 + local_tasks
    runs = 1 + len(spec.experiment.replicas)
    if spec.ladder is not None:  # each ladder run: final evaluation only, no snapshots
        points = spec.ladder.run_count()
        per_run = sum(train_base + _per_phase(s.mixture) for s in tr.stages) + eval_size
        out.add("ladder", points * runs * (len(tr.stages) + 1),
                points * runs * (per_run + LADDER_RUN_COST))
        out.add("ladder", 1, points * runs * 8)  # the fit stage
        out.runs, out.trains, out.evaluations = points * runs, points * runs * len(tr.stages), points * runs
        return out
    snapshots = spec.snapshots_per_run()
    distill = tr.distillation is not None and tr.distillation.logits != "full"
    for s in tr.stages:
        out.add("training", runs, runs * (train_base + _per_phase(s.mixture)))
        if distill:
            out.add("training", len(s.mixture), 24 * len(s.mixture))
    evaluations = runs * (snapshots + len(tr.stages))
    # one evaluate stage per run; each checkpoint adds its label, input and two outputs
    out.add("evaluation", runs, runs * eval_size + 8 * evaluations + runs * snapshots)
    out.runs, out.trains, out.evaluations = runs, runs * len(tr.stages), evaluations
    return out


def check(specs: list[ExperimentSpec]) -> list[Expansion]:
    """Every spec's expansion, after checking their sum against MAX_GRAPH_STAGES and
    MAX_GRAPH_SIZE; GraphError names the biggest spec, its biggest part and the limit."""
    parts = {s.name: expansion(s) for s in specs}
    for spec in specs:  # a report reads every run's training and evaluation metrics
        if spec.report is None:
            continue
        compared = {spec.name, spec.report.baseline, *spec.report.experiments}
        reads = sum(2 * (parts[n].trains + parts[n].evaluations) for n in compared if n in parts)
        parts[spec.name].add("report", 1, reads + _values(spec.report.model_dump(mode="json")))
    stages = sum(p.total_stages for p in parts.values())
    size = sum(p.total_size for p in parts.values())
    for total, limit, what, key in ((stages, MAX_GRAPH_STAGES, "stages", "stages"),
                                    (size, MAX_GRAPH_SIZE, "settings values and stage inputs",
                                     "size")):
        if total <= limit:
            continue
        biggest = max(parts.values(), key=lambda p: getattr(p, f"total_{key}"))
        by_part: dict[str, int] = getattr(biggest, key)
        part = max(by_part, key=lambda k: by_part[k])
        share = (f"experiment {biggest.experiment!r} alone adds about "
                 f"{getattr(biggest, f'total_{key}'):,}, {by_part[part]:,} of them from its "
                 f"{part}" + (f" ({biggest.evaluations:,} evaluations of {biggest.runs} run(s))"
                              if part == "evaluation" else ""))
        raise GraphError(
            f"the {len(specs)} spec(s) compile to about {total:,} {what}, above the limit of "
            f"{limit:,} (repro.compile.limits.MAX_GRAPH_{key.upper()}: compile time and "
            f"memory grow with it); {share}",
            PART_FIELD[part],
            "evaluate fewer checkpoints (a larger evaluation.every_tokens), or use fewer "
            "replicas, training stages, datasets, local tasks or ladder runs, or compile fewer "
            "specs together (`repro compile --specs <folder>`)",
            biggest.experiment)
    return list(parts.values())
