"""Per-item scores from an evaluate stage's results folder (`samples_<task>.jsonl`, written
by repro.eval.results), as the numerators/denominators the bootstrap resamples.

Rows of a rolling-loglikelihood task carry `loglikelihood` (nats) and `bytes`: they give
bits_per_byte. Rows of a multiple-choice task carry per-item `acc` and `acc_norm` (0/1).
Rows are keyed by `doc_id`, which is what pairs two models' answers to the same item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.jsonl import JsonlError, iter_rows
from repro.report.stats import ItemScores

SAMPLES_PREFIX = "samples_"
MEAN_METRICS = ("acc", "acc_norm")
"""Per-item 0/1 metrics whose task statistic is their mean."""


@dataclass(frozen=True)
class MetricItems:
    """One replica's per-item statistic parts for one task metric, sorted by doc_id."""

    doc_ids: np.ndarray
    num: np.ndarray
    den: np.ndarray


def _finite(*xs: object) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
               for x in xs)


def _task_items(rows: list[dict]) -> tuple[dict[str, MetricItems], list[str]]:
    """metric -> items of one task, and why metrics were left out."""
    out: dict[str, MetricItems] = {}
    problems: list[str] = []
    candidates: dict[str, list[tuple[int, float, float]]] = {}
    if rows and all("loglikelihood" in r and "bytes" in r for r in rows):
        candidates["bits_per_byte"] = [
            (r["doc_id"], -r["loglikelihood"] / math.log(2) if _finite(r["loglikelihood"])
             else math.nan, r["bytes"]) for r in rows]
    for m in MEAN_METRICS:
        if rows and all(m in r for r in rows):
            candidates[m] = [(r["doc_id"], r[m], 1.0) for r in rows]
    for metric, items in candidates.items():
        bad = sum(1 for _, a, b in items if not _finite(a, b))
        if bad:
            problems.append(f"{metric}: {bad} item(s) with a missing or non-finite score")
            continue
        items.sort()
        ids = np.array([i for i, _, _ in items], dtype=np.int64)
        if len(np.unique(ids)) != len(ids):
            problems.append(f"{metric}: repeated doc_id in the samples")
            continue
        out[metric] = MetricItems(ids, np.array([a for _, a, _ in items], dtype=np.float64),
                                  np.array([b for _, _, b in items], dtype=np.float64))
    return out, problems


def read_items(folder: Path) -> tuple[dict[str, dict[str, MetricItems]], list[str]]:
    """task -> metric -> items from a results folder, and problems (file: reason)."""
    tasks: dict[str, dict[str, MetricItems]] = {}
    problems: list[str] = []
    files = sorted(Path(folder).glob(f"{SAMPLES_PREFIX}*.jsonl"))
    if not files:
        return {}, [f"{folder}: no {SAMPLES_PREFIX}<task>.jsonl files"]
    for path in files:
        task = path.stem[len(SAMPLES_PREFIX):]
        try:
            rows = list(iter_rows(path))
            if not all(isinstance(r, dict) and isinstance(r.get("doc_id"), int) for r in rows):
                raise ValueError("a row lacks an integer doc_id")
        except JsonlError as e:  # the file's name and line only: reports carry no paths
            problems.append(f"{path.name}: unreadable (line {e.line}: {e.message})")
            continue
        except (OSError, ValueError) as e:
            problems.append(f"{path.name}: unreadable ({e})")
            continue
        items, why = _task_items(rows)
        problems += [f"{path.name}: {w}" for w in why]
        if items:
            tasks[task] = items
    return tasks, problems


def common_ids(parts: list[MetricItems]) -> np.ndarray:
    """doc_ids present in every part, sorted."""
    ids = parts[0].doc_ids
    for p in parts[1:]:
        ids = np.intersect1d(ids, p.doc_ids)
    return ids


def stack(parts: list[MetricItems], ids: np.ndarray) -> ItemScores:
    """Replicas' items restricted to `ids` (sorted, present in every part), as ItemScores."""
    num, den = [], []
    for p in parts:
        pos = np.searchsorted(p.doc_ids, ids)
        num.append(p.num[pos])
        den.append(p.den[pos])
    return ItemScores(np.stack(num), np.stack(den))
