"""`repro explain` helpers: leaf-level setting changes, and the folder hash DVC records
(rebuilding it is how explain names the files that changed inside a code folder)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

from repro.explain import StageExplanation, dir_md5, param_changes, render


def test_param_changes_are_leaf_level_old_to_new():
    old = {"optimizer": {"lr": 0.003, "betas": [0.9, 0.95]}, "steps": 80}
    new = {"optimizer": {"lr": 0.001, "betas": [0.9, 0.95]}, "steps": 80, "seed": 1}
    assert param_changes(old, new, "train-x") == [
        "setting train-x.optimizer.lr: 0.003 → 0.001", "setting train-x.seed added: 1"]
    assert param_changes({"a": 1}, {}, "s") == ["setting s.a removed (was 1)"]
    assert param_changes(old, old, "s") == []


def test_dir_md5_matches_what_dvc_records(tmp_path):
    folder = tmp_path / "code"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.py").write_text("print('a')\n")
    (folder / "sub" / "b.py").write_text("x = 1\r\n")  # CRLF: DVC 3 hashes raw bytes
    listing = {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
               for p in folder.rglob("*") if p.is_file()}
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "add", "-q", "code"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    recorded = yaml.safe_load((tmp_path / "code.dvc").read_text())["outs"][0]["md5"]
    assert dir_md5(listing) == recorded


def test_render_counts_direct_and_downstream_stages():
    text = render([StageExplanation("train-a", ["setting train-a.seed: 0 → 1"]),
                   StageExplanation("evaluate-a", [], ["train-a"])])
    assert "would run 2 stage(s): 1 changed themselves, 1 only downstream" in text
    assert "downstream of train-a" in text
    assert render([]).startswith("Everything is up to date")
