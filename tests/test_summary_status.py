"""`repro summary` (the first screen after `make quickstart`) on a report written by the real
report stage, and `repro status` on a workspace of two pipelines with recorded run times."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from repro.cli import main
from repro.environment import process_seconds
from repro.status import collect, pipeline_files
from repro.summary import headline, next_commands

REPO = Path(__file__).resolve().parents[1]


def _load(relative: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(relative).stem + "_by_path", REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """reports/quick written by the report stage (tests/stages/test_report.py's inputs and
    config: `new` vs the baseline `base`), named as an output of a root dvc.yaml, with a
    params.yaml holding one training stage per experiment, a params.data.yaml holding a
    curation stage, a Makefile with one example
    target, and an example pipeline."""
    stage = _load("tests/stages/test_report.py")
    root = tmp_path_factory.mktemp("ws")
    stage._run(root, stage.make_inputs(root / "in"), stage.CFG)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "report-quick-1": {"cmd": "repro stage report ...", "outs": [
            "reports/quick", "plots/quick", {"metrics/report-quick-1.env.json": {"cache": False}}]},
        "fit-ladder-1": {"cmd": "repro stage fit ...", "outs": ["reports/ladders/x"]}}}))
    (root / "reports/ladders/x").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump({
        "train-base-stable": {"phase": "stable", "optimizer": {"lr": 0.003}},
        "train-base-decay": {"phase": "decay", "optimizer": {"lr": 0.003}},
        "train-new-seed1-stable": {"phase": "stable", "optimizer": {"lr": 0.01}},
        "train-new-stable": {"phase": "stable", "optimizer": {"lr": 0.01}},
        "train-new-decay": {"phase": "decay", "optimizer": {"lr": 0.01}}}, sort_keys=False))
    (root / "params.data.yaml").write_text(yaml.safe_dump({
        "curate-web": {"steps": [{"kind": "trafilatura"},
                                 {"kind": "gopher_quality", "min_doc_words": 50}]}}))
    (root / "Makefile").write_text("example-sweep:\n\tdvc repro examples/sweep/dvc.yaml\n")
    for name in ("sweep", "ladder"):
        (root / "examples" / name).mkdir(parents=True)
        (root / "examples" / name / "dvc.yaml").write_text(yaml.safe_dump({"stages": {}}))
    return root


def _summary(root: Path, *args: str) -> str:
    cwd = os.getcwd()
    try:
        os.chdir(root)
        result = CliRunner().invoke(main, ["summary", *args])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return result.output


def test_summary_shows_the_report_the_headline_with_its_interval_and_next_commands(workspace: Path):
    out = _summary(workspace)
    assert "Report quick: reports/quick/report.html" in out
    rows = list(csv.DictReader((workspace / "reports/quick/deltas.csv").open()))
    agg = next(r for r in rows if r["column"] == "aggregate" and r["experiment"] == "new")
    line = next(ln for ln in out.splitlines() if "aggregate score" in ln)
    # the numbers of the report's own deltas.csv: difference, then the interval
    assert f"{float(agg['delta']):+.4f} [{float(agg['ci_low']):+.4f}, {float(agg['ci_high']):+.4f}]" in line
    assert ("not significant" in line) == (agg["significant"] == "false")
    assert "new vs base (2 vs 2 replica(s)):" in out
    primary = [r for r in rows if r["experiment"] == "new" and r["column"] != "aggregate"]
    assert any(r["column"] in out for r in primary)
    assert "95% interval" in out
    # the next commands: a real -S key of a compared experiment, the example pipelines
    # (a Makefile target where one exists), status, publish, the shared cache
    # (the main run's every phase: each section holds the run's LR; not the replica's)
    assert ("  dvc exp run -S 'train-new-stable.optimizer.lr=0.02' "
            "-S 'train-new-decay.optimizer.lr=0.02'\n") in out  # its comment on the next line
    # a data ablation names params.data.yaml, where the data stages' settings are
    assert "dvc exp run -S 'params.data.yaml:curate-web.steps.1.min_doc_words=60'" in out
    assert "make example-sweep" in out and "dvc repro examples/ladder/dvc.yaml" in out
    assert "repro status" in out and "repro publish site/" in out and "dvc push" in out
    assert "ladders" not in out  # a fit folder (no summary.json) is not a report


def test_headline_says_when_a_verdict_holds_for_one_checkpoint_only():
    row = {"column": "aggregate", "delta": 0.05, "ci_low": 0.01, "ci_high": 0.09,
           "significant": True}
    summary = {"baseline": "base", "experiments": ["base", "solo", "twin"],
               "replicas": {"base": ["s0", "s1"], "solo": ["s0"], "twin": ["s0", "s1"]},
               "deltas": [{**row, "experiment": "solo", "claim": "checkpoint",
                           "seed_spread": 0.02, "within_seed_noise": False},
                          {**row, "experiment": "twin", "claim": "method",
                           "seed_spread": 0.08, "within_seed_noise": True}],
               "bootstrap": {"confidence": 0.95, "used": True, "method": "paired bootstrap"}}
    solo, twin = [ln for ln in headline(summary) if "aggregate score" in ln]
    assert solo.endswith("+0.0500 [+0.0100, +0.0900] better (this checkpoint only)")
    assert twin.endswith("better, within seed noise (seed spread 0.0800)")


def test_summary_of_a_named_report_and_of_a_missing_one(workspace: Path, tmp_path: Path):
    assert "Report quick" in _summary(workspace, "reports/quick")
    result = CliRunner().invoke(main, ["summary", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "summary.json" in result.output and "fix:" in result.output


def _stage(name: str, env: str) -> dict:
    return {"cmd": f"repro stage x {name}", "outs": [f"data/{name}", {env: {"cache": False}}]}


def test_status_lists_each_pipeline_with_stages_and_the_sum_of_recorded_seconds(tmp_path: Path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "a": _stage("a", "metrics/a.env.json"), "b": _stage("b", "metrics/b.env.json"),
        "c": _stage("c", "metrics/c.env.json")}}))
    ex = tmp_path / "examples" / "lr"
    ex.mkdir(parents=True)
    # an example's stages run from the repository root (wdir), their records live there
    (ex / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "t": {**_stage("t", "metrics/t.env.json"), "wdir": "../.."}}}))
    (tmp_path / "metrics").mkdir()
    for name, seconds in (("a", 1.5), ("b", 120.25), ("t", 7.0)):
        (tmp_path / "metrics" / f"{name}.env.json").write_text(
            json.dumps({"numerics": {}, "run": {"wall_seconds": seconds}}))
    (tmp_path / "metrics" / "c.env.json").write_text(json.dumps({"numerics": {}}))  # older record
    assert [str(p) for p in pipeline_files(tmp_path)] == ["dvc.yaml", "examples/lr/dvc.yaml"]
    root, lr = collect(tmp_path, ask_dvc=False)
    assert len(root.stages) == 3 and root.timed_seconds == pytest.approx(121.75) and root.untimed == 1
    assert len(lr.stages) == 1 and lr.timed_seconds == 7.0 and lr.stale is None
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        text = CliRunner().invoke(main, ["status", "--no-dvc"]).output
        data = json.loads(CliRunner().invoke(main, ["status", "--no-dvc", "--json"]).output)
    finally:
        os.chdir(cwd)
    assert "2 min 02 s (1 stage(s) not timed)" in text and "examples/lr/dvc.yaml" in text
    assert data[1] == {"pipeline": "examples/lr/dvc.yaml", "stages": 1, "to_run": None,
                       "up_to_date": None, "last_build_seconds": 7.0, "untimed_stages": 0}


def _git_dvc_init(root: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"],
                 ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(args, cwd=root, env=env, check=True, capture_output=True)


@pytest.mark.slow
def test_status_asks_dvc_what_is_stale_in_every_pipeline(tmp_path: Path):
    """Two pipelines of trivial stages, one built: DVC's own verdict per pipeline."""
    _git_dvc_init(tmp_path)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "one": {"cmd": "echo 1 > one.txt", "outs": ["one.txt"]},
        "two": {"cmd": "cp one.txt two.txt", "deps": ["one.txt"], "outs": ["two.txt"]}}}))
    ex = tmp_path / "examples" / "more"
    ex.mkdir(parents=True)
    (ex / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "three": {"cmd": "echo 3 > three.txt", "outs": ["three.txt"]}}}))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    subprocess.run(["dvc", "repro", "dvc.yaml"], cwd=tmp_path, env=env, check=True, capture_output=True)
    root, more = collect(tmp_path)
    assert root.stale == frozenset() and more.stale == frozenset({"three"})
    (tmp_path / "one.txt").write_text("changed\n")
    root, more = collect(tmp_path)
    assert root.stale == frozenset({"one", "two"}) and more.stale == frozenset({"three"})


def test_process_seconds_counts_from_process_start():
    code = ("import time; time.sleep(0.4); from repro.environment import process_seconds; "
            "print(process_seconds())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0.4 <= float(out.stdout) < 60
    assert 0 < process_seconds()


def test_next_commands_skip_what_a_broken_params_file_cannot_suggest(tmp_path: Path):
    """A params file that is not a mapping (or not YAML) leaves its suggestion out; the
    other commands are still listed, and nothing raises."""
    (tmp_path / "params.yaml").write_text("train-x-stable: {phase: stable, optimizer: {lr: 0.01}}\n")
    (tmp_path / "params.data.yaml").write_text("curate-web: [\n")  # a -S typo left it broken
    cmds = [c for c, _ in next_commands(tmp_path, ["x"])]
    assert cmds[0] == "dvc exp run -S 'train-x-stable.optimizer.lr=0.02'"
    assert not any("params.data.yaml" in c for c in cmds) and "repro status" in cmds
    (tmp_path / "params.yaml").write_text("- 1\n")
    assert not any(c.startswith("dvc exp run") for c, _ in next_commands(tmp_path, ["x"]))
