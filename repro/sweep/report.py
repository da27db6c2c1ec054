"""The sweep report, reports/sweeps/<name>/: `report.md` for people, `results.json` for
tools, one PNG per parameter. Built only from the trial results and the baseline value, so
the same experiments give the same bytes; every file is written atomically (temporary
sibling, then rename), and figures of parameters no longer in the sweep are removed."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from repro.report.render import Block, Bullets, Heading, Image, Paragraph, Table, to_markdown
from repro.spec.search import Scalar
from repro.atomic import atomic_write_bytes, atomic_write_text
from repro.jsonio import dumps_json
from repro.sweep.analysis import Analysis, analyse
from repro.sweep.plan import SweepPlan
from repro.sweep.plots import parameter_png
from repro.sweep.results import TrialResult
from repro.sweep.values import override_text

REPORT_MD, RESULTS_JSON = "report.md", "results.json"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.5g}"


def _val(v: Scalar | None) -> str:
    return "n/a" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def trial_command(plan: SweepPlan, trial: TrialResult) -> str:
    """The `dvc exp run` that reruns `trial` in any clone of the repository: its name, the
    `-S` override of every key its parameters set (the values it recorded), its target.

    Why it is needed: DVC keeps experiments as git refs (refs/exps/...) in the repository
    that ran them; `git clone` does not fetch them, so `dvc exp apply <trial>` fails in a
    fresh clone (unknown revision) unless someone ran `dvc exp push`. The overrides are
    committed with the report, so a trial stays reproducible without the refs. Without
    `--queue` the run uses the workspace itself, so the `-C` copies a queued trial needs
    are not."""
    args = ["dvc", "exp", "run", "--name", trial.name]
    for key, value in plan.dvc_sets(trial.point).items():
        args += ["-S", override_text(key, value)]
    return shlex.join([*args, plan.target])


def results_json(plan: SweepPlan, analysis: Analysis, baseline: float | None) -> dict[str, Any]:
    sweep, obj = plan.sweep, plan.objective
    return {
        "sweep": sweep.name, "experiment": plan.experiment, "spec": plan.spec_file,
        "strategy": sweep.strategy, "seed": sweep.seed, "planned_trials": plan.sweep.trial_count(),
        "objective": {"stage": obj.stage_id, "metrics_file": obj.metrics_file,
                      "task": obj.task, "metric": obj.metric, "goal": obj.goal},
        "parameters": {n: {"keys": list(plan.keys[n]),
                           **p.model_dump(mode="json", exclude={"keys"}, exclude_none=True)}
                       for n, p in sweep.parameters.items()},
        "baseline": {"value": baseline, "point": plan.baseline_point},
        "trials": [{**dataclasses.asdict(r), "command": trial_command(plan, r)}
                   for r in analysis.ranked],
        "best": dataclasses.asdict(analysis.best) if analysis.best else None,
        "sensitivity": {n: {"main_effect": e.main_effect, "importance": e.importance,
                            "levels": [dataclasses.asdict(lv) for lv in e.levels]}
                        for n, e in analysis.sensitivity.items()},
        "importance_note": analysis.importance_note,
    }


def _trial_row(rank: int | None, r: TrialResult, names: list[str]) -> tuple[str, ...]:
    return (str(rank) if rank else "-", r.name, *(_val(r.point.get(n)) for n in names),
            _num(r.value) if r.status == "completed" else f"failed: {r.error}")


def report_blocks(plan: SweepPlan, analysis: Analysis, baseline: float | None) -> list[Block]:
    sweep, obj = plan.sweep, plan.objective
    names = list(sweep.parameters)
    done = [r for r in analysis.ranked if r.status == "completed"]
    failed = len(analysis.ranked) - len(done)
    direction = "lower" if obj.goal == "minimize" else "higher"
    blocks: list[Block] = [
        Heading(1, f"Sweep {sweep.name} ({plan.experiment})"),
        Paragraph(f"Strategy {sweep.strategy} (seed {sweep.seed}), {plan.sweep.trial_count()} "
                  f"trials planned: {len(analysis.ranked)} finished, {len(done)} completed, "
                  f"{failed} failed. Objective: {obj.goal} {obj.task} {obj.metric} ({direction} "
                  f"is better) from {obj.metrics_file}, the final evaluation of the main run. "
                  f"Each trial is the DVC experiment named in the table."),
        Heading(2, "Parameters"),
        Table(("parameter", "params.yaml keys", "baseline value"),
              tuple((n, ", ".join(plan.keys[n]), _val(plan.baseline_point.get(n))) for n in names),
              ("left", "left", "right")),
        Heading(2, "Best configuration"),
    ]
    best = analysis.best
    if best is None:
        blocks.append(Paragraph("No trial completed, so there is no best configuration."))
    else:
        config = ", ".join(f"{n} = {_val(best.point.get(n))}" for n in names)
        lines = [f"{best.name}: {config}; {obj.metric} {_num(best.value)}."]
        if best.runner_up is not None:
            rel = "" if best.margin_relative is None else f", {best.margin_relative:.2%}"
            lines.append(f"Margin over the runner-up {best.runner_up} ({_num(best.runner_up_value)}): "
                         f"{_num(best.margin)}{rel}.")
        if baseline is not None:
            gain = baseline - best.value if obj.goal == "minimize" else best.value - baseline
            lines.append(f"Baseline run (the workspace's params.yaml): {_num(baseline)}; the best "
                         f"trial is {_num(abs(gain))} {'better' if gain >= 0 else 'worse'}.")
        else:
            lines.append("Baseline run: not built in this workspace.")
        blocks.append(Paragraph(" ".join(lines)))
    blocks += [
        Heading(2, "Trials"),
        Table(("rank", "experiment", *names, f"{obj.task} {obj.metric}"),
              tuple(_trial_row(i + 1 if r.status == "completed" else None, r, names)
                    for i, r in enumerate(analysis.ranked)),
              ("right", "left", *("right",) * len(names), "right")),
        Heading(2, "Sensitivity"),
        Paragraph("Main effect: the spread (max - min) of the mean objective over a parameter's "
                  "values, averaged over the other parameters. Importance: optuna's fANOVA "
                  f"share of the objective's variance (seed {sweep.seed})."
                  + (f" {analysis.importance_note}." if analysis.importance_note else "")),
        Table(("parameter", "main effect", "fANOVA importance", "mean objective per value"),
              tuple((n, _num(e.main_effect), _num(e.importance),
                     "; ".join(f"{lv.label}: {_num(lv.mean)} (n={lv.trials})" for lv in e.levels))
                    for n, e in analysis.sensitivity.items()),
              ("left", "right", "right", "left")),
        *(Image(f"{n}.png", f"{obj.metric} vs {n}") for n in names),
        Heading(2, "Apply the best configuration"),
    ]
    if best is None:
        blocks.append(Paragraph("Nothing to apply yet."))
    else:
        keys = [(k, best.point[n]) for n in names if n in best.point for k in plan.keys[n]]
        blocks += [
            Paragraph("dvc exp apply (below) restores the trial's params.yaml and outputs "
                      "into the workspace, to inspect or continue from, in the repository "
                      "that ran the sweep (DVC keeps experiments as git refs, which git clone "
                      "does not fetch; in a clone, rerun the trial as the next section says). "
                      "params.yaml is generated, so to keep the configuration, write these "
                      "values into the spec and run repro compile:"),
            Bullets(tuple(f"{k} = {_val(v)}" for k, v in keys)),
        ]
    blocks += [
        Heading(2, "Reproduce a trial from a fresh clone"),
        Paragraph("Each command below reruns one trial in any clone, best first: the params.yaml "
                  "overrides it ran with, recorded here and in results.json (each trial's "
                  "command), on the objective's stage; DVC builds or pulls what it needs "
                  "first. To share the experiments themselves instead, run dvc exp push origin "
                  "with the trial's name where the sweep ran, then dvc exp pull origin in the "
                  "clone."),
    ]
    return blocks


def commands(plan: SweepPlan, analysis: Analysis) -> tuple[str, str]:
    """The shell commands, as fenced blocks (kept out of the Markdown escaping, which would
    garble them): applying the best trial, and rerunning each trial from a clone (in rank
    order; the report's last section)."""
    apply = ""
    if analysis.best is not None:
        name = analysis.best.name
        apply = ("\n```\n"
                 f"dvc exp show --sort-by {plan.objective.metrics_file}:tasks.{plan.objective.task}."
                 f"{plan.objective.metric}\n"
                 f"dvc exp apply {name}\n"
                 f"dvc exp branch {name} {plan.sweep.name}-best   # or keep it as a git branch\n"
                 "```\n")
    rerun = "".join(f"{trial_command(plan, r)}\n" for r in analysis.ranked)
    return apply, ("\n```\n" + rerun + "```\n") if rerun else "\nNo trial has finished yet.\n"


def write_report(plan: SweepPlan, results: list[TrialResult], baseline: float | None,
                 out_dir: Path) -> Analysis:
    analysis = analyse(results, plan.sweep)
    figures = {f"{n}.png": parameter_png(n, p, analysis, plan.objective, baseline)
               for n, p in plan.sweep.parameters.items()}
    for file, png in figures.items():
        atomic_write_bytes(out_dir / file, png)
    for stale in out_dir.glob("*.png"):
        if stale.name not in figures:
            stale.unlink()
    atomic_write_text(out_dir / RESULTS_JSON, dumps_json(results_json(plan, analysis, baseline)))
    blocks = report_blocks(plan, analysis, baseline)
    # the fenced commands go after the section that introduces them: applying the best
    # under "Apply the best configuration", the reruns under the last section
    last = next(i for i, b in enumerate(blocks)
                if isinstance(b, Heading) and b.text == "Reproduce a trial from a fresh clone")
    apply, rerun = commands(plan, analysis)
    atomic_write_text(out_dir / REPORT_MD, to_markdown(blocks[:last]) + apply + "\n"
                      + to_markdown(blocks[last:]) + rerun)
    return analysis
