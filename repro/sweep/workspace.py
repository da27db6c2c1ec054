"""The workspace a sweep runs in: compiled specs, current dvc.yaml/params.yaml, and the
stages a trial can change.

A trial is `dvc exp run -S` on params.yaml, so params.yaml must be what the specs compile
to: a stale file would make every trial measure settings nobody wrote down. The check is
`repro compile --check`'s (same rendering), but it keeps the stage graph, which the sweep
needs to find its objective and the stages upstream of it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro import paths, yamlio
from repro.compile.errors import GraphError
from repro.compile.graph import OutputRef, StageGraph
from repro.compile.render import render_dvc_yaml, render_params_yaml
from repro.compile.specs import compile_files
from repro.errors import ReproError
from repro.spec.load import SpecError, experiment_files
from repro.sweep.errors import SweepInputError


@dataclass(frozen=True)
class Workspace:
    """A compiled, current workspace."""

    root: Path
    graph: StageGraph
    params: dict[str, Any]
    """params.yaml as written (what every trial starts from)."""
    dvc_yaml: dict[str, Any]
    """dvc.yaml as compiled."""


def compile_workspace(specs_dir: Path, root: Path, require_current: bool = True) -> Workspace:
    """Compile the top-level specs of `specs_dir` and check root's dvc.yaml and params.yaml
    are exactly what they compile to; SweepInputError otherwise. `require_current=False`
    (rebuilding a report) reads params.yaml as it is: `dvc exp apply` may have changed it."""
    files = experiment_files(specs_dir)
    try:
        graph = compile_files(files, specs_dir, root)
        expected = {paths.DVC_YAML: render_dvc_yaml(graph),
                    paths.PARAMS_YAML: render_params_yaml(graph)}
    except SpecError as e:
        raise SweepInputError(e.issues) from None
    except GraphError as e:
        # located in its spec file and line when it concerns one spec
        raise SweepInputError([e if e.file else e.located(str(specs_dir))]) from None
    stale = [str(rel) for rel, text in expected.items()
             if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text]
    if stale and require_current:
        raise SweepInputError([ReproError(
            f"not what the specs in {specs_dir} compile to, so trials would run other settings "
            "than the specs say", fix=f"run `repro compile --specs {specs_dir}` (and commit the "
            "result)", file=", ".join(stale))])
    params_file = root / paths.PARAMS_YAML
    text = expected[paths.PARAMS_YAML] if require_current else (
        params_file.read_text(encoding="utf-8") if params_file.is_file() else "")
    params = yamlio.safe_load(text) or {}
    return Workspace(root, graph, params, yamlio.safe_load(expected[paths.DVC_YAML]) or {})


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


def check_committed(root: Path) -> None:
    """Queued trials run in a git checkout of the workspace: DVC copies tracked files (with
    their uncommitted changes) but not untracked ones, and needs a commit to branch from.
    Say so before queueing instead of letting every trial fail on a missing dvc.yaml."""
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
        for rel in (paths.DVC_YAML, paths.PARAMS_YAML):
            if not git("ls-files", "--error-unmatch", str(rel)):
                issues.append(ReproError("is not tracked by git, so queued "
                                          "trials (run in a git checkout) would not see it",
                                         fix=f"`git add {rel}` and commit", file=str(rel)))
    if issues:
        raise SweepInputError(issues)
