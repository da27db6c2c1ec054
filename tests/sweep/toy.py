"""Helpers of the sweep tests: sweep specs, a fake DVC for the driver, and a tiny real DVC
repository (three cheap python stages, no torch) whose objective has a known optimum."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from repro.spec.search import SweepSpec
from repro.sweep.dvc import ExpRecord
from repro.sweep.objective import Objective
from repro.sweep.plan import SweepPlan
from repro.sweep.values import set_path


def make_sweep(**fields: Any) -> SweepSpec:
    data: dict[str, Any] = {"name": "sw", "objective": {"task": "t", "metric": "bits_per_byte"},
                            "parameters": {"lr": {"keys": ["train-toy-*.optimizer.lr"],
                                                  "values": [0.001, 0.01]},
                                           "wd": {"keys": ["train-toy-*.optimizer.weight_decay"],
                                                  "values": [0.0, 0.5]}}}
    data.update(fields)
    return SweepSpec.model_validate(data)


TOY_OBJECTIVE = Objective("evaluate-toy", "metrics/evaluate-toy-cccc3333/decay.json",
                          "t", "bits_per_byte", "minimize")
TOY_KEYS = {"lr": ("train-toy-stable.optimizer.lr",),
            "wd": ("train-toy-stable.optimizer.weight_decay",)}
TOY_PARAMS = {"prep-toy": {"n": 3},
              "train-toy-stable": {"optimizer": {"lr": 0.003, "weight_decay": 0.1}},
              "evaluate-toy": {"task": "t"}}


def toy_value(lr: float, wd: float) -> float:
    """The toy objective: lowest at lr = 0.01, wd = 0 (value 0)."""
    return (math.log10(lr) + 2.0) ** 2 + wd


def make_plan(sweep: SweepSpec | None = None, keys: dict | None = None,
              copy_paths: tuple[str, ...] = ()) -> SweepPlan:
    sweep = sweep or make_sweep()
    return SweepPlan(sweep, "specs/toy.yaml", "toy", keys or TOY_KEYS, TOY_OBJECTIVE,
                     {"lr": 0.003, "wd": 0.1}, copy_paths)


class FakeDvc:
    """The driver's Backend without DVC: `start` runs every queued trial at once with
    `toy_value` (or fails those whose lr is in `fail_lrs`)."""

    def __init__(self, fail_lrs: tuple[float, ...] = ()) -> None:
        self.records: dict[str, ExpRecord] = {}
        self.queued: list[str] = []
        self.discarded: list[str] = []
        self.reproduced: list[str] = []
        self.starts = 0
        self.fail_lrs = fail_lrs

    def params_with(self, sets: dict[str, Any]) -> dict[str, Any]:
        params = copy.deepcopy(TOY_PARAMS)
        for key, value in sets.items():
            set_path(params, key, value)
        return params

    def add(self, name: str, state: str, lr: float, wd: float, value: float | None = None) -> None:
        params = self.params_with({TOY_KEYS["lr"][0]: lr, TOY_KEYS["wd"][0]: wd})
        metrics = ({TOY_OBJECTIVE.metrics_file: {"tasks": {"t": {"bits_per_byte": value}}}}
                   if value is not None else {})
        self.records[name] = ExpRecord(name, state, f"rev-{name}", params, metrics)  # type: ignore[arg-type]

    def reproduce(self, target: str) -> None:
        self.reproduced.append(target)

    def queue(self, name: str, sets: dict[str, Any], target: str, copy_paths=()) -> None:
        assert target == TOY_OBJECTIVE.stage_id
        self.queued.append(name)
        self.copied = list(copy_paths)
        self.records[name] = ExpRecord(name, "queued", None, self.params_with(sets))

    def start(self, workers: int) -> None:
        self.starts += 1
        for name, rec in list(self.records.items()):
            if rec.state != "queued":
                continue
            opt = rec.params["train-toy-stable"]["optimizer"]
            if opt["lr"] in self.fail_lrs:
                self.records[name] = ExpRecord(name, "failed", None, rec.params, error="boom")
            else:
                self.add(name, "success", opt["lr"], opt["weight_decay"],
                         toy_value(opt["lr"], opt["weight_decay"]))

    def experiments(self) -> dict[str, ExpRecord]:
        return {n: r for n, r in self.records.items() if r.state != "queued"}  # --hide-queued

    def in_flight(self) -> dict[str, str]:
        return {n: r.state for n, r in self.records.items() if r.state in ("queued", "running")}

    def logs(self, name: str) -> str:
        return f"Traceback...\nValueError: {name} diverged"

    def discard(self, record: ExpRecord) -> None:
        self.discarded.append(record.name)
        del self.records[record.name]


# ------------------------------------------------------------------ real DVC repository

TOY_FILES = {
    "prep.py": """
        import os, uuid
        os.makedirs("data", exist_ok=True)
        # a fresh token each run: a trial that reran prep instead of checking it out of
        # the cache would show another hash
        open("data/prep.txt", "w").write(uuid.uuid4().hex)
        os.makedirs("metrics", exist_ok=True)
        open("metrics/prep.json", "w").write('{"docs": 3}')  # uncached, never committed
        """,
    "train.py": """
        import json, os, yaml
        p = yaml.safe_load(open("params.yaml"))["train-toy-stable"]["optimizer"]
        os.makedirs("out", exist_ok=True)
        json.dump({"lr": p["lr"], "wd": p["weight_decay"], "prep": open("data/prep.txt").read()},
                  open("out/model.json", "w"))
        """,
    "evaluate.py": """
        import json, math, os
        m = json.load(open("out/model.json"))
        value = (math.log10(m["lr"]) + 2.0) ** 2 + m["wd"]   # log10 fails for lr <= 0
        os.makedirs("metrics/evaluate-toy-cccc3333", exist_ok=True)
        json.dump({"tasks": {"t": {"bits_per_byte": value}}},
                  open("metrics/evaluate-toy-cccc3333/decay.json", "w"))
        """,
}
TOY_DVC_YAML = """
stages:
  prep-toy:
    cmd: python prep.py
    params: [prep-toy]
    deps: [prep.py]
    outs:
      - data/prep.txt
      # an uncached plain output, like repro's env records: DVC then keeps the stage out of
      # its run cache, so a trial can only skip prep if this file is there
      - metrics/prep.json:
          cache: false
  train-toy-stable:
    cmd: python train.py
    params: [train-toy-stable]
    deps: [train.py, data/prep.txt]
    outs: [out/model.json]
  evaluate-toy:
    cmd: python evaluate.py
    params: [evaluate-toy]
    deps: [evaluate.py, out/model.json]
    metrics:
      - metrics/evaluate-toy-cccc3333/decay.json:
          cache: false
"""


def toy_repo(root: Path) -> Path:
    """A committed git + DVC repository with the toy pipeline and TOY_PARAMS."""
    import yaml

    from repro.sweep.dvc import tool_path

    env = {**os.environ, "PATH": tool_path()}
    root.mkdir(parents=True, exist_ok=True)
    for name, text in TOY_FILES.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())
    (root / "dvc.yaml").write_text(TOY_DVC_YAML.lstrip())
    (root / "params.yaml").write_text(yaml.safe_dump(TOY_PARAMS, sort_keys=False))
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"],
                 ["dvc", "config", "core.analytics", "false"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy"]):
        proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return root
