"""scripts/gpu_check.py and scripts/gpu-check.sh (the one-call GPU check of issue 17): the
stage order, that a failed part or stage does not stop the check, and (slow) the whole
check rehearsed on CPU at its tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import gpu_check  # noqa: E402
from tests.bench.test_training_gpu import check_tiny_cpu_bench  # noqa: E402


def test_stage_order_puts_makers_first():
    dvc = {"stages": {
        "train": {"deps": ["repro/train", "data/tok"], "outs": ["ckpt", {"perf.json": {"cache": False}}]},
        "evaluate": {"deps": ["ckpt", "data/task"], "outs": ["results"]},
        "tokenize": {"deps": ["data/split"], "outs": ["data/tok"], "metrics": [{"m.json": {"cache": False}}]},
        "split": {"deps": ["data/raw"], "outs": ["data/split"]},
        "evaltasks": {"deps": ["data/split"], "outs": ["data/task"]},
        "source": {"deps": ["repro/stages/source.py"], "outs": ["data/raw"]},
    }}
    order = gpu_check.stage_order(dvc)
    assert sorted(order) == sorted(dvc["stages"])
    pos = {name: i for i, name in enumerate(order)}
    for name, entry in dvc["stages"].items():
        for dep in entry["deps"]:
            maker = next((m for m, e in dvc["stages"].items()
                          if dep in [next(iter(o)) if isinstance(o, dict) else o
                                     for o in e.get("outs", []) + e.get("metrics", [])]), None)
            if maker:
                assert pos[maker] < pos[name], f"{maker} must run before {name}"


@pytest.mark.slow
def test_a_failed_stage_skips_its_dependents_only(tmp_path, monkeypatch):
    """The spec compiles for real; the stage commands are faked: curate-web fails, so every
    stage needing its output (directly or not) is skipped and the code chain still runs."""
    real_run = gpu_check.Check.run
    ran = []

    def fake_run(self, cmd, *, cwd, timeout, env=None):
        if "compile" in cmd:
            return real_run(self, cmd, cwd=cwd, timeout=timeout, env=env)
        stage = cmd[cmd.index("stage") + 2]
        ran.append(stage)
        if stage.startswith("curate-web"):
            return {"status": "failed", "returncode": 1, "seconds": 0.0, "output_tail": "boom"}
        return {"status": "ok", "returncode": 0, "seconds": 0.0}

    monkeypatch.setattr(gpu_check.Check, "run", fake_run)
    check = gpu_check.Check(tmp_path / "out", budget=300)
    result = gpu_check.pipeline_part(check, tmp_path / "work", tiny=True, record=None)
    stages = result["stages"]
    status = {name: r["status"] for name, r in stages.items()}  # stage names carry no hash
    assert status["curate-web"] == "failed" and result["status"] == "failed"
    for name in ("split-web", "tokenizer-bpe1024", "tokenize-code", "train-gpu-360m-stable",
                 "evaluate-gpu-360m", "evaltasks-repro-bpb-web"):
        assert status[name] == "skipped", name
    for name in ("source-stdlib-code", "curate-code", "split-code", "evaltasks-repro-bpb-code"):
        assert status[name] == "ok", name
    assert [n for n in ran if not n.startswith("curate-web")] == \
        [n for n, r in stages.items() if r["status"] == "ok"]
    # progress is saved after every stage run: a check cut short keeps what it did
    saved = json.loads((tmp_path / "out" / gpu_check.SUMMARY).read_text())
    assert saved["parts"]["pipeline"]["status"] == "running"
    assert list(saved["parts"]["pipeline"]["stages"]) == \
        [n for n in stages if not n.startswith(("train-", "evaluate-"))][:len(saved["parts"]["pipeline"]["stages"])]


def test_a_failed_part_does_not_stop_the_check(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "bench_part",
                        lambda check, size, device: {"status": "failed", "seconds": 1.0, "output_tail": "OOM"})
    monkeypatch.setattr(gpu_check, "pipeline_part",
                        lambda check, work, tiny, record: {"status": "ok", "seconds": 2.0})
    rc = gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--size", "tiny"])
    summary = json.loads((tmp_path / gpu_check.SUMMARY).read_text())
    assert rc == 1 and summary["status"] == "failed"
    assert {k: v["status"] for k, v in summary["parts"].items()} == \
        {"environment": "ok", "bench-tiny": "failed", "pipeline": "ok"}
    assert summary["parts"]["environment"]["torch"]


@pytest.mark.slow
def test_the_check_rehearsed_on_cpu(tmp_path):
    """scripts/gpu-check.sh --device cpu --size tiny: every part passes (about 3 minutes on
    2 cores); the summary holds the bench's numbers, the train stage's kernels and the
    evaluation's scores with the dtype it resolved."""
    env = dict(os.environ, REPRO_NUM_THREADS="1", PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    p = subprocess.run([str(REPO / "scripts" / "gpu-check.sh"), "--device", "cpu", "--size", "tiny",
                        "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--budget", "900"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    summary = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert summary["status"] == "ok"
    bench = summary["parts"]["bench-tiny"]
    assert bench["ratios"]["ours_same_work_over_minimal"] > 0
    # the bench's own checks, on its run here (bench.training's stdout is in the check's log)
    bench_json = tmp_path / "out" / "bench-tiny.json"
    log = (tmp_path / "out" / "gpu-check.log").read_text()
    bench_output = log.split(f"--json {bench_json}", 1)[1].split("\n$ ", 1)[0]
    check_tiny_cpu_bench(json.loads(bench_json.read_text()),
                         bench_output.strip().splitlines(), bench_json)
    pipe = summary["parts"]["pipeline"]
    assert all(s["status"] == "ok" for s in pipe["stages"].values())
    assert any(n.startswith("evaluate-") for n in pipe["stages"])
    assert pipe["train_perf"]["tokens_per_s"] > 0
    assert pipe["evaluation"]["settings"] == {"device": "cpu", "dtype": "float32", "batch_size": "auto"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        ["bench-tiny.json", "gpu-check.json", "gpu-check.log"]  # what $OUT brings back: <= 8 files
