"""Stopping a train stage cleanly when the cluster asks (issue 21: preemption, time limits).

Slurm ends a job it preempts, requeues or runs out of time by sending SIGTERM to every
process of the job's steps, then SIGKILL `KillWait` seconds later (30 s by default); a
launcher given `--signal=B:USR1@grace` first tells the batch script, which requeues the job
(repro.launch.slurm), and torchrun passes a SIGTERM it gets on to its workers. A stage that
simply died there would resume from its last periodic in-stage checkpoint and redo up to
`checkpoint_every_steps` updates. Instead, once SIGTERM or SIGUSR1 arrives, the loop
finishes the update it is in, writes the resumable state of that update
(repro.train.resume, atomically, as a periodic checkpoint) and stops with `Preempted`; the
next attempt resumes from exactly there, bitwise, as from any checkpoint. The handler only
sets a flag: nothing is written from inside a signal handler.

With several processes every rank must stop after the same update (one rank leaving alone
would leave the others waiting in the next collective), so the ranks agree after each
update on whether any of them was signalled: a max over one value, a collective the size
of a flag (one process: no collective, nothing added to the step).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import torch

from repro.errors import ReproError
from repro.train.distributed import DistContext, all_max_

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
"""SIGTERM: what Slurm (and torchrun, and `kill`) sends before killing; SIGUSR1: what
`sbatch --signal=USR1@grace` sends ahead of a time limit, when it is sent to the steps."""


class Preempted(ReproError):
    """The stage stopped on a signal after writing its resumable state: rerun it (or let
    the requeued job run) to resume from that update. Exit status 128 + the signal, as a
    process killed by it would report."""

    def __init__(self, signum: int, done: int, steps: int, resume_dir: Path) -> None:
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} after update {done} of {steps}; the state of that update "
            f"is saved in {resume_dir}",
            fix="rerun the stage (`dvc repro`, or the requeued Slurm job): it resumes from "
                "that update and ends with the bytes of an uninterrupted run")
        self.exit_status = 128 + signum
        self.signum, self.done = signum, done


class StopRequest:
    """A context manager that turns STOP_SIGNALS into a request the loop reads between
    updates; the previous handlers are restored on exit. Signal handlers can only be set
    from the main thread: elsewhere (a test's thread) the signals keep their handlers and
    no request is ever made."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def agreed(self, ctx: DistContext) -> int | None:
        """The signal to stop on, if any rank got one (the same answer on every rank); None
        to go on."""
        if not ctx.enabled:
            return self.signum
        flag = torch.tensor([float(self.signum or 0)], device=ctx.device)
        signum = int(all_max_(ctx, flag).item())
        return signum or None
