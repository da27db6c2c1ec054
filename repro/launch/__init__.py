"""Launchers: where a stage's processes run when its spec's `launcher` says so.

`local` (the default) is the stage's own `run` in this process, which relaunches itself under
torchrun or accelerate as `distributed`/`evaluation` ask (repro.relaunch). `slurm`
(repro.launch.slurm) submits one Slurm job running the same worker (repro.stages.worker) and
waits for it, so `dvc repro` treats a cluster job like any other stage command.

Execution only: a launcher decides where the outputs are computed, never what they are
(repro.stages.kind makes a LauncherSpec field execution-only), and nothing here is a code
dependency of a stage (repro.compile.code_deps.NOT_CODE).
"""
