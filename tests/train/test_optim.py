"""Weight-decay grouping by parameter-name regex, and optimizer state reloading."""

from __future__ import annotations

import pytest
import torch

from repro.model.build import TokenIds, build_model
from repro.spec.schema import AdamWSpec, ModelSpec
from repro.train.optim import build_adamw, load_state, param_groups

SPEC = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                 max_position_embeddings=64)
IDS = TokenIds(vocab_size=100, bos=0, eos=0, pad=1)


def names(group):
    return [n for n, _ in group["params"]]


def test_default_excludes_only_the_embedding():
    model = build_model(SPEC, IDS, 0)
    decay, no_decay = param_groups(model, AdamWSpec())
    assert names(no_decay) == ["model.embed_tokens.weight"]  # tied: lm_head is the same tensor
    assert "model.norm.weight" in names(decay)  # SmolLM3 decays norm gains (FACTS 3.8)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    n_all = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for _, p in decay["params"] + no_decay["params"]) == n_all


def test_patterns_match_full_names():
    model = build_model(SPEC.model_copy(update={"tie_embeddings": False}), IDS, 0)
    spec = AdamWSpec(no_decay_patterns=[r".*norm.*", r"lm_head\.weight", r"embed_tokens"])
    decay, no_decay = param_groups(model, spec)
    excluded = names(no_decay)
    assert "lm_head.weight" in excluded and "model.norm.weight" in excluded
    assert "model.layers.0.input_layernorm.weight" in excluded
    assert "model.embed_tokens.weight" in names(decay)  # "embed_tokens" alone is not a full match
    assert not any("norm" in n for n in names(decay))


def test_load_state_reapplies_spec_and_checks_groups():
    model = build_model(SPEC, IDS, 0)
    opt = build_adamw(model, AdamWSpec())
    model(input_ids=torch.tensor([[2, 3, 4]])).logits.sum().backward()
    opt.step()
    state = opt.state_dict()
    again = build_adamw(model, AdamWSpec(weight_decay=0.05, betas=(0.8, 0.9)))
    load_state(again, state, AdamWSpec(weight_decay=0.05, betas=(0.8, 0.9)))
    assert again.param_groups[0]["weight_decay"] == 0.05 and again.param_groups[0]["betas"] == (0.8, 0.9)
    assert int(again.state_dict()["state"][0]["step"]) == 1
    other = build_adamw(model, AdamWSpec(no_decay_patterns=[r".*norm.*"]))
    with pytest.raises(ValueError, match="no_decay_patterns"):
        load_state(other, state, AdamWSpec(no_decay_patterns=[r".*norm.*"]))
