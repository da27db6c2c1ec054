"""Warmup-stable-decay LR schedule as a shape: a multiplier in [0, 1] of every optimizer
group's LR, as a pure function of the global step.

The LR itself lives once, in the optimizer settings (AdamW's `lr`; for Muon its `lr` and its
`adamw.lr`); the schedule holds no LR, so a params.yaml change of `optimizer.lr` is what
trains differently (issue 18). This is torchtitan's and nanoGPT's split too: a
`LambdaLR`-style factor on the optimizer's LR.

Steps are counted from 1: step n is the n-th optimizer update of the whole run, so a phase
with `step_start` s and `steps` k applies updates s+1 .. s+k, and the compiler's
`decay_end_step` (the run's last step) is the step whose factor reaches the floor.

  warmup  m = n - start_step <= warmup_steps: m / warmup_steps (linear from 0; the first
          update is not 0; start_step is 0 unless a phase restarts the schedule)
  stable  until decay_start_step: 1
  decay   progress p = (n - decay_start) / (decay_end - decay_start) in [0, 1]
          factor = r + (1 - r) * f(p), r = min_lr_ratio
          linear f = 1 - p (SmolLM3, FACTS 3.9); 1-sqrt f = 1 - sqrt(p) (Hägele et al.,
          FACTS 8.2); cosine f = (1 + cos(pi p)) / 2.
A segment without decay (decay_start_step None: the run's decay starts after this phase)
stays at 1 after warmup. If warmup and decay overlap, the lower value wins.

Float arithmetic. `multiplier_at(seg, n, reference)` evaluates the shape at peak `reference`
and divides it back out. With `reference` = the optimizer's reference LR (AdamW's; for Muon
its AdamW part's: `repro.train.optim.reference_lr`) this is, operation for operation, what
the loop computed when the schedule stored that LR as its peak, so checkpoints trained
before the change keep their bytes; the exact factor (reference 1.0) differs from it in the
last bit at a few steps (e.g. 3 of qs-nope's 100).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from repro.spec.base import FieldError, Model, Steps

DecayShape = Literal["linear", "1-sqrt", "cosine"]


class ScheduleSegment(Model):
    """The part of the LR schedule a training phase needs, resolved to global steps: only
    what changes the factor at one of the phase's updates, so that another phase's budget
    enters a phase only where it moves its LR (a warmup the phase starts after is left out,
    and a decay it ends before). A shape only: it multiplies the optimizer's LRs (every group
    by the same factor)."""

    start_step: Steps = 0
    """Global step before the warmup's first update: 0 for the experiment's schedule, the
    step before a phase that restarts the schedule with a warmup of its own. Only a warmup
    counts from it, so it is 0 without one."""
    warmup_steps: Steps = 0
    """Warmup steps, counted from start_step; 0 where no warmup reaches the phase."""
    decay_start_step: Steps | None = None
    """Global step where decay starts; None if this phase ends before the decay (the decay
    fields below are then None too)."""
    decay_end_step: Steps | None = None
    """Global step where decay ends (the schedule's last step)."""
    decay_shape: DecayShape | None = None
    """Decay shape."""
    min_lr_ratio: float | None = Field(default=None, ge=0, le=1)
    """Factor at the end of decay (the LR floor as a fraction of the optimizer's LR)."""

    @model_validator(mode="after")
    def _only_what_applies(self) -> ScheduleSegment:
        if self.start_step and not self.warmup_steps:
            raise FieldError(f"start_step is {self.start_step} without a warmup: it only says "
                             "where a warmup counts from", "set start_step to 0",
                             at=("start_step",))
        decay = {"decay_start_step": self.decay_start_step,
                 "decay_end_step": self.decay_end_step, "decay_shape": self.decay_shape,
                 "min_lr_ratio": self.min_lr_ratio}
        unset = [k for k, v in decay.items() if v is None]
        if unset and len(unset) < len(decay):
            raise FieldError(f"{', '.join(unset)} not set while the other decay fields are",
                             "set all four decay fields, or none (no decay in this stage)",
                             at=(unset[0],))
        if self.decay_start_step is not None and self.decay_end_step < self.decay_start_step:
            raise FieldError(f"decay_end_step {self.decay_end_step} comes before "
                             f"decay_start_step {self.decay_start_step}",
                             "end the decay at or after its start", at=("decay_end_step",))
        return self

    def for_phase(self, step_start: int, steps: int) -> ScheduleSegment:
        """This schedule as a phase with updates step_start+1 .. step_start+steps sees it:
        without a warmup that ends before the phase, or a decay that starts after it (the
        factor at each of its updates is unchanged; `check_applies` then passes)."""
        update: dict = {}
        if self.start_step + self.warmup_steps < step_start + 1:
            update |= {"start_step": 0, "warmup_steps": 0}
        if self.decay_start_step is not None and self.decay_start_step >= step_start + steps:
            update |= dict.fromkeys(("decay_start_step", "decay_end_step", "decay_shape",
                                     "min_lr_ratio"))
        return ScheduleSegment.model_validate({**self.model_dump(), **update})

    def check_applies(self, step_start: int, steps: int) -> None:
        """Refuse parts that change no update step_start+1 .. step_start+steps of a stage
        (a `dvc exp run -S` on them would rerun it for nothing)."""
        first, last = step_start + 1, step_start + steps
        if self.start_step > step_start:
            raise FieldError(f"start_step {self.start_step} is after this stage's first update "
                             f"{first}", f"set it to at most {step_start}", at=("start_step",))
        if self.warmup_steps and self.start_step + self.warmup_steps < first:
            raise FieldError(
                f"the warmup ends at step {self.start_step + self.warmup_steps}, before this "
                f"stage's first update {first}: it changes none of its LRs",
                "set warmup_steps and start_step to 0", at=("warmup_steps",))
        if self.decay_start_step is not None and self.decay_start_step >= last:
            raise FieldError(
                f"the decay starts after step {self.decay_start_step}, at or after this "
                f"stage's last update {last}: it changes none of its LRs",
                "set the four decay fields to null", at=("decay_start_step",))


def decay_factor(shape: str, progress: float) -> float:
    p = min(max(progress, 0.0), 1.0)
    if shape == "linear":
        return 1.0 - p
    if shape == "1-sqrt":
        return 1.0 - math.sqrt(p)
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"unknown decay shape {shape!r}; use linear, 1-sqrt or cosine")


def _value_at(seg: ScheduleSegment, step: int, peak: float) -> float:
    """The shape at global update `step` (1-based), scaled to `peak`."""
    if step < 1:
        raise ValueError(f"steps are counted from 1, got {step}")
    value = peak
    local = step - seg.start_step  # updates since the schedule (re)started
    if local < 1:
        raise ValueError(f"step {step} comes before this schedule starts (after step {seg.start_step})")
    if seg.warmup_steps and local <= seg.warmup_steps:
        value = peak * local / seg.warmup_steps
    if seg.decay_start_step is not None and step > seg.decay_start_step:
        span = max(seg.decay_end_step - seg.decay_start_step, 1)
        floor = seg.min_lr_ratio * peak
        decayed = floor + (peak - floor) * decay_factor(seg.decay_shape, (step - seg.decay_start_step) / span)
        value = min(value, decayed)
    return value


def multiplier_at(seg: ScheduleSegment, step: int, reference: float = 1.0) -> float:
    """Factor in [0, 1] on every group's LR at global update `step` (1-based). `reference`
    only picks the float rounding (see the module docstring): pass the optimizer's
    reference LR to reproduce checkpoints trained with the LR in the schedule."""
    if not reference > 0:
        raise ValueError(f"reference LR must be > 0, got {reference}")
    return _value_at(seg, step, reference) / reference
