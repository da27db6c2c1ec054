"""evaltasks stage: task folder from a split folder, byte-identical on rerun."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from repro.stages import evaltasks
from repro.stages.base import StageIO
from repro.stages.configs import EvalTasksConfig

WORDS = "the parser reads a module and returns its table of names for each call".split()


@pytest.fixture
def split(tmp_path):
    rng = random.Random(0)
    folder = tmp_path / "split"
    folder.mkdir()
    with open(folder / "heldout.jsonl", "w") as f:
        for i in range(8):
            text = " ".join(f"{rng.choice(WORDS).capitalize()} " + " ".join(rng.sample(WORDS, 6)) + "."
                            for _ in range(10))
            f.write(json.dumps({"id": f"doc{i}", "text": text}) + "\n")
    (folder / "train.jsonl").write_text("")
    return folder


@pytest.mark.parametrize("kind", ["bpb", "cloze"])
def test_task_folder_is_deterministic(tmp_path, split, kind):
    cfg = EvalTasksConfig.model_validate(
        {"task": {"kind": kind, "dataset": "web", "max_docs": 5}, "seed": 3})
    outs = []
    for n in (1, 2):
        out = tmp_path / f"task{n}"
        evaltasks.run(cfg, StageIO("evaltasks-x", {"split": split}, {"task": out}))
        outs.append(out)
    files = sorted(p.name for p in outs[0].iterdir())
    # the data, its manifest, the lm-eval task and the loader it names
    assert files == ["data.jsonl", f"repro_{kind}_web.yaml", "task.json", "task_loader.py"]
    for name in files:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    manifest = json.loads((outs[0] / "task.json").read_text())
    data = (outs[0] / "data.jsonl").read_bytes()
    assert manifest["data_sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["name"] == f"repro_{kind}_web"
    assert manifest["num_docs"] == len(data.splitlines()) == 5
    assert set(manifest) >= {"name", "kind", "dataset", "num_docs", "data_sha256", "output_type",
                             "random_baseline", "version"}


def test_missing_heldout_file_is_reported(tmp_path):
    cfg = EvalTasksConfig.model_validate({"task": {"kind": "bpb", "dataset": "web"}, "seed": 0})
    with pytest.raises(FileNotFoundError, match="heldout.jsonl"):
        evaltasks.run(cfg, StageIO("x", {"split": tmp_path}, {"task": tmp_path / "out"}))
    assert not (tmp_path / "out").exists()
