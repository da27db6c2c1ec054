"""The committed measurements a plan rests on, read from the repository (never from the
network): the per-step curation costs bench/curation_steps.py wrote, and the metrics files
of stages that already ran (`metrics/<stage id>.json`, committed by DVC, cache: false)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from repro import paths, yamlio
from repro.verify.lockfile import declared_stage_id

STEP_COSTS = Path("bench/results/curation_steps.json")
"""Written by `python -m bench.curation_steps` (see bench/README.md); committed."""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def step_costs(root: Path) -> dict | None:
    """The benchmark's measurement file, or None if it is missing or unreadable."""
    return _read_json(root / STEP_COSTS)


def stage_metrics(root: Path, stage_id: str) -> dict | None:
    """A stage's committed metrics, if that exact stage (same settings) has run."""
    return _read_json(root / str(paths.stage_metrics(stage_id)))


@dataclass(frozen=True)
class CorpusRun:
    """One committed curate run of a builtin corpus."""

    metrics_file: str
    max_docs: int | None
    metrics: dict


@dataclass
class BuiltinRuns:
    """Committed curate runs per builtin corpus name, found through params.yaml's curate
    sections (which hold each stage's source settings)."""

    runs: dict[str, list[CorpusRun]] = field(default_factory=dict)

    def corpus_size(self, name: str) -> tuple[int, str] | None:
        """(documents in the whole corpus, metrics file) when a run read all of it: no cap,
        or fewer documents than its cap."""
        for run in self.runs.get(name, []):
            docs = run.metrics.get("docs_in", 0)
            if run.max_docs is None or docs < run.max_docs:
                return docs, run.metrics_file
        return None

    def largest_read(self, name: str) -> tuple[int, str] | None:
        """(most documents any run read, metrics file): the corpus has at least that many."""
        found = [(r.metrics.get("docs_in", 0), r.metrics_file) for r in self.runs.get(name, [])]
        return max(found) if found else None


def stage_ids(root: Path) -> dict[str, str]:
    """Stage name -> stage id, from the commands of the default pipeline's dvc.yaml: params.yaml
    sections are keyed by name, committed metrics by id (the settings hash, `--id`)."""
    try:
        stages = (yamlio.safe_load((root / str(paths.DVC_YAML)).read_text(encoding="utf-8")) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {name: sid for name, entry in stages.items()
            if (sid := declared_stage_id(entry if isinstance(entry, dict) else {})) is not None}


def builtin_runs(root: Path) -> BuiltinRuns:
    out = BuiltinRuns()
    try:
        params = yamlio.load_params(root)
    except (OSError, yaml.YAMLError):
        return out
    ids = stage_ids(root)
    for name, section in sorted(params.items()):
        source = section.get("source") if isinstance(section, dict) else None
        if not name.startswith("curate-") or not isinstance(source, dict):
            continue
        if source.get("kind") != "builtin":
            continue
        stage_id = ids.get(name, name)
        metrics = stage_metrics(root, stage_id)
        if metrics is not None:
            out.runs.setdefault(source["name"], []).append(
                CorpusRun(str(paths.stage_metrics(stage_id)), source.get("max_docs"), metrics))
    return out
