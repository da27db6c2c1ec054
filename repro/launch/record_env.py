"""`python -m repro.launch.record_env KIND PATH`: a Slurm job's environment record.

`repro stage` writes a stage's `env` output (repro.environment.fingerprint: CPU, torch build,
GPU, thread settings) after the stage's `run` returns, in its own process. Under the Slurm
launcher that process waits on a login node, whose CPU and (lack of) GPU say nothing about
where the outputs were computed, so the job's batch step writes the fingerprint on the job's
first node once its step succeeded, in a process that imported the stage's module as
`repro stage` has by then; repro.launch.slurm hands it to `repro stage`, which adds the run's
wall seconds as it does for a local stage.
"""

from __future__ import annotations

import sys
from pathlib import Path

from repro.environment import fingerprint
from repro.jsonio import write_json
from repro.numerics import pin_numerics_env
from repro.stages import kind as stage_kind


def main(argv: list[str]) -> int:
    kind, path = argv
    pin_numerics_env()  # as `repro stage` and the stage's worker do, before torch loads
    stage_kind(kind)  # imports the stage's module (torch for train and evaluate)
    write_json(Path(path), fingerprint())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
