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


OLD_NAMES = """schema: '2.0'
stages:
  split-web-0a0a0a0a:
    cmd: repro stage split split-web-0a0a0a0a --in docs=data/curated/curate-web-1b1b1b1b --out
      split=data/split/split-web-0a0a0a0a
    params:
      params.yaml:
        split-web-0a0a0a0a.seed: 0
        split-web-0a0a0a0a.heldout:
          fraction: 0.2
    outs:
    - path: data/split/split-web-0a0a0a0a
      hash: md5
      md5: 0123.dir
  train-x-2c2c2c2c:
    cmd: repro stage train train-x-2c2c2c2c --params examples/e/params.yaml
    params:
      examples/e/params.yaml:
        train-x-2c2c2c2c:
          eps: 1e-08
"""


def test_entries_under_stage_ids_are_renamed_with_their_command_and_params_keys(tmp_path: Path):
    """Stage names lost their hash (issue 22): an entry recorded under a live stage's id is
    that stage's record, so it is renamed, not dropped, and DVC finds it up to date."""
    lock = tmp_path / "dvc.lock"
    lock.write_text(OLD_NAMES)
    names = {"split-web-0a0a0a0a": "split-web", "train-x-2c2c2c2c": "train-x",
             "tokenize-web-3d3d3d3d": "tokenize-web"}  # no record: nothing to rename
    assert lockfile.renames(lock, names) == {"split-web-0a0a0a0a": "split-web",
                                             "train-x-2c2c2c2c": "train-x"}
    assert lockfile.rename(lock, names) == {"split-web-0a0a0a0a": "split-web",
                                            "train-x-2c2c2c2c": "train-x"}
    data = parse_yaml_for_update(lock.read_text(), "dvc.lock")
    assert list(data["stages"]) == ["split-web", "train-x"]
    split, train = data["stages"]["split-web"], data["stages"]["train-x"]
    assert split["cmd"] == ("repro stage split split-web --id split-web-0a0a0a0a --in "
                            "docs=data/curated/curate-web-1b1b1b1b --out split=data/split/split-web-0a0a0a0a")
    assert dict(split["params"]["params.yaml"]) == {"split-web.seed": 0,
                                                    "split-web.heldout": {"fraction": 0.2}}
    assert split["outs"][0]["path"] == "data/split/split-web-0a0a0a0a"  # outputs keep the id
    assert train["cmd"] == ("repro stage train train-x --id train-x-2c2c2c2c "
                            "--params examples/e/params.yaml")
    assert list(train["params"]["examples/e/params.yaml"]) == ["train-x"]
    assert "eps: 1e-08" in lock.read_text()  # the rest as DVC wrote it
    assert lock.read_text() == dumps_yaml(data)
    # done once: the ids are no longer entries, and nothing is dead
    assert lockfile.rename(lock, names) == {} and lockfile.dead_entries(lock, names.values()) == []


def test_an_entry_already_under_its_name_wins_over_an_old_one(tmp_path: Path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(OLD_NAMES.replace("train-x-2c2c2c2c:\n    cmd", "train-x:\n    cmd", 1))
    assert lockfile.renames(lock, {"train-x-2c2c2c2c": "train-x"}) == {}
