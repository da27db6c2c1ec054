"""Scaling figures are valid PNGs with identical bytes on every call."""

from __future__ import annotations

from typing import Callable

from repro.scaling import plots
from repro.scaling.decision import DecisionRecord, decision_accuracy
from repro.scaling.law import CHINCHILLA, EPOCH_REFIT, ScalingLaw
from tests.scaling.ladders import ladder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check(make: Callable[[], bytes]) -> None:
    first, second = make(), make()
    assert first.startswith(PNG_MAGIC) and first == second
    assert b"matplotlib" not in first.lower()  # no Software tag naming the version


def test_fit_figure_with_and_without_a_target_budget() -> None:
    points = ladder(EPOCH_REFIT, noise=0.01)
    _check(lambda: plots.fit_png(points, EPOCH_REFIT))
    _check(lambda: plots.fit_png(points, EPOCH_REFIT, target_compute=1e23))


def test_isoflop_figure() -> None:
    _check(lambda: plots.isoflop_png(CHINCHILLA, ladder(CHINCHILLA)))


def test_decision_figure() -> None:
    sizes = {"20M": 20e6, "150M": 150e6, "1B": 1e9}
    scores = {("a", "arc"): (0.3, 0.5, 0.7), ("b", "arc"): (0.35, 0.45, 0.6),
              ("c", "arc"): (0.2, 0.55, 0.65), ("a", "mmlu"): (0.25, 0.3, 0.4),
              ("b", "mmlu"): (0.26, 0.28, 0.35), ("c", "mmlu"): (0.24, 0.29, 0.45)}
    records = [DecisionRecord(recipe, size, n, seed, task, s + 0.01 * seed)
               for (recipe, task), by_size in scores.items()
               for (size, n), s in zip(sizes.items(), by_size) for seed in range(2)]
    result = decision_accuracy(records, {"arc": True, "mmlu": True})
    _check(lambda: plots.decision_png(result))


def test_isoflop_figure_of_a_law_without_an_optimum_still_renders() -> None:
    flat = ScalingLaw(e=1.7, a=400.0, b=400.0, alpha=0.3, beta=-0.01)
    _check(lambda: plots.isoflop_png(flat, ladder(CHINCHILLA)))
