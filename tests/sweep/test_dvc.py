"""Parsing `dvc exp show --json` and `dvc queue status`: on hand-made input (missing and
broken parts), and on a real sample this test generates with the installed DVC (a queued,
a finished and a failed experiment in a tiny repository)."""

from __future__ import annotations

import json
import time

import pytest

from repro.sweep.dvc import DvcBackend, copy_roots, parse_exp_show, parse_queue_status
from tests.sweep.toy import TOY_OBJECTIVE, toy_repo


def _exp(name, state, params=None, metrics=None, error=None, executor=True):
    data = {"params": {"params.yaml": {"data": params or {}}}, "metrics": metrics or {}}
    return {"name": name, "executor": {"state": state} if executor else None,
            "revs": [{"rev": f"r-{name}", "name": name, "error": error, "data": data}]}


def test_parse_keeps_named_experiments_and_the_most_advanced_duplicate():
    doc = [{"rev": "workspace", "experiments": None},
           {"rev": "abc", "experiments": [
               _exp("a-0", "failed", {"x": 1}, error={"msg": "Experiment run failed"}),
               _exp("a-0", "success", {"x": 1}, {"m.json": {"data": {"v": 2}}}),
               _exp("a-1", "running"),
               _exp("plain", None, {"x": 3}, executor=False),      # `dvc exp run`, no queue
               {"name": None, "revs": []},                          # nameless: skipped
               "garbage"]}]
    out = parse_exp_show(doc)
    assert sorted(out) == ["a-0", "a-1", "plain"]
    assert out["a-0"].state == "success" and out["a-0"].metrics == {"m.json": {"v": 2}}
    assert out["a-1"].state == "running" and out["a-1"].params == {}
    assert out["plain"].state == "success" and out["plain"].params == {"x": 3}
    assert parse_exp_show({"not": "a list"}) == {} and parse_exp_show([]) == {}


def test_unreadable_metrics_files_are_left_out():
    doc = [{"rev": "abc", "experiments": [_exp("a-0", "success", {}, {
        "m.json": {"error": {"type": "FileNotFoundError", "msg": "gone"}}})]}]
    assert parse_exp_show(doc)["a-0"].metrics == {}


def test_queue_status_gives_queued_and_running_names():
    text = """Task     Name     Created       Status
8844f05  qs-lr-2  07:09 AM      Running
9745b68  qs-lr-3  Nov 28, 2026  Queued
1234567           07:10 AM      Queued
b97d6ea  qs-lr-0  07:09 AM      Success
c0f793d  qs-lr-1  07:09 AM      Failed
aaaaaaa  qs-lr-2  07:01 AM      Queued

Worker status: 1 active, 0 idle
"""
    assert parse_queue_status(text) == {"qs-lr-2": "running", "qs-lr-3": "queued", "07:10": "queued"}
    assert parse_queue_status("No experiment tasks in the queue.\n\nWorker status: 0 active, 0 idle") == {}


def test_copy_roots_reach_the_first_folder_git_does_not_have():
    tracked = {"dvc.yaml", "metrics/curate-a.json", "plots/train-a/loss.csv", "params.yaml"}
    wanted = ["dvc.lock", "metrics/funnel-b.json", "metrics/curate-a.json",
              "plots/train-b/loss.csv", "plots/train-b/monitor.csv", "results/x/y.json"]
    assert copy_roots(wanted, tracked) == [
        "dvc.lock",                 # untracked file at the top
        "metrics/funnel-b.json",    # metrics/ exists in the checkout: the file itself
        "plots/train-b",            # plots/train-b/ does not: the folder, once
        "results"]                  # nothing under results/ is tracked
    assert copy_roots(["metrics/curate-a.json"], tracked) == []  # tracked: already there


def _wait(backend: DvcBackend, names: set[str], timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = backend.experiments()
        if all(n in records and records[n].state in ("success", "failed") for n in names):
            return records
        time.sleep(1)
    raise AssertionError(f"{names} did not finish in {timeout_s}s")


@pytest.mark.slow
def test_parse_a_real_sample_of_the_installed_dvc(tmp_path):
    root = toy_repo(tmp_path / "repo")
    dvc = DvcBackend(root, echo=False)
    dvc.reproduce(TOY_OBJECTIVE.stage_id)
    lr, wd = "train-toy-stable.optimizer.lr", "train-toy-stable.optimizer.weight_decay"
    copy = ["metrics/prep.json"]  # prep's uncached output: see DvcBackend.queue
    dvc.queue("s-0", {lr: 0.01, wd: 0.5}, TOY_OBJECTIVE.stage_id, copy)
    # captured before any worker exists: a worker lingers ~10 s after the queue empties and
    # would pick up anything queued later
    queued = parse_exp_show(dvc.exp_show(hide_queued=False))["s-0"]
    assert queued.state == "queued"
    assert queued.params["train-toy-stable"]["optimizer"] == {"lr": 0.01, "weight_decay": 0.5}
    assert dvc.in_flight() == {"s-0": "queued"} and "s-0" not in dvc.experiments()  # hidden
    dvc.queue("s-1", {lr: -1.0, wd: 0.0}, TOY_OBJECTIVE.stage_id, copy)  # log10 fails
    dvc.start(1)
    _wait(dvc, {"s-0", "s-1"})
    assert dvc.in_flight() == {}
    sample = tmp_path / "exp_show.json"
    sample.write_text(json.dumps(dvc.exp_show()))

    raw = json.loads(sample.read_text())
    records = parse_exp_show(raw)
    ok, bad = records["s-0"], records["s-1"]
    assert ok.state == "success" and ok.rev and len(ok.rev) == 40
    assert ok.params["train-toy-stable"]["optimizer"] == {"lr": 0.01, "weight_decay": 0.5}
    assert TOY_OBJECTIVE.read(ok.metrics[TOY_OBJECTIVE.metrics_file]) == 0.5
    assert bad.state == "failed" and bad.error and TOY_OBJECTIVE.metrics_file not in bad.metrics
    assert bad.params["train-toy-stable"]["optimizer"]["lr"] == -1.0  # the queued params
    assert "math domain error" in dvc.logs("s-1")
    # the shared upstream output came from the cache: same hash as the workspace's build
    rows = {r["rev"]: r for r in raw}
    exp = next(e for r in raw for e in (r.get("experiments") or []) if e["name"] == "s-0")
    assert (exp["revs"][0]["data"]["deps"]["data/prep.txt"]["hash"]
            == rows["workspace"]["data"]["outs"]["data/prep.txt"]["hash"])
