"""CLI verbs: compile --check, stage param validation."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from repro.cli import main

REPO = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "specs", tmp_path / "specs")
    return tmp_path


def test_compile_then_check(tmp_path, monkeypatch):
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    runner = CliRunner()
    assert runner.invoke(main, ["compile", "--check"]).exit_code == 1  # nothing written yet
    first = runner.invoke(main, ["compile"])
    assert first.exit_code == 0 and "wrote dvc.yaml" in first.output
    dvc_text = (root / "dvc.yaml").read_text()
    again = runner.invoke(main, ["compile"])
    assert "unchanged dvc.yaml" in again.output and (root / "dvc.yaml").read_text() == dvc_text
    assert runner.invoke(main, ["compile", "--check"]).exit_code == 0
    spec = root / "specs/examples/architectures/qs-rope.yaml"
    spec.write_text(spec.read_text() + "evaluation: {limit: 5}\n")
    stale = runner.invoke(main, ["compile", "--check"])
    # an example's spec: only its pipeline's files are stale
    assert stale.exit_code == 1 and stale.output.strip() == (
        "stale: examples/architectures/dvc.yaml, examples/architectures/params.yaml; "
        "run `repro compile`")


def test_compile_drops_lock_entries_of_stages_no_longer_declared(tmp_path, monkeypatch):
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    runner = CliRunner()
    assert runner.invoke(main, ["compile"]).exit_code == 0
    live = next(line.strip()[:-1] for line in (root / "dvc.yaml").read_text().splitlines()
                if line.startswith("  ") and not line.startswith("   "))
    (root / "dvc.lock").write_text(f"schema: '2.0'\nstages:\n  {live}:\n    cmd: x\n"
                                   "  train-gone-0000:\n    cmd: y\n")
    check = runner.invoke(main, ["compile", "--check"])
    assert check.exit_code == 1 and "dvc.lock records 1 stage(s) no dvc.yaml declares" in check.output
    pruned = runner.invoke(main, ["compile"])
    assert pruned.exit_code == 0 and "removed 1 entries" in pruned.output
    text = (root / "dvc.lock").read_text()
    assert "train-gone-0000" not in text and f"  {live}:" in text
    assert runner.invoke(main, ["compile", "--check"]).exit_code == 0


def test_compile_bad_spec_exits_2(tmp_path, monkeypatch):
    root = _project(tmp_path)
    (root / "specs/examples/architectures/qs-rope.yaml").write_text(
        "extends: ../../qs-nope.yaml\nmodel: {num_kv_heads: 3}\n")
    monkeypatch.chdir(root)
    result = CliRunner().invoke(main, ["compile"])
    assert result.exit_code == 2 and "num_kv_heads" in result.output
    assert not (root / "dvc.yaml").exists()


def test_validate_and_compile_read_the_same_spec_files(tmp_path, monkeypatch):
    """A `.yml` spec that `repro validate specs` reports valid is compiled too (it was
    validated, then silently left out of dvc.yaml)."""
    specs = tmp_path / "specs"
    specs.mkdir()
    text = (REPO / "specs/qs-nope.yaml").read_text()
    (specs / "nope.yml").write_text(text.split("\nreport:\n")[0] + "\n")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    checked = runner.invoke(main, ["validate", "specs"])
    assert checked.exit_code == 0 and "nope.yml" in checked.output, checked.output
    compiled = runner.invoke(main, ["compile"])
    assert compiled.exit_code == 0, compiled.output
    assert "train-qs-nope-" in (tmp_path / "dvc.yaml").read_text()


def test_stage_rejects_bad_override(tmp_path, monkeypatch):
    """A `dvc exp run -S` override is checked by the same models before the stage runs."""
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    runner = CliRunner()
    runner.invoke(main, ["compile"])
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    sid = next(k for k in params if k.startswith("evaluate-"))
    params[sid]["evaluation"]["num_fewshot"] = -1
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    result = runner.invoke(main, ["stage", "evaluate", sid, "--out", "metrics=m.json"])
    assert result.exit_code == 2
    assert f"{sid}.evaluation.num_fewshot" in result.output and "Traceback" not in result.output


def test_compile_refuses_a_mixture_the_measured_tokens_cannot_feed(tmp_path, monkeypatch):
    """With committed tokenize metrics, `repro compile` refuses a budget that would repeat a
    dataset past its max_epochs (its train stages would refuse it later); within the limit,
    and without measured counts, it compiles."""

    root = _project(tmp_path)
    shutil.copytree(REPO / "metrics", root / "metrics")
    monkeypatch.chdir(root)
    runner = CliRunner()
    assert runner.invoke(main, ["compile"]).exit_code == 0
    spec = root / "specs/examples/architectures/qs-rope.yaml"
    base = spec.read_text()
    # 64x the quickstart's budget: web (about 230k tokens measured) would be read ~130 times
    spec.write_text(base + """training:
  stages:
    - {name: stable, tokens: 41943040, mixture: {web: 0.6, pdf: 0.05, code: 0.35}}
    - {name: decay, tokens: 10485760, mixture: {web: 0.4, pdf: 0.1, code: 0.5}}
""")
    result = runner.invoke(main, ["compile"])
    assert result.exit_code == 2, result.output
    assert "qs-rope.yaml" in result.output and "'web'" in result.output
    assert "max_epochs" in result.output and "Traceback" not in result.output
    # the same budget with a matching allowance compiles
    spec.write_text(spec.read_text() + "datasets:\n  web: {max_epochs: 1000}\n  pdf: {max_epochs: 1000}\n"
                    "  code: {max_epochs: 1000}\n")
    assert runner.invoke(main, ["compile"]).exit_code == 0
    # without measured token counts there is nothing to check at compile time
    shutil.rmtree(root / "metrics")
    spec.write_text(base + "training: {stages: [{name: stable, tokens: 41943040, mixture: {web: 1.0}}]}\n")
    assert runner.invoke(main, ["compile"]).exit_code == 0


# ------------------------------------------------------------------------------ validate


def _spec_tree(root: Path) -> Path:
    """A folder of specs: a .yaml at the top, a .yml in a subfolder, and a hidden folder
    (.venv-like) whose YAML is not a spec and must be skipped."""
    base = (REPO / "specs/qs-nope.yaml").read_text().split("\nreport:\n")[0] + "\n"
    (root / "specs/sub").mkdir(parents=True)
    (root / "specs/a.yaml").write_text(base)
    (root / "specs/sub/b.yml").write_text(base.replace("name: qs-nope", "name: qs-b"))
    (root / "specs/.hidden").mkdir()
    (root / "specs/.hidden/not-a-spec.yaml").write_text("foo: [1, 2]\n")
    return root / "specs"


def test_validate_folder_checks_yaml_and_yml_recursively(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _spec_tree(tmp_path)
    result = CliRunner().invoke(main, ["validate", "specs"])
    assert result.exit_code == 0, result.output
    assert "ok  specs/a.yaml  (qs-nope)" in result.output
    assert "ok  specs/sub/b.yml  (qs-b)" in result.output
    assert "not-a-spec" not in result.output  # hidden folders are skipped
    assert "checked 2 spec file(s) under specs: all valid" in result.output


def test_validate_folder_reports_the_invalid_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    specs = _spec_tree(tmp_path)
    (specs / "sub/c.yml").write_text("extends: ../a.yaml\nmodel: {num_layers: many}\n")
    result = CliRunner().invoke(main, ["validate", "specs"])
    assert result.exit_code == 2, result.output
    assert "specs/sub/c.yml:2: model.num_layers" in result.output
    assert "checked 3 spec file(s) under specs: 1 invalid" in result.output
    assert "1 problem(s); nothing was run." in result.output


def test_validate_folder_without_specs_fails(tmp_path, monkeypatch):
    """An empty folder, or one with only other files, is not "all valid": nothing was checked."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/readme.md").write_text("# not a spec\n")
    for folder in ("empty", "notes"):
        result = CliRunner().invoke(main, ["validate", folder])
        assert result.exit_code == 2, result.output
        assert f"{folder}: <spec>: the folder holds no spec file (*.yaml or *.yml" in result.output
        assert "fix: name the folder that holds the specs" in result.output
        assert "all valid" not in result.output


def test_validate_missing_target_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", "nowhere", "specs/gone.yaml"])
    assert result.exit_code == 2, result.output
    assert "nowhere: <spec>: file not found (nor a folder)" in result.output
    assert "specs/gone.yaml: <spec>: file not found (nor a folder)" in result.output
    assert "fix: check the path" in result.output and "2 problem(s)" in result.output


def test_plan_takes_a_folder_like_validate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _spec_tree(tmp_path)
    result = CliRunner().invoke(main, ["plan", "--json", "specs"])
    assert result.exit_code == 0, result.output
    import json

    plans = json.loads(result.output)["plans"]
    assert len(plans) == 2
    assert CliRunner().invoke(main, ["plan", "nowhere"]).exit_code == 2


def test_validate_output_redacts_credentials(tmp_path, monkeypatch):
    """A credential in a path the user typed is not echoed back."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", "s3://AKIAEXAMPLE:s3cr3t@bucket/x.yaml"])
    assert result.exit_code == 2, result.output
    assert "s3cr3t" not in result.output and "s3://***@bucket/x.yaml" in result.output


def test_the_stage_verb_starts_without_the_other_verbs_code():
    """DVC starts `repro stage` once per stage: importing the CLI loads neither the compiler,
    the sweep, ladder, verify, publish and status code, nor torch (a stage that needs torch
    imports it itself); pydantic does not re-read the spec models' source for docstrings.
    Every verb is still listed, and the lazily loaded ones run."""
    import subprocess
    import sys

    probe = ("import sys, inspect; calls = []\n"
             "for name in ('findsource', 'getsourcelines'):\n"
             "    real = getattr(inspect, name)\n"
             "    setattr(inspect, name, lambda *a, real=real, **k: (calls.append(1), real(*a, **k))[1])\n"
             "import repro.cli, repro.stages.split\n"
             "print(sorted(m for m in sys.modules if m.startswith(('repro.compile', 'repro.sweep', "
             "'repro.scaling', 'repro.verify.run', 'repro.report', 'repro.status', 'repro.summary', "
             "'repro.explain', 'torch')) ), len(calls))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.strip()
    assert out == "[] 0", out
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for verb in ("compile", "stage", "sweep", "fit", "verify", "publish", "status", "summary"):
        assert f"  {verb} " in result.output, verb
    for verb in ("sweep", "fit"):
        assert CliRunner().invoke(main, [verb, "--help"]).exit_code == 0, verb


def test_stage_reads_its_section_by_name_and_keeps_state_under_its_id(tmp_path, monkeypatch):
    """dvc.yaml runs `repro stage <kind> <name> --id <id>`: the name finds the params
    section, the id (with the settings hash) names the stage in what it keeps outside DVC
    and in its messages; an id of another form is refused before anything runs."""
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    runner = CliRunner()
    assert runner.invoke(main, ["compile"]).exit_code == 0
    import yaml

    entry = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["evaltasks-repro-bpb-web"]
    words = entry["cmd"].split()
    assert words[:6] == ["repro", "stage", "evaltasks", "evaltasks-repro-bpb-web", "--id",
                         words[5]] and words[5].startswith("evaltasks-repro-bpb-web-")
    result = runner.invoke(main, [*words[1:6], "--in", "split=missing", "--out", "task=t"])
    assert result.exit_code == 2 and f"stage {words[5]}: input split (missing) does not exist" in result.output
    bad = runner.invoke(main, [*words[1:5], "../x", "--out", "task=t"])
    assert bad.exit_code == 2 and "is not a stage name or id" in bad.output
