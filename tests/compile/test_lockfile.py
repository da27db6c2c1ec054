"""dvc.lock keeps only the stages dvc.yaml declares (repro.compile.lockfile): DVC never
drops an entry and rewrites the whole file after every stage it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from dvc.utils.serialize import dumps_yaml, parse_yaml_for_update

from repro.compile import lockfile

LOCK = """schema: '2.0'
stages:
  split-web-aaaa:
    cmd: repro stage split split-web-aaaa
    params:
      params.yaml:
        split-web-aaaa:
          seed: 0
          eps: 1e-08
    outs:
    - path: data/split/web
      hash: md5
      md5: 0123.dir
  train-x-old:
    cmd: repro stage train train-x-old
  train-x-new:
    cmd: repro stage train train-x-new
"""


def test_dead_entries_are_the_undeclared_ones(tmp_path: Path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(LOCK)
    assert lockfile.dead_entries(lock, ["split-web-aaaa", "train-x-new"]) == ["train-x-old"]
    assert lockfile.dead_entries(tmp_path / "missing.lock", ["a"]) == []


def test_prune_keeps_live_entries_as_dvc_writes_them(tmp_path: Path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(LOCK)
    assert lockfile.prune(lock, ["split-web-aaaa", "train-x-new"]) == ["train-x-old"]
    text = lock.read_text()
    assert "train-x-old" not in text and "train-x-new" in text
    # byte for byte what DVC's own round trip writes for the remaining entries
    data = parse_yaml_for_update(LOCK, "dvc.lock")
    del data["stages"]["train-x-old"]
    assert text == dumps_yaml(data)
    assert "eps: 1e-08" in text  # values keep their spelling
    assert lockfile.prune(lock, ["split-web-aaaa", "train-x-new"]) == []  # nothing more to do
    assert lock.read_text() == text


def test_an_unreadable_lock_is_left_to_dvc(tmp_path: Path):
    lock = tmp_path / "dvc.lock"
    lock.write_text("stages: [unclosed\n")
    assert lockfile.dead_entries(lock, ["a"]) == [] and lockfile.prune(lock, ["a"]) == []
    assert lock.read_text() == "stages: [unclosed\n"


def test_prune_waits_for_no_running_dvc_command(tmp_path: Path):
    """In a DVC repository the lock is pruned under DVC's own repository lock: while a DVC
    command holds it, nothing is written and the error says what to do."""
    import subprocess

    from dvc.repo import Repo

    from repro.errors import ReproError

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    Repo.init(str(tmp_path)).close()
    lock = tmp_path / "dvc.lock"
    lock.write_text(LOCK)
    holder = Repo(str(tmp_path))
    try:
        with holder.lock:
            with pytest.raises(ReproError, match="holds the repository's lock") as err:
                lockfile.prune(lock, ["split-web-aaaa", "train-x-new"])
            assert "run `repro compile` again" in err.value.fix
            assert lock.read_text() == LOCK
    finally:
        holder.close()
    assert lockfile.prune(lock, ["split-web-aaaa", "train-x-new"]) == ["train-x-old"]
