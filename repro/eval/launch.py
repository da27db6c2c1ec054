"""Data-parallel evaluation: re-launch the evaluate stage under `accelerate launch`.

lm-eval's documented multi-GPU data parallelism is `accelerate launch -m lm_eval ...` with
the `hf` model: every process loads the whole model, takes its share of the requests, and
rank 0 gathers the results. The evaluate stage does the same with the stages' worker
(`python -m repro.stages.worker PAYLOAD`), as the train stage re-launches under torchrun
(repro.train.distributed), so the outputs are written by the same code on rank 0.
"""

from __future__ import annotations

import os
import sys

from repro.relaunch import WorkerArgs, cores_per_process, run_launcher

LAUNCHED_ENV = "REPRO_EVAL_LAUNCHED"
"""Set in the launched processes: the stage runs the evaluation instead of launching."""


def under_launcher() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def accelerate_command(num_processes: int, worker: WorkerArgs, *, cpu: bool = False) -> list[str]:
    """`accelerate launch` running `python <worker>` in `num_processes` processes. `cpu`
    forces CPU processes (tests only: the stage needs GPUs for this backend)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           f"--num_processes={num_processes}", "--num_machines=1", "--mixed_precision=no",
           "--dynamo_backend=no"]
    cmd += ["--cpu"] if cpu else (["--multi_gpu"] if num_processes > 1 else [])
    return cmd + list(worker)


def relaunch_with_accelerate(num_processes: int, worker: WorkerArgs, *, cpu: bool = False) -> None:
    """Run `python <worker>` under accelerate (the stage's payload in its arguments makes the
    processes independent of how this one was started: CLI, DVC or a test); RelaunchError
    if a process failed (repro.relaunch)."""
    env = dict(os.environ)
    env[LAUNCHED_ENV] = "1"
    # Like torchrun, accelerate would leave one thread per process unless told: give each
    # process an equal share of the cores.
    env.setdefault("OMP_NUM_THREADS", str(cores_per_process(num_processes)))
    run_launcher(accelerate_command(num_processes, worker, cpu=cpu), env,
                 f"accelerate launch with {num_processes} evaluation processes")
