"""Best, margin and sensitivity on results built by hand."""

from __future__ import annotations

import pytest

from repro.sweep.analysis import analyse, best_of, levels, rank
from repro.sweep.results import TrialResult
from tests.sweep.toy import make_sweep


def _r(index: int, lr: float, wd: float, value: float | None) -> TrialResult:
    status = "completed" if value is not None else "failed"
    return TrialResult(f"sw-{index}", index, {"lr": lr, "wd": wd}, status, value,
                       None if value is not None else "boom")


# a 2x2 grid: lr matters (means 3.0 vs 1.0), wd a little (means 2.25 vs 1.75)
GRID = [_r(0, 0.001, 0.0, 2.5), _r(1, 0.001, 0.5, 3.5), _r(2, 0.01, 0.0, 1.0), _r(3, 0.01, 0.5, 1.0)]


def test_rank_puts_the_best_first_ties_by_index_and_failures_last():
    results = [_r(4, 0.1, 0.0, None), *GRID]
    assert [r.name for r in rank(results, "minimize")] == ["sw-2", "sw-3", "sw-0", "sw-1", "sw-4"]
    assert [r.name for r in rank(GRID, "maximize")][:2] == ["sw-1", "sw-0"]


def test_best_and_its_margin_over_the_runner_up():
    best = best_of(rank([_r(0, 0.001, 0.0, 2.0), _r(1, 0.01, 0.0, 1.6), _r(2, 0.1, 0.0, 1.5)],
                        "minimize"))
    assert (best.name, best.value, best.runner_up) == ("sw-2", 1.5, "sw-1")
    assert best.margin == pytest.approx(0.1) and best.margin_relative == pytest.approx(0.1 / 1.6)
    assert best_of(rank([_r(0, 0.001, 0.0, 2.0)], "minimize")).runner_up is None
    assert best_of([_r(0, 0.001, 0.0, None)]) is None


def test_main_effect_is_the_spread_of_the_means_per_value():
    a = analyse(GRID, make_sweep())
    lr, wd = a.sensitivity["lr"], a.sensitivity["wd"]
    assert [(lv.value, lv.mean, lv.trials) for lv in lr.levels] == [(0.001, 3.0, 2), (0.01, 1.0, 2)]
    assert lr.main_effect == pytest.approx(2.0) and wd.main_effect == pytest.approx(0.5)


def test_fanova_needs_four_trials_and_ranks_the_parameter_that_matters():
    few = analyse(GRID[:3], make_sweep())
    assert few.sensitivity["lr"].importance is None and "at least 4" in few.importance_note
    sweep = make_sweep(parameters={
        "lr": {"keys": ["a.b"], "values": [0.001, 0.003, 0.01, 0.03]},
        "wd": {"keys": ["a.c"], "values": [0.0, 0.5]}})
    grid = [_r(4 * i + j, lr, wd, 10 * i + 0.01 * j)
            for i, lr in enumerate((0.001, 0.003, 0.01, 0.03)) for j, wd in enumerate((0.0, 0.5))]
    first, second = analyse(grid, sweep), analyse(grid, sweep)
    lr, wd = first.sensitivity["lr"].importance, first.sensitivity["wd"].importance
    assert lr > 0.9 > 0.1 > wd and lr + wd == pytest.approx(1.0)
    assert first == second  # seeded


def test_continuous_values_are_binned_for_the_main_effect():
    sweep = make_sweep(strategy="random", trials=8, parameters={
        "lr": {"keys": ["a.b"], "low": 1e-4, "high": 1e-1, "log": True},
        "wd": {"keys": ["a.c"], "values": [0.0]}})
    results = [_r(i, 10 ** (-4 + i * 0.4), 0.0, float(i)) for i in range(8)]
    bins = levels("lr", sweep.parameters["lr"], "random", results)
    assert [b.trials for b in bins] == [2, 2, 2, 2] and [b.mean for b in bins] == [0.5, 2.5, 4.5, 6.5]
    assert all(b.value is None for b in bins)
