"""Scaling ladders -> runs. Pure, like repro.compile.graph.

A spec with a `ladder` block is not trained as written: it becomes one experiment per
(size, token budget) point of the fit grid, plus one per (recipe, size) for decision accuracy
(recipes with `mixture: null` reuse the fit grid's runs at `decision_tokens`). Each generated
experiment is an ordinary ExperimentSpec (re-validated), so it shares the curated data,
tokenizer and token shards of its parent through the stage graph's content ids, and each of
its settings sits in params.yaml like any other run's.

Token budgets are split over the spec's training phases in their written proportions, in
whole optimizer steps, so a WSD decay keeps its share of every run (Hägele et al. 2024: each
budget needs its own cooldown for a valid final loss, FACTS 8.2). Snapshot evaluations are
dropped: the fit reads final losses only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.spec.load import load_spec
from repro.spec.schema import ExperimentSpec
from repro.spec.search import LadderSpec, short_tokens
from repro.spec.vocab import vocab_size
from repro.stages.configs import PredictTarget


@dataclass(frozen=True)
class LadderPoint:
    """A generated experiment and its place on the ladder."""

    spec: ExperimentSpec
    size: str
    recipe: str | None
    tokens: int  # whole steps x batch_tokens


class LadderError(ReproError, ValueError):
    """A ladder that cannot be expanded, with the field and the fix (the compiler adds the
    experiment, repro.compile.errors.GraphError)."""

    def __init__(self, message: str, field: str, fix: str) -> None:
        super().__init__(message, field=field, fix=fix)


def split_tokens(phase_tokens: list[int], budget: int, batch_tokens: int) -> list[int]:
    """Split `budget` over training phases in proportion to `phase_tokens`, each a whole
    number (>= 1) of optimizer steps; the total is `budget` rounded down to whole steps."""
    steps = budget // batch_tokens
    if steps < len(phase_tokens):
        raise LadderError(
            f"a budget of {budget} tokens is {steps} optimizer steps of {batch_tokens} tokens, "
            f"fewer than the {len(phase_tokens)} training stages",
            "ladder.tokens", f"use budgets of at least {len(phase_tokens) * batch_tokens} tokens")
    total = sum(phase_tokens)
    shares = [max(1, round(steps * t / total)) for t in phase_tokens[:-1]]
    last = steps - sum(shares)
    if last < 1:
        raise LadderError(
            f"a budget of {budget} tokens leaves no step for the last training stage",
            "ladder.tokens", "use a larger budget")
    return [s * batch_tokens for s in shares + [last]]


def _point(spec: ExperimentSpec, ladder: LadderSpec, size_index: int, budget: int,
           recipe: str | None) -> LadderPoint:
    size = ladder.sizes[size_index]
    tr = spec.training
    data: dict[str, Any] = spec.model_dump(mode="python", exclude={"ladder", "sweep", "report"})
    name_parts = [ladder.name] + ([recipe] if recipe else []) + [size.name, short_tokens(budget)]
    data["experiment"]["name"] = "-".join(name_parts)
    data["experiment"]["description"] = (
        f"ladder {ladder.name}: size {size.name}, {budget} tokens"
        + (f", recipe {recipe}" if recipe else ""))
    data["model"].update(size.model_dump(exclude={"name"}))
    mixture = ladder.recipes[recipe].mixture if recipe else None
    try:
        split = split_tokens([s.tokens for s in tr.stages], budget, tr.batch_tokens)
    except LadderError as e:
        raise LadderError(f"ladder {ladder.name!r}, size {size.name!r}: {e.message}", e.field,
                          e.fix) from e
    for phase, tokens in zip(data["training"]["stages"], split):
        phase["tokens"] = tokens
        if mixture is not None:
            phase["mixture"] = dict(mixture)
    data["evaluation"]["every_tokens"] = None
    data["evaluation"]["checkpoints"] = "final"
    try:
        point = ExperimentSpec.model_validate(data)
    except ValueError as e:
        raise LadderError(
            f"ladder {ladder.name!r}: the run for size {size.name!r} at {budget} tokens is not a "
            f"valid experiment: {e}", f"ladder.sizes[{size_index}]",
            "fix that size's shape (num_heads must divide hidden_size, num_kv_heads num_heads) "
            "or the budget") from e
    return LadderPoint(point, size.name, recipe, sum(split))


def expand(spec: ExperimentSpec) -> list[LadderPoint]:
    """Every run of a ladder spec: the fit grid (sizes x tokens), then each recipe with its
    own mixture at every size (`decision_tokens`). Recipes without a mixture are the fit
    grid's runs at that budget and are listed again with their recipe name."""
    ladder = spec.ladder
    if ladder is None:
        raise ValueError(f"experiment {spec.name!r} has no ladder")
    points = [_point(spec, ladder, i, budget, None)
              for i in range(len(ladder.sizes)) for budget in ladder.tokens]
    for recipe, r in ladder.recipes.items():
        for i in range(len(ladder.sizes)):
            # no mixture: the experiment's own data, i.e. the fit grid's run at that budget
            # (same generated experiment, compiled once)
            own = _point(spec, ladder, i, ladder.recipe_tokens, recipe if r.mixture else None)
            points.append(replace(own, recipe=recipe))
    return points


def n_params(spec: ExperimentSpec, parameters: str, root: Path = Path(".")) -> int:
    """N of an experiment's model: non-embedding or total parameters (repro.train.flops)."""
    from repro.train.flops import param_counts  # imports torch: only ladders need it

    vocab, source = vocab_size(spec.tokenizer, root)
    if vocab is None:
        if parameters == "total":
            raise LadderError(f"experiment {spec.name!r}: total parameters need the vocabulary "
                              f"size ({source})", "ladder.parameters",
                              "use parameters: non_embedding, or a tokenizer with a known size")
        vocab = 1  # the non-embedding count does not depend on it
    return param_counts(spec.model, vocab_size=vocab)[parameters]


def prediction_targets(spec: ExperimentSpec, specs_dir: Path, root: Path = Path(".")) -> list[PredictTarget]:
    """N and D of the specs a ladder predicts (`ladder.predict`, relative to specs_dir)."""
    ladder = spec.ladder
    if ladder is None:
        return []
    targets = []
    for ref in ladder.predict:
        path = specs_dir / ref
        if not path.is_file():
            raise LadderError(f"ladder {ladder.name!r} predicts {ref!r}, but {path} is not a file",
                              "ladder.predict", f"give a spec path relative to {specs_dir}")
        other = load_spec(path)
        tr = other.training
        tokens = sum(s.tokens // tr.batch_tokens for s in tr.stages) * tr.batch_tokens
        targets.append(PredictTarget(name=ref, n_params=n_params(other, ladder.parameters, root),
                                     tokens=tokens))
    return targets
