"""`repro status`: the workspace's pipelines, what each holds, what is stale, what it cost.

A repository holds several DVC pipelines: the default one (`dvc.yaml` at the root) and one
per example (`examples/<name>/dvc.yaml`, issue 19 item 2). For each this lists the number of
stages, how many are up to date and how many `dvc repro` would run, and how long its last
build took: the sum of its stages' `run.wall_seconds`, which `repro stage` records in each
stage's `metrics/<id>.env.json` (repro.environment.process_seconds: process start-up and
imports included, DVC's own bookkeeping between stages not). A stage whose record predates
that field, or that never ran, is counted as not timed.

What is stale comes from DVC itself, one `dvc status --json` for the whole repository (it
covers every dvc.yaml in one process: one start-up, one index). Its cost grows faster than
the number of stages (DVC re-reads a stage's whole params file for every stage;
bench/stage_overhead.py measures it), so `--no-dvc` skips it and shows only what the files say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from repro import paths, yamlio
from repro.errors import ReproError

EXAMPLES_GLOB = "examples/*/dvc.yaml"
"""Where the example pipelines live (discovered, not listed: a new example shows up)."""


@dataclass(frozen=True)
class StageRecord:
    name: str
    wall_seconds: float | None  # None: no timed run recorded


@dataclass(frozen=True)
class PipelineStatus:
    path: str  # the dvc.yaml, relative to the repository root
    stages: tuple[StageRecord, ...]
    stale: frozenset[str] | None  # stage names `dvc status` reports; None: not asked

    @property
    def timed_seconds(self) -> float:
        return sum(s.wall_seconds or 0.0 for s in self.stages)

    @property
    def untimed(self) -> int:
        return sum(1 for s in self.stages if s.wall_seconds is None)


def pipeline_files(root: Path) -> list[PurePosixPath]:
    """The root dvc.yaml (when present), then every examples/<name>/dvc.yaml, sorted."""
    found = [paths.DVC_YAML] if (root / str(paths.DVC_YAML)).is_file() else []
    return found + sorted(PurePosixPath(p.relative_to(root).as_posix())
                          for p in root.glob(EXAMPLES_GLOB) if p.is_file())


def _env_output(entry: dict[str, Any]) -> str | None:
    for out in entry.get("outs") or []:
        name = next(iter(out)) if isinstance(out, dict) else out
        if isinstance(name, str) and name.endswith(".env.json"):
            return name
    return None


def _wall_seconds(path: Path) -> float | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    seconds = (record.get("run") or {}).get("wall_seconds") if isinstance(record, dict) else None
    return float(seconds) if isinstance(seconds, (int, float)) else None


def read_pipeline(root: Path, dvc_yaml: PurePosixPath) -> list[StageRecord]:
    """The stages of one dvc.yaml with the wall seconds of their last recorded run. Output
    paths are relative to the stage's working directory (the file's folder, or its `wdir`)."""
    file = root / str(dvc_yaml)
    try:
        doc = yamlio.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, ValueError) as e:
        raise ReproError(f"cannot read the pipeline: {e}", file=str(dvc_yaml),
                         fix="run `repro compile` to regenerate it") from None
    stages = doc.get("stages") if isinstance(doc, dict) else None
    if not isinstance(stages, dict):
        raise ReproError("has no `stages` mapping", file=str(dvc_yaml),
                         fix="run `repro compile` to regenerate it")
    out = []
    for name, entry in stages.items():
        entry = entry if isinstance(entry, dict) else {}
        env = _env_output(entry)
        wdir = file.parent / str(entry.get("wdir", "."))
        out.append(StageRecord(str(name), _wall_seconds(wdir / env) if env else None))
    return out


def dvc_stale(root: Path) -> dict[str, set[str]]:
    """dvc.yaml path -> names of the stages `dvc status` reports (changed, never built, or
    missing outputs). DVC names a stage of a dvc.yaml outside the root `<path>:<stage>`."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", "--json"],
                          cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReproError(f"`dvc status` failed: {proc.stderr.strip()[-2000:]}",
                         fix="run `dvc status` to see DVC's error, or `repro status --no-dvc`")
    stale: dict[str, set[str]] = {}
    for key in json.loads(proc.stdout or "{}"):
        file, sep, stage = key.rpartition(":")
        if not sep or not file.endswith(("dvc.yaml", "dvc.yml")):
            file, stage = str(paths.DVC_YAML), key  # a root stage: just its name
        stale.setdefault(str(PurePosixPath(file)), set()).add(stage)
    return stale


def collect(root: Path, ask_dvc: bool = True) -> list[PipelineStatus]:
    files = pipeline_files(root)
    stale = dvc_stale(root) if ask_dvc and files else None
    out = []
    for f in files:
        stages = tuple(read_pipeline(root, f))
        # a `.dvc` file's entry (no stage of ours) is not counted against a pipeline
        names = {s.name for s in stages}
        out.append(PipelineStatus(str(f), stages, None if stale is None
                                  else frozenset(stale.get(str(f), set()) & names)))
    return out


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def render(pipelines: list[PipelineStatus]) -> str:
    if not pipelines:
        return "No pipeline here (no dvc.yaml): run `repro compile`.\n"
    rows = [("pipeline", "stages", "up to date", "to run", "last build")]
    for p in pipelines:
        n = len(p.stages)
        known = [s for s in p.stages if s.name not in (p.stale or ())]
        took = _duration(p.timed_seconds) if p.untimed < n else "never timed"
        if 0 < p.untimed < n:
            took += f" ({p.untimed} stage(s) not timed)"
        rows.append((p.path, str(n), "?" if p.stale is None else str(len(known)),
                     "?" if p.stale is None else str(len(p.stale)), took))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 or i == len(r) - 1 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    notes = ["", "last build: the sum of the stages' recorded wall seconds (metrics/<id>.env.json;"
             " process start-up included, DVC's own time between stages not)."]
    if any(p.stale is None for p in pipelines):
        notes.append("up to date / to run: not checked (--no-dvc); `repro status` asks DVC.")
    else:
        notes.append("Rebuild one: `dvc repro <pipeline>`; why a stage would run: `repro explain`.")
    return "\n".join(lines + notes) + "\n"


def as_json(pipelines: list[PipelineStatus]) -> list[dict[str, Any]]:
    return [{"pipeline": p.path, "stages": len(p.stages),
             "to_run": None if p.stale is None else sorted(p.stale),
             "up_to_date": None if p.stale is None else len(p.stages) - len(p.stale),
             "last_build_seconds": round(p.timed_seconds, 2), "untimed_stages": p.untimed}
            for p in pipelines]
