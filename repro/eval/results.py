"""Turn an lm-eval result into the evaluate stage's outputs.

- `results.json`: per task metrics, sample counts, versions, cleaned configs, provenance
  (lm-eval version, task data hash, checkpoint hash, tokens seen, settings, the `lm_eval`
  command line that reproduces the task's scores);
- `samples_<task>.jsonl`: one line per document (for paired bootstrap between runs);
- the DVC metrics dict of the contract (numbers only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from repro.eval.extract import bits_per_byte_stderr, clean_config, sample_rows, task_metrics
from repro.eval.local_tasks import LOADER_FILE
from repro.eval.provenance import uniform_rolling_baseline

RESULTS_FORMAT_VERSION = 1
RESULTS_FILE = "results.json"


def samples_file(task: str) -> str:
    return f"samples_{task}.jsonl"


@dataclass(frozen=True)
class RunInfo:
    """What the stage knows besides lm-eval's result."""

    experiment: str
    checkpoint: str
    checkpoint_sha256: str
    tokens_seen: int | None
    tokens_seen_key: str | None
    settings: dict[str, Any]
    """num_fewshot, limit, batch_size, seed, device, dtype, bootstrap_iters."""
    path_placeholders: dict[str, str]
    """Absolute paths (checkpoint, temporary task folder) -> placeholders in configs."""
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Presets asked for -> their tasks, per-task cap and source (as resolved)."""
    standard_tasks: list[str] = field(default_factory=list)
    """Standard lm-eval tasks asked for: presets expanded, then `tasks`."""
    task_limits: dict[str, int | None] = field(default_factory=dict)
    """Most documents evaluated per task (groups and their leaves included)."""
    failed_tasks: dict[str, str] = field(default_factory=dict)
    """Standard tasks left out (on_task_error: record) -> reason and fix."""
    commands: dict[str, str] = field(default_factory=dict)
    """Task -> the `lm_eval` command line that reproduces its scores
    (repro.eval.provenance.lm_eval_command)."""


def _baseline(manifest: Mapping[str, Any] | None, rows: list[dict], texts: list[str],
              tokenizer: Any, vocab_size: int) -> tuple[dict[str, float], str]:
    """Chance level of a task; see local_tasks.random_baseline for the manifest's."""
    if manifest is None:
        return _choice_baseline(rows)
    if manifest["output_type"] == "loglikelihood_rolling" and tokenizer is not None:
        base = uniform_rolling_baseline(tokenizer, vocab_size, texts,
                                        [r["bytes"] for r in rows],
                                        [r.get("words", 0) for r in rows])
        return base, (f"uniform distribution over the model's {vocab_size} output tokens, "
                      "on the evaluated documents tokenized by the checkpoint's tokenizer")
    if manifest["output_type"] == "multiple_choice":
        return dict(manifest["random_baseline"]), "uniform choice: 1/num_choices"
    return dict(manifest["random_baseline"]), "from the task manifest"


def _local_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A local task's config as its YAML names its loader (lm-eval dumps the loader's
    source code in its place)."""
    out = dict(config)
    if "custom_dataset" in out:
        out["custom_dataset"] = f"!function {Path(LOADER_FILE).stem}.load"
    return out


CHOICE_METRICS = ("acc", "acc_norm")
"""Accuracies whose chance level is 1/number of choices (acc_norm only re-weights the
choices' loglikelihoods by length, so guessing uniformly scores the same)."""


def _choice_baseline(rows: list[dict]) -> tuple[dict[str, float], str]:
    """Chance accuracy of a standard multiple-choice task from its evaluated documents:
    the mean over documents of 1/(number of choices), since items may differ in choice
    count (HellaSwag has 4, PIQA 2, ARC 3-5)."""
    counts = [len(r["loglikelihoods"]) for r in rows if r.get("loglikelihoods")]
    if not counts:
        return {}, "none (not a multiple-choice task)"
    chance = sum(1.0 / n for n in counts) / len(counts)
    return ({m: chance for m in CHOICE_METRICS},
            "uniform choice: mean over the evaluated documents of 1/num_choices")


def assemble(raw: Mapping[str, Any], info: RunInfo, manifests: Mapping[str, dict],
             tokenizer: Any = None, vocab_size: int | None = None
             ) -> tuple[dict[str, Any], dict[str, list[dict]], dict[str, Any]]:
    """(results.json content, {task: sample rows}, metrics dict)."""
    task_results = dict(raw["results"]) | dict(raw.get("groups") or {})
    configs = raw.get("configs", {})
    tasks_out: dict[str, Any] = {}
    samples_out: dict[str, list[dict]] = {}
    metrics_tasks: dict[str, dict[str, float]] = {}
    baselines: dict[str, dict[str, float]] = {}

    for name in sorted(task_results):
        manifest = manifests.get(name)
        metrics = task_metrics(task_results[name])
        config = configs.get(name, {})
        output_type = config.get("output_type")
        entry: dict[str, Any] = {"metrics": metrics}
        if name in raw.get("samples", {}):
            samples = raw["samples"][name]
            rows = sample_rows(samples, output_type)
            if output_type == "loglikelihood_rolling" and "bits_per_byte" in metrics:
                se = bits_per_byte_stderr(rows)
                if se is not None:
                    metrics["bits_per_byte_stderr"] = se
                    entry["stderr_notes"] = {
                        "bits_per_byte_stderr": "repro: delta method for a ratio over "
                        "documents (lm-eval reports none for bits_per_byte)"}
            text_of = {int(s["doc_id"]): s["doc"].get("text", "") for s in samples
                       if isinstance(s.get("doc"), Mapping)}
            texts = [text_of.get(r["doc_id"], "") for r in rows]
            base, how = _baseline(manifest, rows, texts, tokenizer, vocab_size or 0)
            samples_out[name] = rows
            entry["samples_file"] = samples_file(name)
        else:  # a group: its metrics aggregate its tasks'
            base, how = {}, "none (group)"
        entry |= {
            "metrics": dict(sorted(metrics.items())),
            "n_samples": raw.get("n-samples", {}).get(name),
            "limit": info.task_limits.get(name, info.settings.get("limit")),
            "n_shot": raw.get("n-shot", {}).get(name),
            "version": raw.get("versions", {}).get(name),
            "higher_is_better": raw.get("higher_is_better", {}).get(name),
            "random_baseline": base,
            "random_baseline_definition": how,
            "config": clean_config(_local_config(config) if manifest is not None else config,
                                   info.path_placeholders),
            "lm_eval_command": info.commands.get(name),
        }
        if manifest is not None:
            entry["source"] = {
                "kind": "local", "task_kind": manifest["kind"], "dataset": manifest["dataset"],
                "data_sha256": manifest["data_sha256"], "num_docs": manifest["num_docs"],
                "task_version": manifest["version"], "seed": manifest.get("seed")}
        else:
            entry["source"] = {"kind": "lm_eval",
                               "dataset_path": config.get("dataset_path"),
                               "dataset_name": config.get("dataset_name")}
        tasks_out[name] = entry
        metrics_tasks[name] = dict(sorted(metrics.items()))
        if base:
            baselines[name] = base

    results = {
        "format_version": RESULTS_FORMAT_VERSION,
        "experiment": info.experiment,
        "checkpoint": {
            "stage": info.checkpoint,
            "model_sha256": info.checkpoint_sha256,
            "tokens_seen": info.tokens_seen,
            "tokens_seen_source": (f"trainer_state.json:{info.tokens_seen_key}"
                                   if info.tokens_seen_key else None),
            "num_parameters": raw.get("config", {}).get("model_num_parameters"),
        },
        "lm_eval": {
            "version": raw.get("lm_eval_version"),
            "transformers_version": raw.get("transformers_version"),
            "max_length": raw.get("max_length"),
        },
        "settings": info.settings,
        "presets": info.presets,
        "standard_tasks": info.standard_tasks,
        "tasks": tasks_out,
        "failed_tasks": dict(sorted(info.failed_tasks.items())),
    }
    metrics_out = {
        "experiment": info.experiment,
        "checkpoint": info.checkpoint,
        "tokens_seen": info.tokens_seen,
        "tasks": metrics_tasks,
        "random_baseline": baselines,
        "failed_tasks": dict(sorted(info.failed_tasks.items())),
    }
    return results, samples_out, metrics_out
