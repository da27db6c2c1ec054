"""Which configurations a sweep tries.

* `grid`: the cartesian product of every parameter's values, the first parameter varying
  slowest (itertools.product order); a range gives `num` points, evenly spaced, or
  geometrically when `log` (learning rates), rounded and deduplicated when `integer`
  (repro.spec.search.SweepParameter.grid_values, which validation counts too).
* `random`: `trials` independent draws from numpy's Generator seeded by `sweep.seed`: a
  value list is drawn uniformly, a range uniformly (in log space when `log`).
* `optuna`: optuna's TPE sampler through its ask/tell interface. The study lives in an
  optuna journal file under `.repro/sweeps/<name>/`, so a sweep stopped halfway resumes:
  trials asked but never told are still in the study, and the driver tells them from their
  DVC experiment (or runs them again).

grid and random points are a pure function of the spec, so a resumed sweep plans the same
trials under the same names; a trial is `<sweep name>-<index>`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.spec.search import Scalar, SweepParameter, SweepSpec, clean_value

if TYPE_CHECKING:
    import optuna

# No size check here: a SweepSpec is frozen and exists only validated (every path to the
# planner, `repro sweep` and its --dry-run, loads the spec through repro.spec.load), and
# validation refuses a sweep of more than MAX_SWEEP_POINTS trials, counted by
# SweepSpec.trial_count from the same `grid_values` the grid below enumerates.


@dataclass(frozen=True)
class Trial:
    """One configuration to run, under its DVC experiment name."""

    index: int
    name: str
    point: dict[str, Scalar]
    """Parameter name -> value."""


def trial_name(sweep: str, index: int) -> str:
    """DVC experiment name of a trial. A sweep name (lowercase letters, digits, `_`, `-`)
    plus `-<index>` is a valid git ref component, as DVC requires of experiment names."""
    return f"{sweep}-{index}"


def grid_points(sweep: SweepSpec) -> list[dict[str, Scalar]]:
    names = list(sweep.parameters)
    axes = [sweep.parameters[n].grid_values() for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*axes)]


def random_points(sweep: SweepSpec) -> list[dict[str, Scalar]]:
    import numpy as np

    assert sweep.trials is not None
    rng = np.random.default_rng(sweep.seed)
    points = []
    for _ in range(sweep.trials):
        point: dict[str, Scalar] = {}
        for name, p in sweep.parameters.items():  # fixed order: the draws are reproducible
            if p.values is not None:
                point[name] = p.values[int(rng.integers(len(p.values)))]
                continue
            assert p.low is not None and p.high is not None
            if p.integer and not p.log:
                point[name] = int(rng.integers(math.ceil(p.low), math.floor(p.high) + 1))
                continue
            if p.log:
                x = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
            else:
                x = float(rng.uniform(p.low, p.high))
            if p.integer:
                x = min(max(x, math.ceil(p.low)), math.floor(p.high))
            point[name] = clean_value(x, p.integer)
        points.append(point)
    return points


def planned_trials(sweep: SweepSpec) -> list[Trial]:
    """Every trial of a grid or random sweep (optuna's are asked as the sweep goes)."""
    if sweep.strategy == "grid":
        points = grid_points(sweep)
    elif sweep.strategy == "random":
        points = random_points(sweep)
    else:
        raise ValueError("optuna trials are asked round by round (OptunaSearch)")
    return [Trial(i, trial_name(sweep.name, i), pt) for i, pt in enumerate(points)]


def domain_probes(sweep: SweepSpec) -> list[dict[str, Scalar]]:
    """Points covering every parameter's extremes, to validate an optuna sweep's values
    before its (not yet known) trials are asked: every value list entry and both range ends
    of one parameter, the others at their first value or lower end; then all lower ends
    and all upper ends together."""
    def ends(p: SweepParameter) -> list[Scalar]:
        if p.values is not None:
            return list(p.values)
        assert p.low is not None and p.high is not None
        if p.integer:
            return [math.ceil(p.low), math.floor(p.high)]
        return [p.low, p.high]

    domains = {n: ends(p) for n, p in sweep.parameters.items()}
    base = {n: d[0] for n, d in domains.items()}
    probes = [{**base, n: v} for n, d in domains.items() for v in d]
    probes.append({n: d[-1] for n, d in domains.items()})
    return list({json.dumps(p, sort_keys=True): p for p in probes}.values())


# ------------------------------------------------------------------------------ optuna


class SearchChanged(ValueError):
    """The journal holds a study of another search space, seed or direction."""


def distributions(sweep: SweepSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """optuna distributions of the sweep's parameters (also used to rebuild a study from
    results for fANOVA, whatever the strategy: value lists are categorical, so the
    importance measure weighs each tried value equally, as the sweep did)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, p in sweep.parameters.items():
        if p.values is not None:
            out[name] = CategoricalDistribution(p.values)
        elif p.integer:
            assert p.low is not None and p.high is not None
            out[name] = IntDistribution(math.ceil(p.low), math.floor(p.high), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            out[name] = FloatDistribution(p.low, p.high, log=p.log)
    return out


def search_fingerprint(sweep: SweepSpec) -> str:
    """What a resumed optuna study must not have changed: space, seed, direction."""
    fields = {"parameters": {n: p.model_dump(mode="json", exclude={"keys"})
                             for n, p in sweep.parameters.items()},
              "seed": sweep.seed, "goal": sweep.objective.goal,
              "objective": [sweep.objective.task, sweep.objective.metric]}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


JOURNAL_FILE = "optuna.journal"
_NAME_ATTR, _SPACE_ATTR = "dvc_experiment", "search_fingerprint"


class OptunaSearch:
    """A TPE study persisted in an optuna journal file (append-only log: a crash loses at
    most the entry being written)."""

    def __init__(self, sweep: SweepSpec, state_dir: Path) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        assert sweep.trials is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.sweep = sweep
        self.dists = distributions(sweep)
        storage = JournalStorage(JournalFileBackend(str(state_dir / JOURNAL_FILE)))
        self.study = optuna.create_study(
            study_name=sweep.name, storage=storage, load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=sweep.seed),
            direction=sweep.objective.goal)
        fingerprint = search_fingerprint(sweep)
        stored = self.study.user_attrs.get(_SPACE_ATTR)
        if stored is None:
            self.study.set_user_attr(_SPACE_ATTR, fingerprint)
        elif stored != fingerprint:
            raise SearchChanged(
                f"the optuna study in {state_dir} was started with another search space, seed "
                "or objective")

    def _trial(self, frozen: Any) -> Trial:
        name = frozen.user_attrs.get(_NAME_ATTR) or trial_name(self.sweep.name, frozen.number)
        point = {n: clean_value(v, False) if isinstance(v, float) else v
                 for n, v in frozen.params.items()}
        return Trial(frozen.number, name, point)

    def pending(self) -> list[Trial]:
        """Trials asked but never told (a sweep stopped while they ran)."""
        from optuna.trial import TrialState

        return [self._trial(t) for t in self.study.get_trials(deepcopy=False,
                                                               states=(TrialState.RUNNING,))]

    def told(self) -> list[Trial]:
        """Trials already finished in the study (complete or failed)."""
        from optuna.trial import TrialState

        return [self._trial(t) for t in self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))]

    @property
    def remaining(self) -> int:
        assert self.sweep.trials is not None
        return max(0, self.sweep.trials - len(self.study.get_trials(deepcopy=False)))

    def ask(self, n: int) -> list[Trial]:
        """Up to `n` new trials (never past `trials` in all)."""
        out = []
        for _ in range(min(n, self.remaining)):
            trial = self.study.ask(self.dists)
            name = trial_name(self.sweep.name, trial.number)
            trial.set_user_attr(_NAME_ATTR, name)
            out.append(self._trial(self.study.get_trials(deepcopy=False)[trial.number]))
        return out

    def tell(self, trial: Trial, value: float | None) -> None:
        """Report a result; None tells optuna the trial failed (TPE then ignores it)."""
        from optuna.trial import TrialState

        if value is None:
            self.study.tell(trial.index, state=TrialState.FAIL, skip_if_finished=True)
        else:
            self.study.tell(trial.index, value, skip_if_finished=True)
