"""Stage `fit`: a scaling ladder's L(N, D) fit and its recipes' decision accuracy.

Inputs: `eval:<experiment>:<run>`, the metrics of each ladder run's final evaluation
(repro.compile.ladder generates the runs). The loss L of a run is
`tasks.<loss_task>.<loss_metric>` of that file; N and D come from the config (the compiler
counted N from the model shape and D in whole optimizer steps).

Outputs:
- `ladder`: reports/ladders/<name>/ with report.md, fit.json (constants, bootstrap
  intervals, compute-optimal N and D, predictions, decision accuracy), points.csv and the
  plots fit.png, isoflop.png and (with recipes) decision.png;
- `metrics`: the headline numbers, for `dvc metrics diff` between ladder variants.
Every output is a function of the inputs and the config (the bootstrap is seeded).
"""

from __future__ import annotations

import math

from repro import paths
from repro.errors import ReproError
from repro.scaling import ladder_report
from repro.stages.base import (
    StageIO,
    atomic_dir,
    atomic_write_bytes,
    atomic_write_text,
    dumps_json,
    read_json,
    write_json,
)
from repro.stages.configs import FitConfig, LadderRun
from repro.stages.kind import ENV, METRICS, Output, Role, StageKind


class LadderInputError(ReproError, ValueError):
    """A ladder run whose evaluation lacks the fitted loss."""


def _scores(io: StageIO, cfg: FitConfig) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """(experiment, run) -> task -> metric -> value, from each run's evaluation metrics."""
    out = {}
    for run in cfg.runs:
        key = (run.experiment, run.run)
        if key not in out:
            out[key] = read_json(io.input(f"eval:{run.experiment}:{run.run}"))["tasks"]
    return out


def _loss(scores: dict[str, dict[str, float]], run: LadderRun, cfg: FitConfig, path: str) -> float:
    value = scores.get(cfg.loss_task, {}).get(cfg.loss_metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise LadderInputError(
            f"ladder {cfg.name!r}: run {run.experiment} ({run.run}) has no positive finite "
            f"{cfg.loss_task}.{cfg.loss_metric} in {path} (got {value!r}); evaluate that task "
            f"in the ladder spec's evaluation, or set ladder.loss to a task it evaluates")
    return float(value)


def run(cfg: FitConfig, io: StageIO) -> None:
    scores = _scores(io, cfg)
    losses = {(r.experiment, r.run): _loss(scores[(r.experiment, r.run)], r, cfg,
                                          str(io.input(f"eval:{r.experiment}:{r.run}")))
              for r in cfg.runs if r.recipe is None}
    result = ladder_report.analyse(cfg, losses, scores)
    images = ladder_report.images(result)
    with atomic_dir(io.output("ladder")) as out:
        for file, png in images.items():
            atomic_write_bytes(out / file, png)
        atomic_write_text(out / "report.md", ladder_report.markdown(result, sorted(images)))
        atomic_write_text(out / "fit.json", dumps_json(result.record()))
        atomic_write_text(out / "points.csv", ladder_report.points_csv(result))
    write_json(io.output("metrics"), result.headline())


KIND = StageKind(
    config=FitConfig,
    outputs={
        "ladder": Output(Role.RECORD, lambda stage_id, cfg: paths.ladder_dir(cfg.name),
                         named_by="ladder.name"),
        "metrics": METRICS,
        "env": ENV,
    },
    run=run,
)
