"""Finished evaluations of a checkpoint, kept so that an evaluate stage scores only the
checkpoints it has not scored before.

An evaluate stage scores every checkpoint of a training run (repro.stages.evaluate), so
adding a snapshot (a smaller `evaluation.every_tokens`) changes the stage and DVC reruns it
whole; the checkpoints it already scored are then copied from here instead of being scored
again. An entry is the results folder's files and the metrics file's bytes, stored under
the checkpoint's cache folder (repro.paths.lm_eval_cache: by the sha256 of its weights) and
a key over everything else that shapes those bytes (`result_key`). Like lm-eval's response
cache beside it, it only saves time: the outputs are the same bytes cold or warm, and
removing it is always safe.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from repro.atomic import atomic_dir
from repro.paths import eval_result_cache

METRICS_FILE = "metrics.json"
RESULTS_DIR = "results"


def folder_digest(folder: Path, skip: frozenset[str] = frozenset()) -> str:
    """sha256 over `<relative path> <sha256>` lines of every file under `folder` (sorted),
    less the top-level names in `skip`: the content of a local task folder, or of a
    checkpoint's small files (config, tokenizer, trainer_state) beside its weights."""
    folder = Path(folder)
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if rel.parts[0] in skip:
            continue
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        lines.append(f"{rel.as_posix()} {h.hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def result_key(parts: Mapping[str, Any]) -> str:
    """Hash of what shapes an evaluation's bytes besides the checkpoint's weights (which name
    the cache folder): canonical JSON, so the key is the same in every process."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Evaluation:
    """One checkpoint's outputs as bytes: the results folder's files, the metrics file."""

    results: dict[str, bytes]
    """File name inside the results folder -> content."""
    metrics: bytes


@dataclass(frozen=True)
class ResultCache:
    """The entry of one evaluation: `<checkpoint cache folder>/results/<key>/`."""

    checkpoint_root: Path
    key: str

    @property
    def folder(self) -> Path:
        return Path(eval_result_cache(self.checkpoint_root, self.key))

    def load(self) -> Evaluation | None:
        """The stored evaluation, or None (no entry). Entries are written whole
        (atomic_dir), so one that exists is complete."""
        metrics = self.folder / METRICS_FILE
        results = self.folder / RESULTS_DIR
        if not metrics.is_file() or not results.is_dir():
            return None
        return Evaluation({p.name: p.read_bytes() for p in sorted(results.iterdir()) if p.is_file()},
                          metrics.read_bytes())

    def store(self, evaluation: Evaluation) -> None:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(self.folder) as tmp:
            (tmp / RESULTS_DIR).mkdir()
            for name, data in evaluation.results.items():
                (tmp / RESULTS_DIR / name).write_bytes(data)
            (tmp / METRICS_FILE).write_bytes(evaluation.metrics)
