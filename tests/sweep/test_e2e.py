"""A 2x2 grid on a tiny real DVC repository, one worker: four experiments with the right
params, the report's best is the true optimum, and a second run queues nothing."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from repro.sweep.driver import Driver
from repro.sweep.dvc import DvcBackend
from repro.sweep.keys import resolve_pattern
from repro.sweep.report import write_report
from repro.sweep.results import collect_results
from repro.sweep.workspace import uncached_outputs
from tests.sweep.toy import TOY_OBJECTIVE, make_plan, make_sweep, toy_repo, toy_value


@pytest.mark.slow
def test_grid_sweep_on_dvc_queue_finds_the_optimum_and_resumes(tmp_path):
    root = toy_repo(tmp_path / "repo")
    sweep = make_sweep()  # lr in {0.001, 0.01} x wd in {0.0, 0.5}; optimum lr 0.01, wd 0
    params = yaml.safe_load((root / "params.yaml").read_text())
    keys = {n: resolve_pattern(p.keys[0], params) for n, p in sweep.parameters.items()}
    # prep's uncached metrics file is never committed: copied into each trial, prep is
    # skipped there; without it DVC would rerun prep in every trial
    copy = uncached_outputs(yaml.safe_load((root / "dvc.yaml").read_text()), ["prep-toy"])
    assert copy == ["metrics/prep.json"]
    plan = make_plan(sweep, keys, tuple(copy))
    dvc = DvcBackend(root, echo=False)
    lines: list[str] = []
    started = time.monotonic()
    Driver(plan, dvc, root, workers=1, echo=lines.append, poll_s=1).run()
    elapsed = time.monotonic() - started

    records = dvc.experiments()
    assert sorted(n for n in records if n.startswith("sw-")) == ["sw-0", "sw-1", "sw-2", "sw-3"]
    for name, (lr, wd) in zip(["sw-0", "sw-1", "sw-2", "sw-3"],
                              [(0.001, 0.0), (0.001, 0.5), (0.01, 0.0), (0.01, 0.5)]):
        assert records[name].state == "success"
        assert records[name].params["train-toy-stable"]["optimizer"] == {
            "lr": lr, "weight_decay": wd}
        value = TOY_OBJECTIVE.read(records[name].metrics[TOY_OBJECTIVE.metrics_file])
        assert value == pytest.approx(toy_value(lr, wd))

    # upstream came from the cache: every trial's prep output is the workspace's
    raw = dvc.exp_show()
    prep = {e["name"]: e["revs"][0]["data"]["deps"]["data/prep.txt"]["hash"]
            for row in raw for e in (row.get("experiments") or [])}
    workspace = next(r for r in raw if r["rev"] == "workspace")
    assert set(prep.values()) == {workspace["data"]["outs"]["data/prep.txt"]["hash"]}

    results = collect_results(records, "sw", keys, TOY_OBJECTIVE)
    baseline = TOY_OBJECTIVE.read(json.loads((root / TOY_OBJECTIVE.metrics_file).read_text()))
    assert baseline == pytest.approx(toy_value(0.003, 0.1))  # `dvc repro` built the baseline
    write_report(plan, results, baseline, tmp_path / "report")
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert data["best"]["name"] == "sw-2" and data["best"]["point"] == {"lr": 0.01, "wd": 0.0}
    assert "dvc exp apply sw-2" in (tmp_path / "report" / "report.md").read_text()

    again: list[str] = []
    Driver(plan, dvc, root, workers=1, echo=again.append, poll_s=1).run()
    assert any("4 trial(s) already finished" in line for line in again)
    assert dvc.experiments().keys() == records.keys()  # nothing new queued
    print(f"2x2 grid, 1 worker: {elapsed:.1f}s")
