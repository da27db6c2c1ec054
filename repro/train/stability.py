"""Deciding what to do about a non-finite or spiking loss.

The guard sees each step's (global-mean) loss and gradient norm after the backward pass
and before the update, and answers `ok`, `skip` (no update), `rollback` (restore the last
snapshot and lower the LR) or `stop`. Its inputs are deterministic values of the run, so a
rerun takes the same decisions at the same steps; its state (the loss window, the events)
is part of the resumable state.

Spike test: z = (loss - mean) / std over the last `spike_window` accepted steps' losses
(a full window is required; skipped steps do not enter it). One-sided: only rises count.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

from repro.errors import ReproError
from repro.spec.schema import StabilitySpec


class TrainingStopped(ReproError, RuntimeError):
    """The stability policy stopped training; the message says why and what to change."""


@dataclass(frozen=True)
class StabilityEvent:
    step: int
    kind: str  # "nonfinite" | "spike"
    action: str  # "skip" | "rollback" | "stop"
    loss: float
    grad_norm: float
    z: float | None

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("loss", "grad_norm", "z"):  # JSON has no NaN/Inf: write them as strings
            if d[k] is not None and not math.isfinite(d[k]):
                d[k] = str(d[k])
        return d


class StabilityGuard:
    def __init__(self, spec: StabilitySpec) -> None:
        self.spec = spec
        self.window: deque[float] = deque(maxlen=spec.spike_window)
        self.events: list[StabilityEvent] = []

    def _z(self, loss: float) -> float | None:
        if len(self.window) < self.window.maxlen:
            return None
        mean = sum(self.window) / len(self.window)
        var = sum((x - mean) ** 2 for x in self.window) / (len(self.window) - 1)
        std = math.sqrt(var)
        return (loss - mean) / std if std > 0 else None

    def check(self, step: int, loss: float, grad_norm: float) -> str:
        """The action for this step: ok, skip, rollback or stop (raises TrainingStopped)."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            kind, action, z = "nonfinite", self.spec.on_nonfinite, None
        else:
            z = self._z(loss)
            if z is None or z <= self.spec.spike_z or self.spec.on_spike == "none":
                self.window.append(loss)
                return "ok"
            kind, action = "spike", self.spec.on_spike
        event = StabilityEvent(step, kind, action, loss, grad_norm, z)
        self.events.append(event)
        what = (f"loss {loss:.4g}, gradient norm {grad_norm:.4g}" if kind == "nonfinite"
                else f"loss {loss:.4g} is {z:.1f} standard deviations above the last "
                     f"{len(self.window)} steps (spike_z {self.spec.spike_z})")
        if action == "stop":
            raise TrainingStopped(
                f"step {step}: {kind} ({what}); training.stability.on_{'nonfinite' if kind == 'nonfinite' else 'spike'}"
                " is `stop`. Lower the LR, raise warmup, enable qk_clip or z_loss, or set it to "
                "`skip` or `rollback`"
            )
        if len(self.events) > self.spec.max_events:
            raise TrainingStopped(
                f"step {step}: {len(self.events)} stability events in this stage (max_events "
                f"{self.spec.max_events}); the run is not recovering. Events: "
                + "; ".join(f"step {e.step} {e.kind}->{e.action}" for e in self.events[-5:])
            )
        return action

    def state_dict(self) -> dict:
        return {"window": list(self.window), "events": [asdict(e) for e in self.events]}

    def load_state_dict(self, state: dict) -> None:
        self.window = deque(state["window"], maxlen=self.spec.spike_window)
        self.events = [StabilityEvent(**e) for e in state["events"]]
