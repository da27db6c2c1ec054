"""evaluate stage: score one checkpoint with lm-eval on local and standard tasks.

Inputs: `checkpoint` (save_pretrained folder with tokenizer), `task:<name>` per local task
(evaltasks outputs). Outputs: `results` (folder: results.json + samples_<task>.jsonl) and
`metrics` (json, see the stage contract). Runs on CPU unless CUDA is available (recorded).
Weights load in `evaluation.dtype` (`auto`: bfloat16 on CUDA, float32 on CPU; the resolved
dtype is recorded in the results, the metrics and the response cache key, since it changes
the responses); `batch_size: auto` lets lm-eval's hf model find the largest batch that fits.

Backends (`evaluation.backend`): `hf` in this process; `accelerate` re-launches this stage
under `accelerate launch` (repro.eval.launch) and rank 0 writes the outputs; `vllm` uses
lm-eval's vllm model. A backend that cannot run here fails before any model is loaded.
Responses are cached per checkpoint under .repro/cache/lm_eval/ (`cache_requests`); the
cache only saves time: outputs are the same bytes with a cold or a warm cache.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from repro import paths
from repro.eval import launch
from repro.eval.local_tasks import check_choices_fit, jsonl_bytes, read_manifest
from repro.eval.lm_eval_runner import (
    BOOTSTRAP_ITERS,
    cache_key,
    check_backend,
    resolve_dtype,
    run_lm_eval,
)
from repro.eval.presets import PRESETS
from repro.eval.provenance import checkpoint_sha256, tokens_seen, trainer_state, training_seq_len
from repro.eval.results import RESULTS_FILE, RunInfo, assemble, samples_file
from repro.spec.schema import EvaluationSettings
from repro.stages import worker
from repro.stages.base import StageIO, atomic_dir, dumps_json, write_json
from repro.stages.configs import EvaluateConfig
from repro.stages.kind import ENV, METRICS, StageKind, data

log = logging.getLogger(__name__)

CACHE_ROOT_ENV = "REPRO_LM_EVAL_CACHE"
"""Overrides the response cache root (tests and benchmarks keep theirs in a temporary
folder); unset: repro.paths.lm_eval_cache, relative to the repository root DVC runs in."""


def response_cache(ev: EvaluationSettings, ckpt_sha: str, settings: dict[str, Any]) -> Path | None:
    """Path prefix of lm-eval's sqlite response cache for this checkpoint and the settings
    that shape responses, or None when `evaluation.cache_requests` is off."""
    if not ev.cache_requests:
        return None
    import lm_eval
    import torch
    import transformers

    root = os.environ.get(CACHE_ROOT_ENV)
    folder = Path(root) / ckpt_sha if root else Path(paths.lm_eval_cache(ckpt_sha))
    key = cache_key(settings | {"lm_eval": lm_eval.__version__, "torch": torch.__version__,
                                "transformers": transformers.__version__})
    return folder / key / "responses"


def _check_backend(ev: EvaluationSettings) -> None:
    import torch

    cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    check_backend(ev.backend, cuda_devices=cuda_devices,
                  vllm_installed=importlib.util.find_spec("vllm") is not None,
                  num_processes=ev.num_processes, tensor_parallel_size=ev.tensor_parallel_size)


def run(cfg: EvaluateConfig, io: StageIO) -> None:
    ev = cfg.evaluation
    _check_backend(ev)  # before anything is loaded: a GPU backend on a CPU machine fails now
    if ev.backend == "accelerate" and not launch.under_launcher():
        with tempfile.TemporaryDirectory(prefix="repro-eval-launch-") as tmp:
            payload = Path(tmp) / "launch.json"
            launch.relaunch_with_accelerate(ev.num_processes,
                                            worker.write_payload(payload, "evaluate", cfg, io))
        return
    _run(cfg, io)


def _run(cfg: EvaluateConfig, io: StageIO) -> None:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    checkpoint = io.input("checkpoint")
    ev = cfg.evaluation
    task_dirs = io.inputs_with_prefix("task")
    asked = lm_eval_request(cfg)
    expected = asked["local_tasks"]
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
    dtype = resolve_dtype(ev.dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=False)
    for name, (manifest, task_dir) in local.items():
        check_choices_fit(task_dir, manifest, tokenizer, max_length)

    standard, task_limits = asked["standard_tasks"], asked["task_limits"]
    # What shapes a response besides the checkpoint and the request text (the cache key).
    model_settings = {"backend": ev.backend, "device": device, "dtype": dtype,
                      "batch_size": ev.batch_size, "max_length": max_length,
                      "num_processes": ev.num_processes,
                      "tensor_parallel_size": ev.tensor_parallel_size}
    cache = response_cache(ev, ckpt_sha, model_settings)
    with tempfile.TemporaryDirectory(prefix="repro-lm-eval-") as tmp:
        workdir = Path(tmp)
        evaluated = run_lm_eval(
            checkpoint, local, standard, num_fewshot=asked["num_fewshot"],
            limit=asked["limit"], batch_size=asked["batch_size"], seed=asked["seed"],
            device=device, workdir=workdir, max_length=max_length, task_limits=task_limits,
            cache=cache, backend=asked["backend"],
            tensor_parallel_size=asked["tensor_parallel_size"],
            gpu_memory_utilization=asked["gpu_memory_utilization"],
            on_task_error=asked["on_task_error"], dtype=dtype)
        placeholders = {str(Path(checkpoint).resolve()): "<checkpoint>",
                        str(workdir.resolve()): "<tasks>", str(workdir): "<tasks>"}
    raw = evaluated.raw
    if raw is None:  # a non-zero rank of a data-parallel run: rank 0 writes the outputs
        return

    info = RunInfo(
        experiment=cfg.experiment, checkpoint=cfg.checkpoint, checkpoint_sha256=ckpt_sha,
        tokens_seen=seen, tokens_seen_key=seen_key,
        settings={"num_fewshot": ev.num_fewshot, "limit": ev.limit,
                  "batch_size": ev.batch_size, "seed": cfg.seed, "device": device,
                  "dtype": dtype, "dtype_requested": ev.dtype,
                  "bootstrap_iters": BOOTSTRAP_ITERS,
                  "max_length": max_length,
                  "max_length_source": ("trainer_state.json:seq_len" if max_length
                                        else "lm-eval default (model config)"),
                  "backend": ev.backend, "num_processes": ev.num_processes,
                  "tensor_parallel_size": ev.tensor_parallel_size},
        path_placeholders=placeholders,
        presets={p: {"tasks": list(PRESETS[p].tasks), "max_samples": PRESETS[p].max_samples,
                     "source": PRESETS[p].source} for p in ev.presets},
        standard_tasks=standard,
        task_limits=evaluated.limits,
        failed_tasks=evaluated.failed)
    vocab_size = AutoConfig.from_pretrained(checkpoint, trust_remote_code=False).vocab_size
    results, samples, metrics = assemble(raw, info, {n: m for n, (m, _) in local.items()},
                                         tokenizer, vocab_size)
    # how the scores were computed: bf16 and fp32 scores of one checkpoint differ slightly
    metrics["settings"] = {"device": device, "dtype": dtype, "batch_size": ev.batch_size}

    with atomic_dir(io.output("results")) as out:
        (out / RESULTS_FILE).write_text(dumps_json(results), encoding="utf-8")
        for name, rows in samples.items():
            (out / samples_file(name)).write_bytes(jsonl_bytes(rows))
    write_json(io.output("metrics"), metrics)


def lm_eval_request(cfg: EvaluateConfig) -> dict[str, Any]:
    """The lm-eval run an evaluate stage asks for, from its settings alone (the checkpoint
    adds its training sequence length, the machine its device and the dtype `auto` resolves
    to): the tasks (presets expanded), their limits, few-shot, batching, seeds, backend."""
    ev = cfg.evaluation
    return {
        "local_tasks": sorted(t.task_name for t in ev.local_tasks),
        "standard_tasks": ev.standard_tasks, "task_limits": ev.task_limits(),
        "num_fewshot": ev.num_fewshot, "limit": ev.limit, "batch_size": ev.batch_size,
        "seed": cfg.seed, "dtype": ev.dtype, "backend": ev.backend,
        "num_processes": ev.num_processes, "tensor_parallel_size": ev.tensor_parallel_size,
        "gpu_memory_utilization": ev.gpu_memory_utilization,
        "on_task_error": ev.on_task_error,
    }


def effects(cfg: EvaluateConfig) -> dict[str, Any]:
    """What an evaluate stage does with its settings (StageKind.effects): the lm-eval run it
    asks for, and the labels its results carry."""
    return {"lm_eval": lm_eval_request(cfg),
            "presets": list(cfg.evaluation.presets),  # recorded in results.json
            "labels": (cfg.experiment, cfg.checkpoint)}


KIND = StageKind(
    config=EvaluateConfig,
    outputs={"results": data("results/eval"), "metrics": METRICS, "env": ENV},
    run=run,
    # a response cache only saves time: a checkpoint's scores are the same with it or
    # without it (the cache is keyed by the checkpoint's sha256 and the model settings)
    execution_only=frozenset({"evaluation.cache_requests"}),
    effects=effects,
)
