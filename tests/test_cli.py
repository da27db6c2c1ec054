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
    spec = root / "specs/qs-rope.yaml"
    spec.write_text(spec.read_text() + "evaluation: {limit: 5}\n")
    stale = runner.invoke(main, ["compile", "--check"])
    assert stale.exit_code == 1 and "stale" in stale.output


def test_compile_bad_spec_exits_2(tmp_path, monkeypatch):
    root = _project(tmp_path)
    (root / "specs/qs-rope.yaml").write_text("extends: qs-nope.yaml\nmodel: {num_kv_heads: 3}\n")
    monkeypatch.chdir(root)
    result = CliRunner().invoke(main, ["compile"])
    assert result.exit_code == 2 and "num_kv_heads" in result.output
    assert not (root / "dvc.yaml").exists()


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
    dataset past its max_epochs (the ledger stage would refuse it later); within the limit,
    and without measured counts, it compiles."""

    root = _project(tmp_path)
    shutil.copytree(REPO / "metrics", root / "metrics")
    monkeypatch.chdir(root)
    runner = CliRunner()
    assert runner.invoke(main, ["compile"]).exit_code == 0
    spec = root / "specs/qs-rope.yaml"
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
