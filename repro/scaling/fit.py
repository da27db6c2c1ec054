"""Fit L(N, D) = E + A/N^α + B/D^β to a ladder of small runs: Chinchilla approach 3
(FACTS 9.1; Hoffmann et al. 2022 §3.3 and App. D.2, Eq. 10), with bootstrap intervals.

The objective is Hoffmann et al.'s: with a = log A, b = log B, e = log E,

    min Σ_i Huber_δ( LSE(a − α·log N_i, b − β·log D_i, e) − log L_i ),   δ = 1e-3,

minimised with L-BFGS from every point of a grid of initialisations, keeping the best. The
log-sum-exp form is log of the law's prediction, so residuals are relative errors, and the
Huber loss makes the fit robust to an outlying run.

Three implementation choices, none of which changes the minimiser:
- Analytic gradients (the LSE's softmax weights times the Huber score), vectorised in numpy.
- log N and log D are centred on their ladder means inside the optimiser: a − α·log N =
  (a − α·m) − α·(log N − m), a linear change of variables. Without it, α and a move in a
  narrow valley (log N ≈ 18 varies by ±2 on a ladder), which costs L-BFGS many iterations.
- Screening: the objective is evaluated at all grid points at once (one numpy expression),
  and L-BFGS runs only from the `top_k` best. On the test ladders the best of the full grid
  and of the top 200 agree to ~1e-9 in every parameter (tests/scaling/test_fit.py checks it),
  while running all 4500 takes ~20x longer; `top_k=None` runs them all.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from scipy.optimize import minimize

from repro.scaling.law import ScalingLaw

MIN_POINTS = 5
"""Five free parameters (E, A, B, α, β): fewer runs cannot pin the law down."""

HUBER_DELTA = 1e-3
"""Hoffmann et al. 2022's δ (App. D.2): residuals above 0.1% in log loss count linearly."""

DEFAULT_TOP_K = 200
"""How many of the screened grid points L-BFGS starts from (see the module docstring)."""

_PARAMS = ("e", "a", "b", "alpha", "beta")
"""Interval keys, in ScalingLaw's field order (e, a, b are E, A, B, not their logs)."""

# L-BFGS-B stops on a relative objective decrease below ftol or a projected gradient below
# gtol. The objective divided by δ has unit-scale gradients far from the optimum, but near a
# good fit it is ~1e-6 or less, and scipy's defaults (ftol 2.2e-9, gtol 1e-5) would stop
# several digits short; these let it run to the minimum.
_LBFGS_OPTIONS = {"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10}


@dataclass(frozen=True)
class LadderPoint:
    """One finished run: N parameters, D training tokens, final loss (e.g. validation)."""

    n: float
    d: float
    loss: float
    label: str = ""


@dataclass(frozen=True)
class InitGrid:
    """Initial values of each parameter (in the optimiser's space: logs of E, A, B); every
    combination is one start. The default is Hoffmann et al.'s grid (App. D.2)."""

    alpha: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    beta: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    e: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    a: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    b: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)

    def starts(self) -> np.ndarray:
        """(K, 5) array of (a, b, e, α, β) starts."""
        grid = np.array(list(itertools.product(self.a, self.b, self.e, self.alpha, self.beta)),
                        dtype=float)
        if grid.size == 0:
            raise ValueError("the init grid is empty: give every parameter at least one value")
        return grid.reshape(-1, 5)


CHINCHILLA_GRID = InitGrid()
"""5 × 5 × 5 × 6 × 6 = 4500 starts."""

BOOTSTRAP_GRID = InitGrid(alpha=(0.5, 1.0), beta=(0.5, 1.0), e=(0.0, 0.5), a=(5.0, 10.0),
                          b=(5.0, 10.0))
"""A 32-point corner of the Chinchilla grid that bootstrap refits screen besides the warm
start from the full fit, so a resample whose optimum moved far can still be found."""


@dataclass(frozen=True)
class FitResult:
    law: ScalingLaw
    objective: float
    """Σ Huber_δ(residual) at the optimum (Hoffmann et al.'s objective, not divided by δ)."""
    n_inits: int
    """Grid points evaluated."""
    n_optimised: int
    """Of those, how many L-BFGS started from (the screened top_k)."""
    n_converged: int
    """Of those, how many L-BFGS runs reported convergence."""
    residuals: tuple[float, ...]
    """log(predicted) − log(observed) per input point, in input order."""
    points: tuple[LadderPoint, ...] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"law": self.law.as_dict(), "objective": self.objective,
                "n_inits": self.n_inits, "n_optimised": self.n_optimised,
                "n_converged": self.n_converged,
                "residuals": [{"label": p.label, "n": p.n, "d": p.d, "loss": p.loss,
                               "log_residual": r} for p, r in zip(self.points, self.residuals)]}


@dataclass(frozen=True)
class Interval:
    estimate: float
    """The full-data fit's value."""
    lo: float
    hi: float

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "lo": self.lo, "hi": self.hi}


@dataclass(frozen=True)
class BootstrapResult:
    fit: FitResult
    """The fit to all points (each interval's `estimate`)."""
    resamples: int
    """Resamples drawn."""
    samples: int
    """Resamples fitted (drawn minus skipped): the intervals' sample size."""
    skipped: int
    """Degenerate resamples (law not identifiable from their distinct points), not fitted."""
    confidence: float
    intervals: dict[str, Interval]
    """Keys: e, a, b, alpha, beta; n_opt@C and d_opt@C per target compute C; loss@N=…,D=…
    per query (numbers formatted with `:.6g`)."""

    def as_dict(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "samples": self.samples, "skipped": self.skipped,
                "confidence": self.confidence, "fit": self.fit.as_dict(),
                "intervals": {k: v.as_dict() for k, v in self.intervals.items()}}


# ------------------------------------------------------------------------------ validation


def _arrays(points: Sequence[LadderPoint]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log N, log D, log L, after checking the ladder can determine the law."""
    if len(points) < MIN_POINTS:
        raise ValueError(f"a scaling-law fit needs at least {MIN_POINTS} runs (the law has 5 "
                         f"free parameters), got {len(points)}: add rungs to the ladder")
    for p in points:
        for name in ("n", "d", "loss"):
            v = getattr(p, name)
            if not (isinstance(v, (int, float, np.floating, np.integer))
                    and math.isfinite(v) and v > 0):
                raise ValueError(f"ladder point {p.label or (p.n, p.d)!r}: {name} must be a "
                                 f"positive finite number, got {v!r}")
    n = np.array([p.n for p in points], dtype=float)
    d = np.array([p.d for p in points], dtype=float)
    problem = _unidentifiable(n, d)
    if problem:
        raise ValueError(problem)
    return np.log(n), np.log(d), np.log(np.array([p.loss for p in points], dtype=float))


def _unidentifiable(n: np.ndarray, d: np.ndarray) -> str | None:
    """Why the law cannot be fitted to runs at these (N, D), or None.

    With one N, A/N^α is a constant indistinguishable from E (and likewise for D), so the
    ladder must vary both axes.
    """
    if len(np.unique(n)) < 2:
        return (f"every run has N = {n[0]:.4g} parameters, so A and alpha cannot be separated "
                f"from E: vary the model size (at least 2 distinct N)")
    if len(np.unique(d)) < 2:
        return (f"every run has D = {d[0]:.4g} tokens, so B and beta cannot be separated from "
                f"E: vary the token count (at least 2 distinct D)")
    return None


# ------------------------------------------------------------------------------- objective


@dataclass(frozen=True)
class _Problem:
    """Centred log data. Optimiser parameters: (a', b', e, α, β) with a' = a − α·mean(log N)
    and b' = b − β·mean(log D)."""

    u: np.ndarray
    v: np.ndarray
    y: np.ndarray
    mu: float
    mv: float
    weights: np.ndarray
    """Multiplicity of each point (bootstrap resamples repeat points)."""
    delta: float

    @classmethod
    def build(cls, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float,
              weights: np.ndarray | None = None) -> "_Problem":
        if not (math.isfinite(delta) and delta > 0):
            raise ValueError(f"huber_delta must be positive, got {delta}")
        mu, mv = float(log_n.mean()), float(log_d.mean())
        w = np.ones_like(log_l) if weights is None else weights.astype(float)
        return cls(log_n - mu, log_d - mv, log_l, mu, mv, w, delta)

    def to_centred(self, theta: np.ndarray) -> np.ndarray:
        phi = np.array(theta, dtype=float, copy=True)
        phi[..., 0] -= phi[..., 3] * self.mu
        phi[..., 1] -= phi[..., 4] * self.mv
        return phi

    def from_centred(self, phi: np.ndarray) -> np.ndarray:
        theta = np.array(phi, dtype=float, copy=True)
        theta[..., 0] += theta[..., 3] * self.mu
        theta[..., 1] += theta[..., 4] * self.mv
        return theta

    def residuals(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """r = LSE − log L and the LSE's softmax weights (3, ..., n), for (..., 5) params."""
        phi = np.asarray(phi, dtype=float)
        col = (slice(None),) * (phi.ndim - 1)
        x = np.stack([phi[col + (0,)][..., None] - phi[col + (3,)][..., None] * self.u,
                      phi[col + (1,)][..., None] - phi[col + (4,)][..., None] * self.v,
                      np.broadcast_to(phi[col + (2,)][..., None],
                                      phi.shape[:-1] + self.u.shape)])
        top = x.max(axis=0)
        ex = np.exp(x - top)
        total = ex.sum(axis=0)
        return top + np.log(total) - self.y, ex / total

    def huber(self, r: np.ndarray) -> np.ndarray:
        """Σ_i w_i Huber_δ(r_i) / δ over the last axis. Dividing by δ keeps the argmin and
        gives the optimiser unit-scale gradients."""
        a = np.abs(r)
        h = np.where(a <= self.delta, 0.5 * r * r / self.delta, a - 0.5 * self.delta)
        return (h * self.weights).sum(axis=-1)

    def value_and_grad(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        r, s = self.residuals(phi)
        score = np.clip(r / self.delta, -1.0, 1.0) * self.weights  # d Huber/δ / dr
        g = np.array([(score * s[0]).sum(), (score * s[1]).sum(), (score * s[2]).sum(),
                      -(score * s[0] * self.u).sum(), -(score * s[1] * self.v).sum()])
        return float(self.huber(r)), g


def _optimise(problem: _Problem, starts: np.ndarray, top_k: int | None
              ) -> tuple[np.ndarray, float, int, int]:
    """Best (a, b, e, α, β) from L-BFGS runs at the `top_k` best starts; also its scaled
    objective, the number of runs and how many converged."""
    phi0 = problem.to_centred(starts)
    with np.errstate(over="ignore", invalid="ignore"):
        screen = problem.huber(problem.residuals(phi0)[0])
    screen = np.where(np.isfinite(screen), screen, np.inf)
    # Stable order, so ties in the screen pick the same starts on every machine.
    order = np.argsort(screen, kind="stable")
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1 (or None for every start), got {top_k}")
        order = order[:top_k]
    best_phi, best_f, converged = phi0[order[0]], math.inf, 0
    for i in order:
        res = minimize(problem.value_and_grad, phi0[i], jac=True, method="L-BFGS-B",
                       options=_LBFGS_OPTIONS)
        converged += bool(res.success)
        if np.isfinite(res.fun) and res.fun < best_f:
            best_phi, best_f = res.x, float(res.fun)
    return problem.from_centred(best_phi), best_f, len(order), converged


def _law(theta: np.ndarray) -> ScalingLaw:
    a, b, e, alpha, beta = (float(x) for x in theta)
    return ScalingLaw(e=math.exp(e), a=math.exp(a), b=math.exp(b), alpha=alpha, beta=beta)


def _theta(law: ScalingLaw) -> np.ndarray:
    return np.array([math.log(law.a), math.log(law.b), math.log(law.e), law.alpha, law.beta])


# ------------------------------------------------------------------------------------- fit


def fit_scaling_law(points: Sequence[LadderPoint], *, huber_delta: float = HUBER_DELTA,
                    init_grid: InitGrid | None = None,
                    top_k: int | None = DEFAULT_TOP_K) -> FitResult:
    """Chinchilla approach 3 (Hoffmann et al. 2022 Eq. 10): the grid start whose L-BFGS run
    reaches the lowest Huber objective. `top_k=None` optimises from every grid point."""
    points = tuple(points)
    log_n, log_d, log_l = _arrays(points)
    problem = _Problem.build(log_n, log_d, log_l, huber_delta)
    starts = (init_grid or CHINCHILLA_GRID).starts()
    theta, _, n_opt, n_conv = _optimise(problem, starts, top_k)
    return _result(problem, theta, points, len(starts), n_opt, n_conv)


def _result(problem: _Problem, theta: np.ndarray, points: tuple[LadderPoint, ...],
            n_inits: int, n_optimised: int, n_converged: int) -> FitResult:
    r, _ = problem.residuals(problem.to_centred(theta))
    return FitResult(law=_law(theta), objective=float(problem.huber(r)) * problem.delta,
                     n_inits=n_inits, n_optimised=n_optimised, n_converged=n_converged,
                     residuals=tuple(float(x) for x in r), points=points)


# ------------------------------------------------------------------------------- bootstrap


def bootstrap_intervals(points: Sequence[LadderPoint], *, resamples: int = 200,
                        confidence: float = 0.95, seed: int = 0,
                        target_computes: Iterable[float] = (),
                        loss_queries: Iterable[tuple[float, float]] = (),
                        huber_delta: float = HUBER_DELTA, init_grid: InitGrid | None = None,
                        top_k: int | None = DEFAULT_TOP_K,
                        resample_grid: InitGrid = BOOTSTRAP_GRID,
                        resample_top_k: int = 4) -> BootstrapResult:
    """Percentile intervals from refitting the law to runs resampled with replacement.

    Each resample is fitted like the full ladder but from fewer starts: the full fit's optimum
    (a warm start, usually already near the resample's) plus the best `resample_top_k` of
    `resample_grid`. A resample is skipped, and counted, when its distinct runs cannot
    identify the law (fewer than 2 distinct N or D, or fewer than MIN_POINTS distinct runs).
    Draws come from one PCG64(seed) stream drawn up front, so results depend only on seed.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    points = tuple(points)
    computes = [float(c) for c in target_computes]
    queries = [(float(n), float(d)) for n, d in loss_queries]
    full = fit_scaling_law(points, huber_delta=huber_delta, init_grid=init_grid, top_k=top_k)
    log_n, log_d, log_l = _arrays(points)
    warm = _theta(full.law)[None, :]
    extra = resample_grid.starts()

    rng = np.random.Generator(np.random.PCG64(seed))
    draws = rng.integers(0, len(points), size=(resamples, len(points)))
    laws: list[ScalingLaw] = []
    skipped = 0
    for idx in draws:
        # A resample is the full ladder weighted by how often each run was drawn: the same
        # objective as repeating the runs, with one residual per distinct run.
        counts = np.bincount(idx, minlength=len(points))
        keep = counts > 0
        if (_unidentifiable(log_n[keep], log_d[keep]) is not None
                or len(set(zip(log_n[keep], log_d[keep]))) < MIN_POINTS):
            skipped += 1
            continue
        problem = _Problem.build(log_n[keep], log_d[keep], log_l[keep], huber_delta,
                                 weights=counts[keep])
        theta_warm, f_warm, _, _ = _optimise(problem, warm, 1)
        theta_grid, f_grid, _, _ = _optimise(problem, extra, resample_top_k)
        laws.append(_law(theta_warm if f_warm <= f_grid else theta_grid))
    if not laws:
        raise ValueError(f"all {resamples} resamples were degenerate (too few distinct N, D "
                         f"or runs): add rungs to the ladder")
    return BootstrapResult(fit=full, resamples=resamples, samples=len(laws), skipped=skipped,
                           confidence=confidence,
                           intervals=_intervals(full.law, laws, confidence, computes, queries))


def _intervals(full: ScalingLaw, laws: list[ScalingLaw], confidence: float,
               computes: list[float], queries: list[tuple[float, float]]
               ) -> dict[str, Interval]:
    """Percentile intervals of each statistic over the resample laws."""
    stats: dict[str, tuple[float, list[float]]] = {
        name: (getattr(full, name), [getattr(law, name) for law in laws]) for name in _PARAMS}
    for c in computes:
        opt = [_compute_optimal_or_nan(law, c) for law in laws]
        n_full, d_full = _compute_optimal_or_nan(full, c)
        stats[f"n_opt@{c:.6g}"] = (n_full, [o[0] for o in opt])
        stats[f"d_opt@{c:.6g}"] = (d_full, [o[1] for o in opt])
    for n, d in queries:
        stats[f"loss@N={n:.6g},D={d:.6g}"] = (full.loss(n, d), [law.loss(n, d) for law in laws])
    tail = (1.0 - confidence) / 2.0
    out: dict[str, Interval] = {}
    for key, (estimate, values) in stats.items():
        # A resample with α ≤ 0 or β ≤ 0 has no compute optimum; its NaN sorts as +inf, so
        # it widens the upper end rather than vanishing from the sample.
        arr = np.where(np.isnan(values), np.inf, values)
        # Interpolating between two infinities gives NaN; the bound is then +inf.
        lo, hi = np.nan_to_num(np.quantile(arr, [tail, 1.0 - tail]), nan=np.inf)
        out[key] = Interval(estimate=float(estimate), lo=float(lo), hi=float(hi))
    return out


def _compute_optimal_or_nan(law: ScalingLaw, compute: float) -> tuple[float, float]:
    try:
        return law.compute_optimal(compute)
    except ValueError:
        return math.nan, math.nan

