"""WSD schedule factors at the steps that matter, for every decay shape; the schedule is a
shape (no LR of its own) and its factor is rounded as the LR-in-the-schedule loop did."""

from __future__ import annotations

import math

import pytest

from repro.train.schedule import ScheduleSegment, multiplier_at


def seg(shape="linear", start=80, end=100, warmup=10, floor=0.0):
    if start is None:
        return ScheduleSegment(warmup_steps=warmup)
    return ScheduleSegment(warmup_steps=warmup, decay_start_step=start,
                           decay_end_step=end, decay_shape=shape, min_lr_ratio=floor)


def test_warmup_then_constant():
    s = seg(start=None, end=None)
    assert multiplier_at(s, 1) == pytest.approx(0.1)  # linear from 0: first update is 1/warmup
    assert multiplier_at(s, 5) == pytest.approx(0.5)
    assert multiplier_at(s, 10) == 1.0
    assert multiplier_at(s, 11) == multiplier_at(s, 1000) == 1.0  # no decay within this segment
    assert multiplier_at(seg(warmup=0, start=None, end=None), 1) == 1.0


@pytest.mark.parametrize("shape,quarter", [
    ("linear", 0.75), ("1-sqrt", 0.5), ("cosine", 0.5 * (1 + math.cos(math.pi / 4))),
])
def test_decay_shapes(shape, quarter):
    s = seg(shape)
    assert multiplier_at(s, 80) == 1.0  # decay_start_step is the last step at the peak
    assert multiplier_at(s, 85) == pytest.approx(quarter)  # progress 1/4
    assert multiplier_at(s, 90) == pytest.approx({"linear": 0.5, "1-sqrt": 1 - math.sqrt(0.5), "cosine": 0.5}[shape])
    assert multiplier_at(s, 100) == pytest.approx(0.0, abs=1e-12)  # the last step reaches the floor
    values = [multiplier_at(s, n) for n in range(80, 101)]
    assert values == sorted(values, reverse=True)


def test_min_lr_ratio_floor():
    s = seg("1-sqrt", floor=0.1)
    assert multiplier_at(s, 100) == pytest.approx(0.1)
    assert multiplier_at(s, 85) == pytest.approx(0.1 + 0.9 * 0.5)


def test_steps_count_from_one():
    with pytest.raises(ValueError, match="from 1"):
        multiplier_at(seg(), 0)


def test_restarted_schedule_warms_up_from_its_own_start():
    """A long-context stage restarting the schedule at step 100: warmup counts from there,
    cosine to 0 at its last step (FACTS 3.10)."""
    seg = ScheduleSegment(start_step=100, warmup_steps=10, decay_start_step=110,
                          decay_end_step=200, decay_shape="cosine", min_lr_ratio=0.0)
    assert multiplier_at(seg, 101) == pytest.approx(0.1)
    assert multiplier_at(seg, 110) == 1.0
    assert multiplier_at(seg, 155) == pytest.approx(0.5)
    assert multiplier_at(seg, 200) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="before this schedule starts"):
        multiplier_at(seg, 100)


def test_the_schedule_holds_no_lr():
    """The LR lives once, in the optimizer settings (issue 18): the shape has no LR field."""
    assert not [f for f in ScheduleSegment.model_fields if "lr" in f and f != "min_lr_ratio"]


def test_reference_rounding_is_the_lr_in_the_schedule_arithmetic():
    """At a reference LR the factor is (peak-scaled value) / peak, operation for operation
    the old `lr_at(step) / reference_lr`, so checkpoints keep their bytes; the exact factor
    (reference 1.0) differs from it in the last bit at some steps, and only there."""
    s = seg("1-sqrt", start=80, end=100, warmup=10)
    peak = 3e-3
    old = [min(peak * n / 10 if n <= 10 else peak,
               peak * (1 - math.sqrt((n - 80) / 20)) if n > 80 else peak) / peak
           for n in range(1, 101)]
    assert [multiplier_at(s, n, peak) for n in range(1, 101)] == old
    exact = [multiplier_at(s, n) for n in range(1, 101)]
    assert exact != old and exact == pytest.approx(old, rel=1e-15, abs=1e-18)
    with pytest.raises(ValueError, match="> 0"):
        multiplier_at(s, 1, 0.0)
