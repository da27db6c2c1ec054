"""evaluate stage: score every checkpoint of one training run with lm-eval on local and
standard tasks.

Inputs: `checkpoint:<label>` per checkpoint of `checkpoints` (save_pretrained folders with
their tokenizer: snapshots and phase ends, in training order), `task:<name>` per local task
(evaltasks outputs). Outputs per checkpoint: `results:<label>` (folder: results.json +
samples_<task>.jsonl) and `metrics:<label>` (json, see the stage contract); each is the
same bytes a stage scoring that checkpoint alone writes. One process per run: Python,
torch, transformers and lm-eval start once, lm-eval's tasks are indexed and built once
(the model-independent setup), and each checkpoint loads its own model (issue 19: each of
these was paid once per checkpoint when every checkpoint was a stage of its own).

Runs on CPU unless CUDA is available (recorded). Weights load in `evaluation.dtype`
(`auto`: bfloat16 on CUDA, float32 on CPU; the resolved dtype is recorded in the results,
the metrics and the cache keys, since it changes the responses); `batch_size: auto` lets
lm-eval's hf model find the largest batch that fits.

Backends (`evaluation.backend`): `hf` in this process; `accelerate` re-launches this stage
under `accelerate launch` (repro.eval.launch) and rank 0 writes the outputs; `vllm` uses
lm-eval's vllm model. A backend that cannot run here fails before any model is loaded.

Caches (`evaluation.cache_requests`, execution-only), both under .repro/cache/lm_eval/
<checkpoint sha256>/: each checkpoint's finished evaluation (repro.eval.result_cache), so a
rerun caused by another checkpoint (a snapshot added) copies the ones already scored instead
of scoring them again; and lm-eval's response cache, so a changed task list recomputes only
the new tasks' responses. Either only saves time: outputs are the same bytes cold or warm.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro import paths
from repro.atomic import atomic_write_bytes
from repro.compile.code_deps import ROOT, stage_code  # reads files only: no heavy import
from repro.eval import launch
from repro.eval.local_tasks import (
    check_choices_fit,
    check_task_files,
    jsonl_bytes,
    read_manifest,
)
from repro.eval.lm_eval_runner import (
    BOOTSTRAP_ITERS,
    PreparedTasks,
    cache_key,
    check_backend,
    model_spec,
    prepare_tasks,
    resolve_dtype,
    run_lm_eval,
)
from repro.eval.presets import PRESETS
from repro.eval.provenance import (
    checkpoint_sha256,
    lm_eval_command,
    portable_path,
    tokens_seen,
    trainer_state,
    training_seq_len,
)
from repro.eval.result_cache import Evaluation, ResultCache, folder_digest, result_key
from repro.eval.results import RESULTS_FILE, RunInfo, assemble, samples_file
from repro.spec.schema import EvaluationSettings
from repro.stages import worker
from repro.stages.base import StageIO, atomic_dir, dumps_json
from repro.stages.configs import EvaluateConfig
from repro.stages.kind import ENV, Output, Role, StageKind, per_checkpoint

log = logging.getLogger(__name__)

CACHE_ROOT_ENV = "REPRO_LM_EVAL_CACHE"
"""Overrides the root of the evaluation caches (tests and benchmarks keep theirs in a
temporary folder); unset: repro.paths.lm_eval_cache, relative to the repository root DVC
runs in."""

WEIGHT_FILES = frozenset({"model.safetensors", "model.safetensors.index.json"})
"""Hashed by checkpoint_sha256 (shards are named in the index); the rest of a checkpoint
folder is hashed into the result cache key (folder_digest)."""


def cache_folder(ckpt_sha: str) -> Path:
    """The evaluation caches of one checkpoint (responses and finished results)."""
    root = os.environ.get(CACHE_ROOT_ENV)
    return Path(root) / ckpt_sha if root else Path(paths.lm_eval_cache(ckpt_sha))


def library_versions() -> dict[str, str]:
    """Versions of the libraries that compute the scores (part of both cache keys)."""
    import lm_eval
    import torch
    import transformers

    return {"lm_eval": lm_eval.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__}


def response_cache(ev: EvaluationSettings, ckpt_sha: str, settings: dict[str, Any]) -> Path | None:
    """Path prefix of lm-eval's sqlite response cache for this checkpoint and the settings
    that shape responses, or None when `evaluation.cache_requests` is off."""
    if not ev.cache_requests:
        return None
    return cache_folder(ckpt_sha) / cache_key(settings | library_versions()) / "responses"


def code_digest() -> str:
    """sha256 of this stage's code (the files DVC reruns it on, repro.compile.code_deps):
    an edit to how results are computed or written makes every cached result a miss."""
    h = hashlib.sha256()
    for rel in stage_code("evaluate"):
        h.update(f"{rel}\n".encode())
        h.update((ROOT / rel).read_bytes())
    return h.hexdigest()


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


@dataclass(frozen=True)
class _Checkpoint:
    """One checkpoint to score, read before any model is loaded."""

    label: str
    path: Path
    sha256: str
    state: dict[str, Any]
    max_length: int | None
    """The training sequence length (trainer_state.json:seq_len), see _run."""


def _checkpoints(cfg: EvaluateConfig, io: StageIO) -> list[_Checkpoint]:
    found = io.inputs_with_prefix("checkpoint")
    if sorted(found) != sorted(cfg.checkpoints):
        raise ValueError(f"checkpoint inputs {sorted(found)} do not match checkpoints "
                         f"{sorted(cfg.checkpoints)}; rerun `repro compile`")
    out = []
    for label in cfg.checkpoints:
        path = found[label]
        sha = checkpoint_sha256(path)  # fails early on a folder without weights
        state = trainer_state(path)
        # Score with windows of the length the model was trained at: lm-eval would
        # otherwise use max_position_embeddings, and a RoPE/NoPE comparison would then
        # measure length extrapolation as well as modelling quality.
        out.append(_Checkpoint(label, path, sha, state, training_seq_len(state)))
    return out


def _run(cfg: EvaluateConfig, io: StageIO) -> None:
    import torch

    ev = cfg.evaluation
    task_dirs = io.inputs_with_prefix("task")
    asked = lm_eval_request(cfg)
    expected = asked["local_tasks"]
    if sorted(task_dirs) != expected:
        raise ValueError(f"local task inputs {sorted(task_dirs)} do not match "
                         f"evaluation.local_tasks {expected}; rerun `repro compile`")
    local = {name: (read_manifest(d), d) for name, d in task_dirs.items()}
    for manifest, folder in local.values():
        check_task_files(folder, manifest)  # the YAML lm-eval reads is the one we would write
    checkpoints = _checkpoints(cfg, io)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = resolve_dtype(ev.dtype, device)
    # What every checkpoint's result cache key shares (see _result_key).
    shared = ({"request": asked, "versions": library_versions(), "code": code_digest(),
               "config": cfg.model_dump(mode="json", exclude=_KEY_EXCLUDE),
               "tasks": {name: folder_digest(d) for name, d in sorted(task_dirs.items())},
               # written into each task's lm_eval_command
               "task_paths": {name: portable_path(d, f"<task:{name}>")
                              for name, d in sorted(task_dirs.items())}}
              if ev.cache_requests else None)
    tasks: PreparedTasks | None = None  # built at the first checkpoint not cached
    for ckpt in checkpoints:
        model_settings = {"backend": ev.backend, "device": device, "dtype": dtype,
                          "batch_size": ev.batch_size, "max_length": ckpt.max_length,
                          "num_processes": ev.num_processes,
                          "tensor_parallel_size": ev.tensor_parallel_size}
        entry = None if shared is None else ResultCache(
            cache_folder(ckpt.sha256), _result_key(shared, cfg, ckpt, model_settings))
        evaluation = entry.load() if entry is not None else None
        if evaluation is not None:
            log.info("%s: finished evaluation found in %s", ckpt.label, entry.folder)
        else:
            if tasks is None:
                tasks = prepare_tasks(local, asked["standard_tasks"], limit=asked["limit"],
                                      task_limits=asked["task_limits"],
                                      on_task_error=asked["on_task_error"])
            evaluation = _score(cfg, ckpt, local, tasks, model_settings)
            gc.collect()  # the model of this checkpoint, before the next one loads
            if device == "cuda":
                torch.cuda.empty_cache()
            if evaluation is None:  # a non-zero rank of a data-parallel run
                continue
            # a standard task left out (on_task_error: record) may load next time
            if entry is not None and not tasks.loaded.failed:
                entry.store(evaluation)
        _write(io, ckpt.label, evaluation)


_KEY_EXCLUDE: dict[str, Any] = {"checkpoints": True,  # each entry is one checkpoint's
                                "evaluation": {"cache_requests": True}}


def _result_key(shared: dict[str, Any], cfg: EvaluateConfig, ckpt: _Checkpoint,
                model_settings: dict[str, Any]) -> str:
    """Everything that shapes one checkpoint's outputs besides its weights (which name the
    cache folder): the lm-eval request and the rest of the stage's settings, the local
    tasks' content, the library versions and this stage's code (`shared`), the resolved
    device, dtype and window length, the labels written into the results, the
    checkpoint's other files (tokenizer, config, trainer_state.json: tokens seen) and the
    paths the recorded lm_eval commands name (a renamed stage moves its outputs)."""
    return result_key(shared | {
        "experiment": cfg.experiment, "checkpoint": ckpt.label, "model": model_settings,
        "checkpoint_files": folder_digest(ckpt.path, skip=WEIGHT_FILES),
        "checkpoint_path": portable_path(ckpt.path, "<checkpoint>")})  # in lm_eval_command


def _score(cfg: EvaluateConfig, ckpt: _Checkpoint, local: dict[str, tuple[dict, Path]],
           tasks: PreparedTasks, model_settings: dict[str, Any]) -> Evaluation | None:
    """Score one checkpoint: its outputs as bytes, or None on a non-zero rank."""
    from transformers import AutoConfig, AutoTokenizer

    ev = cfg.evaluation
    device, dtype, max_length = (model_settings["device"], model_settings["dtype"],
                                 ckpt.max_length)
    tokenizer = AutoTokenizer.from_pretrained(ckpt.path, trust_remote_code=False)
    for manifest, task_dir in local.values():
        check_choices_fit(task_dir, manifest, tokenizer, max_length)
    seen, seen_key = tokens_seen(ckpt.state)
    evaluated = run_lm_eval(
        ckpt.path, tasks, num_fewshot=ev.num_fewshot, batch_size=ev.batch_size,
        seed=cfg.seed, device=device, max_length=max_length,
        cache=response_cache(ev, ckpt.sha256, model_settings), backend=ev.backend,
        tensor_parallel_size=ev.tensor_parallel_size,
        gpu_memory_utilization=ev.gpu_memory_utilization, dtype=dtype)
    raw = evaluated.raw
    if raw is None:
        return None
    placeholders = {str(Path(ckpt.path).resolve()): "<checkpoint>"}
    placeholders |= {str(Path(d).resolve()): f"<task:{n}>" for n, (_, d) in local.items()}
    info = RunInfo(
        experiment=cfg.experiment, checkpoint=ckpt.label, checkpoint_sha256=ckpt.sha256,
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
        standard_tasks=list(ev.standard_tasks),
        task_limits=evaluated.limits,
        failed_tasks=evaluated.failed,
        commands=_commands(cfg, ckpt, local, tasks, model_settings))
    vocab_size = AutoConfig.from_pretrained(ckpt.path, trust_remote_code=False).vocab_size
    results, samples, metrics = assemble(raw, info, {n: m for n, (m, _) in local.items()},
                                         tokenizer, vocab_size)
    # how the scores were computed: bf16 and fp32 scores of one checkpoint differ slightly
    metrics["settings"] = {"device": device, "dtype": dtype, "batch_size": ev.batch_size}
    files = {RESULTS_FILE: dumps_json(results).encode("utf-8")}
    files |= {samples_file(name): jsonl_bytes(rows) for name, rows in samples.items()}
    return Evaluation(files, dumps_json(metrics).encode("utf-8"))


def _commands(cfg: EvaluateConfig, ckpt: _Checkpoint, local: dict[str, tuple[dict, Path]],
              tasks: PreparedTasks, model_settings: dict[str, Any]) -> dict[str, str]:
    """Per task (a group's leaves share its command), the `lm_eval` command line that scores
    it as this stage did (repro.eval.provenance.lm_eval_command); paths as given by DVC,
    relative to the repository root (placeholders where a path is machine-specific)."""
    ev = cfg.evaluation
    model, args = model_spec(ev.backend, ckpt.path, max_length=ckpt.max_length, seed=cfg.seed,
                             tensor_parallel_size=ev.tensor_parallel_size,
                             gpu_memory_utilization=ev.gpu_memory_utilization,
                             dtype=model_settings["dtype"])
    args["pretrained"] = portable_path(ckpt.path, "<checkpoint>")
    out = {}
    for name, leaves in tasks.loaded.leaves.items():
        folder = local.get(name, (None, None))[1]
        command = lm_eval_command(
            model, args, name,
            include_path=None if folder is None else portable_path(folder, f"<task:{name}>"),
            num_fewshot=ev.num_fewshot, batch_size=ev.batch_size,
            device=model_settings["device"], seed=cfg.seed, limit=tasks.limits.get(name),
            num_processes=ev.num_processes if ev.backend == "accelerate" else 1)
        out |= {leaf: command for leaf in leaves} | {name: command}
    return out


def _write(io: StageIO, label: str, evaluation: Evaluation) -> None:
    with atomic_dir(io.output(per_checkpoint("results", label))) as out:
        for name, data in evaluation.results.items():
            (out / name).write_bytes(data)
    atomic_write_bytes(io.output(per_checkpoint("metrics", label)), evaluation.metrics)


def lm_eval_request(cfg: EvaluateConfig) -> dict[str, Any]:
    """The lm-eval run an evaluate stage asks for, from its settings alone (each checkpoint
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
    asks for, and the labels its results carry (one checkpoint each)."""
    return {"lm_eval": lm_eval_request(cfg),
            "presets": list(cfg.evaluation.presets),  # recorded in results.json
            "labels": (cfg.experiment, tuple(cfg.checkpoints))}


def _checkpoint_outputs(cfg: EvaluateConfig) -> dict[str, Output]:
    """`results:<label>` and `metrics:<label>` per checkpoint, in the config's order."""
    out: dict[str, Output] = {}
    for label in cfg.checkpoints:
        out[per_checkpoint("results", label)] = Output(
            Role.DATA, lambda stage_id, cfg, label=label: paths.eval_results_dir(stage_id, label))
        out[per_checkpoint("metrics", label)] = Output(
            Role.METRICS, lambda stage_id, cfg, label=label: paths.eval_metrics(stage_id, label))
    return out


KIND = StageKind(
    config=EvaluateConfig,
    outputs={"env": ENV},
    run=run,
    # the caches only save time: a checkpoint's scores are the same with them or without
    # them (both are keyed by the checkpoint's sha256 and everything else that shapes them)
    execution_only=frozenset({"evaluation.cache_requests"}),
    extra_outputs=_checkpoint_outputs,
    effects=effects,
)
