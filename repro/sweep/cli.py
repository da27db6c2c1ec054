"""`repro sweep SPEC`: one short function; the work is in the modules it calls. Its errors
(SweepInputError: exit 2, nothing queued; SweepRunError: exit 1) are ReproErrors, rendered
by repro.cli like every other verb's."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from repro.compile.pipelines import pipeline_of
from repro.paths import sweep_report_dir as report_dir
from repro.stages.base import read_json
from repro.sweep.driver import Driver
from repro.sweep.dvc import DvcBackend, queue_args
from repro.sweep.plan import SweepPlan, build_plan
from repro.sweep.report import write_report
from repro.sweep.results import collect_results
from repro.sweep.strategies import planned_trials
from repro.sweep.workspace import check_committed

EXIT_INTERRUPTED = 130


def _describe(plan: SweepPlan, workers: int) -> str:
    """What the sweep would do: keys, objective, trials and the exact DVC commands."""
    sweep, obj = plan.sweep, plan.objective
    lines = [f"sweep {sweep.name} of experiment {plan.experiment} ({sweep.strategy}, "
             f"{workers} worker(s))",
             f"objective: {obj.goal} tasks.{obj.task}.{obj.metric} in {obj.metrics_file}"]
    for name, keys in plan.keys.items():
        lines.append(f"parameter {name} (baseline {plan.baseline_point[name]!r}) sets "
                     + ", ".join(keys))
    lines += ["", f"dvc repro {plan.target}"]
    if sweep.strategy == "optuna":
        lines.append(f"then rounds of {workers} trial(s) proposed by TPE (seed {sweep.seed}), "
                     f"{sweep.trials} in all, each queued as `dvc exp run --queue --name "
                     f"{sweep.name}-<n> -S ... {plan.target}`")
        return "\n".join(lines)
    if plan.copy_paths:
        lines.append(f"(each trial also copies {len(plan.copy_paths)} uncached output(s) of the "
                     "stages it does not rerun, with -C, once the baseline has built them)")
    for trial in planned_trials(sweep):
        args = queue_args(trial.name, plan.dvc_sets(trial.point), plan.target)
        lines.append(shlex.join(["dvc", *args]))
    lines.append(f"dvc queue start --jobs {workers}")
    return "\n".join(lines)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Trials run at once (`dvc queue start --jobs`); default: sweep.workers.")
@click.option("--dry-run", is_flag=True,
              help="Check the sweep and print its trials and DVC commands; run nothing.")
@click.option("--resume/--restart", default=True, show_default=True,
              help="Resume: skip trials with results, wait for queued ones, rerun failed ones. "
                   "Restart: remove the sweep's experiments and optuna study first.")
@click.option("--report-only", is_flag=True,
              help="Rebuild reports/sweeps/<name>/ from `dvc exp show`; run nothing.")
def sweep(spec: Path, workers: int | None, dry_run: bool, resume: bool, report_only: bool) -> None:
    """Run the spec's hyperparameter sweep as DVC experiments and write its report.

    Every trial is `dvc exp run --queue -S <key>=<value> ...` on the experiment's final
    evaluation stage; see reports/sweeps/<name>/ for the result."""
    root = Path(".")
    try:
        plan, _ = build_plan(spec, root, require_current=not report_only)
        n = workers or plan.sweep.workers
        if dry_run:
            click.echo(_describe(plan, n))
            return
        backend = DvcBackend(root)
        if not report_only:
            check_committed(root, pipeline_of(spec))
            Driver(plan, backend, root, n,
                   echo=click.echo).run(resume=resume)
        results = collect_results(backend.experiments(), plan.sweep.name, plan.keys, plan.objective)
        metrics = root / plan.objective.metrics_file
        baseline = plan.objective.read(read_json(metrics)) if metrics.is_file() else None
        out = root / str(report_dir(plan.sweep.name))
        analysis = write_report(plan, results, baseline, out)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: queued trials keep running in DVC's queue (`dvc queue "
                   f"status`); `repro sweep {spec}` resumes and waits for them", err=True)
        sys.exit(EXIT_INTERRUPTED)
    best = analysis.best
    click.echo(f"wrote {out}/report.md"
               + (f"; best: {best.name} {best.point} ({plan.objective.label} {best.value:.6g})"
                  if best else "; no trial completed"))
