"""Warmup-stable-decay learning rate, as a pure function of the global step.

Steps are counted from 1: step n is the n-th optimizer update of the whole run, so a stage
with `step_start` s and `steps` k applies updates s+1 .. s+k, and the compiler's
`decay_end_step` (the run's last step) is the step whose LR reaches the floor.

  warmup  m = n - start_step <= warmup_steps: peak * m / warmup_steps (linear from 0; the
          first update is not 0; start_step is 0 unless a stage restarts the schedule)
  stable  until decay_start_step: peak
  decay   progress p = (n - decay_start) / (decay_end - decay_start) in [0, 1]
          lr = floor + (peak - floor) * f(p), floor = min_lr_ratio * peak
          linear f = 1 - p (SmolLM3, FACTS 3.9); 1-sqrt f = 1 - sqrt(p) (Hägele et al.,
          FACTS 8.2); cosine f = (1 + cos(pi p)) / 2.
A segment without decay (decay_start_step None: the run's decay starts after this stage)
stays at the peak after warmup. If warmup and decay overlap, the lower value wins.
"""

from __future__ import annotations

import math

from repro.stages.configs import ScheduleSegment


def decay_factor(shape: str, progress: float) -> float:
    p = min(max(progress, 0.0), 1.0)
    if shape == "linear":
        return 1.0 - p
    if shape == "1-sqrt":
        return 1.0 - math.sqrt(p)
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"unknown decay shape {shape!r}; use linear, 1-sqrt or cosine")


def lr_at(seg: ScheduleSegment, step: int) -> float:
    """LR of global update `step` (1-based)."""
    if step < 1:
        raise ValueError(f"steps are counted from 1, got {step}")
    lr = seg.peak_lr
    local = step - seg.start_step  # updates since the schedule (re)started
    if local < 1:
        raise ValueError(f"step {step} comes before this schedule starts (after step {seg.start_step})")
    if seg.warmup_steps and local <= seg.warmup_steps:
        lr = seg.peak_lr * local / seg.warmup_steps
    if seg.decay_start_step is not None and step > seg.decay_start_step:
        if seg.decay_end_step is None:
            raise ValueError("decay_start_step is set but decay_end_step is not; set both or neither")
        span = max(seg.decay_end_step - seg.decay_start_step, 1)
        floor = seg.min_lr_ratio * seg.peak_lr
        decayed = floor + (seg.peak_lr - floor) * decay_factor(seg.decay_shape, (step - seg.decay_start_step) / span)
        lr = min(lr, decayed)
    return lr
