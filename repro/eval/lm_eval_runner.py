"""Run lm-eval on a checkpoint: local task YAMLs, standard task loading, simple_evaluate.

Local tasks are the YAMLs the evaltasks stage wrote next to their data (one source of truth:
the files `lm_eval --include_path <task folder>` reads by hand); lm-eval indexes each task
folder as an include path. Standard lm-eval tasks (hellaswag, arc_easy, ...) are passed by name and read their data from
the Hugging Face hub or a local `datasets` cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from repro.errors import ReproError
from repro.eval.lm_eval_overheads import without_lm_eval_overheads

BOOTSTRAP_ITERS = 100_000
"""lm-eval's default. Only metrics without a closed-form stderr are bootstrapped (none of
the local tasks' metrics: acc uses the closed form, perplexities get no stderr)."""


log = logging.getLogger(__name__)


class TaskUnavailableError(ReproError, RuntimeError):
    """A requested lm-eval task cannot be loaded here."""


class BackendUnavailableError(ReproError, RuntimeError):
    """The evaluation backend the spec asks for cannot run on this machine."""


def check_local_tasks(tasks: Mapping[str, tuple[dict, Path]]) -> list[str]:
    """The folders to pass lm-eval as `include_path` for the local tasks (name -> (manifest,
    task folder), each an evaltasks output holding `<name>.yaml`), after checking that
    each folder holds the task it is wired as."""
    for name, (manifest, _) in tasks.items():
        if manifest["name"] != name:
            raise ValueError(f"input task:{name} holds task {manifest['name']!r}; "
                             "the compiler and evaltasks outputs disagree: rerun `repro compile`")
    return [str(folder) for _, folder in tasks.values()]


@dataclass(frozen=True)
class LoadedTasks:
    """Tasks built by `load_tasks`: the objects for simple_evaluate, the leaf tasks of each
    requested name (a group has many), and the standard tasks that could not load."""

    objects: list[Any]
    leaves: dict[str, dict[str, Any]]
    failed: dict[str, str] = field(default_factory=dict)


def load_tasks(task_manager: Any, names: list[str], standard: set[str],
               on_error: str = "fail") -> LoadedTasks:
    """Build every task up front (this reads its data), before the model is loaded, so an
    unavailable task fails in seconds with a message saying how to provide it.

    `on_error="record"` leaves an unavailable standard task out and records why in
    `failed` (local tasks are ours: their errors always raise); the run fails only if no
    task is left.

    Only registered names are loaded: lm-eval's `load` would take any other string as the
    path of a task YAML, whose `!function` tags import Python, so a task name from a spec
    could run code. Unknown names fail (or are recorded) as unknown tasks."""
    built: dict[str, dict] = {}
    failed: dict[str, str] = {}
    registered = set(task_manager.all_tasks)
    for name in names:
        try:
            if name not in registered:
                raise KeyError(f"{name!r} is not a registered lm-eval task, group or tag")
            built[name] = task_manager.load([name])
        except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError...)
            if name not in standard:
                raise
            message = _unavailable_message(task_manager, name, e)
            if on_error != "record":
                raise TaskUnavailableError(message) from e
            log.warning("task %s left out (evaluation.on_task_error: record): %s", name, message)
            failed[name] = message
    if not built:
        raise TaskUnavailableError("no evaluation task could be loaded:\n" + "\n".join(
            f"- {name}: {why}" for name, why in failed.items()))
    objs = []
    for loaded in built.values():
        # Top-level items: groups keep their children; plain tasks are passed as they are.
        objs.extend(loaded["groups"][g] for g in loaded["groups"]
                    if not any(g in kids for kids in loaded["group_map"].values()))
        if not loaded["groups"]:
            objs.extend(loaded["tasks"].values())
    return LoadedTasks(objs, {n: dict(b["tasks"]) for n, b in built.items()}, failed)


def _unavailable_message(task_manager: Any, name: str, error: Exception) -> str:
    if name not in task_manager.all_tasks:
        return (f"lm-eval has no task, group or tag named {name!r}; check the spelling in "
                f"evaluation.tasks (`lm_eval ls tasks` lists them)")
    return (
        f"lm-eval task {name!r} could not load its dataset ({type(error).__name__}: {error}). "
        "Standard tasks read their data from the Hugging Face hub, and this run is offline. "
        "To provide it: on a machine with network, run the task once (or "
        "`datasets.load_dataset(<its dataset_path>, <dataset_name>)`) and copy the datasets "
        "cache here, pointing HF_DATASETS_CACHE at it (HF_DATASETS_OFFLINE=1 then reads it "
        "from there); or remove it from evaluation.tasks/presets and use a local task built "
        "from held-out documents (evaluation.local_tasks)."
    )


def sample_selection(leaves: Mapping[str, Mapping[str, Any]],
                     limits: Mapping[str, int | None]
                     ) -> tuple[int | None, dict[str, list[int]] | None]:
    """lm-eval's (limit, samples) arguments for per-task document caps.

    lm-eval has one `limit` for all tasks; when the caps differ (a preset's 1000 next to
    uncapped tasks), each capped leaf task gets its first documents by index through
    `samples` instead -- the same documents `limit` would take."""
    caps = {limits.get(name) for name in leaves}
    if len(caps) <= 1:
        return (caps.pop() if caps else None), None
    samples = {}
    for name, tasks in leaves.items():
        cap = limits.get(name)
        if cap is None:
            continue
        for leaf, task in tasks.items():
            samples[leaf] = list(range(min(cap, len(task.eval_docs))))
    return None, samples


# --------------------------------------------------------------------------- backends


def check_backend(backend: str, *, cuda_devices: int, vllm_installed: bool,
                  num_processes: int = 1, tensor_parallel_size: int = 1) -> None:
    """Fail before any model is loaded when the backend cannot run here, naming what is
    missing and the fix (the spec itself was validated when it was loaded)."""
    fix_hf = "or set evaluation.backend: hf (one process, CPU or one GPU)"
    if backend == "hf":
        return
    if backend == "accelerate":
        if cuda_devices == 0:
            raise BackendUnavailableError(
                "evaluation.backend 'accelerate' runs data-parallel on GPUs, and this machine "
                f"has no CUDA device (torch.cuda.is_available() is False); run on a GPU machine "
                f"{fix_hf}")
        if num_processes > cuda_devices:
            raise BackendUnavailableError(
                f"evaluation.backend 'accelerate' asks for num_processes {num_processes}, but "
                f"this machine has {cuda_devices} CUDA device(s); lower "
                f"evaluation.num_processes to at most {cuda_devices}")
        return
    if backend == "vllm":
        if not vllm_installed:
            raise BackendUnavailableError(
                "evaluation.backend 'vllm' needs the vllm package, which is not installed; "
                f"`pip install vllm` (lm-eval's `lm_eval[vllm]` extra) on a CUDA machine {fix_hf}")
        if cuda_devices == 0:
            raise BackendUnavailableError(
                "evaluation.backend 'vllm' needs a CUDA device and this machine has none; run "
                f"on a GPU machine {fix_hf}")
        if tensor_parallel_size > cuda_devices:
            raise BackendUnavailableError(
                f"evaluation.backend 'vllm' asks for tensor_parallel_size "
                f"{tensor_parallel_size}, but this machine has {cuda_devices} CUDA device(s); "
                f"lower evaluation.tensor_parallel_size to at most {cuda_devices}")
        return
    raise ValueError(f"unknown evaluation backend {backend!r}")


DTYPES = ("float32", "bfloat16")
"""Weight dtypes lm-eval may load a checkpoint in (`evaluation.dtype`, once resolved)."""


def resolve_dtype(dtype: str, device: str) -> str:
    """`evaluation.dtype` made concrete for the device the stage runs on: `auto` is bfloat16
    on CUDA (the dtype the model was trained in under bf16 autocast, half the memory, so
    lm-eval's `batch_size: auto` finds a larger batch; issue 17) and float32 on CPU (CPU bf16
    matmuls are slow and less exact, and the checkpoints evaluated there are small)."""
    if dtype == "auto":
        return "bfloat16" if str(device).startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"unknown evaluation dtype {dtype!r}; one of auto, {', '.join(DTYPES)}")
    return dtype


def model_spec(backend: str, checkpoint: Path, *, max_length: int | None, seed: int,
               tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
               dtype: str = "float32") -> tuple[str, dict[str, Any]]:
    """lm-eval's (model, model_args) for the backend. `accelerate` is lm-eval's `hf` model:
    it shards the requests over the processes `accelerate launch` started. `dtype` is a
    resolved one (resolve_dtype): the weights are loaded in it (lm-eval's hf and vllm
    models both take `dtype`)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be resolved to one of {DTYPES} first, got {dtype!r}")
    # A dict, not lm-eval's "k=v,k=v" string, so a path holding a comma stays intact.
    # trust_remote_code off, explicitly: the checkpoint is ours (plain transformers classes),
    # and lm-eval must never run code shipped beside a model
    args: dict[str, Any] = {"pretrained": str(Path(checkpoint).resolve()), "dtype": dtype,
                            "trust_remote_code": False}
    if backend == "vllm":
        args |= {"tensor_parallel_size": tensor_parallel_size,
                 "gpu_memory_utilization": gpu_memory_utilization, "seed": seed}
    if max_length is not None:
        args["max_length"] = max_length
    return ("vllm" if backend == "vllm" else "hf"), args


# ------------------------------------------------------------------------------ cache


def cache_key(settings: Mapping[str, Any]) -> str:
    """Short hash of everything besides the checkpoint and the request that can change a
    response (backend, dtype, window length, batch size, device, library versions)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


# -------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class PreparedTasks:
    """Everything of an lm-eval run that does not depend on the model, built once and used
    for every checkpoint of an evaluate stage (prepare_tasks)."""

    task_manager: Any
    loaded: LoadedTasks
    run_limit: int | None
    """lm-eval's `limit` (None when per-task caps go through `samples`)."""
    samples: dict[str, list[int]] | None
    """lm-eval's `samples`: the documents of each capped leaf task, when caps differ."""
    limits: dict[str, int | None]
    """Document cap of every evaluated task and group (leaves included)."""


def prepare_tasks(local_tasks: Mapping[str, tuple[dict, Path]], standard_tasks: list[str], *,
                  limit: int | None,
                  task_limits: Mapping[str, int | None] | None = None,
                  on_task_error: str = "fail") -> PreparedTasks:
    """Index lm-eval's tasks with the local tasks' folders as include paths (their YAMLs,
    read where the evaltasks stage wrote them) and build every task, before any model is
    loaded, so an unavailable task fails in seconds. `task_limits` caps standard tasks
    individually (default: `limit`)."""
    from lm_eval.tasks import TaskManager

    include = check_local_tasks(local_tasks)
    # Indexing lm-eval's ~15k built-in task YAMLs takes ~9 s on this machine; skip it when
    # only local tasks are asked for.
    task_manager = TaskManager(include_path=include or None,
                               include_defaults=bool(standard_tasks))
    names = sorted(local_tasks) + list(standard_tasks)
    loaded = load_tasks(task_manager, names, set(standard_tasks), on_task_error)
    limits = {n: limit for n in local_tasks} | {n: (task_limits or {}).get(n, limit)
                                                for n in standard_tasks}
    run_limit, samples = sample_selection(loaded.leaves, limits)
    # The cap of every task lm-eval reports, groups' leaves included.
    leaf_limits = {leaf: limits[name] for name, tasks in loaded.leaves.items()
                   for leaf in [name, *tasks]}
    return PreparedTasks(task_manager, loaded, run_limit, samples, leaf_limits)


@dataclass(frozen=True)
class LmEvalRun:
    raw: dict | None
    """lm-eval's result dict (None on non-zero ranks)."""
    failed: dict[str, str]
    """Standard tasks left out (on_task_error: record) -> why and how to fix."""
    limits: dict[str, int | None]
    """Document cap of every evaluated task and group (leaves included)."""


TOO_LONG_WARNING = "Token indices sequence length is longer than the specified maximum"
"""The start of the warning transformers' tokenizers log (once per tokenizer) when an encoding
is longer than the model's `model_max_length`."""


class _DropTooLongWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOO_LONG_WARNING)


@contextlib.contextmanager
def whole_documents_encoded_quietly() -> Iterator[None]:
    """Without the tokenizer's "Token indices sequence length is longer than the specified
    maximum sequence length for this model (1617 > 256). Running this sequence through the
    model will result in indexing errors" inside: lm-eval's rolling loglikelihood (the
    bits-per-byte tasks) encodes each whole document and then scores it in windows of at
    most `max_length` tokens (lm_eval.utils.get_rolling_token_windows), so no model call sees
    the long sequence the warning is about; it only alarmed whoever read the stage's log, once
    per checkpoint. Every other message of the tokenizer passes. (The stage's own count of a
    document's tokens, repro.eval.provenance.uniform_rolling_baseline, asks for no warning.)"""
    tokenizer_log = logging.getLogger("transformers.tokenization_utils_base")
    drop = _DropTooLongWarning()
    tokenizer_log.addFilter(drop)
    try:
        yield
    finally:
        tokenizer_log.removeFilter(drop)


def run_lm_eval(checkpoint: Path, tasks: PreparedTasks, *, num_fewshot: int,
                batch_size: int | str, seed: int, device: str,
                max_length: int | None = None, cache: Path | None = None, backend: str = "hf",
                tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                dtype: str = "float32") -> LmEvalRun:
    """simple_evaluate on one checkpoint with the prepared tasks (prepare_tasks). The result
    dict is None on non-zero ranks of a data-parallel run (rank 0 gathers everything).

    The task objects are reused from one checkpoint to the next: simple_evaluate sets their
    few-shot count and reseeds their few-shot sampler, and lm-eval rebuilds their requests,
    on every call, so a checkpoint scores the same bytes whether it is evaluated first or
    after others (tests/stages/test_evaluate.py checks it).

    `max_length` bounds every model input (rolling-loglikelihood windows, contexts); None
    leaves it to lm-eval (the model config's max_position_embeddings). `cache` is the path
    prefix of lm-eval's sqlite response cache (`use_cache`); None computes every response.
    `batch_size` may be "auto": lm-eval's hf model then finds the largest batch that fits on
    the device (it halves from a first guess on out-of-memory errors; on CPU the guess
    itself); `dtype` is the resolved weight dtype (resolve_dtype)."""
    import lm_eval

    model, model_args = model_spec(backend, checkpoint, max_length=max_length, seed=seed,
                                   tensor_parallel_size=tensor_parallel_size,
                                   gpu_memory_utilization=gpu_memory_utilization, dtype=dtype)
    if cache is not None:
        # Responses are keyed by (request type, context, continuation); everything else
        # that shapes them is in the cache path, so a hit is the response this run would
        # compute. lm-eval logs the number of cached vs computed requests.
        log.info("lm-eval response cache: %s_rank*.db", cache)
    with without_lm_eval_overheads(), whole_documents_encoded_quietly():
        # (no environment report, a batched response cache; see whole_documents_encoded_quietly)
        results = lm_eval.simple_evaluate(
            model=model,
            model_args=model_args,
            tasks=tasks.loaded.objects,
            num_fewshot=num_fewshot,
            limit=tasks.run_limit,
            samples=tasks.samples,
            batch_size=batch_size,
            device=device,
            use_cache=str(cache) if cache is not None else None,
            bootstrap_iters=BOOTSTRAP_ITERS,
            log_samples=True,
            task_manager=tasks.task_manager,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    return LmEvalRun(results, tasks.loaded.failed, tasks.limits)
