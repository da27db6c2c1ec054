"""Run lm-eval on a checkpoint: local task YAMLs, standard task loading, simple_evaluate.

Local tasks are written as lm-eval YAML files into a temporary folder at run time, because
the YAML must hold the absolute path of the task data (`dataset_kwargs.data_files`), which
differs between machines and DVC cache locations; nothing path-dependent reaches the outputs.
Standard lm-eval tasks (hellaswag, arc_easy, ...) are passed by name and read their data from
the Hugging Face hub or a local `datasets` cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from repro.errors import ReproError
from repro.eval.local_tasks import DATA_FILE, METRICS

BOOTSTRAP_ITERS = 100_000
"""lm-eval's default. Only metrics without a closed-form stderr are bootstrapped (none of
the local tasks' metrics: acc uses the closed form, perplexities get no stderr)."""


class TaskUnavailableError(ReproError, RuntimeError):
    """A requested lm-eval task cannot be loaded here."""


def local_task_config(manifest: Mapping[str, Any], data_path: Path,
                      cache_dir: Path) -> dict[str, Any]:
    """The lm-eval task config (YAML content) of a local task built by evaltasks."""
    kind = manifest["kind"]
    config: dict[str, Any] = {
        "task": manifest["name"],
        "dataset_path": "json",
        # The datasets cache goes into the temporary folder too: no state in ~/.cache, and
        # no chance of reading a stale cache for a rebuilt file.
        "dataset_kwargs": {"data_files": {"test": str(Path(data_path).resolve())},
                           "cache_dir": str(Path(cache_dir).resolve())},
        "test_split": "test",
        "output_type": manifest["output_type"],
        "metric_list": [],
        "metadata": {"version": manifest["version"]},
    }
    if kind == "bpb":
        # As lm-eval's wikitext task: the whole document is the target of a rolling
        # loglikelihood; word/byte counts come from the target text.
        config |= {"doc_to_text": "", "doc_to_target": "text"}
        config["metric_list"] = [{"metric": m} for m in METRICS["bpb"]]
    elif kind == "cloze":
        # Column names, not Jinja templates: the values reach lm-eval untouched.
        config |= {"doc_to_text": "context", "doc_to_choice": "choices",
                   "doc_to_target": "label", "target_delimiter": " "}
        config["metric_list"] = [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                 for m in METRICS["cloze"]]
    else:
        raise ValueError(f"unknown local task kind {kind!r}")
    return config


def write_local_tasks(folder: Path, tasks: Mapping[str, tuple[dict, Path]]) -> None:
    """Write one YAML per local task (name -> (manifest, task folder)) into `folder`."""
    import yaml

    cache = folder / "hf_datasets_cache"
    for name, (manifest, task_dir) in tasks.items():
        if manifest["name"] != name:
            raise ValueError(f"input task:{name} holds task {manifest['name']!r}; "
                             "the compiler and evaltasks outputs disagree: rerun `repro compile`")
        config = local_task_config(manifest, Path(task_dir) / manifest.get("data_file", DATA_FILE),
                                   cache)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=True),
                                             encoding="utf-8")


def load_tasks(task_manager: Any, names: list[str], standard: set[str]) -> list[Any]:
    """Build every task up front (this reads its data), before the model is loaded, so an
    unavailable task fails in seconds with a message saying how to provide it."""
    built = []
    for name in names:
        try:
            built.append(task_manager.load([name]))
        except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError...)
            if name not in standard:
                raise
            raise TaskUnavailableError(_unavailable_message(task_manager, name, e)) from e
    objs = []
    for loaded in built:
        # Top-level items: groups keep their children; plain tasks are passed as they are.
        objs.extend(loaded["groups"][g] for g in loaded["groups"]
                    if not any(g in kids for kids in loaded["group_map"].values()))
        if not loaded["groups"]:
            objs.extend(loaded["tasks"].values())
    return objs


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
        "from there); or remove it from evaluation.tasks and use a local task built from "
        "held-out documents (evaluation.local_tasks)."
    )


def run_lm_eval(checkpoint: Path, local_tasks: Mapping[str, tuple[dict, Path]],
                standard_tasks: list[str], *, num_fewshot: int, limit: int | None,
                batch_size: int | str, seed: int, device: str, workdir: Path,
                max_length: int | None = None) -> dict:
    """simple_evaluate on the checkpoint with every task; returns lm-eval's result dict.

    `max_length` bounds every model input (rolling-loglikelihood windows, contexts); None
    leaves it to lm-eval (the model config's max_position_embeddings)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    write_local_tasks(workdir, local_tasks)
    # Indexing lm-eval's ~15k built-in task YAMLs takes ~9 s on this machine; skip it when
    # only local tasks are asked for.
    task_manager = TaskManager(include_path=str(workdir), include_defaults=bool(standard_tasks))
    names = sorted(local_tasks) + list(standard_tasks)
    tasks = load_tasks(task_manager, names, set(standard_tasks))
    # float32: the checkpoints are small and CPU bf16 matmuls are slow and less exact.
    # A dict, not lm-eval's "k=v,k=v" string, so a path holding a comma stays intact.
    model_args: dict[str, Any] = {"pretrained": str(Path(checkpoint).resolve()),
                                  "dtype": "float32"}
    if max_length is not None:
        model_args["max_length"] = max_length
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=model_args,
        tasks=tasks,
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        device=device,
        bootstrap_iters=BOOTSTRAP_ITERS,
        log_samples=True,
        task_manager=task_manager,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    if results is None:  # only on non-zero ranks, which a single process never is
        raise RuntimeError("lm-eval returned no results")
    return results
