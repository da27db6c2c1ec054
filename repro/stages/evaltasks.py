"""evaltasks stage: build one local lm-eval task from a dataset's held-out split.

Input `split` (folder with heldout.jsonl); output `task`, a folder lm-eval reads as it is:
data.jsonl, task.json (manifest), `<task name>.yaml` (the lm-eval task) and the
task_loader.py it names to read the data next to it. `lm_eval --include_path <folder>
--tasks <task name>` scores it from any working directory, and the evaluate stage scores
with these same files (repro.eval.local_tasks.task_yaml).
"""

from __future__ import annotations

from repro.eval.local_tasks import build_task, read_heldout, task_files
from repro.stages.base import StageIO, atomic_dir
from repro.stages.configs import EvalTasksConfig
from repro.stages.kind import DATA_PARAMS, ENV, StageKind, data


def run(cfg: EvalTasksConfig, io: StageIO) -> None:
    heldout = io.input("split") / "heldout.jsonl"
    if not heldout.exists():
        raise FileNotFoundError(f"{heldout} is missing: input `split` must be a split output")
    docs = read_heldout(heldout)
    data_bytes, manifest = build_task(cfg.task, docs, cfg.seed)
    with atomic_dir(io.output("task")) as out:
        for name, content in task_files(data_bytes, manifest).items():
            (out / name).write_bytes(content)


KIND = StageKind(
    config=EvalTasksConfig,
    outputs={"task": data("data/evaltasks"), "env": ENV},
    run=run,
    params_file=DATA_PARAMS,
)
