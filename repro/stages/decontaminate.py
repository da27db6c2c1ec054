"""Stage `decontaminate`: drop a dataset's training documents that overlap the experiment's
evaluation tasks (word n-grams, datatrove; see repro.data.decont for what is matched).

Inputs: `split` (a split output: train.jsonl is read), `task:<name>` per local task
(evaltasks outputs); standard lm-eval tasks are loaded by name. Outputs:
  `docs`     train.jsonl    kept training documents, `{"id", "text"}`, in the split's order
                            (the layout the tokenize stage reads)
             removed.jsonl  removed documents with the task and n-gram that matched
  `metrics`  docs/chars in and out, documents and characters removed per task, and per task
             the items and distinct n-grams indexed (0 n-grams: the task cannot match).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from repro.eval.local_tasks import read_manifest
from repro.jsonl import iter_rows
from repro.stages.base import StageIO, atomic_dir, log, write_json
from repro.stages.configs import DecontaminateConfig
from repro.stages.kind import DATA_PARAMS, ENV, METRICS, StageKind, data

TRAIN_FILE = "train.jsonl"
REMOVED_FILE = "removed.jsonl"


def _line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def run(cfg: DecontaminateConfig, io: StageIO) -> None:
    from itertools import chain

    from repro.data.decont import build_index, find_contaminated, local_task_items, standard_task_items  # imports datatrove: `repro compile` imports every stage module
    train = io.input("split") / TRAIN_FILE
    if not train.exists():
        raise FileNotFoundError(f"{train} is missing: input `split` must be a split output")
    task_dirs = io.inputs_with_prefix("task")
    if sorted(task_dirs) != sorted(cfg.local_tasks):
        raise ValueError(f"local task inputs {sorted(task_dirs)} do not match the config's "
                         f"local_tasks {sorted(cfg.local_tasks)}; rerun `repro compile`")
    for name, folder in task_dirs.items():
        if read_manifest(folder)["name"] != name:
            raise ValueError(f"input task:{name} holds task {read_manifest(folder)['name']!r}; "
                             "the compiler and evaltasks outputs disagree: rerun `repro compile`")
    items = chain(*(local_task_items(task_dirs[n]) for n in sorted(task_dirs)),
                  standard_task_items(list(cfg.tasks)))
    index = Path(tempfile.mkdtemp(prefix="repro-decont-"))
    try:
        indexed = build_index(items, cfg.decontamination, index, tasks=sorted(task_dirs))
        docs_in = chars_in = 0
        removed_docs: Counter[str] = Counter()
        removed_chars: Counter[str] = Counter()
        with atomic_dir(io.output("docs")) as out, \
                open(out / TRAIN_FILE, "w", encoding="utf-8", newline="\n") as kept, \
                open(out / REMOVED_FILE, "w", encoding="utf-8", newline="\n") as removed:
            for row, match in find_contaminated(iter_rows(train), index, cfg.decontamination):
                docs_in += 1
                chars_in += len(row["text"])
                if match is None:
                    kept.write(_line({"id": row["id"], "text": row["text"]}))
                    continue
                removed_docs[match.task] += 1
                removed_chars[match.task] += len(row["text"])
                removed.write(_line({"id": row["id"], "text": row["text"], "task": match.task,
                                     "ngram": match.ngram}))
    finally:
        shutil.rmtree(index, ignore_errors=True)
    n_removed = sum(removed_docs.values())
    log(io.name, f"{cfg.dataset}: removed {n_removed} of {docs_in} training documents "
        f"({dict(sorted(removed_docs.items()))})")
    write_json(io.output("metrics"), {
        "dataset": cfg.dataset,
        "n_grams": cfg.decontamination.n_grams,
        "docs_in": docs_in,
        "docs_out": docs_in - n_removed,
        "chars_in": chars_in,
        "chars_out": chars_in - sum(removed_chars.values()),
        "removed": dict(sorted(removed_docs.items())),
        "removed_chars": dict(sorted(removed_chars.items())),
        "index": indexed,
    })


KIND = StageKind(
    config=DecontaminateConfig,
    outputs={"docs": data("data/decontaminated"), "metrics": METRICS, "env": ENV},
    run=run,
    params_file=DATA_PARAMS,
)
