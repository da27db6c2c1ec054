"""DataDecide decision accuracy (FACTS 9.2) on hand-built score tables."""

from __future__ import annotations

import json
from typing import Mapping

import pytest

from repro.scaling.decision import DecisionRecord, SizeDecision, decision_accuracy

SIZES = {"20M": 20e6, "150M": 150e6, "1B": 1e9}

Table = Mapping[str, Mapping[str, list[float]]]
"""size -> recipe -> score per seed."""


def records(table: Table, task: str = "arc") -> list[DecisionRecord]:
    return [DecisionRecord(recipe=recipe, size=size, n_params=SIZES[size], seed=seed,
                           task=task, score=score)
            for size, by_recipe in table.items() for recipe, scores in by_recipe.items()
            for seed, score in enumerate(scores)]


def only_size(table: Table, higher_is_better: bool = True, size: str = "150M") -> SizeDecision:
    result = decision_accuracy(records(table), {"arc": higher_is_better})
    (decision,) = [s for s in result.tasks["arc"].sizes if s.size == size]
    return decision


def test_agreeing_order_scores_one() -> None:
    d = only_size({"150M": {"a": [0.40], "b": [0.30]}, "1B": {"a": [0.60], "b": [0.50]}})
    assert (d.accuracy, d.per_seed_accuracy, d.pairs, d.ties) == (1.0, 1.0, 1, 0)
    (pair,) = d.pair_decisions
    assert (pair.recipe_a, pair.recipe_b, pair.target_winner, pair.predicted_winner) == (
        "a", "b", "a", "a")


def test_reversed_order_scores_zero() -> None:
    d = only_size({"150M": {"a": [0.30], "b": [0.40]}, "1B": {"a": [0.60], "b": [0.50]}})
    assert (d.accuracy, d.per_seed_accuracy, d.pairs) == (0.0, 0.0, 1)
    assert d.pair_decisions[0].predicted_winner == "b"


def test_lower_is_better_names_the_other_winner_but_agreement_is_the_same() -> None:
    table = {"150M": {"a": [3.1], "b": [3.4]}, "1B": {"a": [2.5], "b": [2.7]}}
    d = only_size(table, higher_is_better=False)
    assert d.accuracy == 1.0 and d.pair_decisions[0].target_winner == "a"
    flipped = {"150M": table["150M"], "1B": {"a": [2.7], "b": [2.5]}}
    d = only_size(flipped, higher_is_better=False)
    assert d.accuracy == 0.0
    assert (d.pair_decisions[0].target_winner, d.pair_decisions[0].predicted_winner) == (
        "b", "a")


def test_target_ties_are_excluded_and_counted() -> None:
    d = only_size({"150M": {"a": [0.25], "b": [0.5], "c": [0.75]},
                   "1B": {"a": [0.5], "b": [0.5], "c": [0.75]}})
    assert (d.pairs, d.ties) == (2, 1)  # (a, b) ties at 1B
    assert d.accuracy == 1.0
    tie = [p for p in d.pair_decisions if (p.recipe_a, p.recipe_b) == ("a", "b")][0]
    assert tie.target_winner is None and tie.agreement is None


def test_all_pairs_tied_at_the_target_leave_accuracy_undefined() -> None:
    d = only_size({"150M": {"a": [0.25], "b": [0.5]}, "1B": {"a": [0.5], "b": [0.5]}})
    assert (d.accuracy, d.per_seed_accuracy, d.pairs, d.ties) == (None, None, 0, 1)


def test_a_small_size_tie_is_a_coin_flip() -> None:
    d = only_size({"150M": {"a": [0.5], "b": [0.5]}, "1B": {"a": [0.75], "b": [0.5]}})
    assert d.accuracy == 0.5 and d.pair_decisions[0].predicted_winner is None


def test_three_recipes_count_every_pair() -> None:
    # Target order a > b > c; at 150M a > c > b: (a,b) and (a,c) agree, (b,c) does not.
    d = only_size({"150M": {"a": [0.9], "b": [0.1], "c": [0.5]},
                   "1B": {"a": [0.9], "b": [0.6], "c": [0.3]}})
    assert d.pairs == 3 and d.accuracy == pytest.approx(2 / 3)
    agree = {(p.recipe_a, p.recipe_b): p.agreement for p in d.pair_decisions}
    assert agree == {("a", "b"): 1.0, ("a", "c"): 1.0, ("b", "c"): 0.0}


def test_seeds_give_a_graded_per_seed_agreement() -> None:
    # Seed means agree with the target (a 0.55 > b 0.535), but of the 4 single-seed
    # comparisons (0.50 or 0.60 against 0.55 or 0.52) only the two with a's 0.60 do.
    d = only_size({"150M": {"a": [0.50, 0.60], "b": [0.55, 0.52]},
                   "1B": {"a": [0.70, 0.72], "b": [0.60, 0.61]}})
    assert d.accuracy == 1.0 and d.per_seed_accuracy == 0.5
    assert d.pair_decisions[0].seed_pairs == 4


def test_sizes_are_ascending_target_excluded_and_missing_recipes_skip_pairs() -> None:
    table = {"1B": {"a": [0.9], "b": [0.6], "c": [0.3]},
             "150M": {"a": [0.8], "b": [0.5], "c": [0.6]},
             "20M": {"a": [0.2], "c": [0.4]}}  # b was not run at 20M
    result = decision_accuracy(records(table) + records(table, task="hellaswag"),
                               {"arc": True, "hellaswag": True})
    assert (result.target_size, result.target_n_params) == ("1B", 1e9)
    assert list(result.tasks) == ["arc", "hellaswag"]
    sizes = result.tasks["arc"].sizes
    assert [s.size for s in sizes] == ["20M", "150M"]
    assert (sizes[0].pairs, sizes[0].accuracy) == (1, 0.0)
    assert (sizes[1].pairs, sizes[1].accuracy) == (3, pytest.approx(2 / 3))
    json.dumps(result.as_dict())


# ------------------------------------------------------------------------------ rejections

TWO = {"150M": {"a": [0.4], "b": [0.3]}, "1B": {"a": [0.6], "b": [0.5]}}


def test_one_recipe_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2 recipes"):
        decision_accuracy(records({"150M": {"a": [0.4]}, "1B": {"a": [0.6]}}), {"arc": True})


def test_one_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="add a size"):
        decision_accuracy(records({"1B": TWO["1B"]}), {"arc": True})


def test_a_recipe_missing_at_the_target_is_rejected() -> None:
    table = {"150M": {"a": [0.4], "b": [0.3], "c": [0.2]}, "1B": TWO["1B"]}
    with pytest.raises(ValueError, match=r"\['c'\] have no run at the target size '1B'"):
        decision_accuracy(records(table), {"arc": True})


def test_a_task_without_direction_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"no entry for task\(s\) \['arc'\]"):
        decision_accuracy(records(TWO), {"mmlu": True})


def test_inconsistent_or_ambiguous_sizes_are_rejected() -> None:
    recs = records(TWO)
    clash = [*recs, DecisionRecord("a", "150M", 151e6, 1, "arc", 0.4)]
    with pytest.raises(ValueError, match="one n_params per size name"):
        decision_accuracy(clash, {"arc": True})
    twin = [*recs, DecisionRecord("a", "1B-v2", 1e9, 0, "arc", 0.6)]
    with pytest.raises(ValueError, match="target size is ambiguous"):
        decision_accuracy(twin, {"arc": True})


def test_a_non_finite_or_repeated_score_is_rejected() -> None:
    recs = [*records(TWO), DecisionRecord("a", "150M", 150e6, 1, "arc", float("nan"))]
    with pytest.raises(ValueError, match="score is nan"):
        decision_accuracy(recs, {"arc": True})
    recs = [*records(TWO), DecisionRecord("a", "150M", 150e6, 0, "arc", 0.9)]
    with pytest.raises(ValueError, match="a/150M/seed 0 on arc appears twice"):
        decision_accuracy(recs, {"arc": True})
