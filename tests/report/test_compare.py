"""What a difference may claim (method or this checkpoint only) and the seed spread beside it."""

from __future__ import annotations

import math

import pytest

from repro.report.compare import AGGREGATE, Delta, Settings, claim, compare, seed_spread

SETTINGS = Settings(iterations=500)
CHANCE = {"t": {"acc": 0.5}}


def _acc(*values: float) -> list[dict]:
    """One task `t` scored `values[i]` by replica i (lm-eval stderr 0.05)."""
    return [{"t": {"acc": v, "acc_stderr": 0.05}} for v in values]


def test_seed_spread_pools_each_side_about_its_own_mean():
    # base: mean 0.52, squares 0.0004 + 0.0004; new: mean 0.63, squares 0.0009 + 0.0009;
    # 1 + 1 degrees of freedom -> sqrt(0.0026 / 2)
    assert seed_spread([0.50, 0.54], [0.60, 0.66]) == pytest.approx(math.sqrt(0.0013), abs=1e-15)
    # a single replica adds no degree of freedom but leaves the other side's spread
    assert seed_spread([0.7], [0.50, 0.60]) == pytest.approx(math.sqrt(0.005), abs=1e-15)
    assert seed_spread([0.7], [0.5]) is None and seed_spread([], [0.5]) is None
    # unlike a range, it does not grow with the number of replicas
    assert seed_spread([0.0, 1.0, 0.0, 1.0]) < seed_spread([0.0, 1.0])


def test_claim_needs_two_replicas_on_both_sides():
    assert claim(2, 2) == "method" and claim(3, 2) == "method"
    assert claim(1, 2) == "checkpoint" and claim(2, 1) == "checkpoint"
    assert claim(1, 1) == "checkpoint"


def test_within_seed_noise_compares_the_effect_with_the_spread():
    assert Delta(0.02, None, None, None, None, None, "method", 0.05).within_seed_noise is True
    assert Delta(-0.06, None, None, None, None, None, "method", 0.05).within_seed_noise is False
    assert Delta(0.02, None, None, None, None, None, "checkpoint", None).within_seed_noise is None
    assert Delta(None, None, None, None, None, None).within_seed_noise is None


def test_replicated_pair_is_a_method_claim_with_its_measured_spread(make_run, collected):
    runs = [make_run("base", _acc(0.50, 0.54), CHANCE), make_run("new", _acc(0.60, 0.66), CHANCE),
            make_run("solo", _acc(0.70), CHANCE)]
    cmp = compare(collected(runs, "base"), SETTINGS)
    assert cmp.scores["new"]["t.acc"].per_replica == (("seed0", 0.60), ("seed1", 0.66))
    new = cmp.deltas["new"]["t.acc"]
    assert new.claim == "method" and new.delta == pytest.approx(0.11)
    assert new.seed_spread == pytest.approx(math.sqrt(0.0013), abs=1e-15)
    assert new.within_seed_noise is False
    # the aggregate of one task is (acc - 0.5) / 0.5 per replica: twice the spread
    agg = cmp.deltas["new"][AGGREGATE]
    assert agg.claim == "method"
    assert agg.seed_spread == pytest.approx(2 * math.sqrt(0.0013), abs=1e-15)
    solo = cmp.deltas["solo"]["t.acc"]
    assert solo.claim == "checkpoint" and cmp.deltas["solo"][AGGREGATE].claim == "checkpoint"
    assert solo.seed_spread == pytest.approx(math.sqrt(0.0008), abs=1e-15)  # the baseline's


def test_single_replicas_give_a_checkpoint_claim_without_a_spread(make_run, collected):
    runs = [make_run("base", _acc(0.50)), make_run("new", _acc(0.80))]
    d = compare(collected(runs, "base"), SETTINGS).deltas["new"]["t.acc"]
    assert d.significant is True  # the interval alone would read as a finding
    assert d.claim == "checkpoint" and d.seed_spread is None and d.within_seed_noise is None


def test_no_difference_no_claim(make_run, collected):
    runs = [make_run("base", _acc(0.5, 0.6)), make_run("other", [{"u": {"acc": 0.7}}] * 2)]
    d = compare(collected(runs, "base"), SETTINGS).deltas["other"]["t.acc"]
    assert d.delta is None and d.claim is None and d.seed_spread is None
