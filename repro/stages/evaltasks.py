"""evaltasks stage: build one local lm-eval task from a dataset's held-out split.

Input `split` (folder with heldout.jsonl); output `task` (folder: data.jsonl + task.json).
The task is data only; the evaluate stage writes the lm-eval YAML pointing at it.
"""

from __future__ import annotations

from repro.eval.local_tasks import DATA_FILE, MANIFEST_FILE, build_task, read_heldout
from repro.stages.base import StageIO, atomic_dir, dumps_json
from repro.stages.configs import EvalTasksConfig
from repro.stages.kind import ENV, StageKind, data


def run(cfg: EvalTasksConfig, io: StageIO) -> None:
    heldout = io.input("split") / "heldout.jsonl"
    if not heldout.exists():
        raise FileNotFoundError(f"{heldout} is missing: input `split` must be a split output")
    docs = read_heldout(heldout)
    data, manifest = build_task(cfg.task, docs, cfg.seed)
    with atomic_dir(io.output("task")) as out:
        (out / DATA_FILE).write_bytes(data)
        (out / MANIFEST_FILE).write_text(dumps_json(manifest), encoding="utf-8")


KIND = StageKind(
    config=EvalTasksConfig,
    outputs={"task": data("data/evaltasks"), "env": ENV},
    run=run,
)
