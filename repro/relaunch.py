"""Relaunching a stage on several processes: the one convention both launchers follow.

The train stage runs under torchrun (repro.train.distributed) and the evaluate stage under
`accelerate launch` (repro.eval.launch). Each launcher is given the worker to run, as the
arguments after `python` (`-m repro.stages.worker PAYLOAD`, repro.stages.worker), so the
layers below the stages never name a stage module; and each returns when every process
succeeded or raises RelaunchError naming the launcher and its exit status.
"""

from __future__ import annotations

import os
import subprocess
from typing import Mapping, Sequence

WorkerArgs = Sequence[str]
"""A worker command without its interpreter: `["-m", "<module>", *args]`."""


class RelaunchError(RuntimeError):
    """A relaunched stage's process failed. Not a ReproError: the processes print their own
    errors (a traceback each) above, and nothing here is wrong with the user's input."""


def cores_per_process(processes: int) -> int:
    """An equal share of this process's cores (launchers default to one thread each)."""
    return max(1, len(os.sched_getaffinity(0)) // processes)


def run_launcher(cmd: Sequence[str], env: Mapping[str, str], what: str) -> None:
    """Run launcher command `cmd` to completion; RelaunchError if it exited non-zero."""
    rc = subprocess.call(list(cmd), env=dict(env))
    if rc != 0:
        raise RelaunchError(f"{what} exited with status {rc}; the processes' errors are "
                            "printed above")
