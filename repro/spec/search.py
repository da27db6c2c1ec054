"""Spec blocks for searching over experiments: hyperparameter sweeps and scaling ladders.

`sweep`: `repro sweep SPEC` queues one DVC experiment per configuration
(`dvc exp run --queue -S key=value ...`) over the experiment's own stages, so every trial is
an ordinary DVC experiment (`dvc exp show`, `dvc exp apply`). Keys are params.yaml keys, with
`*` allowed in the stage-name part (`train-<experiment>-*`: every phase).

`ladder`: the compiler expands the experiment into one run per (model size, token budget),
plus one run per data recipe and size for decision accuracy, and adds a `fit` stage that
fits Chinchilla's approach 3, L(N, D) = E + A/N^alpha + B/D^beta (FACTS 9.1), and measures
DataDecide's decision accuracy (FACTS 9.2).
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from repro.spec.base import (
    MAX_LADDER_POINTS,
    MAX_SWEEP_POINTS,
    Bootstrap,
    FieldError,
    Heads,
    Intermediate,
    Layers,
    Model,
    Name,
    Parallel,
    Seed,
    SweepPoints,
    Tokens,
    Width,
)

Scalar = Union[bool, int, float, str]

SIGNIFICANT_DIGITS = 12
"""Range points are rounded to 12 significant digits: far below any effect a setting can
have, and it keeps values such as 0.1 + 0.2 readable in `-S`, params.yaml and the report."""


def clean_value(x: float, integer: bool) -> Scalar:
    """A point of a numeric range as a sweep sets it: an int for an `integer` range, else
    rounded to SIGNIFICANT_DIGITS."""
    return int(round(x)) if integer else float(f"{x:.{SIGNIFICANT_DIGITS}g}")

FIT_MIN_POINTS = 5
"""L(N, D) has five free constants (E, A, B, alpha, beta): fewer points cannot pin them."""


# --------------------------------------------------------------------------- sweeps


class SweepParameter(Model):
    """One searched dimension: the params.yaml keys it sets (all to the same value) and
    either explicit `values` or a `low`..`high` range."""

    keys: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=1000)
    """params.yaml keys, dotted (`<stage name>.<field>.<field>`); `*` matches inside the
    stage name, e.g. `train-qs-lr-*.optimizer.lr`. Every pattern must match at least one key."""
    values: list[Scalar] | None = Field(default=None, max_length=MAX_SWEEP_POINTS)
    """Explicit values: the grid of a `grid` sweep, the choices of `random` and `optuna`."""
    low: float | None = None
    """Lower end of a numeric range (inclusive)."""
    high: float | None = None
    """Upper end of a numeric range (inclusive)."""
    log: bool = False
    """Sample (and space a grid) uniformly in log space; learning rates are searched this way."""
    integer: bool = False
    """Round values of the range to integers."""
    num: Annotated[SweepPoints, Field(ge=2)] | None = None
    """Points of a `grid` sweep over a range (geometric when `log`)."""

    @model_validator(mode="after")
    def _domain(self) -> SweepParameter:
        has_range = self.low is not None or self.high is not None
        if self.values is not None and has_range:
            raise FieldError("both `values` and a range (`low`/`high`) are given",
                             "give either `values` or `low`/`high`, not both")
        if self.values is None and not has_range:
            raise FieldError("no values to try", "give `values: [...]` or a range (`low`, `high`)")
        if self.values is not None:
            if not self.values:
                raise FieldError("`values` is empty", "list at least one value to try")
            if len(set(map(repr, self.values))) != len(self.values):
                raise FieldError(f"`values` repeats a value: {self.values}", "list each value once")
            if self.log or self.integer or self.num is not None:
                raise FieldError("`log`, `integer` and `num` apply to a `low`/`high` range only",
                                 "remove them, or give a range instead of `values`")
            return self
        if self.low is None or self.high is None:
            raise FieldError("a range needs both `low` and `high`", "add the missing end")
        for end in (self.low, self.high):
            if not math.isfinite(end):
                raise FieldError("`low` or `high` is not a finite number", "write finite numbers")
        if not self.low < self.high:
            raise FieldError(f"empty range: low {self.low} is not below high {self.high}",
                             f"give low < high (or `values: [{self.low}]` for one value)")
        if self.log and self.low <= 0:
            raise FieldError(f"a log range needs low > 0 (got {self.low})",
                             "give a positive `low`, or remove `log`")
        if self.integer and math.floor(self.high) < math.ceil(self.low):
            raise FieldError(f"no integer lies in [{self.low}, {self.high}]",
                             "widen the range, or remove `integer`")
        return self

    @property
    def is_range(self) -> bool:
        return self.values is None

    def grid_values(self) -> list[Scalar]:
        """The values a grid sweep tries along this parameter, in order: `values` as given,
        or `num` points of the range, evenly spaced (geometric when `log`) with its exact
        ends, rounded by `clean_value` and deduplicated, so an integer range has each integer
        once (`num: 1000` over [1, 3] is 1, 2, 3). At most MAX_SWEEP_POINTS values either way
        (the bound of `values` and of `num`)."""
        if self.values is not None:
            return list(self.values)
        assert self.low is not None and self.high is not None
        if self.num is None:
            raise ValueError("a range without `num` has no grid (random and optuna sweeps "
                             "draw from it instead)")
        n, lo, hi = self.num, self.low, self.high
        if self.log:
            lo, hi = math.log(lo), math.log(hi)
            raw = [math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
        else:
            raw = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        raw[0], raw[-1] = self.low, self.high  # exact ends, whatever the rounding of exp/log
        return list(dict.fromkeys(clean_value(x, self.integer) for x in raw))


class SweepObjective(Model):
    """The number a sweep optimises: one metric of one task in the final evaluation of the
    experiment's main run (`metrics/<evaluate stage>.json`, `tasks.<task>.<metric>`)."""

    task: Annotated[str, Field(min_length=1)]
    """Evaluation task, e.g. `repro_bpb_web` (a local task) or `hellaswag`."""
    metric: Annotated[str, Field(min_length=1)] = "bits_per_byte"
    """Metric of that task, e.g. `bits_per_byte`, `acc`, `acc_norm`."""
    direction: Literal["minimize", "maximize"] | None = None
    """Default: minimize losses, perplexities and bits per byte, maximize everything else."""

    @property
    def goal(self) -> Literal["minimize", "maximize"]:
        if self.direction is not None:
            return self.direction
        lower_better = ("bits_per_byte", "perplexity", "loss", "bpb")
        return "minimize" if any(m in self.metric for m in lower_better) else "maximize"


def _count(n: int) -> str:
    """A count for a message; a huge one by its number of digits."""
    return f"{n:,}" if n < 10**24 else f"a {len(str(n))}-digit number of"


class SweepSpec(Model):
    """A hyperparameter search over this experiment, run as DVC experiments."""

    name: Name
    """Sweep name: DVC experiment names are `<name>-<trial>`, the report is
    reports/sweeps/<name>/, resumable state is under .repro/sweeps/<name>/."""
    strategy: Literal["grid", "random", "optuna"] = "grid"
    """`grid`: every combination; `random`: `trials` independent draws; `optuna`: TPE
    Bayesian optimisation through optuna's ask/tell interface, in rounds of `workers` trials."""
    trials: SweepPoints | None = None
    """Trials of a `random` or `optuna` sweep (required there; a grid runs every point)."""
    workers: Parallel = 1
    """DVC queue workers running trials at once (`dvc queue start --jobs`)."""
    seed: Seed = 0
    """Seed of the random and optuna samplers (a resumed sweep proposes the same points)."""
    objective: SweepObjective
    """What to optimise."""
    parameters: dict[Name, SweepParameter] = Field(min_length=1, max_length=64)
    """Searched dimensions by name (names label the report's plots)."""

    def trial_count(self) -> int:
        """Trials the sweep runs, as the planner (repro.sweep.strategies) enumerates them:
        `trials` for random and optuna; for a grid, the product of every parameter's
        `grid_values` count (after an integer range's repeats are dropped), a Python integer:
        no overflow, and the product itself is never enumerated."""
        if self.strategy != "grid":
            assert self.trials is not None  # _complete requires it
            return self.trials
        return math.prod(len(p.grid_values()) for p in self.parameters.values())

    @model_validator(mode="after")
    def _complete(self) -> SweepSpec:
        if self.strategy == "grid":
            ranged = [n for n, p in self.parameters.items() if p.is_range and p.num is None]
            if ranged:
                raise FieldError(f"a grid sweep needs `num` (points) for the range(s) {ranged}",
                                 "add `num`, or give explicit `values`")
            if self.trials is not None:
                raise FieldError("a grid sweep runs every combination, so `trials` means nothing",
                                 "remove `trials` (or use strategy: random)")
            points = self.trial_count()
            if points > MAX_SWEEP_POINTS:
                counts = " x ".join(f"{len(p.grid_values()):,}" for p in self.parameters.values())
                raise FieldError(
                    f"the grid has {counts} = {_count(points)} points, above the limit of "
                    f"{MAX_SWEEP_POINTS:,} (each point is a queued DVC experiment)",
                    "search fewer values per parameter, or use strategy: random or optuna "
                    "with `trials`")
        elif self.trials is None:
            raise FieldError(f"a {self.strategy} sweep needs `trials` (how many configurations)")
        # random and optuna: `trials` is a SweepPoints, so at most MAX_SWEEP_POINTS by its type
        return self


# --------------------------------------------------------------------------- ladders


class LadderSize(Model):
    """One model size of a ladder: the shape fields it sets on the experiment's `model`."""

    name: Name
    """Short label (run names are `<ladder>-<size>-<tokens>`)."""
    hidden_size: Width
    num_layers: Layers
    num_heads: Heads
    num_kv_heads: Heads
    intermediate_size: Intermediate


class LadderRecipe(Model):
    """A data recipe compared at every size for decision accuracy."""

    mixture: dict[Name, Annotated[float, Field(gt=0)]] | None = None
    """Mixture used in every training phase; None keeps the experiment's own mixtures (the
    runs are then the fit's runs at `decision_tokens`, not trained twice)."""


class LadderLoss(Model):
    """Which evaluated number is the loss L of the fit."""

    task: Annotated[str, Field(min_length=1)] = "repro_bpb_web"
    """A held-out language-modelling task of the final evaluation."""
    metric: Annotated[str, Field(min_length=1)] = "bits_per_byte"
    """Its metric (bits per byte is the loss per byte, independent of the tokenizer)."""


class LadderSpec(Model):
    """A scaling ladder: the experiment trained at several sizes and token budgets."""

    name: Name
    """Ladder name: prefixes its runs; the report is reports/ladders/<name>/."""
    sizes: list[LadderSize] = Field(min_length=2)
    """Model sizes (at least 2: alpha needs N to vary)."""
    tokens: list[Tokens] = Field(min_length=2)
    """Training-token budgets of every size (at least 2: beta needs D to vary); each is split
    over the experiment's training phases in their proportions, in whole optimizer steps."""
    parameters: Literal["non_embedding", "total"] = "non_embedding"
    """What N counts. Chinchilla counted all parameters; at toy scale the embedding is most
    of the model and does not scale like the rest (Kaplan et al. 2020 fit non-embedding N)."""
    loss: LadderLoss = LadderLoss()
    """The fitted loss."""
    huber_delta: Annotated[float, Field(gt=0)] = 1e-3
    """Huber delta on log loss (Chinchilla approach 3: 1e-3, FACTS 9.1)."""
    bootstrap: Bootstrap = 200
    """Bootstrap resamples for the constants' intervals (0: no intervals)."""
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    """Interval coverage."""
    seed: Seed = 0
    """Seed of the bootstrap."""
    target_compute: list[Annotated[float, Field(gt=0)]] = [1e21, 1e23]
    """Training FLOPs (C = 6ND) to give the compute-optimal N and D for."""
    predict: list[Annotated[str, Field(min_length=1)]] = []
    """Specs (paths relative to this spec's folder) whose final loss the fit predicts from
    their N and training tokens, e.g. `reference/smollm3-3b.yaml`."""
    recipes: dict[Name, LadderRecipe] = {}
    """Data recipes for decision accuracy (0, or at least 2)."""
    decision_tokens: Tokens | None = None
    """Token budget of the recipe runs (default: the largest of `tokens`)."""

    @model_validator(mode="after")
    def _enough(self) -> LadderSpec:
        points = len(self.sizes) * len(self.tokens)
        if points < FIT_MIN_POINTS:
            raise FieldError(
                f"the ladder has {len(self.sizes)} sizes x {len(self.tokens)} token budgets = "
                f"{points} points; the fit of L(N, D) = E + A/N^alpha + B/D^beta needs at least "
                f"{FIT_MIN_POINTS} (five constants)", "add sizes or token budgets")
        if self.run_count() > MAX_LADDER_POINTS:
            raise FieldError(
                f"the ladder has {len(self.sizes)} sizes x ({len(self.tokens)} token budgets + "
                f"{len(self.recipes)} recipes) = {self.run_count():,} runs, above the limit of "
                f"{MAX_LADDER_POINTS:,} (each run is a whole experiment in the pipeline)",
                "use fewer sizes, token budgets or recipes")
        for what, items in (("sizes", [s.name for s in self.sizes]), ("tokens", self.tokens)):
            repeated = sorted({x for x in items if items.count(x) > 1}, key=str)
            if repeated:
                raise FieldError(f"ladder {what} repeat {repeated}",
                                 "list each once: each point must be distinct")
        if len(self.recipes) == 1:
            raise FieldError("decision accuracy compares data recipes, but only one is given",
                             "give at least 2 `recipes` (or none)")
        if self.decision_tokens is not None and not self.recipes:
            raise FieldError("`decision_tokens` is for `recipes` runs", "add recipes or remove it")
        for ref in self.predict:
            p = PurePosixPath(ref)
            if (p.is_absolute() or ".." in p.parts or p.suffix not in (".yaml", ".yml")
                    or "://" in ref):
                raise FieldError(f"predict entry {ref!r} is not a .yaml spec path inside the "
                                 "specs folder", "give a .yaml spec path relative to this "
                                 "spec's folder, without `..`")
        return self

    def run_count(self) -> int:
        """Runs the compiler trains: every size at every budget, and every recipe at every
        size (a recipe without a mixture reuses fit runs, but is counted: it is a run in the
        graph's bookkeeping all the same)."""
        return len(self.sizes) * (len(self.tokens) + len(self.recipes))

    @property
    def recipe_tokens(self) -> int:
        return self.decision_tokens or max(self.tokens)


def short_tokens(tokens: int) -> str:
    """Compact token count for run names: 163840 -> `164k`, 2_000_000 -> `2m`."""
    for unit, scale in (("b", 10**9), ("m", 10**6), ("k", 10**3)):
        if tokens >= scale:
            value = tokens / scale
            text = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}".replace(".", "p")
            return f"{text}{unit}"
    return str(tokens)
