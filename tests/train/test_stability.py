"""The stability guard: NaN/Inf and spikes map to the spec's action, deterministically,
and its state survives a resume."""

from __future__ import annotations

import math

import pytest

from repro.spec.schema import StabilitySpec
from repro.train.stability import StabilityGuard, TrainingStopped


def test_nonfinite_actions():
    assert StabilityGuard(StabilitySpec(on_nonfinite="skip")).check(3, math.nan, 1.0) == "skip"
    assert StabilityGuard(StabilitySpec(on_nonfinite="rollback")).check(3, 1.0, math.inf) == "rollback"
    with pytest.raises(TrainingStopped, match="step 3: nonfinite.*on_nonfinite is `stop`"):
        StabilityGuard(StabilitySpec()).check(3, math.nan, 1.0)


def test_spike_needs_a_full_window_and_is_one_sided():
    g = StabilityGuard(StabilitySpec(on_spike="skip", spike_window=5, spike_z=3.0))
    for i, loss in enumerate([2.0, 2.1, 1.9, 2.0, 100.0]):  # window not full yet: no spike
        assert g.check(i + 1, loss, 1.0) == "ok"
    g = StabilityGuard(StabilitySpec(on_spike="skip", spike_window=5, spike_z=3.0))
    for i, loss in enumerate([2.0, 2.1, 1.9, 2.0, 2.05]):
        assert g.check(i + 1, loss, 1.0) == "ok"
    assert g.check(6, 0.1, 1.0) == "ok"  # a sudden drop is not a spike
    assert g.check(7, 9.0, 1.0) == "skip"
    assert [(e.step, e.kind, e.action) for e in g.events] == [(7, "spike", "skip")]
    assert 9.0 not in g.window  # a skipped step does not enter the window


def test_too_many_events_stop_and_state_round_trips():
    g = StabilityGuard(StabilitySpec(on_nonfinite="skip", max_events=2))
    g.check(1, 2.0, 1.0)
    g.check(2, math.nan, 1.0)
    h = StabilityGuard(StabilitySpec(on_nonfinite="skip", max_events=2))
    h.load_state_dict(g.state_dict())
    assert list(h.window) == [2.0] and len(h.events) == 1
    h.check(3, math.nan, 1.0)
    with pytest.raises(TrainingStopped, match="3 stability events"):
        h.check(4, math.nan, 1.0)
    assert g.events[0].as_dict()["loss"] == "nan"
