"""Chinchilla approach-3 fits (FACTS 9.1) recover known laws from synthetic ladders.

Tolerances, each holding with margin:
- noise-free 4 N × 4 D over 1.5 decades: |Δα|, |Δβ| < 1e-4 and E, A, B within 0.1% (the fit
  reaches ~1e-9 or better; the slack is for BLAS/platform rounding);
- 1% log-normal noise (seed 0) on 6 N × 6 D over 2.5 decades: |Δα|, |Δβ| < 0.08, E within 8%,
  N_opt at C = 1e23 within a factor 2 and the loss predicted at the true optimum there within
  2%. Seed 0 errs by at most 0.034, 0.039, 4.2%, ×1.03 and 0.4% (either law); the worst over
  seeds 0-23 and both laws were 0.058, 0.044, 6.0%, ×1.79 and 1.2%, so the bounds are not a
  lucky seed's. A 4 × 4 ladder over 1.5 decades cannot meet them under 1% noise: over the
  same seeds α was off by up to 0.18, E by 36% and N_opt at 1e23 by ×3.7 (seed 0: 0.10, 16%,
  ×2.15).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from repro.scaling.fit import (DEFAULT_TOP_K, MIN_POINTS, LossPoint, bootstrap_intervals,
                               fit_scaling_law)
from repro.scaling.law import CHINCHILLA, EPOCH_REFIT, ScalingLaw
from tests.scaling.ladders import ladder

LAWS = pytest.mark.parametrize("law", [CHINCHILLA, EPOCH_REFIT], ids=["chinchilla", "epoch"])
NOISY = {"n_sizes": 6, "n_tokens": 6, "decades": 2.5, "noise": 0.01, "seed": 0}


@LAWS
def test_noise_free_ladder_recovers_the_constants(law: ScalingLaw) -> None:
    fit = fit_scaling_law(ladder(law))
    got = fit.law
    assert abs(got.alpha - law.alpha) < 1e-4 and abs(got.beta - law.beta) < 1e-4
    for name in ("e", "a", "b"):
        assert getattr(got, name) == pytest.approx(getattr(law, name), rel=1e-3), name
    assert max(abs(r) for r in fit.residuals) < 1e-6
    assert fit.n_inits == 4500 and fit.n_optimised == DEFAULT_TOP_K
    assert 0 < fit.n_converged <= fit.n_optimised


@LAWS
def test_one_percent_noise_recovers_exponents_and_allocation(law: ScalingLaw) -> None:
    fit = fit_scaling_law(ladder(law, **NOISY))
    got = fit.law
    assert abs(got.alpha - law.alpha) < 0.08 and abs(got.beta - law.beta) < 0.08
    assert got.e == pytest.approx(law.e, rel=0.08)
    n_true, d_true = law.compute_optimal(1e23)
    n_fit, _ = got.compute_optimal(1e23)
    assert 0.5 < n_fit / n_true < 2.0
    assert got.loss(n_true, d_true) == pytest.approx(law.loss(n_true, d_true), rel=0.02)
    # Residuals are the noise: ~1% in log space.
    assert 0.005 < float(np.std(fit.residuals)) < 0.02


@pytest.mark.slow
def test_screening_top_k_finds_the_same_optimum_as_four_times_the_starts() -> None:
    # The module docstring's claim, on a noisy ladder (where local minima exist).
    points = ladder(CHINCHILLA, noise=0.01, seed=3)
    default = fit_scaling_law(points)
    wider = fit_scaling_law(points, top_k=4 * DEFAULT_TOP_K)
    assert wider.objective >= default.objective * (1 - 1e-9)
    for name, value in default.law.as_dict().items():
        assert value == pytest.approx(getattr(wider.law, name), rel=1e-5), name


def test_huber_loss_shrugs_off_an_outlying_run() -> None:
    points = ladder(CHINCHILLA)
    points[5] = LossPoint(points[5].n, points[5].d, points[5].loss * 1.2, "diverged")
    fit = fit_scaling_law(points)
    assert abs(fit.law.alpha - 0.34) < 0.01 and abs(fit.law.beta - 0.28) < 0.01
    worst = max(range(len(points)), key=lambda i: abs(fit.residuals[i]))
    assert worst == 5 and fit.residuals[5] == pytest.approx(-math.log(1.2), rel=0.05)


def test_result_dict_is_json_and_names_each_run() -> None:
    fit = fit_scaling_law(ladder(CHINCHILLA), top_k=4)
    d = json.loads(json.dumps(fit.as_dict()))
    assert set(d) == {"law", "objective", "n_inits", "n_optimised", "n_converged",
                      "residuals"}
    assert d["n_optimised"] == 4 and len(d["residuals"]) == 16
    assert d["residuals"][0]["label"] == "N1e+08-D2e+09"


# ------------------------------------------------------------------------------ rejections


def test_min_points_is_the_parameter_count() -> None:
    assert MIN_POINTS == 5


def test_four_points_are_too_few() -> None:
    with pytest.raises(ValueError, match="at least 5 runs.*add rungs"):
        fit_scaling_law(ladder(CHINCHILLA, n_sizes=2, n_tokens=2))


def test_a_single_model_size_is_not_identifiable() -> None:
    with pytest.raises(ValueError, match=r"vary the model size \(at least 2 distinct N\)"):
        fit_scaling_law(ladder(CHINCHILLA, n_sizes=1, n_tokens=6))


def test_a_single_token_count_is_not_identifiable() -> None:
    with pytest.raises(ValueError, match=r"vary the token count \(at least 2 distinct D\)"):
        fit_scaling_law(ladder(CHINCHILLA, n_sizes=6, n_tokens=1))


@pytest.mark.parametrize(("field", "value"), [("loss", -2.5), ("loss", 0.0), ("loss", math.nan),
                                              ("n", 0.0), ("d", math.inf)])
def test_non_positive_or_non_finite_values_are_rejected(field: str, value: float) -> None:
    points = ladder(CHINCHILLA)
    p = points[3]
    points[3] = LossPoint(**{**p.__dict__, field: value})
    with pytest.raises(ValueError,
                       match=f"{re.escape(p.label)}.*{field} must be a positive finite"):
        fit_scaling_law(points)


# ------------------------------------------------------------------------------- bootstrap


@pytest.mark.slow
def test_bootstrap_intervals_cover_the_truth_on_a_noisy_ladder() -> None:
    # 95% intervals; on seeds 0-11 of this ladder they covered the true E, α, β and N_opt at
    # 1e23 every time.
    law = CHINCHILLA
    boot = bootstrap_intervals(ladder(law, **NOISY), resamples=200, seed=0,
                               target_computes=[1e23], loss_queries=[(1e9, 2e10)])
    assert boot.resamples == 200 and boot.samples + boot.skipped == 200
    iv = boot.intervals
    for name in ("e", "alpha", "beta"):
        assert iv[name].contains(getattr(law, name)), (name, iv[name])
    for key in ("e", "a", "b", "alpha", "beta", "n_opt@1e+23", "d_opt@1e+23",
                "loss@N=1e+09,D=2e+10"):
        assert iv[key].lo <= iv[key].estimate <= iv[key].hi, key
    assert iv["loss@N=1e+09,D=2e+10"].estimate == boot.fit.law.loss(1e9, 2e10)
    assert iv["alpha"].hi - iv["alpha"].lo < 0.3  # informative, not just wide
    json.dumps(boot.as_dict())


def test_bootstrap_is_deterministic_given_the_seed() -> None:
    points = ladder(EPOCH_REFIT, noise=0.01, seed=1)
    first = bootstrap_intervals(points, resamples=20, seed=7, top_k=8)
    again = bootstrap_intervals(points, resamples=20, seed=7, top_k=8)
    other = bootstrap_intervals(points, resamples=20, seed=8, top_k=8)
    assert first.as_dict() == again.as_dict()
    assert first.intervals["alpha"] != other.intervals["alpha"]


def test_degenerate_resamples_are_skipped_and_counted() -> None:
    # Only one run at the second model size: every resample that misses it has one N, and
    # resamples with fewer than 5 distinct runs cannot pin 5 parameters either.
    points = ladder(CHINCHILLA, n_sizes=1, n_tokens=7) + [ladder(CHINCHILLA, n_min=3e8)[0]]
    resamples, seed = 40, 3
    boot = bootstrap_intervals(points, resamples=resamples, seed=seed, top_k=8)
    draws = np.random.Generator(np.random.PCG64(seed)).integers(0, 8, size=(resamples, 8))
    expected = sum(1 for idx in draws
                   if 7 not in idx or len(set(idx.tolist())) < MIN_POINTS)
    assert 0 < boot.skipped == expected and boot.samples == resamples - expected
