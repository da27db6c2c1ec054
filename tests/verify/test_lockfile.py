"""repro.verify.lockfile: reading what `repro compile` wrote into dvc.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from repro.verify.lockfile import declared_outputs, declared_stage_id

REPO = Path(__file__).resolve().parents[2]


def test_every_compiled_stage_passes_its_id_and_names_its_outputs_by_it():
    """Names carry no hash (issue 22); the `--id` is the settings hash the outputs are named by."""
    for dvc_yaml in [REPO / "dvc.yaml", *sorted(REPO.glob("examples/*/dvc.yaml"))]:
        for name, entry in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
            sid = declared_stage_id(entry)
            assert sid is not None and sid.startswith(f"{name.split('-', 1)[0]}-") and sid != name, (name, sid)
            assert any(sid in out for out in declared_outputs(entry)), (name, sid)


def test_a_command_without_an_id_or_not_shell_words_has_none():
    assert declared_stage_id({"cmd": "repro stage split split-web --id split-web-0a0a0a0a --in docs=d"}) == \
        "split-web-0a0a0a0a"
    assert declared_stage_id({"cmd": "repro stage split split-web --id"}) is None  # a flag with no value
    assert declared_stage_id({"cmd": "echo 'unclosed"}) is None
    assert declared_stage_id({"cmd": "cp a b"}) is None and declared_stage_id({}) is None
