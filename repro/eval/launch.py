"""Data-parallel evaluation: re-launch the evaluate stage under `accelerate launch`.

lm-eval's documented multi-GPU data parallelism is `accelerate launch -m lm_eval ...` with
the `hf` model: every process loads the whole model, takes its share of the requests, and
rank 0 gathers the results. The evaluate stage does the same with its own worker
(`python -m repro.eval.worker PAYLOAD`), as the train stage re-launches under torchrun
(repro.train.distributed), so the outputs are written by the same code on rank 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

LAUNCHED_ENV = "REPRO_EVAL_LAUNCHED"
"""Set in the launched processes: the stage runs the evaluation instead of launching."""


def under_launcher() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def accelerate_command(num_processes: int, payload: Path, *, cpu: bool = False) -> list[str]:
    """`accelerate launch` running the evaluate worker in `num_processes` processes.
    `cpu` forces CPU processes (tests only: the stage needs GPUs for this backend)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           f"--num_processes={num_processes}", "--num_machines=1", "--mixed_precision=no",
           "--dynamo_backend=no"]
    cmd += ["--cpu"] if cpu else (["--multi_gpu"] if num_processes > 1 else [])
    return cmd + ["-m", "repro.eval.worker", str(payload)]


def write_payload(path: Path, name: str, config: Mapping[str, Any],
                  inputs: Mapping[str, Path], outputs: Mapping[str, Path]) -> Path:
    """The stage's validated config and paths, so the workers do not depend on how this
    process was started (CLI, DVC or a test)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "name": name, "config": dict(config),
        "inputs": {k: str(Path(v).resolve()) for k, v in inputs.items()},
        "outputs": {k: str(Path(v).resolve()) for k, v in outputs.items()},
    }, sort_keys=True), encoding="utf-8")
    return path


def relaunch_with_accelerate(num_processes: int, payload: Path, *, cpu: bool = False) -> None:
    """Run the worker under accelerate; raise with the exit status if a process failed."""
    env = dict(os.environ)
    env[LAUNCHED_ENV] = "1"
    # Like torchrun, accelerate would leave one thread per process unless told: give each
    # process an equal share of the cores.
    env.setdefault("OMP_NUM_THREADS",
                   str(max(1, len(os.sched_getaffinity(0)) // num_processes)))
    rc = subprocess.call(accelerate_command(num_processes, payload, cpu=cpu), env=env)
    if rc != 0:
        raise RuntimeError(f"accelerate launch with {num_processes} evaluation processes "
                           f"exited with status {rc}; the processes' errors are printed above")
