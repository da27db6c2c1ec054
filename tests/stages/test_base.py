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


def test_atomic_dir_gives_files_the_modes_of_ordinary_ones(tmp_path):
    """A library that writes through a private temporary (safetensors 0.8's save_file, 0600)
    does not make a private output: every file and folder gets 0o666/0o777 less the umask,
    as open() and mkdir would have given it; an executable keeps its execute bits."""
    import os
    import stat

    import torch
    from safetensors.torch import save_file

    old = os.umask(0o027)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "run.sh").write_text("#!/bin/sh\n")
            os.chmod(tmp / "sub" / "run.sh", 0o700)
            (tmp / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in [tmp_path / "out", *sorted((tmp_path / "out").rglob("*"))]}
    assert modes == {"out": 0o750, "out/model.safetensors": 0o640, "out/plain.json": 0o640,
                     "out/sub": 0o750, "out/sub/run.sh": 0o750}
