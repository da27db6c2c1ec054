"""Building a plan from a spec and a compiled workspace: everything wrong with the input is
found before anything is queued, located in the spec file."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from repro.compile.pipelines import compile_all
from repro.compile.render import render_dvc_yaml, render_params
from repro.compile.specs import compile_files
from repro.sweep.errors import SweepInputError
from repro.sweep.plan import build_plan

REPO = Path(__file__).resolve().parents[2]

SWEEP = """
sweep:
  name: tiny
  objective: {task: repro_bpb_web}
  parameters:
    lr:
      keys:
        - train-ci-tiny-*.optimizer.lr
      values: [0.001, 0.01]
    warmup:
      # the stable phases only: a warmup of 1 or 2 steps ends inside them, and a train
      # stage's schedule holds only what reaches its updates (the decay phase has none)
      keys: [train-ci-tiny-*stable.schedule.warmup_steps]
      values: [1, 2]
"""


@pytest.fixture(autouse=True)
def _in_workspace(tmp_path, monkeypatch):
    """Run from the scratch workspace, as repro does: the spec's base (../qs-nope.yaml) must
    lie inside the workspace, which is the current directory (repro.spec.load)."""
    monkeypatch.chdir(tmp_path)


def tiny_workspace(root: Path, sweep: str = SWEEP) -> Path:
    """specs/tiny.yaml (the CI spec, with its seed-1 replica, plus `sweep`) compiled into
    root's dvc.yaml and params files."""
    shutil.copy(REPO / "specs/qs-nope.yaml", root / "qs-nope.yaml")  # tiny extends ../qs-nope
    (root / "specs").mkdir()
    spec = root / "specs/tiny.yaml"
    spec.write_text((REPO / "specs/ci/tiny.yaml").read_text() + sweep)
    graph = compile_files([spec], root / "specs", root)
    (root / "dvc.yaml").write_text(render_dvc_yaml(graph))
    for path, text in render_params(graph).items():
        (root / str(path)).write_text(text)
    return spec


def _issues(spec: Path, root: Path):
    with pytest.raises(SweepInputError) as e:
        build_plan(spec, root)
    return e.value.issues


def _line(spec: Path, text: str) -> int:
    return next(i for i, line in enumerate(spec.read_text().splitlines(), 1) if text in line)


def test_plan_of_the_tiny_spec(tmp_path):
    plan, workspace = build_plan(tiny_workspace(tmp_path), tmp_path)
    stable, decay = "train-ci-tiny-stable", "train-ci-tiny-decay"
    assert {stable, decay} <= set(workspace.params)
    # the seed-1 replica's training stages match the pattern too, but the objective (the
    # main run's final evaluation) does not read them
    assert plan.keys["lr"] == (f"{stable}.optimizer.lr", f"{decay}.optimizer.lr")
    assert plan.keys["warmup"] == (f"{stable}.schedule.warmup_steps",)
    assert plan.objective.stage_id == "evaluate-ci-tiny"
    # the output path keeps the stage id (name and settings hash)
    assert re.fullmatch(rf"metrics/{plan.objective.stage_id}-[0-9a-f]{{8}}/decay.json",
                        plan.objective.metrics_file)
    assert plan.objective.goal == "minimize"
    assert plan.baseline_point == {"lr": 0.003, "warmup": 2}
    # uncached outputs of the stages trials skip (data, tokenizer...), not of those
    # they rerun (training, evaluation, the report)
    copied = {p.split("/")[-1].split(".")[0] for p in plan.copy_paths}
    assert any(c.startswith("tokenize-web-") for c in copied)
    assert any(c.startswith("curate-web-") for c in copied)
    assert not any(c.startswith(("train-", "evaluate-ci-tiny-decay", "report-")) for c in copied)


DATA_SWEEP = """
sweep:
  name: tiny-vocab
  objective: {task: repro_bpb_web}
  parameters:
    vocab:
      keys: [tokenizer-*.tokenizer.vocab_size]
      values: [512, 1024]
"""


def test_a_data_setting_is_swept_in_params_data_yaml(tmp_path):
    """A data stage's key lies in params.data.yaml, so a trial names that file in `-S`
    (a bare key would be read as params.yaml's, which has no such section)."""
    plan, workspace = build_plan(tiny_workspace(tmp_path, DATA_SWEEP), tmp_path)
    assert plan.keys["vocab"] == ("tokenizer-bpe512.tokenizer.vocab_size",)
    assert plan.dvc_sets({"vocab": 1024}) == {
        "params.data.yaml:tokenizer-bpe512.tokenizer.vocab_size": 1024}
    assert workspace.params_files["tokenizer-bpe512"] == "params.data.yaml"
    assert "train-ci-tiny-stable" not in workspace.params_files  # in ./params.yaml
    stale = tmp_path / "params.data.yaml"
    stale.write_text(stale.read_text().replace("vocab_size: 512", "vocab_size: 256", 1))
    (issue,) = _issues(tmp_path / "specs/tiny.yaml", tmp_path)
    assert issue.file == "params.data.yaml" and "repro compile" in issue.fix


def test_a_stale_params_yaml_is_refused(tmp_path):
    spec = tiny_workspace(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text().replace("lr: 0.003", "lr: 0.004", 1))
    (issue,) = _issues(spec, tmp_path)
    assert issue.file == "params.yaml" and "repro compile" in issue.fix
    plan, _ = build_plan(spec, tmp_path, require_current=False)  # --report-only reads it as is
    assert plan.keys


def test_bad_patterns_are_all_reported_at_their_lines(tmp_path):
    spec = tiny_workspace(tmp_path, SWEEP.replace("optimizer.lr", "optimizer.lrr")
                          .replace("train-ci-tiny-*stable.schedule.warmup",
                                   "train-ci-tyni-*stable.schedule.warmup"))
    first, second = _issues(spec, tmp_path)
    assert (first.file, first.line, first.field) == (  # named as from the workspace
        "specs/tiny.yaml", _line(spec, "optimizer.lrr"), "sweep.parameters.lr.keys.0")
    assert "`train-ci-tiny-*.optimizer.lr`" in first.fix
    assert second.field == "sweep.parameters.warmup.keys.0" and "train-ci-tiny-" in second.fix


def test_a_value_a_stage_refuses_fails_before_anything_runs(tmp_path):
    spec = tiny_workspace(tmp_path, SWEEP.replace("[0.001, 0.01]", "[0.001, -0.01]"))
    (issue,) = _issues(spec, tmp_path)
    assert issue.field == "sweep.parameters.lr.values"
    assert issue.line == _line(spec, "[0.001, -0.01]")
    assert "-0.01" in issue.message and "greater than 0" in issue.message


def test_an_objective_task_the_experiment_does_not_evaluate(tmp_path):
    spec = tiny_workspace(tmp_path, SWEEP.replace("task: repro_bpb_web", "task: repro_bpb_code"))
    (issue,) = _issues(spec, tmp_path)
    assert issue.field == "sweep.objective.task" and "repro_bpb_web" in issue.message


def test_a_spec_without_a_sweep(tmp_path):
    spec = tiny_workspace(tmp_path, "")
    (issue,) = _issues(spec, tmp_path)
    assert issue.field == "sweep" and "no `sweep` block" in issue.message


def test_the_shipped_qs_lr_spec_plans_its_grid(tmp_path):
    specs = tmp_path / "specs"  # in the workspace, which confines `extends: ../../qs-nope.yaml`
    shutil.copytree(REPO / "specs", specs)
    for compiled in compile_all(specs, tmp_path):  # the lr-sweep example's files among them
        for rel, text in compiled.texts().items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
    plan, _ = build_plan(specs / "examples/lr-sweep/qs-lr.yaml", tmp_path)
    assert plan.sweep.strategy == "grid" and plan.objective.task == "repro_bpb_web"
    # one key per stage: the LR is stored once (optimizer.lr), the schedule is a shape
    assert len(plan.keys["lr"]) == 2 and len(plan.keys["weight_decay"]) == 2
    assert all(k.endswith(".optimizer.lr") for k in plan.keys["lr"])
    assert all(k.startswith("train-qs-lr-") for ks in plan.keys.values() for k in ks)
    assert plan.objective.stage_id == "evaluate-qs-lr"  # the main run's
    # the output path keeps the stage id (name and settings hash)
    assert re.fullmatch(rf"metrics/{plan.objective.stage_id}-[0-9a-f]{{8}}/decay.json",
                        plan.objective.metrics_file)
    # an example pipeline's trial: its dvc.yaml names the target, its params file the keys
    assert plan.target == f"examples/lr-sweep/dvc.yaml:{plan.objective.stage_id}"
    sets = plan.dvc_sets({"lr": 0.004, "weight_decay": 0.0})
    assert sets and all(k.startswith("examples/lr-sweep/params.yaml:train-qs-lr-") for k in sets)
    assert plan.copy_paths[0] == "examples/lr-sweep/dvc.lock"
