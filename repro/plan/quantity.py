"""An estimated quantity: an interval [low, high] plus what it rests on.

A plan mixes exact numbers (FLOPs from a token budget), estimates (a measured cost per
document times a count), bounds (a `max_docs` cap is an upper bound on documents; the
tokens training draws divided by `max_epochs` a lower bound on a dataset's tokens) and
unknowns (a hub dataset's size). Carrying the interval through sums and products keeps every
total honest: a total with an unknown part is "at least" the known parts, never a made-up
number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INF = math.inf


def _f(value: float) -> float:
    """`float(value)`, infinite for an int too large for a float (spec validation bounds
    every integer far below that; a plan must not crash if one slips through)."""
    try:
        return float(value)
    except OverflowError:
        return INF if value > 0 else -INF


@dataclass(frozen=True)
class Q:
    low: float
    """Smallest possible value (0 when nothing better is known)."""
    high: float
    """Largest possible value (inf when unbounded)."""
    approx: bool = False
    """Rests on a measurement or an assumption, not only on the spec's numbers."""
    basis: str = ""
    """Where the number comes from, for the reader."""

    @staticmethod
    def exact(value: float, basis: str = "") -> Q:
        return Q(_f(value), _f(value), False, basis)

    @staticmethod
    def estimate(value: float, basis: str = "") -> Q:
        return Q(_f(value), _f(value), True, basis)

    @staticmethod
    def at_most(value: float, basis: str = "") -> Q:
        return Q(0.0, _f(value), False, basis)

    @staticmethod
    def at_least(value: float, basis: str = "") -> Q:
        return Q(_f(value), INF, False, basis)

    @staticmethod
    def unknown(basis: str = "") -> Q:
        return Q(0.0, INF, False, basis)

    @property
    def known(self) -> bool:
        return self.low == self.high

    @property
    def value(self) -> float | None:
        """The value when it is pinned down (low == high), else None."""
        return self.low if self.known else None

    def __add__(self, other: Q) -> Q:
        return Q(self.low + other.low, self.high + other.high, self.approx or other.approx)

    def scale(self, factor: float, *, approx: bool = False, basis: str | None = None) -> Q:
        """This quantity times a non-negative number (a measured cost when `approx`)."""
        high = 0.0 if factor == 0 else self.high * factor
        return Q(self.low * factor, high, self.approx or approx,
                 self.basis if basis is None else basis)

    def with_basis(self, basis: str) -> Q:
        return Q(self.low, self.high, self.approx, basis)

    def as_dict(self) -> dict:
        return {"low": self.low, "high": None if self.high == INF else self.high,
                "value": self.value, "approx": self.approx, "basis": self.basis}


def total(parts) -> Q:
    """Sum of quantities (0 for none)."""
    out = Q.exact(0)
    for p in parts:
        out = out + p
    return out
