"""Output paths at compile time: no stage output may overlap another's or a path repro writes
outside stages (repro.paths.RESERVED), and every graph-level error names the spec file and
line of the field that caused it (repro.compile.specs.locate)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro import paths
from repro.cli import main
from repro.compile.errors import GraphError
from repro.compile.graph import Stage, StageGraph, check_outputs
from repro.compile.specs import compile_files, field_loc
from repro.stages.configs import FitConfig, ReportConfig

REPO = Path(__file__).resolve().parents[2]


def _specs(tmp_path: Path, **children: str) -> list[Path]:
    """qs-nope.yaml (not compiled itself) and one spec per keyword, each extending it with
    the given text after its own name line; returns the children's paths."""
    (tmp_path / "qs-nope.yaml").write_text((REPO / "specs" / "qs-nope.yaml").read_text())
    out = []
    for name, text in children.items():
        path = tmp_path / f"{name}.yaml"
        report = "" if "report:" in text else "report: null\n"  # qs-nope's compares others
        path.write_text(f"extends: qs-nope.yaml\nexperiment: {{name: {name}, replicas: []}}\n"
                        f"{report}{text}")
        out.append(path)
    return out


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize("name", ["sweeps", "verify", "ladders"])
def test_a_report_in_a_reserved_folder_is_refused_in_its_file_and_line(tmp_path, name):
    [spec] = _specs(tmp_path, a=f"report:\n  name: {name}\n  experiments: [a]\n  baseline: a\n")
    with pytest.raises(GraphError) as e:
        compile_files([spec], tmp_path, tmp_path)
    err = e.value
    assert (err.field, err.experiment, Path(err.file).name) == ("report.name", "a", "a.yaml")
    assert err.line == _line_of(spec, f"name: {name}")
    assert f"reports/{name}" in str(err) and "reserved" in str(err)
    assert f"reports/{name} is reserved" in err.fix


def test_every_reserved_path_is_built_in_repro_paths():
    assert {paths.sweep_report_dir("x").parent, paths.ladder_dir("x").parent, paths.VERIFY_DIR,
            paths.resume_dir("x").parents[1], paths.lm_eval_cache("x").parents[2]} <= set(paths.RESERVED)
    assert paths.RESERVED[paths.LADDER_REPORTS_DIR][1] == {"fit"}


def test_cli_prints_file_line_field_and_fix_and_writes_nothing(tmp_path, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    [spec] = _specs(specs, a="report:\n  name: sweeps\n  experiments: [a]\n  baseline: a\n")
    (specs / "qs-nope.yaml").unlink()  # extends reads it from beside the spec: keep a copy
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "qs-nope.yaml").write_text((REPO / "specs" / "qs-nope.yaml").read_text())
    spec.write_text(spec.read_text().replace("extends: qs-nope.yaml", "extends: ../base/qs-nope.yaml"))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["compile", "--specs", "specs", "--root", "."])
    assert res.exit_code == 2, res.output
    line = _line_of(spec, "name: sweeps")
    assert res.output.startswith(f"specs/a.yaml:{line}: report.name: report 'sweeps' would write "
                                 "reports/sweeps, a reserved path"), res.output
    assert "fix: choose another report.name" in res.output
    assert not (tmp_path / "dvc.yaml").exists() and not (tmp_path / "params.yaml").exists()


def test_a_ladder_fit_may_write_inside_reports_ladders():
    files = sorted((REPO / "specs").glob("*.yaml")) + [REPO / "specs/examples/ladder/qs-ladder.yaml"]
    graph = compile_files(files, REPO / "specs", REPO)
    fits = [s for s in graph.stages.values() if s.kind == "fit"]
    assert fits and all(s.outputs()["ladder"].parent == paths.LADDER_REPORTS_DIR for s in fits)


def _report(name: str) -> Stage:
    return Stage("report", name, ReportConfig.model_construct(name=name, experiments=[]))


def test_overlapping_outputs_of_two_stages_are_refused():
    graph = StageGraph()
    outer, inner = graph.add(_report("x")), graph.add(_report("x/y"))
    graph.origin[inner.id] = "exp-b"
    with pytest.raises(GraphError) as e:
        check_outputs(graph)
    assert re.match(r"report 'x' would write (plots/)?reports/x, which holds (plots/)?reports/x/y, "
                    r"written by report 'x/y'", str(e.value)), str(e.value)
    assert e.value.field == "report.name"
    # the same folder twice
    graph = StageGraph()
    graph.add(_report("x"))
    graph.add(Stage("report", "x", ReportConfig.model_construct(name="x", experiments=["e"])))
    with pytest.raises(GraphError, match="which is also (plots/)?reports/x"):
        check_outputs(graph)


@pytest.mark.parametrize("name", ["../../data/curated", "/etc", "a/../../b"])
def test_an_output_path_leaving_its_folder_is_refused(name):
    """Names are validated, but a path is compared by its parts, so `..` would hide an
    overlap: an output that is absolute, empty or climbs out is refused on its own."""
    graph = StageGraph()
    fit = graph.add(Stage("fit", "l", FitConfig.model_construct(name=name, runs=[])))
    graph.origin[fit.id] = "lad"
    with pytest.raises(GraphError, match="outside the folder") as e:
        check_outputs(graph)
    assert (e.value.field, e.value.experiment) == ("ladder.name", "lad")


def test_field_loc_reads_indexes():
    assert field_loc("ladder.sizes[1].name") == ("ladder", "sizes", 1, "name")
    assert field_loc("report.name") == ("report", "name")


def test_a_teacher_that_is_the_experiment_itself_is_located(tmp_path):
    [spec] = _specs(tmp_path, a='training:\n  distillation: {teacher: "experiment:a"}\n')
    with pytest.raises(GraphError) as e:
        compile_files([spec], tmp_path, tmp_path)
    assert "distils from itself" in str(e.value)
    assert (Path(e.value.file).name, e.value.line) == ("a.yaml", _line_of(spec, "experiment:a"))


def test_a_field_set_in_the_base_spec_points_at_the_base_file(tmp_path):
    """An unknown teacher inherited through `extends:` is located where it is written."""
    [spec] = _specs(tmp_path, a="")
    base = tmp_path / "qs-nope.yaml"
    base.write_text(base.read_text().replace(
        "\ntraining:\n", '\ntraining:\n  distillation: {teacher: "experiment:nobody"}\n', 1))
    with pytest.raises(GraphError) as e:
        compile_files([spec], tmp_path, tmp_path)
    assert "distils from experiment 'nobody'" in str(e.value)
    assert (Path(e.value.file).name, e.value.line) == ("qs-nope.yaml",
                                                       _line_of(base, "experiment:nobody"))


def test_two_specs_with_one_report_name_are_refused_at_the_second(tmp_path):
    report = "report:\n  name: same\n  experiments: [{0}]\n  baseline: {0}\n"
    a, b = _specs(tmp_path, a=report.format("a"), b=report.format("b"))
    with pytest.raises(GraphError, match="report name 'same' is also defined by experiment 'a'") as e:
        compile_files([a, b], tmp_path, tmp_path)
    assert (Path(e.value.file).name, e.value.line) == ("b.yaml", _line_of(b, "name: same"))


def test_the_compile_time_ledger_refusal_is_located(tmp_path, monkeypatch):
    """A budget the committed token counts cannot feed: the line of the spec's stages (in an
    example pipeline's spec, compiled with the default's); a metrics file that does not hold
    a token count is left to the train stages."""
    import shutil

    shutil.copytree(REPO / "specs", tmp_path / "specs")
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "specs" / "examples" / "architectures" / "qs-rope.yaml"
    spec.write_text(spec.read_text() + "training:\n  stages:\n"
                    "    - {name: stable, tokens: 41943040, mixture: {web: 0.6, pdf: 0.05, code: 0.35}}\n"
                    "    - {name: decay, tokens: 10485760, mixture: {web: 0.4, pdf: 0.1, code: 0.5}}\n")
    res = CliRunner().invoke(main, ["compile"])
    assert res.exit_code == 2, res.output
    line = _line_of(spec, "  stages:")
    assert res.output.startswith(f"specs/examples/architectures/qs-rope.yaml:{line}: "
                                 "training.stages: "), res.output
    for metrics in (tmp_path / "metrics").glob("tokenize-*.json"):
        if not metrics.name.endswith((".env.json", ".perf.json")):
            metrics.write_text('{"tokens": "many"}')
    res = CliRunner().invoke(main, ["compile"])
    assert res.exit_code == 0, res.output
