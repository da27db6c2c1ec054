"""One process of a relaunched stage: `python -m repro.stages.worker PAYLOAD`.

A stage that runs on several processes relaunches itself: train under torchrun
(repro.train.distributed), evaluate under `accelerate launch` (repro.eval.launch). It writes
PAYLOAD (its kind, its validated config as in params.yaml, its input and output paths) and
hands the launcher `worker_args(payload)`; the launcher starts this module in every process
(repro.relaunch). Each process validates the config with its kind's own model and runs the
kind's `run`, which finds itself under the launcher and does the work; rank 0 writes the
outputs. One entry point for every kind, so the launchers below the stages never name one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from repro.errors import ReproError
from repro.numerics import pin_numerics_env
from repro.relaunch import WorkerArgs
from repro.spec.schema import Model
from repro.stages import kind as stage_kind
from repro.stages.base import StageIO

MODULE = "repro.stages.worker"


def write_payload(path: Path, kind: str, cfg: Model, io: StageIO) -> WorkerArgs:
    """Write the stage's kind, config and paths to `path`; the worker command to launch.
    Paths are kept as the stage got them: the launchers start every process in this
    process's working directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "kind": kind, "name": io.name, "config": cfg.model_dump(mode="json"),
        "inputs": {k: str(v) for k, v in io.inputs.items()},
        "outputs": {k: str(v) for k, v in io.outputs.items()},
    }, sort_keys=True), encoding="utf-8")
    return worker_args(path)


def worker_args(payload: Path) -> WorkerArgs:
    return ["-m", MODULE, str(payload)]


def main(argv: list[str]) -> int:
    pin_numerics_env()  # before the stage module imports torch (launchers pass the env anyway)
    payload = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    kind = stage_kind(payload["kind"])
    cfg = kind.config.model_validate(payload["config"])
    io = StageIO(payload["name"], {k: Path(v) for k, v in payload["inputs"].items()},
                 {k: Path(v) for k, v in payload["outputs"].items()})
    try:
        kind.run(cfg, io)
    except ReproError as e:  # one line and its exit status, not a traceback per rank (a
        print(f"error: {e}", file=sys.stderr)  # preempted rank: 128 + the signal)
        return e.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
