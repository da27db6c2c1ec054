"""evaluate stage: score one checkpoint with lm-eval on local and standard tasks.

Inputs: `checkpoint` (save_pretrained folder with tokenizer), `task:<name>` per local task
(evaltasks outputs). Outputs: `results` (folder: results.json + samples_<task>.jsonl) and
`metrics` (json, see the stage contract). Runs on CPU unless CUDA is available (recorded).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from repro.eval.local_tasks import check_choices_fit, jsonl_bytes, read_manifest
from repro.eval.lm_eval_runner import BOOTSTRAP_ITERS, run_lm_eval
from repro.eval.provenance import checkpoint_sha256, tokens_seen, trainer_state, training_seq_len
from repro.eval.results import RESULTS_FILE, RunInfo, assemble, samples_file
from repro.stages.base import StageIO, atomic_dir, dumps_json, write_json
from repro.stages.configs import EvaluateConfig


def run(cfg: EvaluateConfig, io: StageIO) -> None:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    checkpoint = io.input("checkpoint")
    ev = cfg.evaluation
    task_dirs = io.inputs_with_prefix("task")
    expected = sorted(t.task_name for t in ev.local_tasks)
    if sorted(task_dirs) != expected:
        raise ValueError(f"local task inputs {sorted(task_dirs)} do not match "
                         f"evaluation.local_tasks {expected}; rerun `repro compile`")
    local = {name: (read_manifest(d), d) for name, d in task_dirs.items()}
    ckpt_sha = checkpoint_sha256(checkpoint)  # fails early on a folder without weights
    state = trainer_state(checkpoint)
    seen, seen_key = tokens_seen(state)
    # Score with windows of the length the model was trained at: lm-eval would otherwise use
    # max_position_embeddings, and a RoPE/NoPE comparison would then measure length
    # extrapolation as well as modelling quality.
    max_length = training_seq_len(state)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    for name, (manifest, task_dir) in local.items():
        check_choices_fit(task_dir, manifest, tokenizer, max_length)

    with tempfile.TemporaryDirectory(prefix="repro-lm-eval-") as tmp:
        workdir = Path(tmp)
        raw = run_lm_eval(checkpoint, local, list(ev.tasks), num_fewshot=ev.num_fewshot,
                          limit=ev.limit, batch_size=ev.batch_size, seed=cfg.seed,
                          device=device, workdir=workdir, max_length=max_length)
        placeholders = {str(Path(checkpoint).resolve()): "<checkpoint>",
                        str(workdir.resolve()): "<tasks>", str(workdir): "<tasks>"}

    info = RunInfo(
        experiment=cfg.experiment, checkpoint=cfg.checkpoint, checkpoint_sha256=ckpt_sha,
        tokens_seen=seen, tokens_seen_key=seen_key,
        settings={"num_fewshot": ev.num_fewshot, "limit": ev.limit,
                  "batch_size": ev.batch_size, "seed": cfg.seed, "device": device,
                  "dtype": "float32", "bootstrap_iters": BOOTSTRAP_ITERS,
                  "max_length": max_length,
                  "max_length_source": ("trainer_state.json:seq_len" if max_length
                                        else "lm-eval default (model config)")},
        path_placeholders=placeholders)
    vocab_size = AutoConfig.from_pretrained(checkpoint).vocab_size
    results, samples, metrics = assemble(raw, info, {n: m for n, (m, _) in local.items()},
                                         tokenizer, vocab_size)

    with atomic_dir(io.output("results")) as out:
        (out / RESULTS_FILE).write_text(dumps_json(results), encoding="utf-8")
        for name, rows in samples.items():
            (out / samples_file(name)).write_bytes(jsonl_bytes(rows))
    write_json(io.output("metrics"), metrics)
