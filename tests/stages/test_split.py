"""split stage: hash-based held-out choice, cap on held-out documents, only data/ read
(removed/, samples.json and the card ignored), an older layout refused, deterministic output."""

from __future__ import annotations

import json

import pytest

from repro.data.layout import LayoutError
from repro.data.split import unit_hash
from repro.spec.schema import HeldoutSpec
from repro.stages import split
from repro.stages.base import StageIO
from repro.stages.configs import SplitConfig


def make_docs(folder, n=200):
    """A curated folder as repro.data.layout lays it out."""
    (folder / "removed" / "01_x").mkdir(parents=True)
    (folder / "data").mkdir()
    for rank in range(2):
        with open(folder / "data" / f"{rank:05d}.jsonl", "w") as f:
            for i in range(rank, n, 2):
                f.write(json.dumps({"text": f"text {i}", "id": f"doc-{i}", "metadata": {"k": i}}) + "\n")
    gone = json.dumps({"text": "gone", "id": "gone"}) + "\n"
    (folder / "removed" / "01_x" / "00000.jsonl").write_text(gone)
    (folder / "samples.json").write_text("{}")
    (folder / "README.md").write_text("---\nlicense: unknown\n---\n")


def run_split(tmp_path, name, fraction, max_docs, seed=0):
    cfg = SplitConfig(heldout=HeldoutSpec(fraction=fraction, max_docs=max_docs), seed=seed)
    out, metrics = tmp_path / name, tmp_path / "m" / f"{name}.json"
    split.run(cfg, StageIO("split", {"docs": tmp_path / "docs"}, {"split": out, "metrics": metrics}))
    train, held = ([json.loads(line) for line in (out / f).read_text().splitlines()]
                   for f in ("train.jsonl", "heldout.jsonl"))
    return train, held, json.loads(metrics.read_text()), out


def test_fraction_by_hash(tmp_path):
    make_docs(tmp_path / "docs")
    train, held, metrics, _ = run_split(tmp_path, "a", 0.2, 1000)
    expected = {f"doc-{i}" for i in range(200) if unit_hash(0, f"doc-{i}") < 0.2}
    assert {d["id"] for d in held} == expected
    assert 20 < len(held) < 60
    assert {d["id"] for d in train} | expected == {f"doc-{i}" for i in range(200)}
    assert not {d["id"] for d in train} & expected
    assert all(set(d) == {"id", "text"} for d in train + held)
    assert metrics == {"train_docs": len(train), "heldout_docs": len(held),
                       "train_chars": sum(len(d["text"]) for d in train),
                       "heldout_chars": sum(len(d["text"]) for d in held)}


def test_cap_keeps_lowest_hashes(tmp_path):
    make_docs(tmp_path / "docs")
    train, held, _, _ = run_split(tmp_path, "a", 0.5, 5)
    hashes = sorted((unit_hash(0, f"doc-{i}"), f"doc-{i}") for i in range(200))
    assert [d["id"] for d in held] == [i for _, i in hashes[:5]]
    assert len(train) == 195


def test_deterministic_and_seeded(tmp_path):
    make_docs(tmp_path / "docs")
    *_, a = run_split(tmp_path, "a", 0.1, 100)
    *_, b = run_split(tmp_path, "b", 0.1, 100)
    for f in ("train.jsonl", "heldout.jsonl"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    _, held_other_seed, _, _ = run_split(tmp_path, "c", 0.1, 100, seed=1)
    _, held, _, _ = run_split(tmp_path, "d", 0.1, 100)
    assert {d["id"] for d in held} != {d["id"] for d in held_other_seed}


def test_older_layout_is_refused(tmp_path):
    """Kept shards at the top of the folder (before data/): an error naming the fix, not an
    empty split."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "00000.jsonl").write_text(json.dumps({"text": "t", "id": "a"}) + "\n")
    with pytest.raises(LayoutError, match="no data/ folder") as e:
        run_split(tmp_path, "a", 0.1, 10)
    assert "rerun" in e.value.fix


def test_nothing_kept(tmp_path):
    (tmp_path / "docs" / "data").mkdir(parents=True)
    train, held, metrics, _ = run_split(tmp_path, "a", 0.1, 10)
    assert train == held == [] and metrics["train_docs"] == metrics["heldout_docs"] == 0
