"""`repro summary`: the first screen after `make quickstart` (issue 19 item 6).

A newcomer who just watched a pipeline scroll by needs three things: where the report is,
what it found (the headline comparison with its interval, so a difference inside the noise
reads as such), and what to try next. Everything shown is read from what the pipeline
committed: each report stage's `summary.json` (repro.report.tables.summary_record: the
deltas against the baseline with their bootstrap intervals), dvc.yaml and params.yaml (real
stage ids for the example command), the Makefile (the example targets that exist).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from repro import paths, yamlio
from repro.errors import ReproError
from repro.status import pipeline_files

SUMMARY_FILE = "summary.json"
AGGREGATE = "aggregate"  # repro.report.compare.AGGREGATE (not imported: it pulls in numpy)


def report_dirs(root: Path) -> list[PurePosixPath]:
    """The report folders the root pipeline writes: outputs under reports/ holding a
    summary.json (report stages; a ladder's fit folder has none)."""
    try:
        doc = yamlio.safe_load((root / str(paths.DVC_YAML)).read_text(encoding="utf-8")) or {}
    except OSError:
        return []
    found = []
    for entry in (doc.get("stages") or {}).values():
        for out in (entry or {}).get("outs") or []:
            name = next(iter(out)) if isinstance(out, dict) else out
            rel = PurePosixPath(str(name))
            if rel.parts[:1] == paths.REPORTS_DIR.parts and (root / str(rel) / SUMMARY_FILE).is_file():
                found.append(rel)
    return sorted(set(found))


def _num(x: Any) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        return "n/a"
    return f"{x:+.4f}" if abs(x) >= 1e-3 or x == 0 else f"{x:+.2e}"


def _better(delta: float, direction: str) -> str:
    if delta == 0:
        return "same"
    return "better" if (delta > 0) == (direction == "higher") else "worse"


def _delta_line(d: dict[str, Any], direction: str, label: str) -> str:
    delta = d.get("delta")
    interval = (f"[{_num(d.get('ci_low'))}, {_num(d.get('ci_high'))}]"
                if d.get("ci_low") is not None else "(no interval)")
    verdict = "" if not isinstance(delta, (int, float)) else _better(delta, direction)
    if d.get("claim") == "checkpoint":  # a side has one seed: no claim about the method
        verdict += " (this checkpoint only)"
    if d.get("significant") is False:
        verdict += ", not significant: the interval covers 0"
    elif d.get("significant") is None:
        verdict += ", significance unknown"
    if d.get("within_seed_noise") is True:
        verdict += f", within seed noise (seed spread {_num(d.get('seed_spread')).lstrip('+')})"
    return f"{label}: {_num(delta)} {interval} {verdict}".rstrip()


def headline(summary: dict[str, Any]) -> list[str]:
    """Per non-baseline experiment: the aggregate score's difference to the baseline with
    its interval, then each primary metric's, one line each."""
    deltas = [d for d in summary.get("deltas") or [] if isinstance(d, dict)]
    directions = {m.get("column"): m.get("better", "higher") for m in summary.get("metrics") or []
                  if isinstance(m, dict)}
    primary = [m.get("column") for m in summary.get("metrics") or []
               if isinstance(m, dict) and m.get("primary")]
    boot = summary.get("bootstrap") or {}
    conf = boot.get("confidence")
    lines = []
    experiments = [e for e in summary.get("experiments") or [] if e != summary.get("baseline")]
    for exp in experiments:
        mine = {d.get("column"): d for d in deltas if d.get("experiment") == exp}
        if not mine:
            continue
        replicas = summary.get("replicas") or {}
        lines.append(f"{exp} vs {summary.get('baseline')} ({len(replicas.get(exp, []))} vs "
                     f"{len(replicas.get(summary.get('baseline'), []))} replica(s)):")
        if AGGREGATE in mine:
            lines.append("  " + _delta_line(mine[AGGREGATE], "higher",
                                             "aggregate score (higher is better)"))
        for col in primary:
            if col in mine:
                lines.append("  " + _delta_line(mine[col], directions.get(col, "higher"),
                                                 f"{col} ({directions.get(col, 'higher')} is better)"))
    if lines and isinstance(conf, (int, float)):
        method = boot.get("method") if boot.get("used") else boot.get("fallback")
        lines.append(f"  (differences to the baseline; [{conf:.0%} interval], {method})")
    return lines


_COMMAND_COLUMN = 60
"""The widest command whose comment stays on its line in `repro summary`'s next steps."""


def _settings(root: Path, name: PurePosixPath) -> dict[str, Any]:
    """A params file's sections, or none where it is missing or not what `repro compile`
    writes (the suggestions are then left out; the stages themselves report such a file)."""
    try:
        params = yamlio.safe_load((root / str(name)).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return params if isinstance(params, dict) else {}


def _example_params(params: dict[str, Any], experiments: list[str]) -> list[str]:
    """Real `-S` arguments: a reported experiment's learning rate doubled (the first
    experiment that has training stages), in every training phase of its main run: each
    phase's section holds the run's LR (`optimizer.lr`), and setting one phase alone would
    give the run an LR jump at the phase boundary. The main run's phase stages are named
    `train-<experiment>-<phase>` (a replica's carry its seed: repro.compile.graph).
    `params`: params.yaml's sections, where the training stages' lie."""
    sections = {str(k): v for k, v in params.items()
                if str(k).startswith("train-") and isinstance(v, dict)}
    lrs = {name: lr for name, v in sections.items()
           if isinstance(lr := (v.get("optimizer") or {}).get("lr"), (int, float))}
    for experiment in experiments:
        sets = [f"{name}.optimizer.lr={lr * 2:g}" for name, lr in lrs.items()
                if name == f"train-{experiment}-{sections[name].get('phase')}"]
        if sets:
            return sets
    # no phase names the main run (settings written otherwise): one stage, a reported
    # experiment's first
    for prefix in [f"train-{e}-" for e in experiments] + ["train-"]:
        for name, lr in lrs.items():
            if name.startswith(prefix):
                return [f"{name}.optimizer.lr={lr * 2:g}"]
    return []


def _example_data_param(params: dict[str, Any]) -> str | None:
    """A real data ablation's `-S` argument (FineWeb-style): the first curation step with a
    `min_doc_words` threshold, raised by 10, named with its file (a bare key means
    params.yaml, which holds no data stage). `params`: params.data.yaml's sections."""
    for name, section in params.items():
        steps = section.get("steps") if isinstance(section, dict) else None
        if not str(name).startswith("curate-") or not isinstance(steps, list):
            continue
        for i, step in enumerate(steps):
            words = step.get("min_doc_words") if isinstance(step, dict) else None
            if isinstance(words, int) and not isinstance(words, bool):
                return f"{paths.DATA_PARAMS_YAML}:{name}.steps.{i}.min_doc_words={words + 10}"
    return None


def _make_targets(root: Path) -> set[str]:
    try:
        text = (root / "Makefile").read_text(encoding="utf-8")
    except OSError:
        return set()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, flags=re.M))


def next_commands(root: Path, experiments: list[str] = ()) -> list[tuple[str, str]]:
    cmds: list[tuple[str, str]] = []
    sets = _example_params(_settings(root, paths.PARAMS_YAML), list(experiments))
    if sets:
        cmds.append(("dvc exp run " + " ".join(f"-S '{s}'" for s in sets),
                     "an experiment (the LR doubled): reruns only what reads it"))
    data_param = _example_data_param(_settings(root, paths.DATA_PARAMS_YAML))
    if data_param:
        cmds.append((f"dvc exp run -S '{data_param}'",
                     "a data ablation: reruns that curation and all downstream"))
    cmds.append(("dvc exp show ; dvc plots diff", "compare experiments, loss and score curves"))
    targets = _make_targets(root)
    for f in pipeline_files(root):
        if f == paths.DVC_YAML:
            continue
        name = f.parent.name
        cmd = f"make example-{name}" if f"example-{name}" in targets else f"dvc repro {f}"
        cmds.append((cmd, f"the {name} example pipeline"))
    cmds.append(("repro status", "every pipeline: stages, what is stale, how long each took"))
    cmds.append(("repro publish site/", "a static site of every report and experiment"))
    cmds.append(("dvc remote add -d shared <folder or s3://...> ; dvc push",
                 "share the cache (README: Sharing the DVC cache)"))
    return cmds


def render(root: Path, dirs: list[PurePosixPath] | None = None) -> str:
    dirs = report_dirs(root) if dirs is None else dirs
    if not dirs:
        raise ReproError("no report found (no output under reports/ with a summary.json in "
                         "dvc.yaml's stages)", fix="run `dvc repro` first, or name the report "
                         "folder: `repro summary reports/<name>`")
    lines: list[str] = []
    experiments: list[str] = []
    for rel in dirs:
        file = root / str(rel) / SUMMARY_FILE
        try:
            summary = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ReproError(f"cannot read the report's summary: {e}", file=str(rel / SUMMARY_FILE),
                             fix="rebuild it with `dvc repro`") from None
        if not isinstance(summary, dict):
            raise ReproError("is not a JSON object", file=str(rel / SUMMARY_FILE),
                             fix="rebuild it with `dvc repro`")
        lines += [f"Report {summary.get('report', rel.name)}: {rel}/report.html "
                  f"(also {rel}/report.md; every number in {rel}/summary.csv, deltas.csv)"]
        # the compared experiments first (baseline last): the `-S` example changes one of them
        experiments += [e for e in summary.get("experiments") or [] if e != summary.get("baseline")]
        experiments.append(str(summary.get("baseline")))
        found = headline(summary)
        lines += found or ["  (no comparison with a baseline in this report)"]
        problems = summary.get("problems") or []
        if problems:
            lines.append(f"  {len(problems)} problem(s) noted in the report: see report.md")
        lines.append("")
    cmds = next_commands(root, experiments)
    # comments in one column; a command too long for it gets its comment on the next line
    width = max((len(c) for c, _ in cmds if len(c) <= _COMMAND_COLUMN), default=0)
    lines.append("Next, with `source .venv/bin/activate`:")
    for c, why in cmds:
        lines += ([f"  {c}", f"  {'':{width}}  # {why}"] if len(c) > width
                  else [f"  {c.ljust(width)}  # {why}"])
    return "\n".join(lines) + "\n"
