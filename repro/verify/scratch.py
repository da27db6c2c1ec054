"""A scratch copy of the workspace in which `repro verify` rebuilds stages.

The copy holds the working tree's files that git sees (tracked, and untracked but not
ignored: specs, code, dvc.yaml, params.yaml, dvc.lock and the committed metrics), never the
DVC cache, the resume state or the lm-eval response cache under `.repro/`, so nothing is
restored instead of rebuilt. Rebuilding named stages alone also copies in the outputs of
the stages they read (checked against dvc.lock by the comparison afterwards).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from repro import paths
from repro.errors import ReproError
from repro.verify.lockfile import declared_outputs


def workspace_files(root: Path) -> list[Path]:
    """Files of the working tree that git tracks or would track (relative paths)."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          cwd=root, capture_output=True, check=True)
    return [Path(p) for p in sorted(set(proc.stdout.decode().split("\0"))) if p]


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=False)
    elif src.is_file():
        shutil.copy2(src, dst)


def new_folder(path: Path) -> Path:
    """Create `path`, which must not exist, with any missing parents; return the topmost
    folder this created (the one to remove afterwards: removing `path` alone would leave the
    parents, removing more would delete what was there before).

    `repro verify --scratch` removes its scratch copy when done, so it only ever works in a
    folder it made itself: an existing folder is refused, never emptied or reused."""
    path = Path(path)
    top = path
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            break
        top = parent
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        raise ReproError(
            f"--scratch {path} already exists; `repro verify` removes its scratch folder when "
            "done, so it only works in a new one (nothing was removed)",
            fix="pass a path that does not exist yet, or leave out --scratch to use a "
                "temporary folder") from None
    except NotADirectoryError:
        raise ReproError(f"--scratch {path}: a parent of it is a file, not a folder (nothing "
                         "was removed)", fix="pass a path under a folder") from None
    return top


def make_scratch(root: Path, scratch: Path, inputs: list[str]) -> None:
    """Copy the workspace into the empty folder `scratch`, plus the given input paths
    (outputs of upstream stages), and make it a git repository DVC can work in. dvc.lock is
    left out: the rebuild writes its own, holding exactly the stages that rebuilt."""
    for rel in workspace_files(root):
        if (root / rel).is_file():
            _copy(root / rel, scratch / rel)
    # the rebuild writes its own lock: only stages that really rebuilt appear in it
    (scratch / str(paths.DVC_LOCK)).unlink(missing_ok=True)
    for rel in inputs:
        if (root / rel).exists() and not (scratch / rel).exists():
            _copy(root / rel, scratch / rel)
    env = dict(os.environ, GIT_AUTHOR_NAME="repro verify", GIT_AUTHOR_EMAIL="verify@localhost",
               GIT_COMMITTER_NAME="repro verify", GIT_COMMITTER_EMAIL="verify@localhost")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "scratch", "--no-verify"]):
        subprocess.run(cmd, cwd=scratch, env=env, check=True, capture_output=True)


def upstream_inputs(stages: list[str], dvc_stages: dict) -> list[str]:
    """Paths the named stages read that other stages make (to be copied in)."""
    produced = {out for entry in dvc_stages.values() for out in declared_outputs(entry)}
    needed: set[str] = set()
    for name in stages:
        for dep in dvc_stages[name].get("deps", []):
            if dep in produced:
                needed.add(dep)
    return sorted(needed)


def run_dvc_repro(scratch: Path, stages: list[str] | None) -> int:
    """`dvc repro --force` in the scratch copy, streaming DVC's progress to the terminal.

    `--no-commit` keeps the rebuilt outputs out of any cache (the lock still records their
    hashes); `--keep-going` rebuilds every branch that does not depend on a failed stage."""
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(Path(bin_dir) / "dvc"), "repro", "--force", "--no-commit"]
    cmd += ["--keep-going", *(["--single-item", *stages] if stages else [])]
    return subprocess.run(cmd, cwd=scratch, env=env).returncode
