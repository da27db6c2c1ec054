"""The lm_eval command recorded in an evaluation's results reproduces its numbers exactly.

An evaluate stage scores a tiny checkpoint on task folders as the evaltasks stage writes
them, run as DVC runs it (from the repository root, inputs given relative to it); then the
real `lm_eval` CLI runs the command recorded in results.json (tasks.<name>.lm_eval_command),
verbatim, from the same root or from a copy of it elsewhere (a clone), and must give the
same metrics, bit for bit."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repro.eval.extract import task_metrics
from repro.eval.local_tasks import build_task, task_files
from repro.spec.schema import LocalTaskSpec
from repro.stages.base import StageIO
from repro.stages.configs import EvaluateConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "stages"))
from test_evaluate import heldout_docs, make_checkpoint  # noqa: E402  (a tiny SmolLM3)

TASKS = [LocalTaskSpec(kind="bpb", dataset="web", max_docs=4),
         LocalTaskSpec(kind="cloze", dataset="web", max_docs=6, num_choices=3)]


def lm_eval_cli(command: str, cwd: Path, out: Path) -> dict:
    """Run a recorded `lm_eval ...` command line in `cwd`; lm-eval's results dict."""
    argv = shlex.split(command)
    assert argv[0] == "lm_eval"
    script = Path(sys.executable).with_name("lm_eval")
    argv = ([str(script)] if script.exists() else [sys.executable, "-m", "lm_eval"]) + argv[1:]
    subprocess.run(argv + ["--output_path", str(out)], cwd=cwd, check=True,
                   capture_output=True, timeout=600)
    (found,) = out.rglob("results_*.json")
    return json.loads(found.read_text())


@pytest.mark.slow
def test_recorded_command_reproduces_the_stage_numbers(tmp_path, monkeypatch):
    from repro.stages import evaluate

    root = tmp_path / "repo"
    docs = heldout_docs()
    make_checkpoint(root / "data/train/ckpt", [d.text for d in docs])
    inputs = {"checkpoint:decay": Path("data/train/ckpt")}
    for spec in TASKS:
        data, manifest = build_task(spec, docs, seed=0)
        folder = root / "data/evaltasks" / f"evaltasks-{spec.task_name}"
        folder.mkdir(parents=True)
        for name, content in task_files(data, manifest).items():
            (folder / name).write_bytes(content)
        inputs[f"task:{spec.task_name}"] = folder.relative_to(root)
    monkeypatch.setenv(evaluate.CACHE_ROOT_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(root)
    cfg = EvaluateConfig.model_validate({
        "experiment": "exp", "checkpoints": ["decay"], "seed": 0,
        "evaluation": {"local_tasks": [t.ref().model_dump() for t in TASKS], "batch_size": 4}})
    evaluate.run(cfg, StageIO("evaluate-x", inputs, {
        "results:decay": Path("out/results"), "metrics:decay": Path("out/metrics.json")}))
    results = json.loads((root / "out/results/results.json").read_text())

    clone = tmp_path / "clone"
    shutil.copytree(root / "data", clone / "data")
    for spec in TASKS:
        name = spec.task_name
        task = results["tasks"][name]
        command = task["lm_eval_command"]
        # paths as DVC gives them, relative to the repository root: nothing machine-specific
        assert "pretrained=data/train/ckpt,dtype=float32,max_length=32 " in command
        assert f"--include_path data/evaltasks/evaltasks-{name} --tasks {name} " in command
        # bpb from the repository root, cloze from the clone (each CLI run indexes
        # lm-eval's built-in tasks: ~10 s)
        for where in [root if spec.kind == "bpb" else clone]:
            cli = task_metrics(lm_eval_cli(command, where, tmp_path / f"cli-{where.name}-{name}")
                               ["results"][name])
            # every metric lm-eval reports, bit for bit (the stage adds bits_per_byte_stderr)
            assert cli and cli == {k: task["metrics"][k] for k in cli}, where
            assert {"bits_per_byte", "acc"} & set(cli)
