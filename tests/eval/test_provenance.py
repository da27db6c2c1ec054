"""Checkpoint identity, tokens seen, training length, uniform baseline, lm_eval command."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from repro.eval.provenance import (
    checkpoint_sha256,
    lm_eval_command,
    portable_path,
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
        def __call__(self, text, add_special_tokens, verbose):
            assert add_special_tokens is False and verbose is False  # a whole document: no alarm
            return {"input_ids": list(text)}

    base = uniform_rolling_baseline(Tok(), 256, ["abcd", "ef"], [4, 2], [1, 1])
    # one token per byte over 256 outputs: exactly 8 bits per byte
    assert base["bits_per_byte"] == pytest.approx(8.0)
    assert base["byte_perplexity"] == pytest.approx(256.0)
    assert base["word_perplexity"] == pytest.approx(math.exp(6 * math.log(256) / 2))


def test_portable_path_is_relative_to_the_root_or_a_placeholder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/evaltasks/t").mkdir(parents=True)
    assert portable_path("data/evaltasks/t", "<t>") == "data/evaltasks/t"  # as DVC passes it
    assert portable_path(tmp_path / "data/evaltasks/t", "<t>") == "data/evaltasks/t"
    assert portable_path(tmp_path.parent / "elsewhere", "<t>") == "<t>"  # machine-specific


def test_lm_eval_command_carries_every_setting_that_shapes_the_numbers():
    args = {"pretrained": "ckpt", "dtype": "bfloat16", "trust_remote_code": False,
            "max_length": 256}
    cmd = lm_eval_command("hf", args, "repro_cloze_web", include_path="data/evaltasks/x",
                          num_fewshot=0, batch_size="auto", device="cuda", seed=3, limit=100)
    assert cmd == ("lm_eval --model hf --model_args pretrained=ckpt,dtype=bfloat16,max_length=256"
                   " --include_path data/evaltasks/x --tasks repro_cloze_web --num_fewshot 0"
                   " --batch_size auto --device cuda --seed 3 --limit 100")
    # a standard task has no include path; data parallel runs under accelerate
    cmd = lm_eval_command("hf", args, "hellaswag", include_path=None, num_fewshot=5,
                          batch_size=8, device="cuda", seed=0, limit=None, num_processes=4)
    assert cmd.startswith("accelerate launch --num_processes 4 -m lm_eval --model hf ")
    assert "--include_path" not in cmd and "--limit" not in cmd and "--num_fewshot 5" in cmd
