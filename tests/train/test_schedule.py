"""WSD schedule values at the steps that matter, for every decay shape."""

from __future__ import annotations

import math

import pytest

from repro.stages.configs import ScheduleSegment
from repro.train.schedule import lr_at


def seg(shape="linear", start=80, end=100, warmup=10, floor=0.0):
    return ScheduleSegment(peak_lr=1.0, warmup_steps=warmup, decay_start_step=start,
                           decay_end_step=end, decay_shape=shape, min_lr_ratio=floor)


def test_warmup_then_constant():
    s = seg(start=None, end=None)
    assert lr_at(s, 1) == pytest.approx(0.1)  # linear from 0: first update is peak/warmup
    assert lr_at(s, 5) == pytest.approx(0.5)
    assert lr_at(s, 10) == 1.0
    assert lr_at(s, 11) == lr_at(s, 1000) == 1.0  # no decay within this segment
    assert lr_at(seg(warmup=0, start=None, end=None), 1) == 1.0


@pytest.mark.parametrize("shape,quarter", [
    ("linear", 0.75), ("1-sqrt", 0.5), ("cosine", 0.5 * (1 + math.cos(math.pi / 4))),
])
def test_decay_shapes(shape, quarter):
    s = seg(shape)
    assert lr_at(s, 80) == 1.0  # decay_start_step is the last step at the peak
    assert lr_at(s, 85) == pytest.approx(quarter)  # progress 1/4
    assert lr_at(s, 90) == pytest.approx({"linear": 0.5, "1-sqrt": 1 - math.sqrt(0.5), "cosine": 0.5}[shape])
    assert lr_at(s, 100) == pytest.approx(0.0, abs=1e-12)  # the last step reaches the floor
    values = [lr_at(s, n) for n in range(80, 101)]
    assert values == sorted(values, reverse=True)


def test_min_lr_ratio_floor():
    s = seg("1-sqrt", floor=0.1)
    assert lr_at(s, 100) == pytest.approx(0.1)
    assert lr_at(s, 85) == pytest.approx(0.1 + 0.9 * 0.5)


def test_steps_count_from_one():
    with pytest.raises(ValueError, match="from 1"):
        lr_at(seg(), 0)


def test_restarted_schedule_warms_up_from_its_own_start():
    """A long-context stage restarting the schedule at step 100: warmup counts from there,
    cosine to 0 at its last step (FACTS 3.10)."""
    seg = ScheduleSegment(peak_lr=2e-5, start_step=100, warmup_steps=10, decay_start_step=110,
                          decay_end_step=200, decay_shape="cosine", min_lr_ratio=0.0)
    assert lr_at(seg, 101) == pytest.approx(2e-6)
    assert lr_at(seg, 110) == pytest.approx(2e-5)
    assert lr_at(seg, 155) == pytest.approx(1e-5)
    assert lr_at(seg, 200) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="before this schedule starts"):
        lr_at(seg, 100)
