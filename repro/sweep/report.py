"""The sweep report, reports/sweeps/<name>/: `report.md` for people, `results.json` for
tools, one PNG per parameter. Built only from the trial results and the baseline value, so
the same experiments give the same bytes; every file is written atomically (temporary
sibling, then rename), and figures of parameters no longer in the sweep are removed."""

from __future__ import annotations

import dataclasses
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

REPORT_MD, RESULTS_JSON = "report.md", "results.json"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.5g}"


def _val(v: Scalar | None) -> str:
    return "n/a" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


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
        "trials": [dataclasses.asdict(r) for r in analysis.ranked],
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
                      "into the workspace, to inspect or continue from. params.yaml is "
                      "generated, so to keep the configuration, write these values into the "
                      "spec and run repro compile:"),
            Bullets(tuple(f"{k} = {_val(v)}" for k, v in keys)),
        ]
    return blocks


def commands(plan: SweepPlan, analysis: Analysis) -> str:
    """The shell commands for the best trial, as a fenced block (kept out of the Markdown
    escaping, which would garble them)."""
    if analysis.best is None:
        return ""
    name = analysis.best.name
    return ("\n```\n"
            f"dvc exp show --sort-by {plan.objective.metrics_file}:tasks.{plan.objective.task}."
            f"{plan.objective.metric}\n"
            f"dvc exp apply {name}\n"
            f"dvc exp branch {name} {plan.sweep.name}-best   # or keep it as a git branch\n"
            "```\n")


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
    atomic_write_text(out_dir / REPORT_MD,
                      to_markdown(report_blocks(plan, analysis, baseline)) + commands(plan, analysis))
    return analysis
