"""The paired bootstrap: known cases, the ratio statistic, replicas, determinism, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from repro.report.stats import (ItemScores, bootstrap_stderr, item_counts, paired_delta,
                                percentile_interval)


def _acc(*replicas: list[float]) -> ItemScores:
    return ItemScores.mean(np.array(replicas, dtype=float))


def test_identical_models_give_zero_and_not_significant():
    rng = np.random.default_rng(0)
    a = _acc(list(rng.random(100) < 0.5))
    iv = paired_delta(a, a, iterations=2000)
    assert iv.delta == 0 and iv.low == 0 and iv.high == 0 and not iv.significant


def test_better_on_every_item_is_significant():
    base = _acc([0.0] * 30 + [1.0] * 70)
    better = _acc([1.0] * 100)
    iv = paired_delta(better, base, iterations=2000)
    assert iv.delta == pytest.approx(0.3) and iv.significant and iv.low > 0


def test_pairing_sees_what_an_unpaired_view_misses():
    """Two models that differ on 6 of 200 items, always in the same direction: the paired
    interval excludes zero although each model's own stderr (~0.035) dwarfs the 0.03 gap."""
    rng = np.random.default_rng(1)
    base = (rng.random(200) < 0.5).astype(float)
    new = base.copy()
    new[np.flatnonzero(base == 0)[:6]] = 1.0
    iv = paired_delta(_acc(list(new)), _acc(list(base)), iterations=4000)
    assert iv.delta == pytest.approx(0.03) and iv.significant
    assert bootstrap_stderr(_acc(list(base)), 4000, 0, "t", "m") > iv.delta


def test_bits_per_byte_is_a_ratio_of_sums():
    ll = np.array([[-100.0, -10.0]])  # nats
    nbytes = np.array([[100.0, 900.0]])
    s = ItemScores.bits_per_byte(ll, nbytes)
    assert s.value() == pytest.approx(110 / np.log(2) / 1000)  # not the mean of per-doc ratios
    # One draw that takes item 0 twice: (2*100/ln2) / 200 bits per byte.
    from repro.report.stats import draw_values
    v = draw_values(s, np.array([[2.0, 0.0]]), np.array([[0]]))
    assert v[0] == pytest.approx(1 / np.log(2))


def test_disagreeing_replicas_widen_the_interval():
    rng = np.random.default_rng(2)
    base = (rng.random(300) < 0.5).astype(float)
    new = np.where(rng.random(300) < 0.1, 1.0, base)
    agree = paired_delta(_acc(list(new), list(new)), _acc(list(base), list(base)),
                         iterations=3000)
    # Same mean across replicas, but one replica much better than the other.
    worse = np.where(rng.random(300) < 0.15, 0.0, new)
    spread = np.clip(new + (new - worse), 0, 1)
    disagree = paired_delta(_acc(list(worse), list(spread)), _acc(list(base), list(base)),
                            iterations=3000)
    assert (disagree.high - disagree.low) > 1.3 * (agree.high - agree.low)


def test_item_counts_resample_with_replacement():
    counts = item_counts(np.random.default_rng(0), 7, 50)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()
    assert (counts > 1).any()  # some item drawn twice


def test_deterministic_and_seeded():
    a, b = _acc([1.0, 0.0, 1.0, 1.0] * 10), _acc([0.0, 0.0, 1.0, 1.0] * 10)
    first = paired_delta(a, b, iterations=1000, seed=3)
    assert paired_delta(a, b, iterations=1000, seed=3) == first
    assert paired_delta(a, b, iterations=1000, seed=4) != first


def test_percentile_interval_and_flag():
    iv = percentile_interval(0.5, np.linspace(0.1, 0.9, 1001), 0.9)
    assert iv.low == pytest.approx(0.14) and iv.high == pytest.approx(0.86) and iv.significant


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="same items"):
        paired_delta(_acc([1.0, 0.0]), _acc([1.0]))
    with pytest.raises(ValueError, match="non-empty"):
        ItemScores(np.zeros((1, 0)), np.zeros((1, 0)))


def test_fast_enough():
    rng = np.random.default_rng(0)
    a = _acc(*(list(rng.random(1000) < 0.5) for _ in range(3)))
    b = _acc(*(list(rng.random(1000) < 0.5) for _ in range(2)))
    # CPU seconds of this process, not wall time: a guard against an accidentally quadratic
    # bootstrap that neighbours on a shared 2-core machine cannot fail (it did once, on wall)
    start = time.process_time()
    paired_delta(a, b, iterations=10_000, task="speed")
    assert time.process_time() - start < 5.0  # typically well under a second
