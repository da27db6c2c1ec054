"""The shared stage chores: atomic outputs leave nothing partial behind."""

from __future__ import annotations

import pytest

from repro.stages.base import StageIO, atomic_dir, atomic_write_text, dumps_json


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("partial")
            raise RuntimeError("stage failed")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp left behind


def test_atomic_dir_failure_on_fresh_path_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "new") as tmp:
            (tmp / "x").write_text("x")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_text_creates_parents(tmp_path):
    target = tmp_path / "a" / "b.json"
    atomic_write_text(target, dumps_json({"b": 1, "a": [1.5]}))
    assert target.read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'


def test_stage_io_prefixed_inputs_and_clear_errors(tmp_path):
    io = StageIO("s", inputs={"tokens:web": tmp_path / "w", "tokens:code": tmp_path / "c",
                              "tokenizer": tmp_path / "t"})
    assert list(io.inputs_with_prefix("tokens")) == ["code", "web"]
    with pytest.raises(KeyError, match="no input 'init'"):
        io.input("init")


def test_atomic_dir_replaces_a_link_not_what_it_points_to(tmp_path):
    """An output that is a symbolic link (DVC's symlink cache, or a link a user made) is
    replaced by the new folder; the folder it pointed to keeps its files."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "sentinel.txt").write_text("keep me")
    (tmp_path / "out").symlink_to(target)
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("new")
    assert not (tmp_path / "out").is_symlink() and (tmp_path / "out" / "a.txt").read_text() == "new"
    assert sorted(p.name for p in target.iterdir()) == ["sentinel.txt"]


def test_stage_log_lines_are_redacted(capsys):
    from repro.stages.base import log

    log("curate-x", "reading https://user:s3cr3t@example.com/data.jsonl")
    err = capsys.readouterr().err
    assert err == "[curate-x] reading https://***@example.com/data.jsonl\n"
