"""The workspace a sweep runs in: compiled specs, current dvc.yaml/params.yaml, and the
stages a trial can change.

A trial is `dvc exp run -S` on params.yaml (a data stage's key: on params.data.yaml, an
example pipeline's: on its own examples/<name>/params.yaml, `-S <file>:<key>=<value>`), so the params
files must be what the specs compile to: a stale file would make every trial measure
settings nobody wrote down. The check is
`repro compile --check`'s (same rendering), but it keeps the stage graph, which the sweep
needs to find its objective and the stages upstream of it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from repro import paths, yamlio
from repro.compile.graph import OutputRef, StageGraph
from repro.compile.pipelines import Pipeline, compile_pipeline, pipeline_of, specs_root
from repro.errors import ReproError
from repro.spec.load import SpecError
from repro.sweep.errors import SweepInputError


@dataclass(frozen=True)
class Workspace:
    """A compiled, current workspace."""

    root: Path
    pipeline: Pipeline
    """The pipeline the sweep's spec belongs to (the default one, or an example)."""
    graph: StageGraph
    """Every stage of that pipeline and, for an example, of the default one it reads."""
    params: dict[str, Any]
    """The params files as written (what every trial starts from): params.yaml,
    params.data.yaml and an example's, merged (their sections are stage names, distinct:
    repro.compile.graph.name_stages)."""
    dvc_yaml: dict[str, Any]
    """dvc.yaml as compiled (an example's stages merged in)."""
    params_files: dict[str, str]
    """Stage name -> its params file, for the stages not in ./params.yaml (the data stages',
    an example's)."""


def compile_workspace(spec: Path, root: Path, require_current: bool = True) -> Workspace:
    """Compile the pipeline `spec` belongs to (repro.compile.pipelines.pipeline_of: the
    top-level specs of its folder, or an example's with the default's) and check that its
    dvc.yaml and params.yaml, and the default pipeline's, are exactly what they compile to;
    SweepInputError otherwise. `require_current=False` (rebuilding a report) reads the params
    files as they are: `dvc exp apply` may have changed them."""
    pipeline = pipeline_of(spec)
    try:
        default, this = compile_pipeline(pipeline, root)
        expected = {**default.texts(), **this.texts()}
    except SpecError as e:
        raise SweepInputError(e.issues) from None
    stale = [str(rel) for rel, text in expected.items()
             if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text]
    if stale and require_current:
        raise SweepInputError([ReproError(
            f"not what the specs compile to, so trials would run other settings than the "
            f"specs say", fix=f"run `repro compile --specs {specs_root(pipeline)}` (and commit "
            "the result)", file=", ".join(stale))])
    params: dict[str, Any] = {}
    dvc_stages: dict[str, Any] = {}
    for rel in (r for r in expected if r.name != paths.DVC_YAML.name):  # the params files
        file = root / rel
        text = expected[rel] if require_current else (
            file.read_text(encoding="utf-8") if file.is_file() else "")
        params.update(yamlio.safe_load(text) or {})
    for rel in dict.fromkeys((default.pipeline.dvc_yaml, pipeline.dvc_yaml)):
        dvc_stages.update((yamlio.safe_load(expected[rel]) or {}).get("stages") or {})
    # a stage whose section is not in ./params.yaml: a trial names its file in `-S`
    files = {c.graph.name(sid): str(rel)
             for c in ([default] if this is default else [default, this]) for sid in c.stage_ids
             if (rel := c.placement.params_file(c.graph.stages[sid].kind)) != paths.PARAMS_YAML}
    return Workspace(root, pipeline, this.graph, params, {"stages": dvc_stages}, files)


def upstream(graph: StageGraph, stage_id: str) -> set[str]:
    """The stage and every stage it reads, directly or not: what `dvc repro <stage>` runs."""
    found: set[str] = set()
    frontier = [stage_id]
    while frontier:
        sid = frontier.pop()
        if sid in found:
            continue
        found.add(sid)
        frontier += [ref.stage_id for _, ref in graph.stages[sid].inputs
                     if isinstance(ref, OutputRef)]
    return found


def uncached_outputs(dvc_yaml: dict[str, Any], stage_ids: Iterable[str]) -> list[str]:
    """The `cache: false` outputs (metrics, plots, environment records) of some stages in
    dvc.yaml. A queued trial runs in a git checkout where only cached outputs can be checked
    out: an uncommitted uncached output is missing there, and DVC reruns its stage (a whole
    upstream curation, say). Copying them into the trial (`dvc exp run -C`) keeps those
    stages skipped."""
    stages = dvc_yaml.get("stages") or {}
    out: list[str] = []
    for sid in stage_ids:
        for kind in ("outs", "metrics", "plots"):
            for entry in (stages.get(sid) or {}).get(kind) or []:
                if isinstance(entry, dict):
                    out += [path for path, opts in entry.items()
                            if isinstance(opts, dict) and opts.get("cache") is False]
    return sorted(set(out))


def check_committed(root: Path, pipeline: Pipeline | None = None) -> None:
    """Queued trials run in a git checkout of the workspace: DVC copies tracked files (with
    their uncommitted changes) but not untracked ones, and needs a commit to branch from.
    Say so before queueing instead of letting every trial fail on a missing dvc.yaml (the
    default pipeline's, and `pipeline`'s when it is an example)."""
    def git(*args: str) -> bool:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True).returncode == 0
        except FileNotFoundError:
            return False

    issues = []
    if not git("rev-parse", "--verify", "-q", "HEAD"):
        issues.append(ReproError("not a git repository with a commit; DVC "
                                  "experiments branch from the current commit",
                                 fix="`git init`, then `git add -A && git commit`", file=str(root)))
    else:
        folders = [PurePosixPath(".")] if pipeline is None or pipeline.name is None else [
            PurePosixPath("."), pipeline.folder]
        # dvc.yaml and params.yaml always; another params file where compile wrote one
        wanted = [f / name for f in folders for name in (paths.DVC_YAML, *paths.PARAMS_FILES)
                  if name in (paths.DVC_YAML, paths.PARAMS_YAML) or (root / str(f / name)).is_file()]
        for rel in wanted:
            if not git("ls-files", "--error-unmatch", str(rel)):
                issues.append(ReproError("is not tracked by git, so queued "
                                          "trials (run in a git checkout) would not see it",
                                         fix=f"`git add {rel}` and commit", file=str(rel)))
    if issues:
        raise SweepInputError(issues)
