"""The deterministic part of an lm-eval result: metrics, per-sample logs, task configs.

lm-eval's own result dict also carries dates, durations, git hashes, environment dumps and
absolute paths; none of that may reach a DVC output (two runs must give identical bytes),
so we copy out only what describes the evaluation itself.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping

_RESULT_SKIP = {"name", "alias", "sample_len", " ", ""}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def metric_key(key: str) -> str | None:
    """`acc,none` -> `acc`; `acc_stderr,none` -> `acc_stderr`; another filter is kept as
    `exact_match@strict-match` / `exact_match@strict-match_stderr`; non-metrics -> None."""
    if "," not in key:
        return None
    metric, filt = key.split(",", 1)
    if filt == "none":
        return metric
    if metric.endswith("_stderr"):
        return f"{metric[: -len('_stderr')]}@{filt}_stderr"
    return f"{metric}@{filt}"


def task_metrics(entry: Mapping[str, Any]) -> dict[str, float]:
    """Numeric metrics of one task's `results` entry ("N/A" stderrs are dropped)."""
    out: dict[str, float] = {}
    for key, value in entry.items():
        if key in _RESULT_SKIP:
            continue
        name = metric_key(key)
        if name is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[name] = float(value)
    return dict(sorted(out.items()))


def _json_number(x: Any) -> Any:
    if isinstance(x, bool):
        return x
    if isinstance(x, (int,)):
        return int(x)
    try:
        return float(x)
    except (TypeError, ValueError):
        return x


def sample_rows(samples: Iterable[Mapping[str, Any]], output_type: str) -> list[dict[str, Any]]:
    """Per-document records, sorted by document index, for paired comparisons later.

    loglikelihood_rolling: the document's total loglikelihood (nats) with its byte and word
    counts (lm-eval's own `(ll, count)` pairs). multiple_choice: per-choice loglikelihoods,
    whether each is the greedy continuation, the gold label, acc and acc_norm.
    """
    rows = []
    for s in samples:
        if s.get("filter", "none") != "none":
            continue
        doc = s.get("doc") or {}
        row: dict[str, Any] = {"doc_id": int(s["doc_id"])}
        if isinstance(doc, Mapping) and "id" in doc:
            row["id"] = doc["id"]
        if output_type == "loglikelihood_rolling":
            (ll,) = s["filtered_resps"]
            row["loglikelihood"] = float(ll)
            if "byte_perplexity" in s or "bits_per_byte" in s:
                row["bytes"] = int((s.get("bits_per_byte") or s["byte_perplexity"])[1])
            if "word_perplexity" in s:
                row["words"] = int(s["word_perplexity"][1])
        elif output_type == "multiple_choice":
            resps = s["filtered_resps"]
            row["target"] = _json_number(s["target"])
            row["loglikelihoods"] = [float(r[0]) for r in resps]
            row["is_greedy"] = [bool(r[1]) for r in resps]
            for m in ("acc", "acc_norm", "acc_bytes", "acc_mutual_info"):
                if m in s:
                    row[m] = float(s[m])
        else:
            # Generation and other tasks: keep the target and the per-sample metric values.
            row["target"] = _json_number(s.get("target"))
            for m in s.get("metrics", []):
                if m in s and isinstance(s[m], (int, float)):
                    row[m] = float(s[m])
        rows.append(row)
    return sorted(rows, key=lambda r: r["doc_id"])


def bits_per_byte_stderr(rows: list[dict[str, Any]]) -> float | None:
    """Standard error of bits per byte over documents.

    lm-eval reports none (its bits_per_byte is a ratio of sums, not a mean). Treating
    documents as the sampling unit, the delta method for a ratio estimator R = Σa/Σb gives
    se = sqrt(Σ(a_i − R·b_i)² / (n(n−1))) / mean(b), with a_i = −ll_i/ln 2, b_i = bytes_i.
    """
    pairs = [(-r["loglikelihood"] / math.log(2), r["bytes"]) for r in rows if "bytes" in r]
    n = len(pairs)
    if n < 2:
        return None
    total_a = sum(a for a, _ in pairs)
    total_b = sum(b for _, b in pairs)
    if total_b <= 0:
        return None
    ratio = total_a / total_b
    resid = sum((a - ratio * b) ** 2 for a, b in pairs)
    return math.sqrt(resid / (n * (n - 1))) / (total_b / n)


def clean_config(config: Any, replacements: Mapping[str, str]) -> Any:
    """A task config without machine-specific values: absolute paths are replaced by
    placeholders, the YAML's own path is dropped, memory addresses are removed."""
    if isinstance(config, Mapping):
        return {str(k): clean_config(v, replacements) for k, v in sorted(config.items())
                if k != "config_source"}
    if isinstance(config, (list, tuple)):
        return [clean_config(v, replacements) for v in config]
    if isinstance(config, str):
        for old, new in replacements.items():
            config = config.replace(old, new)
        return _ADDRESS.sub("", config)
    if config is None or isinstance(config, (bool, int, float)):
        return config
    return _ADDRESS.sub("", str(config))
