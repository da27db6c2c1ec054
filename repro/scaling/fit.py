"""Fit L(N, D) = E + A/N^α + B/D^β to a ladder of small runs: Chinchilla approach 3
(FACTS 9.1; Hoffmann et al. 2022 §3.3 and App. D.2, Eq. 10), with bootstrap intervals.

The objective is Hoffmann et al.'s: with a = log A, b = log B, e = log E,

    min Σ_i Huber_δ( LSE(a − α·log N_i, b − β·log D_i, e) − log L_i ),   δ = 1e-3,

minimised with L-BFGS from every point of a grid of initialisations, keeping the best. The
log-sum-exp form is log of the law's prediction, so residuals are relative errors, and the
Huber loss makes the fit robust to an outlying run.

Two implementation choices, neither of which changes the minimiser:
- Analytic gradients (the LSE's softmax weights times the Huber score), vectorised in numpy.
- Screening: the objective is evaluated at all grid starts at once (one numpy expression)
  and L-BFGS runs only from the `top_k` best (`top_k=None`: all of them). Measured on five
  test ladders (Chinchilla 4×4 noise-free; Chinchilla 4×4, Chinchilla and Epoch-refit 6×6
  with 1% noise; Epoch-refit 4×4 with 1% noise): L-BFGS from every one of the 4500 starts
  found no lower optimum than the best of the top 64. On every ladder the 8 best-screened
  starts reached that optimum, as did 42-50% of the top 64 (31-35% of all 4500); on the 4×4
  noisy ladders the others stopped in local minima with 8x the objective or more. The full
  grid took 85-100 s on a loaded 2-core box, the top 64 under 1 s. tests/scaling/test_fit.py
  checks that 4x as many starts change nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, ContextManager, Iterable, Sequence

import numpy as np

from repro.scaling.law import ScalingLaw

MIN_POINTS = 5
"""Five free parameters (E, A, B, α, β): fewer runs cannot pin the law down."""

HUBER_DELTA = 1e-3
"""Hoffmann et al. 2022's δ (App. D.2): residuals above 0.1% in log loss count linearly."""

DEFAULT_TOP_K = 64
"""How many of the screened grid points L-BFGS starts from (see the module docstring)."""

_PARAMS = ("e", "a", "b", "alpha", "beta")
"""Interval keys, in ScalingLaw's field order (e, a, b are E, A, B, not their logs)."""

# L-BFGS-B stops on a relative objective decrease below ftol or a projected gradient below
# gtol. The objective divided by δ has unit-scale gradients far from the optimum, but near a
# good fit it is ~1e-6 or less, and scipy's defaults (ftol 2.2e-9, gtol 1e-5) would stop
# several digits short; these let it run to the minimum.
_LBFGS_OPTIONS = {"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-8}


@dataclass(frozen=True)
class LossPoint:
    """One finished run: N parameters, D training tokens, final loss (e.g. validation). A
    ladder's run once trained; the run before training is repro.compile.ladder.LadderPoint."""

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
    points: tuple[LossPoint, ...] = field(repr=False)

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


def _arrays(points: Sequence[LossPoint]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


class _Problem:
    """The objective over φ = (a, b, e, α, β) for one ladder (or one weighted resample).

    The three LSE arguments for every point are one matrix product, x = φ·M with M of shape
    (5, 3n), so one expression evaluates a single φ (L-BFGS) or all grid starts (screening),
    and the gradient is M·(∂f/∂x): ~20 numpy calls per evaluation, not per point.
    """

    def __init__(self, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float,
                 weights: np.ndarray | None = None) -> None:
        if not (math.isfinite(delta) and delta > 0):
            raise ValueError(f"huber_delta must be positive, got {delta}")
        self.y, self.delta, n = log_l, delta, len(log_l)
        self.weights = np.ones(n) if weights is None else weights.astype(float)
        m = np.zeros((5, 3, n))
        m[0, 0] = 1.0         # a
        m[1, 1] = 1.0         # b
        m[2, 2] = 1.0         # e
        m[3, 0] = -log_n      # −α·log N
        m[4, 1] = -log_d      # −β·log D
        self.m = m.reshape(5, 3 * n)

    def residuals(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """r = LSE − log L, shape (..., n), and the LSE's softmax weights (..., 3, n), for
        parameters of shape (..., 5)."""
        x = (phi @ self.m).reshape(phi.shape[:-1] + (3, len(self.y)))
        top = x.max(axis=-2, keepdims=True)
        ex = np.exp(x - top)
        total = ex.sum(axis=-2, keepdims=True)
        r = (top + np.log(total))[..., 0, :] - self.y
        return r, ex / total

    def huber(self, r: np.ndarray) -> np.ndarray:
        """Σ_i w_i Huber_δ(r_i) / δ over the last axis. Dividing by δ keeps the argmin and
        gives the optimiser unit-scale gradients. With c = min(|r|, δ), Huber_δ(r) =
        c·(|r| − c/2): r²/2 inside ±δ, δ·(|r| − δ/2) outside."""
        a = np.abs(r)
        c = np.minimum(a, self.delta)
        return (c * (a - 0.5 * c)) @ self.weights / self.delta

    def value_and_grad(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective and its gradient at one φ: `residuals` and `huber` inlined, since
        L-BFGS calls this ~150 times per start (23 µs here against 36 µs unfused)."""
        x = (phi @ self.m).reshape(3, len(self.y))
        top = x.max(axis=0)
        ex = np.exp(x - top)
        total = ex.sum(axis=0)
        r = top + np.log(total) - self.y
        a = np.abs(r)
        c = np.minimum(a, self.delta)
        w = self.weights / self.delta
        # ∂(Huber/δ)/∂r = clip(r, −δ, δ)/δ; ∂r/∂x = the softmax weights ex/total.
        score = np.copysign(c, r) * w / total
        return float((c * (a - 0.5 * c)) @ w), self.m @ (ex * score).ravel()


def _one_blas_thread() -> ContextManager[Any]:
    """Limit BLAS to one thread while optimising.

    scipy's L-BFGS-B calls BLAS on 5-vectors every iteration; with OpenBLAS's default thread
    pool each iteration cost ~6.5 ms of CPU against ~50 µs single-threaded (measured on the
    2-core dev box), far more than the objective itself. threadpoolctl is in the lock (via
    scikit-learn) but not a declared dependency; without it the fit is only slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships in requirements.lock
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _optimise(problem: _Problem, starts: np.ndarray, top_k: int | None
              ) -> tuple[np.ndarray, float, int, int]:
    """Best (a, b, e, α, β) from L-BFGS runs at the `top_k` best starts; also its scaled
    objective, the number of runs and how many converged."""
    # Imported here: scipy.optimize costs ~0.45 s to import, and the compiler imports this
    # module for MIN_POINTS alone.
    from scipy.optimize import minimize

    with np.errstate(over="ignore", invalid="ignore"):
        screen = problem.huber(problem.residuals(starts)[0])
    screen = np.where(np.isfinite(screen), screen, np.inf)
    # Stable order, so ties in the screen pick the same starts on every machine.
    order = np.argsort(screen, kind="stable")
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1 (or None for every start), got {top_k}")
        order = order[:top_k]
    best, best_f, converged = starts[order[0]], math.inf, 0
    for i in order:
        res = minimize(problem.value_and_grad, starts[i], jac=True, method="L-BFGS-B",
                       options=_LBFGS_OPTIONS)
        converged += bool(res.success)
        if np.isfinite(res.fun) and res.fun < best_f:
            best, best_f = res.x, float(res.fun)
    return np.asarray(best), best_f, len(order), converged


def _law(theta: np.ndarray) -> ScalingLaw:
    a, b, e, alpha, beta = (float(x) for x in theta)
    return ScalingLaw(e=math.exp(e), a=math.exp(a), b=math.exp(b), alpha=alpha, beta=beta)


def _theta(law: ScalingLaw) -> np.ndarray:
    return np.array([math.log(law.a), math.log(law.b), math.log(law.e), law.alpha, law.beta])


# ------------------------------------------------------------------------------------- fit


def fit_scaling_law(points: Sequence[LossPoint], *, huber_delta: float = HUBER_DELTA,
                    init_grid: InitGrid | None = None,
                    top_k: int | None = DEFAULT_TOP_K) -> FitResult:
    """Chinchilla approach 3 (Hoffmann et al. 2022 Eq. 10): the grid start whose L-BFGS run
    reaches the lowest Huber objective. `top_k=None` optimises from every grid point."""
    points = tuple(points)
    log_n, log_d, log_l = _arrays(points)
    problem = _Problem(log_n, log_d, log_l, huber_delta)
    starts = (init_grid or CHINCHILLA_GRID).starts()
    with _one_blas_thread():
        theta, _, n_opt, n_conv = _optimise(problem, starts, top_k)
    return _result(problem, theta, points, len(starts), n_opt, n_conv)


def _result(problem: _Problem, theta: np.ndarray, points: tuple[LossPoint, ...],
            n_inits: int, n_optimised: int, n_converged: int) -> FitResult:
    r, _ = problem.residuals(theta)
    return FitResult(law=_law(theta), objective=float(problem.huber(r)) * problem.delta,
                     n_inits=n_inits, n_optimised=n_optimised, n_converged=n_converged,
                     residuals=tuple(float(x) for x in r), points=points)


# ------------------------------------------------------------------------------- bootstrap


def bootstrap_intervals(points: Sequence[LossPoint], *, resamples: int = 200,
                        confidence: float = 0.95, seed: int = 0,
                        target_computes: Iterable[float] = (),
                        loss_queries: Iterable[tuple[float, float]] = (),
                        huber_delta: float = HUBER_DELTA, init_grid: InitGrid | None = None,
                        top_k: int | None = DEFAULT_TOP_K,
                        resample_grid: InitGrid = BOOTSTRAP_GRID,
                        resample_top_k: int = 1) -> BootstrapResult:
    """Percentile intervals from refitting the law to runs resampled with replacement.

    Each resample is fitted like the full ladder but from fewer starts: the full fit's optimum
    (a warm start, usually already near the resample's) plus the best `resample_top_k` of
    `resample_grid`. A resample is skipped, and counted, when its distinct runs cannot
    identify the law (fewer than 2 distinct N or D, or fewer than MIN_POINTS distinct runs).
    Draws come from one PCG64(seed) stream drawn up front, so results depend only on seed.

    One grid start suffices: on the 6×6 noisy test ladder, 200 resamples gave the same
    intervals (to 1e-8 relative) with `resample_top_k` 1 and 4, in 3.4 s against 15 s.
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
    with _one_blas_thread():
        laws = [_refit(idx, log_n, log_d, log_l, huber_delta, warm, extra, resample_top_k)
                for idx in draws]
    fitted = [law for law in laws if law is not None]
    if not fitted:
        raise ValueError(f"all {resamples} resamples were degenerate (too few distinct N, D "
                         f"or runs): add rungs to the ladder")
    return BootstrapResult(fit=full, resamples=resamples, samples=len(fitted),
                           skipped=resamples - len(fitted), confidence=confidence,
                           intervals=_intervals(full.law, fitted, confidence, computes,
                                                queries))


def _refit(idx: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
           huber_delta: float, warm: np.ndarray, extra: np.ndarray, extra_top_k: int
           ) -> ScalingLaw | None:
    """The law fitted to the runs drawn at `idx`, or None when they cannot identify it."""
    # A resample is the ladder weighted by how often each run was drawn: the same objective
    # as repeating the runs, with one residual per distinct run.
    counts = np.bincount(idx, minlength=len(log_l))
    keep = counts > 0
    if (_unidentifiable(log_n[keep], log_d[keep]) is not None
            or len(set(zip(log_n[keep], log_d[keep]))) < MIN_POINTS):
        return None
    problem = _Problem(log_n[keep], log_d[keep], log_l[keep], huber_delta,
                       weights=counts[keep])
    theta_warm, f_warm, _, _ = _optimise(problem, warm, 1)
    theta_grid, f_grid, _, _ = _optimise(problem, extra, extra_top_k)
    try:
        return _law(theta_warm if f_warm <= f_grid else theta_grid)
    except OverflowError:
        # The optimum ran off to log A or log B beyond float range: these runs fit as well
        # with the term unbounded, i.e. they do not determine it. Counted as skipped, like
        # a resample with too few distinct N or D (found on the qs-ladder's 9 runs).
        return None


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

