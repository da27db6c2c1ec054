"""Scaling-law and decision-accuracy figures as PNG bytes that are identical run to run.

Determinism comes from repro.report.plots._figure (bare Figure on an Agg canvas, default
style, fixed size and dpi, no `Software` tag), reused so the report and these figures cannot
drift apart.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from repro.report.plots import COLORS, _figure
from repro.scaling.decision import DecisionResult
from repro.scaling.fit import LossPoint
from repro.scaling.law import FLOPS_PER_PARAM_TOKEN, ScalingLaw

MAX_DATA_TICKS = 8
"""Up to this many distinct token counts get a tick each in the fit figure."""

ISOFLOP_BUDGETS = 4
"""Compute budgets drawn in the IsoFLOP figure, log-spaced over the ladder's compute."""


def _eng(ax: Any) -> None:
    """Log x axis labelled 10M, 1G, …; minor ticks unlabelled (they collide on short ranges)."""
    from matplotlib.ticker import EngFormatter, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")


def _ticks_at(ax: Any, values: Sequence[float], labels: Sequence[str]) -> None:
    """x ticks exactly at the values the runs used (a ladder spans too few decades for the
    log axis's own ticks to say which sizes were run)."""
    from matplotlib.ticker import NullLocator

    ax.set_xticks(list(values), list(labels))
    ax.xaxis.set_minor_locator(NullLocator())


def _plain_log_y(ax: Any) -> None:
    """Log y axis with plain labels: a loss range like 2.3-3.6 has no decade tick, so matplotlib
    would label the minor ticks as 2.4×10^0."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def _law_text(law: ScalingLaw) -> str:
    return (f"L = {law.e:.3g} + {law.a:.4g}/N^{law.alpha:.3g} + "
            f"{law.b:.4g}/D^{law.beta:.3g}")


def fit_png(points: Sequence[LossPoint], law: ScalingLaw,
            target_compute: float | None = None) -> bytes:
    """Loss vs tokens on log axes: one colour per model size, observed runs as dots and the
    fitted law as a line. With `target_compute`, the law's compute-optimal (N, D) for that
    budget (C = 6ND) is drawn as a black dashed curve with its optimum starred; a law with no
    optimum (α or β ≤ 0) then raises compute_optimal's ValueError, as it should not be drawn
    as if it had one."""
    sizes = sorted({p.n for p in points})
    d_lo, d_hi = min(p.d for p in points), max(p.d for p in points)
    optimum: tuple[float, float] | None = None
    if target_compute is not None:
        optimum = law.compute_optimal(target_compute)
        d_lo, d_hi = min(d_lo, optimum[1]), max(d_hi, optimum[1])
    d_grid = np.logspace(math.log10(d_lo) - 0.1, math.log10(d_hi) + 0.1, 200)

    out: list[bytes] = []
    with _figure((7.5, 5.0), out) as fig:
        ax = fig.subplots()
        for i, n in enumerate(sizes):
            color = COLORS[i % len(COLORS)]
            ds = [p.d for p in points if p.n == n]
            ls = [p.loss for p in points if p.n == n]
            ax.scatter(ds, ls, color=color, s=22, zorder=3, label=f"N = {n:.3g}")
            ax.plot(d_grid, law.loss(n, d_grid), color=color, lw=1.2)
        if optimum is not None:
            n_opt, d_opt = optimum
            ax.plot(d_grid, law.loss(n_opt, d_grid), color="black", lw=1.2, ls="--",
                    label=f"N_opt = {n_opt:.3g} at C = {target_compute:.3g}")
            ax.scatter([d_opt], [law.loss(n_opt, d_opt)], color="black", marker="*", s=120,
                       zorder=4)
        _eng(ax)
        _plain_log_y(ax)
        token_counts = sorted({p.d for p in points})
        if len(token_counts) <= MAX_DATA_TICKS:
            from matplotlib.ticker import EngFormatter

            # Three significant digits: 6.32G, not EngFormatter's 6.32456G.
            eng = EngFormatter(sep="")
            _ticks_at(ax, token_counts, [eng(float(f"{d:.3g}")) for d in token_counts])
        ax.set_xlabel("training tokens D")
        ax.set_ylabel("loss")
        ax.set_title(_law_text(law), fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    return out[0]


def isoflop_png(law: ScalingLaw, points: Sequence[LossPoint]) -> bytes:
    """Predicted loss vs N along C = 6ND for a few budgets spanning the ladder's compute
    (Hoffmann et al. 2022 Fig. 3's IsoFLOP profiles, from the law instead of runs), each
    budget's compute-optimal N starred and joined across budgets.

    A fitted law with α ≤ 0 or β ≤ 0 has no optimum; its profiles are still drawn, over the
    ladder's N range, and the title says so instead of failing the report."""
    computes = [FLOPS_PER_PARAM_TOKEN * p.n * p.d for p in points]
    lo, hi = math.log10(min(computes)), math.log10(max(computes))
    budgets = np.logspace(lo, hi, ISOFLOP_BUDGETS) if hi > lo else np.array([10**lo])
    has_optimum = law.alpha > 0 and law.beta > 0 and law.a > 0 and law.b > 0
    n_lo, n_hi = min(p.n for p in points), max(p.n for p in points)
    out: list[bytes] = []
    with _figure((7.5, 5.0), out) as fig:
        ax = fig.subplots()
        optima: list[tuple[float, float]] = []
        for i, c in enumerate(budgets):
            color = COLORS[i % len(COLORS)]
            if has_optimum:
                n_opt, d_opt = law.compute_optimal(float(c))
                ns = n_opt * np.logspace(-1.5, 1.5, 200)
                optima.append((n_opt, law.loss(n_opt, d_opt)))
                ax.scatter([n_opt], [optima[-1][1]], color=color, marker="*", s=120, zorder=3)
            else:
                ns = np.logspace(math.log10(n_lo) - 1, math.log10(n_hi) + 1, 200)
            ax.plot(ns, law.loss(ns, c / (FLOPS_PER_PARAM_TOKEN * ns)), color=color, lw=1.2,
                    label=f"C = {c:.2g} FLOPs")
        if has_optimum:
            ax.plot([o[0] for o in optima], [o[1] for o in optima], color="black", lw=0.8,
                    ls=":", label=f"N_opt ∝ C^{law.n_exponent:.3f}")
        _eng(ax)
        ax.set_xlabel("parameters N")
        ax.set_ylabel("predicted loss")
        ax.set_title("IsoFLOP profiles of the fitted law" if has_optimum else
                     f"IsoFLOP profiles: no compute optimum (alpha={law.alpha:.3g}, "
                     f"beta={law.beta:.3g})", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    return out[0]


def decision_png(result: DecisionResult) -> bytes:
    """Decision accuracy vs model size, one colour per task: solid for the seed-mean ranking,
    dotted for single-seed runs; 0.5 is a coin flip and 1 always picks the target's winner."""
    out: list[bytes] = []
    with _figure((7.5, 4.5), out) as fig:
        ax = fig.subplots()
        for i, (task, td) in enumerate(result.tasks.items()):
            color = COLORS[i % len(COLORS)]
            sizes = [s for s in td.sizes if s.accuracy is not None]
            xs = [s.n_params for s in sizes]
            ax.plot(xs, [s.accuracy for s in sizes], color=color, marker="o", lw=1.4,
                    label=task)
            ax.plot(xs, [s.per_seed_accuracy for s in sizes], color=color, lw=1.0, ls=":")
        ax.axhline(0.5, color="gray", lw=0.8, ls="--")
        _eng(ax)
        small = sorted({(s.n_params, s.size) for td in result.tasks.values() for s in td.sizes})
        _ticks_at(ax, [n for n, _ in small], [name for _, name in small])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("small model size")
        ax.set_ylabel("decision accuracy")
        ax.set_title(f"Pairwise agreement with the ranking at {result.target_size} "
                     f"({result.target_n_params:.3g} params); dotted: single seeds",
                     fontsize=10)
        if result.tasks:
            ax.legend(fontsize=8, loc="lower right")
    return out[0]
