"""Checkpoint identity, tokens seen, training length, uniform baseline."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from repro.eval.provenance import (
    checkpoint_sha256,
    tokens_seen,
    trainer_state,
    training_seq_len,
    uniform_rolling_baseline,
)


def test_checkpoint_sha256_single_and_sharded(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert checkpoint_sha256(tmp_path) == hashlib.sha256(b"weights").hexdigest()
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "a.safetensors").write_bytes(b"a")
    (sharded / "b.safetensors").write_bytes(b"b")
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "b.safetensors", "y": "a.safetensors"}}))
    digest = checkpoint_sha256(sharded)
    assert len(digest) == 64
    (sharded / "a.safetensors").write_bytes(b"changed")
    assert checkpoint_sha256(sharded) != digest
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        checkpoint_sha256(tmp_path / "sharded" / "missing")


def test_trainer_state_keys(tmp_path):
    assert trainer_state(tmp_path) == {} and tokens_seen({}) == (None, None)
    (tmp_path / "trainer_state.json").write_text(json.dumps({"tokens_seen": 10, "seq_len": 256}))
    state = trainer_state(tmp_path)
    assert tokens_seen(state) == (10, "tokens_seen")
    assert training_seq_len(state) == 256
    # HF Trainer's key, and junk values ignored
    assert tokens_seen({"num_input_tokens_seen": 7}) == (7, "num_input_tokens_seen")
    assert tokens_seen({"tokens_seen": "many", "tokens": True}) == (None, None)
    (tmp_path / "trainer_state.json").write_text("not json")
    assert trainer_state(tmp_path) == {}


def test_uniform_baseline_counts_tokens_without_specials():
    class Tok:  # one token per character
        def __call__(self, text, add_special_tokens):
            assert add_special_tokens is False
            return {"input_ids": list(text)}

    base = uniform_rolling_baseline(Tok(), 256, ["abcd", "ef"], [4, 2], [1, 1])
    # one token per byte over 256 outputs: exactly 8 bits per byte
    assert base["bits_per_byte"] == pytest.approx(8.0)
    assert base["byte_perplexity"] == pytest.approx(256.0)
    assert base["word_perplexity"] == pytest.approx(math.exp(6 * math.log(256) / 2))
