"""The Chinchilla parametric loss L(N, D) = E + A/N^α + B/D^β and its compute-optimal
allocation under C ≈ 6·N·D (FACTS 9.1; Hoffmann et al. 2022, Eq. 2 and Eq. 4 / App. D.2).

Pure arithmetic: no fitting here (that is repro.scaling.fit), so the published constants and a
fitted law are the same type and everything downstream (plots, plans) treats them alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

FLOPS_PER_PARAM_TOKEN = 6.0
"""C ≈ 6·N·D: forward + backward training FLOPs per parameter per token (FACTS 9.1)."""


@dataclass(frozen=True)
class ScalingLaw:
    """L(N, D) = e + a/N^alpha + b/D^beta, with N parameters and D training tokens.

    Field names follow the paper's symbols lower-cased: `e` is E (the irreducible loss),
    `a` and `b` are A and B (not their logs).
    """

    e: float
    a: float
    b: float
    alpha: float
    beta: float

    def loss(self, n: ArrayLike, d: ArrayLike) -> Any:
        """Predicted loss; broadcasts like numpy, and returns a float for scalar inputs."""
        n_arr, d_arr = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        out = self.e + self.a / n_arr**self.alpha + self.b / d_arr**self.beta
        return float(out) if out.ndim == 0 else out

    @property
    def n_exponent(self) -> float:
        """β/(α+β): N_opt ∝ C^this (Hoffmann et al. 2022 Eq. 4). Published constants: 0.4516,
        the "0.46" of FACTS 9.1; D_opt's exponent is 1 minus it."""
        self._check_exponents()
        return self.beta / (self.alpha + self.beta)

    def compute_optimal(self, compute_flops: float) -> tuple[float, float]:
        """(N_opt, D_opt) minimising L on the budget line C = 6·N·D.

        Closed form (Hoffmann et al. 2022 Eq. 4): with G = (αA / (βB))^(1/(α+β)),
        N_opt = G·(C/6)^(β/(α+β)) and D_opt = G^(-1)·(C/6)^(α/(α+β)); N_opt·D_opt = C/6.
        """
        if not (math.isfinite(compute_flops) and compute_flops > 0):
            raise ValueError(f"compute must be a positive finite FLOP count, got {compute_flops}")
        self._check_exponents()
        if self.a <= 0 or self.b <= 0:
            raise ValueError(f"compute-optimal allocation needs A > 0 and B > 0, got A={self.a}, "
                             f"B={self.b}: refit with a ladder that varies N and D further")
        s = self.alpha + self.beta
        # Work in logs so A, B ~ 1e3 and C ~ 1e25 never overflow or lose precision.
        log_g = (math.log(self.alpha * self.a) - math.log(self.beta * self.b)) / s
        log_c6 = math.log(compute_flops / FLOPS_PER_PARAM_TOKEN)
        return (math.exp(log_g + self.beta / s * log_c6),
                math.exp(-log_g + self.alpha / s * log_c6))

    def tokens_per_param(self, compute_flops: float) -> float:
        """D_opt/N_opt at budget C: not constant unless α = β (≈20 for the Epoch refit near
        Chinchilla's budget, FACTS 9.1)."""
        n_opt, d_opt = self.compute_optimal(compute_flops)
        return d_opt / n_opt

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def _check_exponents(self) -> None:
        # With α ≤ 0 or β ≤ 0 one of the terms never shrinks, so the budget line has no
        # interior minimum and β/(α+β) is meaningless.
        if not (self.alpha > 0 and self.beta > 0):
            raise ValueError(f"compute-optimal allocation needs alpha > 0 and beta > 0, got "
                             f"alpha={self.alpha}, beta={self.beta}: the fit found no "
                             f"diminishing returns along one axis; vary that axis more")


CHINCHILLA = ScalingLaw(e=1.69, a=406.4, b=410.7, alpha=0.34, beta=0.28)
"""Hoffmann et al. 2022's published approach-3 fit (FACTS 9.1)."""

EPOCH_REFIT = ScalingLaw(e=1.8172, a=482.01, b=2085.43, alpha=0.3478, beta=0.3658)
"""Besiroglu et al. 2024 (arXiv 2404.10102) refit of Chinchilla's own data (FACTS 9.1)."""
