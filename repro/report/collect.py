"""Read a report's inputs into one record per experiment, tolerating what is missing.

The compiler wires, per experiment and replica (models trained alike with another seed
and/or data subset; FACTS §4.2 averages two per variant):
- `train:<experiment>:<replica>:<phase>`: train metrics json (step_end, tokens, ...);
- `loss:<experiment>:<replica>:<phase>`: loss CSV `step,tokens,loss,lr[,ce,...]`;
- `eval:<experiment>:<replica>:<checkpoint>`: evaluate metrics json, where the checkpoint is a
  training phase (its end) or `<phase>-step<N>` (a snapshot inside it);
- `results:<experiment>:<replica>:<checkpoint>`: evaluate results folder (per-item samples)
  of the replica's final checkpoint, for the paired bootstrap;
and per experiment `ledger:<experiment>` (the token ledger of its main run's last training
phase) and `funnel:<experiment>:<dataset>` (replicas share their data). A replica's final checkpoint is the end of its training phase with the largest
`step_end`.

Nothing here raises for a missing or broken input: each one becomes a `Problem` that the
report prints, and the report shows what remains. Only a report with nothing at all to show
raises ReportInputError.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from repro.errors import ReproError
from repro.jsonio import read_json


class StageInputs(Protocol):
    """What the report reads of its stage's inputs: those named `<prefix>:<parts>` (a
    repro.stages.base.StageIO; a protocol, so this layer does not import the stages)."""

    def inputs_with_prefix(self, prefix: str) -> dict[str, Path]: ...

LOSS_COLUMNS = ("step", "tokens", "loss", "lr")
SNAPSHOT = re.compile(r"^(?P<phase>.+)-step(?P<step>\d+)$")
"""A checkpoint named `<phase>-step<N>` is the snapshot at global step N inside <phase>.
(A curriculum phase: a spec's `training.stages` entry. The report's tables and texts keep
the word "stage" they have always shown.)"""


class ReportInputError(ReproError, ValueError):
    """The report's inputs hold nothing that can be reported (the user's to fix: the CLI
    prints it in one line, exit 2)."""


@dataclass(frozen=True)
class Problem:
    """Something the report cannot show, and why."""

    experiment: str | None
    message: str

    def text(self) -> str:
        return f"{self.experiment}: {self.message}" if self.experiment else self.message


@dataclass(frozen=True)
class PhaseRun:
    """One training phase of one replica."""

    name: str
    step_end: int
    tokens: int
    """Tokens trained in this phase."""
    tokens_total: int
    """Cumulative tokens through this phase."""
    final_loss: float | None
    """Mean training cross entropy of the phase's last log window."""
    loss: Any
    """polars DataFrame with columns step, tokens, loss, lr (global step, cumulative tokens)."""


@dataclass(frozen=True)
class Checkpoint:
    """One evaluated checkpoint of a replica."""

    name: str
    phase: str
    step: int | None
    """Global step of a `<phase>-step<N>` snapshot; None for the end of the phase."""
    tokens_seen: int | None
    metrics: Mapping[str, Any]
    """Evaluate metrics json, non-finite numbers made None."""

    @property
    def tasks(self) -> Mapping[str, Mapping[str, Any]]:
        return self.metrics.get("tasks") or {}

    @property
    def random_baseline(self) -> Mapping[str, Mapping[str, Any]]:
        return self.metrics.get("random_baseline") or {}


@dataclass(frozen=True)
class Replica:
    """One trained model of an experiment."""

    name: str
    phases: tuple[PhaseRun, ...]
    """Training phases in training order (by step_end)."""
    checkpoints: tuple[Checkpoint, ...] = ()
    """Evaluated checkpoints by tokens seen."""
    final_phase: str | None = None
    """Name of the last training phase: its checkpoint is the one compared."""
    results: Path | None = None
    """Results folder (per-item samples) of the final checkpoint, if wired."""

    @property
    def final(self) -> Checkpoint | None:
        return next((c for c in self.checkpoints if c.name == self.final_phase), None)

    @property
    def final_train_loss(self) -> float | None:
        last = next((s for s in self.phases if s.name == self.final_phase), None)
        return None if last is None else last.final_loss


@dataclass(frozen=True)
class ExperimentRun:
    """One experiment: its replicas and the data accounts they share."""

    name: str
    replicas: tuple[Replica, ...]
    ledger: Mapping[str, Any] | None = None
    """Token ledger metrics (repro.train.ledger), if wired."""
    funnels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Dataset -> funnel metrics (repro.data.token_funnel)."""

    @property
    def evaluated(self) -> tuple[Replica, ...]:
        """Replicas whose final checkpoint was evaluated."""
        return tuple(r for r in self.replicas if r.final is not None)

    @property
    def final_phase(self) -> PhaseRun | None:
        """The last training phase (of the first replica that has one)."""
        for r in self.replicas:
            for s in r.phases:
                if s.name == r.final_phase:
                    return s
        return None


@dataclass(frozen=True)
class Collected:
    """What the report can show and what it cannot."""

    runs: list[ExperimentRun]
    """Experiments with any input, in display order."""
    problems: list[Problem]
    baseline: str | None
    """The baseline, or None when deltas cannot be computed (see problems)."""


def finite(x: Any) -> float | None:
    """A float, or None for missing/NaN/inf (JSON cannot carry those; tables show them blank)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return finite(obj)
    return obj


def read_loss_csv(path: Path) -> Any:
    """Loss curve as step, tokens, loss, lr; raises ValueError naming missing columns."""
    import polars as pl

    df = pl.read_csv(path, infer_schema=False)
    missing = [c for c in LOSS_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"loss CSV {path} lacks column(s) {missing}; expected header "
                         f"{','.join(LOSS_COLUMNS)}")
    # Compare next-token cross entropy, not the objective: with MTP or distillation the
    # optimised loss adds other terms, and the `ce` column holds the comparable part.
    loss = "ce" if "ce" in df.columns else "loss"
    return df.select(
        pl.col("step").cast(pl.Int64), pl.col("tokens").cast(pl.Int64),
        pl.col(loss).cast(pl.Float64).alias("loss"), pl.col("lr").cast(pl.Float64),
    ).with_columns(pl.col("loss").fill_nan(None), pl.col("lr").fill_nan(None))


def empty_loss() -> Any:
    import polars as pl

    return pl.DataFrame(schema={"step": pl.Int64, "tokens": pl.Int64, "loss": pl.Float64,
                                "lr": pl.Float64})


class _Inputs:
    """Inputs grouped by name parts; malformed names become problems."""

    def __init__(self, io: StageInputs, problems: list[Problem]):
        self.problems = problems
        self.by = {p: self._group(io, p, n) for p, n in
                   (("train", 3), ("loss", 3), ("eval", 3), ("results", 3), ("funnel", 2),
                    ("ledger", 1))}

    def _group(self, io: StageInputs, prefix: str, parts: int) -> dict[tuple[str, ...], Path]:
        shape = {3: "<experiment>:<replica>:<stage or checkpoint>", 2: "<experiment>:<dataset>",
                 1: "<experiment>"}[parts]
        out = {}
        for key, path in io.inputs_with_prefix(prefix).items():
            names = tuple(key.split(":"))
            if len(names) != parts or not all(names):
                self.problems.append(Problem(None, f"input {prefix}:{key} is ignored: it is not "
                                                   f"named {prefix}:{shape}"))
                continue
            out[names] = Path(path)
        return out

    def of(self, prefix: str, experiment: str) -> dict[tuple[str, ...], Path]:
        return {k[1:]: v for k, v in self.by[prefix].items() if k[0] == experiment}


def _read(path: Path, what: str, experiment: str, problems: list[Problem]) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        problems.append(Problem(experiment, f"{what} is unreadable ({type(e).__name__}: {e})"))
        return None


def _phase(experiment: str, replica: str, phase: str, metrics_path: Path,
           loss_path: Path | None, problems: list[Problem]) -> PhaseRun | None:
    what = f"replica {replica}, stage {phase}"  # the report's wording since before "phase"
    m = _read(metrics_path, f"{what}: train metrics {metrics_path}", experiment, problems)
    if not isinstance(m, dict):
        return None
    try:
        step_end, tokens = int(m["step_end"]), int(m["tokens"])
    except (KeyError, TypeError, ValueError) as e:
        problems.append(Problem(experiment, f"{what}: train metrics {metrics_path} lack an "
                                            f"integer {e}; stage left out"))
        return None
    loss = empty_loss()
    if loss_path is None:
        problems.append(Problem(experiment, f"{what}: no loss curve (no loss input)"))
    else:
        try:
            loss = read_loss_csv(loss_path)
        except (OSError, ValueError) as e:
            problems.append(Problem(experiment, f"{what}: loss curve unreadable ({e})"))
    final = m.get("final_ce", m.get("final_loss"))
    if final is not None and finite(final) is None:
        problems.append(Problem(experiment, f"{what}: final training loss is {final!r}"))
    return PhaseRun(phase, step_end, tokens, int(m.get("tokens_total", tokens)),
                    finite(final), loss)


def _checkpoint(experiment: str, replica: str, name: str, path: Path,
                phases: Mapping[str, PhaseRun], problems: list[Problem]) -> Checkpoint | None:
    what = f"replica {replica}, checkpoint {name}"
    raw = _read(path, f"{what}: evaluation {path}", experiment, problems)
    if not isinstance(raw, dict):
        return None
    for task, reason in sorted((raw.get("failed_tasks") or {}).items()):
        problems.append(Problem(experiment, f"{what}: task {task} failed to load ({reason})"))
    for task, metrics in sorted((raw.get("tasks") or {}).items()):
        for metric, v in sorted((metrics or {}).items()):
            if isinstance(v, float) and not math.isfinite(v) and not metric.endswith("_stderr"):
                problems.append(Problem(experiment, f"{what}: {task} {metric} is {v}; "
                                                    f"shown as missing"))
    snap = SNAPSHOT.match(name)
    phase, step = (snap["phase"], int(snap["step"])) if snap else (name, None)
    tokens = raw.get("tokens_seen")
    if not isinstance(tokens, int) and step is None and name in phases:
        tokens = phases[name].tokens_total  # the phase's end: its cumulative tokens
    return Checkpoint(name, phase, step, tokens if isinstance(tokens, int) else None,
                      _clean(raw))


def _replica(experiment: str, replica: str, ins: _Inputs, problems: list[Problem]) -> Replica:
    train = {k[1]: v for k, v in ins.of("train", experiment).items() if k[0] == replica}
    loss = {k[1]: v for k, v in ins.of("loss", experiment).items() if k[0] == replica}
    evals = {k[1]: v for k, v in ins.of("eval", experiment).items() if k[0] == replica}
    results = {k[1]: v for k, v in ins.of("results", experiment).items() if k[0] == replica}
    phases = [s for name, p in sorted(train.items())
              if (s := _phase(experiment, replica, name, p, loss.get(name), problems))]
    phases.sort(key=lambda s: (s.step_end, s.name))
    ends = [s.step_end for s in phases]
    if len(set(ends)) != len(ends):
        problems.append(Problem(experiment, f"replica {replica}: training stages share a "
                                            f"step_end {[(s.name, s.step_end) for s in phases]}; "
                                            f"ordered by name"))
    by_name = {s.name: s for s in phases}
    cps = [c for name, p in sorted(evals.items())
           if (c := _checkpoint(experiment, replica, name, p, by_name, problems))]
    cps.sort(key=lambda c: (c.tokens_seen is None, c.tokens_seen or 0, c.name))
    if phases:
        final = phases[-1].name
    else:
        ends_of_phases = [c.name for c in cps if c.step is None]
        final = ends_of_phases[-1] if ends_of_phases else None
        problems.append(Problem(experiment, f"replica {replica}: no train metrics; "
                                + (f"final checkpoint taken as {final} (most tokens seen)"
                                   if final else "no loss curve or final checkpoint")))
    if final is not None and final not in {c.name for c in cps}:
        problems.append(Problem(experiment, f"replica {replica}: final checkpoint {final} "
                                            f"(largest step_end) has no evaluation; evaluated: "
                                            f"{[c.name for c in cps] or 'none'}"))
    return Replica(replica, tuple(phases), tuple(cps), final, results.get(final))


def load_runs(io: StageInputs, experiments: list[str], baseline: str) -> Collected:
    """Experiments in display order with the problems found; raises ReportInputError only
    when no experiment has a training phase or an evaluation to show."""
    problems: list[Problem] = []
    ins = _Inputs(io, problems)
    runs = []
    for name in experiments:
        labels = sorted({k[0] for p in ("train", "loss", "eval", "results")
                         for k in ins.of(p, name)})
        if not labels:
            problems.append(Problem(name, "no inputs (no train, loss or eval results); "
                                          "left out of the report"))
            continue
        replicas = tuple(_replica(name, r, ins, problems) for r in labels)
        if not any(r.phases or r.checkpoints for r in replicas):
            problems.append(Problem(name, "none of its inputs could be read; left out"))
            continue
        finals = sorted({r.final_phase for r in replicas if r.final_phase})
        if len(finals) > 1:
            problems.append(Problem(name, f"replicas end in different stages {finals}; "
                                          f"each is compared at its own final checkpoint"))
        ledger = ins.of("ledger", name).get(())
        funnels = {k[0]: p for k, p in ins.of("funnel", name).items()}
        runs.append(ExperimentRun(
            name, replicas,
            ledger=None if ledger is None else _read(ledger, f"ledger {ledger}", name, problems),
            funnels={d: f for d, p in sorted(funnels.items())
                     if (f := _read(p, f"funnel of {d} ({p})", name, problems)) is not None}))
    if not runs:
        raise ReportInputError(
            f"nothing to report: none of the experiments {experiments} has a readable training "
            f"stage or evaluation. " + "; ".join(p.text() for p in problems),
            fix="rebuild the training and evaluation stages the report reads (`dvc repro` of "
                "the report stage runs them first)")
    base: str | None = baseline
    by_name = {r.name: r for r in runs}
    if baseline not in experiments:
        problems.append(Problem(None, f"the baseline {baseline!r} is not among the report's "
                                      f"experiments {experiments}, so no differences are shown; "
                                      f"add it to `experiments`"))
        base = None
    elif baseline not in by_name or not by_name[baseline].evaluated:
        problems.append(Problem(None, f"the baseline {baseline!r} has no evaluated final "
                                      f"checkpoint, so no differences are shown"))
        base = None
    return Collected(runs, problems, base)


def dumps_problems(problems: list[Problem]) -> list[dict[str, Any]]:
    """Problems for summary.json."""
    return [{"experiment": p.experiment, "message": p.message} for p in problems]
