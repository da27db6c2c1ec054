"""Decision accuracy (DataDecide, Magnusson et al. 2025, arXiv 2504.11393; FACTS 9.2): how
often the ranking of two data recipes at a small model size agrees with their ranking at the
target size. DataDecide found ~80% at 150M for a 1B target, and no scaling-law method beating
that; this is the number that says whether a cheap ablation ladder can be trusted.

For each task and each size below the target (the largest n_params present):
- over every unordered pair of recipes run at both sizes, the pair agrees when the sign of
  mean_small(r1) − mean_small(r2) equals the sign at the target (means over seeds);
- a tie at the target has no right answer: the pair is excluded from the accuracy and
  counted in `ties`; a tie at the small size makes no prediction and scores 1/2 (a coin flip);
- per-seed agreement of a pair is the same comparison for one run of each recipe at the small
  size, averaged over every (seed of r1, seed of r2) combination: the chance that training
  one seed per recipe would have ordered them right. With two recipes the accuracy is 0 or
  1, but this still says how close the call was.
Ordering agreement does not depend on the metric's direction; `higher_is_better` decides
which recipe of a pair is reported as the winner.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class DecisionRecord:
    """One evaluation: `recipe` (data mixture) trained at `size` with `seed`, scoring `score`
    on `task`."""

    recipe: str
    size: str
    n_params: float
    seed: int
    task: str
    score: float


@dataclass(frozen=True)
class PairDecision:
    recipe_a: str
    recipe_b: str
    """recipe_a < recipe_b alphabetically."""
    target_winner: str | None
    """None when the target size ties (the pair then counts in `ties`, not in accuracy)."""
    predicted_winner: str | None
    """Winner by mean score at the small size; None on a tie there."""
    agreement: float | None
    """1 if the small size orders the pair as the target does, 0 if not, 1/2 on a small-size
    tie, None on a target tie."""
    per_seed_agreement: float | None
    """Mean agreement over every (seed of a, seed of b) pair of small-size runs."""
    seed_pairs: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SizeDecision:
    size: str
    n_params: float
    accuracy: float | None
    """Mean pair agreement; None when no pair is decidable (all tie at the target)."""
    per_seed_accuracy: float | None
    """Mean per-seed agreement over the same pairs."""
    pairs: int
    """Pairs counted in the accuracy (present at both sizes, no tie at the target)."""
    ties: int
    """Pairs excluded because the target size ties them."""
    pair_decisions: tuple[PairDecision, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "n_params": self.n_params, "accuracy": self.accuracy,
                "per_seed_accuracy": self.per_seed_accuracy, "pairs": self.pairs,
                "ties": self.ties, "pair_decisions": [p.as_dict() for p in self.pair_decisions]}


@dataclass(frozen=True)
class TaskDecision:
    task: str
    higher_is_better: bool
    sizes: tuple[SizeDecision, ...]
    """Smaller sizes, ascending n_params."""

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "higher_is_better": self.higher_is_better,
                "sizes": [s.as_dict() for s in self.sizes]}


@dataclass(frozen=True)
class DecisionResult:
    target_size: str
    target_n_params: float
    tasks: dict[str, TaskDecision]

    def as_dict(self) -> dict[str, Any]:
        return {"target_size": self.target_size, "target_n_params": self.target_n_params,
                "tasks": {k: v.as_dict() for k, v in self.tasks.items()}}


def decision_accuracy(records: Iterable[DecisionRecord],
                      higher_is_better: Mapping[str, bool]) -> DecisionResult:
    """Decision accuracy per task and small size against the largest size (module docstring).

    Raises ValueError for fewer than 2 recipes or sizes, a size name given two n_params, two
    sizes sharing the largest n_params, a task without a direction, a non-finite or repeated
    score, or a recipe evaluated on a task but never at the target size on it.
    """
    records = list(records)
    size_params: dict[str, float] = {}
    seen: set[tuple[str, str, int, str]] = set()
    for r in records:
        key = (r.recipe, r.size, r.seed, r.task)
        if key in seen:  # would count one run twice in the seed mean
            raise ValueError(f"{r.recipe}/{r.size}/seed {r.seed} on {r.task} appears twice: "
                             f"keep one score per run")
        seen.add(key)
        if not math.isfinite(r.score):
            raise ValueError(f"{r.recipe}/{r.size}/seed {r.seed} on {r.task}: score is "
                             f"{r.score}; drop or rerun that evaluation")
        if size_params.setdefault(r.size, r.n_params) != r.n_params:
            raise ValueError(f"size {r.size!r} is given as both {size_params[r.size]:g} and "
                             f"{r.n_params:g} parameters: use one n_params per size name")
    recipes = {r.recipe for r in records}
    if len(recipes) < 2:
        raise ValueError(f"decision accuracy compares recipes, got {len(recipes)} "
                         f"({sorted(recipes)}): evaluate at least 2 recipes")
    if len(size_params) < 2:
        raise ValueError(f"decision accuracy compares a small size with the target size, got "
                         f"{len(size_params)} size(s) ({sorted(size_params)}): add a size")
    target = max(size_params, key=lambda s: size_params[s])
    top = [s for s, n in size_params.items() if n == size_params[target]]
    if len(top) > 1:
        raise ValueError(f"sizes {sorted(top)} share the largest n_params "
                         f"({size_params[target]:g}): the target size is ambiguous")
    missing = sorted({r.task for r in records} - set(higher_is_better))
    if missing:
        raise ValueError(f"higher_is_better has no entry for task(s) {missing}: say whether a "
                         f"higher score is better for each")

    # task -> size -> recipe -> seed scores
    runs: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        runs[r.task][r.size][r.recipe].append(r.score)

    tasks: dict[str, TaskDecision] = {}
    for task in sorted(runs):
        at_target = runs[task][target]
        absent = sorted({rec for by_recipe in runs[task].values() for rec in by_recipe}
                        - set(at_target))
        if absent:
            raise ValueError(f"task {task!r}: recipe(s) {absent} have no run at the target "
                             f"size {target!r}, so their order there is unknown: evaluate "
                             f"them at {target!r} or drop them")
        sizes = sorted((s for s in runs[task] if s != target), key=lambda s: size_params[s])
        tasks[task] = TaskDecision(
            task=task, higher_is_better=bool(higher_is_better[task]),
            sizes=tuple(_size_decision(s, size_params[s], runs[task][s], at_target,
                                       bool(higher_is_better[task])) for s in sizes))
    return DecisionResult(target_size=target, target_n_params=size_params[target],
                          tasks=tasks)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _agree(small: float, target: int) -> float:
    """Agreement of a small-size difference with the target's sign (a tie scores 1/2)."""
    s = _sign(small)
    return 0.5 if s == 0 else float(s == target)


def _size_decision(size: str, n_params: float, small: Mapping[str, list[float]],
                   target: Mapping[str, list[float]], higher_is_better: bool) -> SizeDecision:
    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    def winner(a: str, b: str, diff: float) -> str | None:
        s = _sign(diff) * (1 if higher_is_better else -1)
        return None if s == 0 else (a if s > 0 else b)

    decisions: list[PairDecision] = []
    for a, b in itertools.combinations(sorted(small), 2):
        t_diff = mean(target[a]) - mean(target[b])
        s_diff = mean(small[a]) - mean(small[b])
        seed_pairs = len(small[a]) * len(small[b])
        if _sign(t_diff) == 0:
            decisions.append(PairDecision(a, b, None, winner(a, b, s_diff), None, None,
                                          seed_pairs))
            continue
        per_seed = sum(_agree(x - y, _sign(t_diff)) for x in small[a] for y in small[b])
        decisions.append(PairDecision(a, b, winner(a, b, t_diff), winner(a, b, s_diff),
                                      _agree(s_diff, _sign(t_diff)), per_seed / seed_pairs,
                                      seed_pairs))
    agreements = [d.agreement for d in decisions if d.agreement is not None]
    per_seed_agreements = [d.per_seed_agreement for d in decisions
                           if d.per_seed_agreement is not None]
    return SizeDecision(size=size, n_params=n_params,
                        accuracy=mean(agreements) if agreements else None,
                        per_seed_accuracy=mean(per_seed_agreements) if agreements else None,
                        pairs=len(agreements), ties=len(decisions) - len(agreements),
                        pair_decisions=tuple(decisions))
