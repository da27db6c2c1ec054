"""Each strategy's points: order, spacing, determinism; optuna's study survives a restart
with the interrupted trial still pending."""

from __future__ import annotations

import math

import pytest

from repro.sweep.strategies import (
    OptunaSearch,
    SearchChanged,
    domain_probes,
    grid_points,
    planned_trials,
    random_points,
)
from tests.sweep.toy import make_sweep


def test_grid_is_the_product_with_the_first_parameter_slowest():
    sweep = make_sweep()
    assert grid_points(sweep) == [{"lr": 0.001, "wd": 0.0}, {"lr": 0.001, "wd": 0.5},
                                  {"lr": 0.01, "wd": 0.0}, {"lr": 0.01, "wd": 0.5}]
    assert [t.name for t in planned_trials(sweep)] == ["sw-0", "sw-1", "sw-2", "sw-3"]


def test_grid_ranges_are_even_geometric_or_integer():
    sweep = make_sweep(parameters={
        "lr": {"keys": ["a.b"], "low": 1e-4, "high": 1e-2, "log": True, "num": 3},
        "warmup": {"keys": ["a.c"], "low": 0, "high": 10, "num": 3},
        "layers": {"keys": ["a.d"], "low": 1, "high": 4, "integer": True, "num": 6}})
    lr, warmup, layers = (p.grid_values() for p in sweep.parameters.values())
    assert lr == [0.0001, 0.001, 0.01]          # geometric, exact ends
    assert warmup == [0.0, 5.0, 10.0]
    assert layers == [1, 2, 3, 4]                # 1, 1.6, 2.2, ... rounded, repeats dropped
    assert all(type(v) is int for v in layers)
    assert len(grid_points(sweep)) == 3 * 3 * 4


def test_random_points_are_seeded_and_inside_the_domain():
    fields = dict(strategy="random", trials=20, parameters={
        "lr": {"keys": ["a.b"], "low": 1e-4, "high": 1e-2, "log": True},
        "wd": {"keys": ["a.c"], "values": [0.0, 0.1, 0.2]},
        "layers": {"keys": ["a.d"], "low": 2, "high": 5, "integer": True}})
    first, again = random_points(make_sweep(**fields)), random_points(make_sweep(**fields))
    other = random_points(make_sweep(**fields, seed=1))
    assert first == again and first != other and len(first) == 20
    for p in first:
        assert 1e-4 <= p["lr"] <= 1e-2 and p["wd"] in (0.0, 0.1, 0.2) and p["layers"] in range(2, 6)
    # log-uniform: about as many draws per decade
    low_decade = sum(p["lr"] < 1e-3 for p in random_points(make_sweep(**{**fields, "trials": 400})))
    assert 150 < low_decade < 250


def test_domain_probes_cover_each_value_and_range_end():
    sweep = make_sweep(strategy="optuna", trials=5, parameters={
        "lr": {"keys": ["a.b"], "low": 1e-4, "high": 1e-2, "log": True},
        "wd": {"keys": ["a.c"], "values": [0.0, 0.1]}})
    probes = domain_probes(sweep)
    assert {p["lr"] for p in probes} == {1e-4, 1e-2} and {p["wd"] for p in probes} == {0.0, 0.1}
    assert {"lr": 1e-2, "wd": 0.1} in probes


def _optuna_sweep(**fields):
    return make_sweep(strategy="optuna", trials=4, parameters={
        "lr": {"keys": ["a.b"], "low": 1e-4, "high": 1e-2, "log": True},
        "wd": {"keys": ["a.c"], "values": [0.0, 0.1]}}, **fields)


def test_optuna_resumes_from_its_journal_with_the_interrupted_trial_pending(tmp_path):
    search = OptunaSearch(_optuna_sweep(), tmp_path)
    first, second = search.ask(2)
    assert (first.name, second.name) == ("sw-0", "sw-1")
    assert 1e-4 <= first.point["lr"] <= 1e-2 and first.point["wd"] in (0.0, 0.1)
    search.tell(first, 1.5)
    del search  # the sweep stops while sw-1 runs

    resumed = OptunaSearch(_optuna_sweep(), tmp_path)
    assert resumed.pending() == [second]       # asked, never told: same name, same point
    assert resumed.told() == [first]
    assert resumed.remaining == 2
    resumed.tell(second, None)                  # its run failed
    assert resumed.pending() == [] and [t.name for t in resumed.told()] == ["sw-0", "sw-1"]
    assert [t.name for t in resumed.ask(5)] == ["sw-2", "sw-3"]  # never past `trials`
    assert resumed.remaining == 0
    from optuna.trial import TrialState

    states = [t.state for t in resumed.study.get_trials()]
    assert states[:2] == [TrialState.COMPLETE, TrialState.FAIL]


def test_optuna_refuses_a_journal_of_another_search(tmp_path):
    OptunaSearch(_optuna_sweep(), tmp_path).ask(1)
    with pytest.raises(SearchChanged):
        OptunaSearch(_optuna_sweep(seed=3), tmp_path)


def test_optuna_proposals_are_seeded(tmp_path):
    a = OptunaSearch(_optuna_sweep(), tmp_path / "a").ask(3)
    b = OptunaSearch(_optuna_sweep(), tmp_path / "b").ask(3)
    assert [t.point for t in a] == [t.point for t in b]
    assert all(math.isfinite(t.point["lr"]) for t in a)


def test_validation_counts_the_trials_the_planner_runs():
    """SweepSpec.trial_count (the count validation holds to MAX_SWEEP_POINTS) is the number
    of trials planned_trials makes, an integer range's repeats dropped in both."""
    from repro.spec.base import MAX_SWEEP_POINTS

    def ints(high: int, num: int = MAX_SWEEP_POINTS) -> dict:
        return {"keys": ["a.b"], "low": 1, "high": high, "integer": True, "num": num}

    # 1,000 x 1,000 requested points are 3 x 3 distinct trials: accepted, and 9 planned
    small = make_sweep(parameters={"m": ints(3), "n": ints(3)})
    assert small.trial_count() == len(planned_trials(small)) == 9
    for sweep in (make_sweep(), make_sweep(parameters={
            "lr": {"keys": ["a.b"], "low": 1e-4, "high": 1e-2, "log": True, "num": 7},
            "layers": ints(4, num=6), "act": {"keys": ["a.c"], "values": ["gelu", "relu"]}}),
            make_sweep(strategy="random", trials=5)):
        assert sweep.trial_count() == len(planned_trials(sweep))
    # counted after the dedupe, refused when that is still too many
    with pytest.raises(ValueError, match=r"1,000 x 2 = 2,000 points, above the limit of 1,000"):
        make_sweep(parameters={"n": ints(1000), "x": {"keys": ["a.c"], "values": [0, 1]}})
