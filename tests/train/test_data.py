"""Token windows and the deterministic mixture sampler."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from repro.train.data import MixtureSampler, TokenShards, slot_sources


def write_shards(folder: Path, sizes: list[int], vocab: int = 1000, start: int = 0) -> Path:
    """Shards whose token i is a running counter, so windows are easy to check."""
    folder.mkdir(parents=True)
    files, value = [], start
    for k, n in enumerate(sizes):
        name = f"train_00000_{k:05d}_doc_shuffled.ds"
        (np.arange(value, value + n) % vocab).astype("<u2").tofile(folder / name)
        np.array([n], dtype="<u8").tofile(folder / f"{name}.index")
        files.append(name)
        value += n
    meta = {"format": "datatrove-ds", "files": files, "dtype": "uint16", "vocab_size": vocab,
            "num_tokens": sum(sizes), "num_docs": len(sizes), "eos_id": 0, "eos_token": "<e>"}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def test_windows_do_not_cross_files_and_drop_tails(tmp_path):
    shards = TokenShards(write_shards(tmp_path / "s", [25, 12]), seq_len=4)  # 5 + 2 windows
    assert shards.num_windows == 7
    assert shards.window(0).tolist() == [0, 1, 2, 3, 4]
    assert shards.window(4).tolist() == [20, 21, 22, 23, 24]
    assert shards.window(5).tolist() == [25, 26, 27, 28, 29]  # second file starts at token 25
    assert shards.window(6).dtype == np.int64
    with pytest.raises(ValueError, match="less than one window"):
        TokenShards(write_shards(tmp_path / "tiny", [3]), seq_len=4)


@pytest.mark.parametrize("weights", [{"a": 0.7, "b": 0.3}, {"a": 0.5, "b": 0.25, "c": 0.25}, {"x": 1.0}])
def test_round_robin_tracks_weights_at_every_prefix(weights):
    slots = slot_sources(weights, 1000)
    assert slots == slot_sources(weights, 1000)
    for prefix in (10, 33, 100, 1000):
        counts = Counter(slots[:prefix])
        for name, w in weights.items():
            assert abs(counts[name] - w * prefix) <= 1.0, (prefix, name)


def sampler(tmp_path, seed=0, positions=None, weights=None):
    """Source a: 10 windows starting 0, 5, ...; source b: 3 windows starting 500, 505, 510."""
    if not (tmp_path / "a").exists():
        write_shards(tmp_path / "a", [5 * 10])
        write_shards(tmp_path / "b", [5 * 3], start=500)
    sources = {n: TokenShards(tmp_path / n, seq_len=4) for n in ("a", "b")}
    return MixtureSampler(sources, weights or {"a": 0.5, "b": 0.5}, 4, seed, dict(positions or {}))


def test_sampler_is_seeded_wraps_epochs_and_continues(tmp_path):
    s1 = sampler(tmp_path)
    plan = s1.plan(6)
    assert Counter(plan) == {"a": 12, "b": 12}
    batch = s1.take(plan)
    assert batch.shape == (24, 5)
    firsts = batch[:, 0].tolist()
    b_windows = [f for f in firsts if f >= 500]
    # source b has 3 windows: every epoch serves each once, in a fresh seeded order
    for e in range(4):
        assert sorted(b_windows[3 * e:3 * e + 3]) == [500, 505, 510]
    assert len(set(f for f in firsts if f < 500)) == 10  # a wrapped after its 10 windows
    assert s1.positions == {"a": 12, "b": 12}
    assert (sampler(tmp_path).take(plan) == batch).all()  # deterministic
    assert not (sampler(tmp_path, seed=1).take(plan) == batch).all()  # seeded
    # a later stage that starts from the saved positions draws exactly what follows
    s2 = sampler(tmp_path)
    s2.take(plan[:10])
    s3 = sampler(tmp_path, positions=s2.positions)
    assert (s3.take(plan[10:]) == batch[10:]).all()


def test_sampler_rejects_unknown_sources(tmp_path):
    with pytest.raises(KeyError, match="no token shards"):
        sampler(tmp_path, weights={"a": 0.5, "zzz": 0.5})
