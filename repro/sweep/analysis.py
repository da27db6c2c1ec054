"""What a sweep's results say: the ranking, the best configuration and its margin over the
runner-up, and how much each parameter matters.

Sensitivity is given two ways. The main effect of a parameter is the spread (max - min) of
the mean objective over its values, averaging over everything else: on a full grid that is
exactly the classical main effect; it needs no model and reads directly off the table.
With at least `MIN_IMPORTANCE_TRIALS` completed trials we add optuna's fANOVA importance
(Hutter et al. 2014: the share of the objective's variance a random forest attributes to
each parameter), computed on a study rebuilt from the results so it works for every
strategy, and seeded so the report is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from repro.spec.search import Scalar, SweepParameter, SweepSpec
from repro.sweep.results import TrialResult
from repro.sweep.strategies import distributions

MIN_IMPORTANCE_TRIALS = 4
"""fANOVA fits a random forest to (configuration, objective) pairs; with fewer points every
split is a single trial and the variance shares mean nothing."""
MAX_BINS = 4
"""Continuous values (random/optuna ranges) are grouped into at most 4 equal-count bins for
the main effect, so each mean averages more than one trial."""


@dataclass(frozen=True)
class Best:
    name: str
    value: float
    point: dict[str, Scalar]
    runner_up: str | None
    runner_up_value: float | None
    margin: float | None
    """|best - runner-up|, in the objective's units."""
    margin_relative: float | None
    """margin / |runner-up|."""


@dataclass(frozen=True)
class Level:
    """One value (or bin of values) of a parameter and the mean objective there."""

    label: str
    value: Scalar | None
    """The value (None for a bin of a continuous range)."""
    mean: float
    trials: int


@dataclass(frozen=True)
class Effect:
    levels: tuple[Level, ...]
    main_effect: float | None
    """max - min of the level means (None with fewer than two levels)."""
    importance: float | None
    """fANOVA share (None with too few trials)."""


@dataclass(frozen=True)
class Analysis:
    ranked: tuple[TrialResult, ...]
    """Completed trials best first (ties by index), then failed ones by index."""
    best: Best | None
    sensitivity: dict[str, Effect]
    importance_note: str | None
    """Why there are no fANOVA importances, when there are none."""


def rank(results: Sequence[TrialResult], goal: Literal["minimize", "maximize"]) -> list[TrialResult]:
    sign = 1.0 if goal == "minimize" else -1.0
    done = sorted((r for r in results if r.status == "completed"),
                  key=lambda r: (sign * (r.value or 0.0), r.index))
    return done + sorted((r for r in results if r.status != "completed"), key=lambda r: r.index)


def best_of(ranked: Sequence[TrialResult]) -> Best | None:
    done = [r for r in ranked if r.status == "completed"]
    if not done:
        return None
    first = done[0]
    assert first.value is not None
    if len(done) == 1:
        return Best(first.name, first.value, first.point, None, None, None, None)
    second = done[1]
    assert second.value is not None
    margin = abs(first.value - second.value)
    relative = margin / abs(second.value) if second.value else None
    return Best(first.name, first.value, first.point, second.name, second.value, margin, relative)


def _norm(value: Any) -> Any:
    """Group key of a value: floats to 12 significant digits (a value read back from YAML
    may differ in the last bit from the one planned)."""
    return float(f"{value:.12g}") if isinstance(value, float) else value


def _label(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _discrete(p: SweepParameter, strategy: str) -> bool:
    return p.values is not None or strategy == "grid"


def levels(name: str, p: SweepParameter, strategy: str,
           completed: Sequence[TrialResult]) -> list[Level]:
    """Mean objective per value of a parameter (per bin, for a continuous range)."""
    pairs = [(r.point[name], r.value) for r in completed if name in r.point and r.value is not None]
    if not pairs:
        return []
    if _discrete(p, strategy):
        order = [_norm(v) for v in p.grid_values()]
        groups: dict[Any, list[float]] = {}
        for v, y in pairs:
            groups.setdefault(_norm(v), []).append(y)
        keys = [k for k in order if k in groups] + [k for k in groups if k not in order]
        return [Level(_label(k), k, sum(groups[k]) / len(groups[k]), len(groups[k])) for k in keys]
    pairs.sort(key=lambda vy: float(vy[0]))
    bins = max(1, min(MAX_BINS, len(pairs) // 2))
    out = []
    for b in range(bins):
        chunk = pairs[b * len(pairs) // bins:(b + 1) * len(pairs) // bins]
        lo, hi = chunk[0][0], chunk[-1][0]
        ys = [y for _, y in chunk]
        out.append(Level(f"{lo:.4g}..{hi:.4g}", None, sum(ys) / len(ys), len(ys)))
    return out


def importances(sweep: SweepSpec, completed: Sequence[TrialResult]) -> tuple[dict[str, float], str | None]:
    """fANOVA importance per parameter, or ({}, why not)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    if len(completed) < MIN_IMPORTANCE_TRIALS:
        return {}, (f"fANOVA importances need at least {MIN_IMPORTANCE_TRIALS} completed "
                    f"trials ({len(completed)} so far)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = distributions(sweep)
    study = optuna.create_study(direction=sweep.objective.goal)
    for r in completed:
        if set(r.point) != set(dists):
            continue
        try:
            study.add_trial(optuna.trial.create_trial(
                params=r.point, distributions=dists, value=r.value))
        except ValueError:  # a value outside the sweep's domain (an experiment edited by hand)
            continue
    varied = [n for n, d in dists.items() if not d.single()
              and len({_norm(t.params[n]) for t in study.trials}) > 1]
    if len(study.trials) < MIN_IMPORTANCE_TRIALS or not varied:
        return {}, "fANOVA importances need trials that vary the parameters within their domain"
    scores = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=sweep.seed),
                                   params=varied)
    return {n: float(scores.get(n, 0.0)) for n in sweep.parameters}, None


def analyse(results: Sequence[TrialResult], sweep: SweepSpec) -> Analysis:
    ranked = rank(results, sweep.objective.goal)
    completed = [r for r in ranked if r.status == "completed"]
    shares, note = importances(sweep, completed)
    sensitivity = {}
    for name, p in sweep.parameters.items():
        lv = levels(name, p, sweep.strategy, completed)
        means = [level.mean for level in lv]
        spread = max(means) - min(means) if len(means) >= 2 else None
        sensitivity[name] = Effect(tuple(lv), spread, shares.get(name))
    return Analysis(tuple(ranked), best_of(ranked), sensitivity, note)
