"""`repro verify --scratch`: the scratch folder is removed afterwards, so only a folder the
run created may be used; a folder that was already there (the user's) is refused and kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import repro.verify.run as verify_pkg
from repro.cli import main
from repro.errors import ReproError
from repro.verify.certificate import FAIL
from repro.verify.run import verify
from repro.verify.tolerance import Tolerance
from repro.verify.scratch import new_folder


def _workspace(root: Path) -> None:
    (root / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo\n")
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")


def test_existing_scratch_folder_is_refused_and_kept(tmp_path, monkeypatch):
    _workspace(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sentinel.txt").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["verify", "s", "--scratch", str(mine)])
    assert result.exit_code == 2, result.output
    assert "already exists" in result.output
    assert "\n    fix: pass a path that does not exist yet" in result.output
    assert "Traceback" not in result.output
    assert (mine / "sentinel.txt").read_text() == "keep me"
    assert sorted(p.name for p in mine.iterdir()) == ["sentinel.txt"]


def test_only_the_folders_the_run_created_are_removed(tmp_path, monkeypatch):
    """--scratch a/b/c under an existing folder: a, b and c are made, then all removed; the
    existing folder and its other files stay."""
    _workspace(tmp_path)
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "sentinel.txt").write_text("keep me")
    seen = []
    monkeypatch.setattr(verify_pkg, "make_scratch", lambda root, scratch, inputs: seen.append(
        sorted(p.name for p in scratch.iterdir())))
    monkeypatch.setattr(verify_pkg, "run_dvc_repro", lambda scratch, stages: 0)
    _, where = verify(tmp_path, ["s"], Tolerance(), parent / "a" / "b" / "c")
    assert where == parent / "a" / "b" / "c" and seen == [[]]  # it got a new, empty folder
    assert sorted(p.name for p in parent.iterdir()) == ["sentinel.txt"]


def test_a_failed_rebuild_removes_only_its_own_folder(tmp_path, monkeypatch):
    _workspace(tmp_path)
    (tmp_path / "sentinel.txt").write_text("keep me")

    def boom(root, scratch, inputs):
        (scratch / "partial").write_text("x")
        raise RuntimeError("copy failed")

    monkeypatch.setattr(verify_pkg, "make_scratch", boom)
    with pytest.raises(RuntimeError):
        verify(tmp_path, ["s"], Tolerance(), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "sentinel.txt").read_text() == "keep me"


def test_new_folder_refuses_existing_paths_and_files_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReproError, match="already exists"):
        new_folder(tmp_path)
    with pytest.raises(ReproError, match="already exists"):
        new_folder(tmp_path / "file")
    with pytest.raises(ReproError, match="not a folder"):
        new_folder(tmp_path / "file" / "sub")
    assert (tmp_path / "file").read_text() == "x"
    assert new_folder(tmp_path / "x" / "y") == tmp_path / "x"


@pytest.mark.slow
def test_no_stage_named_rebuilds_the_whole_pipeline(tmp_path, monkeypatch):
    """`repro verify` with no STAGES: a real DVC workspace of two chained stages and a third (no repro
    stage: the path under test is verify's, not a stage's), built, then rebuilt whole in a
    scratch copy seeded with nothing but the workspace's tracked files; both are judged
    exact, and a stage whose output is not reproducible (a fresh random number) fails, and
    so does the command (exit code 1)."""
    bin_dir = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    root = tmp_path / "ws"
    root.mkdir()
    py = sys.executable
    (root / "dvc.yaml").write_text(
        "stages:\n"
        f"  a:\n    cmd: {py} -c \"open('a.txt', 'w').write('a')\"\n    outs: [a.txt]\n"
        f"  b:\n    cmd: {py} -c \"open('b.txt', 'w').write(open('a.txt').read() * 2)\"\n"
        "    deps: [a.txt]\n    outs: [b.txt]\n"
        f"  noise:\n    cmd: {py} -c \"import os; open('n.txt', 'w').write(os.urandom(8).hex())\"\n"
        "    outs: [n.txt]\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    seen = []
    real_make = verify_pkg.make_scratch
    monkeypatch.setattr(verify_pkg, "make_scratch", lambda root_, scratch, inputs: (
        seen.append(list(inputs)), real_make(root_, scratch, inputs))[1])
    monkeypatch.chdir(root)
    result = CliRunner().invoke(main, ["verify", "--out", str(tmp_path / "cert")])
    assert result.exit_code == 1, result.output  # a failed stage fails the command
    cert = json.loads((tmp_path / "cert" / "certificate.json").read_text())
    verdicts = {v["stage"]: v["verdict"] for v in cert["stages"]}
    assert seen == [[]]  # nothing copied from the workspace: every stage rebuilt
    assert verdicts == {"a": "exact", "b": "exact", "noise": FAIL}
    assert not cert["passed"]
