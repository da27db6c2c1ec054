"""Read a report's inputs into one record per experiment.

The compiler wires, per experiment and training stage, `train:<experiment>:<stage>` (train
metrics json), `loss:<experiment>:<stage>` (loss CSV `step,tokens,loss,lr`) and, per evaluated
checkpoint, `eval:<experiment>:<stage>` (evaluate metrics json). The final stage of an
experiment is the one with the largest `step_end`; its evaluation is the one compared.
Per experiment it also wires the data accounts: `ledger:<experiment>` (token ledger metrics)
and `funnel:<experiment>:<dataset>` (funnel metrics of each dataset it trains on); a report
without them leaves its data section out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from repro.stages.base import StageIO, read_json

LOSS_COLUMNS = ("step", "tokens", "loss", "lr")


class ReportInputError(ValueError):
    """The report's inputs do not cover what its config asks for."""


@dataclass(frozen=True)
class StageRun:
    """One training stage of an experiment."""

    name: str
    step_end: int
    tokens: int
    """Tokens trained in this stage."""
    tokens_total: int
    """Cumulative tokens through this stage."""
    final_loss: float | None
    """Mean training loss of the stage's last log window."""
    loss: Any
    """polars DataFrame with columns step, tokens, loss, lr (global step, cumulative tokens)."""


@dataclass(frozen=True)
class ExperimentRun:
    """One experiment: training stages in order and its evaluated checkpoints."""

    name: str
    stages: tuple[StageRun, ...]
    evals: Mapping[str, Mapping[str, Any]]
    """Training stage name -> evaluate metrics json (non-finite numbers made None)."""
    ledger: Mapping[str, Any] | None = None
    """Token ledger metrics (repro.stages.ledger), if wired."""
    funnels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Dataset -> funnel metrics (repro.data.token_funnel)."""

    @property
    def final(self) -> StageRun:
        return self.stages[-1]

    @property
    def final_eval(self) -> Mapping[str, Any]:
        return self.evals[self.final.name]


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


def _split(key: str, prefix: str, what: str = "stage") -> tuple[str, str]:
    experiment, sep, stage = key.partition(":")
    if not sep or not experiment or not stage:
        raise ReportInputError(f"input {prefix}:{key} is not named {prefix}:<experiment>:<{what}>")
    return experiment, stage


def _by_experiment(io: StageIO, prefix: str, what: str = "stage") -> dict[str, dict[str, Path]]:
    out: dict[str, dict[str, Path]] = {}
    for key, path in io.inputs_with_prefix(prefix).items():
        experiment, stage = _split(key, prefix, what)
        out.setdefault(experiment, {})[stage] = Path(path)
    return out


def read_loss_csv(path: Path) -> Any:
    import polars as pl

    df = pl.read_csv(path, infer_schema=False)
    missing = [c for c in LOSS_COLUMNS if c not in df.columns]
    if missing:
        raise ReportInputError(f"loss CSV {path} lacks column(s) {missing}; expected header "
                               f"{','.join(LOSS_COLUMNS)}")
    # Compare next-token cross entropy, not the objective: with MTP or distillation the
    # optimised loss adds other terms, and the `ce` column holds the comparable part.
    loss = "ce" if "ce" in df.columns else "loss"
    return df.select(
        pl.col("step").cast(pl.Int64), pl.col("tokens").cast(pl.Int64),
        pl.col(loss).cast(pl.Float64).alias("loss"), pl.col("lr").cast(pl.Float64),
    ).with_columns(pl.col("loss").fill_nan(None), pl.col("lr").fill_nan(None))


def _stage_run(name: str, metrics_path: Path, loss_path: Path) -> StageRun:
    m = read_json(metrics_path)
    try:
        step_end, tokens = int(m["step_end"]), int(m["tokens"])
    except (KeyError, TypeError, ValueError) as e:
        raise ReportInputError(f"train metrics {metrics_path} lack an integer {e}") from None
    return StageRun(
        name=name, step_end=step_end, tokens=tokens,
        tokens_total=int(m.get("tokens_total", tokens)),
        final_loss=finite(m.get("final_ce", m.get("final_loss"))), loss=read_loss_csv(loss_path),
    )


def load_runs(io: StageIO, experiments: list[str], baseline: str) -> list[ExperimentRun]:
    """Experiments in display order; raises ReportInputError naming what is missing."""
    if baseline not in experiments:
        raise ReportInputError(f"baseline {baseline!r} is not among the report's experiments "
                               f"{experiments}; add it to `experiments`")
    train, loss, evals = (_by_experiment(io, p) for p in ("train", "loss", "eval"))
    funnels = _by_experiment(io, "funnel", "dataset")
    ledgers = {k: Path(v) for k, v in io.inputs_with_prefix("ledger").items()}
    present = sorted(set(train) | set(evals))
    # Check the baseline first: every delta in the report depends on it.
    for name in [baseline, *(e for e in experiments if e != baseline)]:
        role = "baseline experiment" if name == baseline else "experiment"
        if name not in train or name not in evals:
            raise ReportInputError(
                f"{role} {name!r} has no inputs: expected train:{name}:<stage>, "
                f"loss:{name}:<stage> and eval:{name}:<stage>; "
                f"inputs cover experiments {present}")
    runs = []
    for name in experiments:
        missing_loss = sorted(set(train[name]) - set(loss.get(name, {})))
        if missing_loss:
            raise ReportInputError(f"experiment {name!r}: no loss:{name}:<stage> input for "
                                   f"stage(s) {missing_loss}")
        stages = sorted((_stage_run(s, p, loss[name][s]) for s, p in train[name].items()),
                        key=lambda s: (s.step_end, s.name))
        ends = [s.step_end for s in stages]
        if len(set(ends)) != len(ends):
            raise ReportInputError(f"experiment {name!r}: training stages share a step_end "
                                   f"({[(s.name, s.step_end) for s in stages]}); cannot order them")
        run = ExperimentRun(name, tuple(stages),
                            {s: _clean(read_json(p)) for s, p in sorted(evals[name].items())},
                            ledger=read_json(ledgers[name]) if name in ledgers else None,
                            funnels={d: read_json(p) for d, p in sorted(funnels.get(name, {}).items())})
        if run.final.name not in run.evals:
            raise ReportInputError(
                f"experiment {name!r}: final stage {run.final.name!r} (largest step_end "
                f"{run.final.step_end}) has no eval:{name}:{run.final.name} input; "
                f"evaluated stages: {sorted(run.evals)}")
        runs.append(run)
    return runs
