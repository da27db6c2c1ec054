"""Paired bootstrap of score differences over evaluation items and training replicas.

Why our own code: lm-eval's bootstrap gives one model's standard error; the comparison
needs the difference between two models that answered the *same* items, and the FineWeb
ablation setup trains several models per variant (different seed + data subset, scores
averaged; FACTS §4.2), so seed/data noise must widen the interval too. scipy's bootstrap
resamples one axis and does not know ratio-of-sums statistics; this is a few numpy lines.

Every statistic here is a ratio of sums over items, Σ num / Σ den, per replica:
- accuracy-like metrics (acc, acc_norm): num = the item's 0/1 score, den = 1 (a mean);
- bits_per_byte: num = −loglikelihood / ln 2 (bits), den = bytes. lm-eval's bits_per_byte is
  this ratio over all documents, not a mean of per-document ratios, and so is each draw.

One bootstrap draw resamples the items with replacement (the same item indices for both
models, which is what pairs them) and, independently per model, its replicas with
replacement; the model's value on the draw is the mean over its drawn replicas of their
statistic on the drawn items. With one replica this reduces to the plain paired bootstrap
over items. Draws are made from generators seeded by (seed, task) and (seed, model), so a
comparison's interval does not change when other experiments join the report, and reruns
are identical.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ItemScores:
    """One model's per-item numerators and denominators, one row per replica."""

    num: np.ndarray
    """(replicas, items) numerators of the statistic."""
    den: np.ndarray
    """(replicas, items) denominators (1 for a mean)."""

    def __post_init__(self) -> None:
        if self.num.ndim != 2 or self.num.shape != self.den.shape or self.num.size == 0:
            raise ValueError(f"ItemScores needs equal, non-empty (replicas, items) arrays; got "
                             f"num {self.num.shape}, den {self.den.shape}")

    @classmethod
    def mean(cls, values: np.ndarray) -> ItemScores:
        """Per-item scores whose statistic is their mean (acc, acc_norm)."""
        v = np.asarray(values, dtype=np.float64)
        return cls(v, np.ones_like(v))

    @classmethod
    def bits_per_byte(cls, loglikelihood_nats: np.ndarray, n_bytes: np.ndarray) -> ItemScores:
        """Per-document log-likelihoods (nats) and byte counts -> bits per byte."""
        ll = np.asarray(loglikelihood_nats, dtype=np.float64)
        return cls(-ll / np.log(2.0), np.asarray(n_bytes, dtype=np.float64))

    @property
    def replicas(self) -> int:
        return self.num.shape[0]

    @property
    def items(self) -> int:
        return self.num.shape[1]

    def per_replica(self) -> np.ndarray:
        """(replicas,) statistic of each replica on all items."""
        return self.num.sum(axis=1) / self.den.sum(axis=1)

    def value(self) -> float:
        """Point estimate: mean over replicas of each replica's statistic on all items."""
        return float(self.per_replica().mean())


def rng_for(seed: int, name: str) -> np.random.Generator:
    """A generator tied to the seed and a name (a task or a model), stable across runs."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def item_counts(rng: np.random.Generator, n_items: int, iterations: int) -> np.ndarray:
    """(iterations, n_items) float counts: how often each item is drawn in each draw.

    Resampling n items with replacement, written as counts so that a draw's sums are one
    matrix product for every replica at once."""
    idx = rng.integers(0, n_items, size=(iterations, n_items))
    flat = (idx + (np.arange(iterations) * n_items)[:, None]).ravel()
    return np.bincount(flat, minlength=iterations * n_items).reshape(
        iterations, n_items).astype(np.float64)


@functools.lru_cache(maxsize=2)
def task_counts(seed: int, task: str, n_items: int, iterations: int) -> np.ndarray:
    """item_counts for a task, cached (read-only): every model compared on the task reuses
    the same draws, which is what pairs them and saves recomputing them per comparison."""
    counts = item_counts(rng_for(seed, task), n_items, iterations)
    counts.setflags(write=False)
    return counts


def replica_picks(rng: np.random.Generator, n_replicas: int, iterations: int) -> np.ndarray:
    """(iterations, n_replicas) replica indices drawn with replacement."""
    return rng.integers(0, n_replicas, size=(iterations, n_replicas))


def draw_values(scores: ItemScores, counts: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """(iterations,) the model's value on each draw: mean over drawn replicas of the ratio
    of sums over drawn items."""
    if counts.shape[1] != scores.items or picks.shape[1] != scores.replicas:
        raise ValueError(f"draw shapes {counts.shape}, {picks.shape} do not fit scores with "
                         f"{scores.replicas} replicas x {scores.items} items")
    per_replica = (scores.num @ counts.T) / (scores.den @ counts.T)  # (replicas, iterations)
    chosen = np.take_along_axis(per_replica.T, picks, axis=1)  # (iterations, drawn replicas)
    return chosen.mean(axis=1)


@dataclass(frozen=True)
class Interval:
    """A bootstrap summary of a difference (experiment − baseline)."""

    delta: float
    """Point estimate on all paired items and replicas."""
    low: float
    high: float
    """Percentile interval at `confidence`."""
    stderr: float
    """Standard deviation of the bootstrap draws of the difference."""

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0


def percentile_interval(point: float, draws: np.ndarray, confidence: float) -> Interval:
    """Percentile bootstrap interval of `draws` around the point estimate."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return Interval(float(point), float(low), float(high), float(draws.std(ddof=1)))


def bootstrap_stderr(scores: ItemScores, iterations: int, seed: int, task: str,
                     model: str) -> float:
    """Standard error of one model's value: items and replicas resampled (so with several
    replicas it includes seed/data-subset variance)."""
    counts = task_counts(seed, task, scores.items, iterations)
    picks = replica_picks(rng_for(seed, model), scores.replicas, iterations)
    return float(draw_values(scores, counts, picks).std(ddof=1))


def paired_draws(a: ItemScores, b: ItemScores, iterations: int, seed: int, task: str,
                 model_a: str, model_b: str) -> tuple[np.ndarray, np.ndarray]:
    """Draws of both models' values on shared item draws; a and b must hold the same items
    in the same order."""
    if a.items != b.items:
        raise ValueError(f"paired scores must cover the same items: {a.items} != {b.items}")
    counts = task_counts(seed, task, a.items, iterations)
    return (draw_values(a, counts, replica_picks(rng_for(seed, model_a), a.replicas, iterations)),
            draw_values(b, counts, replica_picks(rng_for(seed, model_b), b.replicas, iterations)))


def paired_delta(a: ItemScores, b: ItemScores, iterations: int = 10_000,
                 confidence: float = 0.95, seed: int = 0, task: str = "task",
                 model_a: str = "a", model_b: str = "b") -> Interval:
    """Interval of value(a) − value(b) for one statistic (see module docstring)."""
    da, db = paired_draws(a, b, iterations, seed, task, model_a, model_b)
    return percentile_interval(a.value() - b.value(), da - db, confidence)
