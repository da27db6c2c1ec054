"""`repro fit SPEC`: build a ladder spec's runs and fit, through DVC, and print the result.

The fit is an ordinary pipeline stage (`fit-<ladder>-<hash>`, repro.stages.fit), so this is
`dvc repro <that stage>`: only the runs whose settings or inputs changed are trained again,
and the same result comes from `make quickstart` or `dvc exp run`. Its errors are
SpecErrors, rendered by repro.cli like every other verb's (exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import click

from repro import paths, yamlio
from repro.compile.pipelines import compile_pipeline, pipeline_of, specs_root
from repro.errors import ReproError
from repro.spec.load import SpecError, load_spec


def _issue(spec: Path, field: str, message: str, fix: str) -> NoReturn:
    raise SpecError([ReproError(message, field=field, fix=fix, file=str(spec))])


def fit_stage_id(spec_path: Path) -> str:
    """The compiled fit stage of a ladder spec, as a `dvc repro` target (an example's stage
    is named with its dvc.yaml); the pipeline's dvc.yaml and params.yaml, and the default
    pipeline's, must be current."""
    spec = load_spec(spec_path)
    if spec.ladder is None:
        _issue(spec_path, "ladder", f"experiment {spec.name!r} has no `ladder` block",
               "add a ladder (sizes, tokens) or pass a ladder spec, e.g. "
               "specs/examples/ladder/qs-ladder.yaml")
    specs_dir = Path(str(paths.SPECS_DIR))
    pipeline = pipeline_of(spec_path)
    if specs_root(pipeline).resolve() != specs_dir.resolve():
        _issue(spec_path, "", f"only specs directly under {specs_dir}/ or in "
               f"{specs_dir}/{paths.EXAMPLE_SPECS}/<name>/ are compiled into a pipeline",
               f"move the spec to {specs_dir}/{paths.EXAMPLE_SPECS}/<name>/ and run "
               "`repro compile`")
    default, this = compile_pipeline(pipeline)
    texts = {**default.texts(), **this.texts()}
    current = all(Path(str(p)).is_file() and Path(str(p)).read_text(encoding="utf-8") == text
                  for p, text in texts.items())
    if not current:
        _issue(spec_path, "", "the pipelines' dvc.yaml / params.yaml are stale for the "
               "current specs", "run `repro compile` (and commit the result)")
    stages = yamlio.safe_load(texts[pipeline.dvc_yaml])["stages"]
    name = spec.ladder.name  # type: ignore[union-attr]
    matches = [s for s in stages if s.startswith("fit-")
               and f"--out ladder={paths.ladder_dir(name)}" in stages[s]["cmd"]]
    if len(matches) != 1:  # the compiler makes exactly one per ladder; anything else is a bug
        raise RuntimeError(f"expected one fit stage for ladder {name!r}, found {matches}")
    return pipeline.target(matches[0])


def _summary(report: Path) -> None:
    record = json.loads((report / "fit.json").read_text())
    law = record["fit"]["law"]
    intervals = (record.get("bootstrap") or {}).get("intervals", {})

    def show(key: str, value: float) -> str:
        iv = intervals.get(key)
        return f"{value:.4g}" + (f" [{iv['lo']:.4g}, {iv['hi']:.4g}]" if iv else "")

    click.echo(f"L(N, D) = E + A/N^alpha + B/D^beta over {len(record['fit']['residuals'])} runs:")
    click.echo("  " + ", ".join(f"{k} = {show(k, law[k])}" for k in ("e", "a", "b", "alpha", "beta")))
    for o in record["compute_optimal"]:
        click.echo(f"  C = {o['compute']:.3g} FLOPs: N_opt = {o['n']:.4g}, D_opt = {o['d']:.4g} "
                   f"({o['tokens_per_param']:.3g} tokens/param)")
    for p in record["predictions"]:
        click.echo(f"  {p['spec']}: predicted L = {p['loss']:.4g} "
                   f"(extrapolates {max(p['n_extrapolation'], p['d_extrapolation']):.3g}x)")
    if record.get("decision_accuracy"):
        click.echo("  decision accuracy: see the report")
    click.echo(f"report: {report / 'report.md'}")


@click.command("fit")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--no-run", is_flag=True, help="Print the last fit's result; run nothing.")
def fit_cmd(spec: Path, no_run: bool) -> None:
    """Train a ladder spec's runs as needed and fit L(N, D) (`dvc repro <its fit stage>`)."""
    stage = fit_stage_id(spec)  # a SpecError is rendered by repro.cli (exit 2)
    report = Path(str(paths.ladder_dir(load_spec(spec).ladder.name)))  # type: ignore[union-attr]
    if not no_run:
        dvc = shutil.which("dvc", path=os.path.dirname(sys.executable) + os.pathsep
                           + os.environ.get("PATH", "")) or "dvc"
        rc = subprocess.call([dvc, "repro", stage])
        if rc != 0:
            click.echo(f"`dvc repro {stage}` failed (exit {rc}); see its log above", err=True)
            sys.exit(rc)
    if not (report / "fit.json").is_file():
        click.echo(f"no fit yet at {report}; run `repro fit {spec}` without --no-run", err=True)
        sys.exit(1)
    _summary(report)
