"""`repro explain` helpers: leaf-level setting changes, and the folder hash DVC records
(rebuilding it is how explain names the files that changed inside a code folder)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

from repro.explain import StageExplanation, command_changes, dir_md5, param_changes, render


def test_param_changes_are_leaf_level_old_to_new():
    old = {"optimizer": {"lr": 0.003, "betas": [0.9, 0.95]}, "steps": 80}
    new = {"optimizer": {"lr": 0.001, "betas": [0.9, 0.95]}, "steps": 80, "seed": 1}
    assert param_changes(old, new, "train-x") == [
        "setting train-x.optimizer.lr: 0.003 → 0.001", "setting train-x.seed added: 1"]
    assert param_changes({"a": 1}, {}, "s") == ["setting s.a removed (was 1)"]
    assert param_changes(old, old, "s") == []
    # a list of one length item by item, named by index as `dvc exp run -S` sets it
    steps = [{"kind": "trafilatura"}, {"kind": "gopher_quality", "min_doc_words": 50}]
    raised = [steps[0], {**steps[1], "min_doc_words": 60}]
    assert param_changes(steps, raised, "curate-web.steps") == [
        "setting curate-web.steps.1.min_doc_words: 50 → 60"]
    assert param_changes([0.9, 0.95], [0.9, 0.99], "betas") == ["setting betas.1: 0.95 → 0.99"]
    assert param_changes(steps, steps[:1], "curate-web.steps") == [  # shrank: shown whole
        'setting curate-web.steps: [{"kind": "trafilatura"}, {"kind": "gopher_quality", '
        '"min_doc_words": 50}] → [{"kind": "trafilatura"}]']


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


def test_numbers_compare_as_numbers_whatever_yaml_version_wrote_them():
    # dvc.lock (ruamel, YAML 1.2) says `1e-08`, which PyYAML (YAML 1.1) reads as a string
    assert param_changes({"eps": "1e-08", "lr": 0.002}, {"eps": 1e-08, "lr": 0.002}, "optimizer") == []
    assert param_changes({"eps": "1e-8"}, {"eps": 1.0e-08}, "optimizer") == []
    assert param_changes({"eps": "1e-08"}, {"eps": 2e-08}, "optimizer") == [
        "setting optimizer.eps: 1e-08 → 2e-08"]
    assert param_changes({"betas": ["9e-1", 0.95]}, {"betas": [0.9, 0.95]}, "x") == []
    assert param_changes({"name": "web"}, {"name": "code"}, "") == ["setting name: web → code"]
    assert param_changes({"v": "1e-08"}, {"v": "1e-08x"}, "") == ["setting v: 1e-08 → 1e-08x"]


def test_a_whole_section_names_its_fields_from_the_top():
    old = {"optimizer": {"lr": 0.001}, "seed": 0}
    assert param_changes(old, {**old, "optimizer": {"lr": 0.002}}, "") == [
        "setting optimizer.lr: 0.001 → 0.002"]


def test_command_changes_name_the_argument_and_fold_paths_that_follow_the_id():
    old = ("repro stage train train-x --id train-x-aaaaaaaa --in init=ck/train-w-11111111 "
           "--out checkpoint=ck/train-x-aaaaaaaa --out metrics=metrics/train-x-aaaaaaaa.json")
    new = ("repro stage train train-x --id train-x-bbbbbbbb --in init=ck/train-w-22222222 "
           "--out checkpoint=ck/train-x-bbbbbbbb --out metrics=metrics/train-x-bbbbbbbb.json")
    assert command_changes(old, new) == [
        "command: input init: ck/train-w-11111111 → ck/train-w-22222222",
        "command: stage id (its settings hash): train-x-aaaaaaaa → train-x-bbbbbbbb, so its "
        "2 output path(s) move with it"]
    assert command_changes("repro stage a b --out x=1", "repro stage a b --out x=2 --out y=3") == [
        "command: output x: 1 → 2", "command: output y added: 3"]
    assert command_changes("echo 'a", "echo b") == ["its command changed: echo 'a → echo b"]


def test_outputs_and_inputs_at_new_paths_are_not_reported_as_deleted(tmp_path):
    """A changed setting moves the stage's outputs (and its descendants' inputs) to paths
    named by the new id: DVC calls those paths deleted; the command's `stage id` and `input`
    lines already say they moved, so only a recorded path that went missing is a reason."""
    from repro.explain import _reasons
    from repro.verify.lockfile import LockedFile, LockedStage

    lock = LockedStage("train-x", "repro stage train train-x --id train-x-aaaa1111",
                       deps={"data/in-aaaa": LockedFile("data/in-aaaa", "1", 1, None)},
                       outs={"ckpt/train-x-aaaa1111": LockedFile("ckpt/train-x-aaaa1111", "2", 1, None)})
    status = [{"changed outs": {"ckpt/train-x-bbbb2222": "deleted", "ckpt/train-x-aaaa1111": "deleted"}},
              {"changed deps": {"data/in-bbbb": "deleted"}}]
    reasons = _reasons(tmp_path, "train-x", status, lock, {}, {"data/in-bbbb": "make-in"})
    assert reasons == ["output ckpt/train-x-aaaa1111 deleted since the last run (DVC restores it "
                       "from its run cache if it holds this result, else reruns the stage)"]
