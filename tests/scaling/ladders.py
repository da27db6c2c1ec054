"""Synthetic ladders for the scaling tests: runs on a log-spaced N × D grid whose losses come
from a known law, optionally with multiplicative log-normal noise from a fixed seed."""

from __future__ import annotations

import numpy as np

from repro.scaling.fit import LossPoint
from repro.scaling.law import ScalingLaw


def ladder(law: ScalingLaw, *, n_sizes: int = 4, n_tokens: int = 4, decades: float = 1.5,
           noise: float = 0.0, seed: int = 0, n_min: float = 1e8,
           d_min: float = 2e9) -> list[LossPoint]:
    """`n_sizes` × `n_tokens` runs, N from n_min and D from d_min, each spanning `decades`;
    loss = law.loss(N, D)·exp(noise·z), z ~ N(0, 1) from PCG64(seed)."""
    ns = np.logspace(np.log10(n_min), np.log10(n_min) + decades, n_sizes)
    ds = np.logspace(np.log10(d_min), np.log10(d_min) + decades, n_tokens)
    n, d = (g.ravel() for g in np.meshgrid(ns, ds, indexing="ij"))
    z = np.random.Generator(np.random.PCG64(seed)).standard_normal(n.size)
    loss = law.loss(n, d) * np.exp(noise * z)
    return [LossPoint(n=float(a), d=float(b), loss=float(c), label=f"N{a:.3g}-D{b:.3g}")
            for a, b, c in zip(n, d, loss)]
