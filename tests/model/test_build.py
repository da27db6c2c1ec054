"""SmolLM3 config from the spec, architecture checks, and HF save/reload parity."""

from __future__ import annotations

import pytest
import torch

from repro.model.build import (
    TokenIds,
    architecture_diff,
    build_model,
    count_params,
    load_model,
    no_rope_layers,
    smollm3_config,
)
from repro.spec.schema import ModelSpec

SPEC = ModelSpec(hidden_size=32, num_layers=8, num_heads=4, num_kv_heads=2, intermediate_size=64,
                 max_position_embeddings=64, rope_theta=50_000.0, init_std=0.02)
IDS = TokenIds(vocab_size=100, bos=0, eos=0, pad=1)


def test_no_rope_layers_follow_hf_convention():
    assert no_rope_layers(8, 4) == [1, 1, 1, 0, 1, 1, 1, 0]  # 0-based layers 3, 7 skip RoPE
    assert no_rope_layers(36, 4).count(0) == 9  # SmolLM3-3B (FACTS 3.2)
    assert no_rope_layers(4, 0) == [1, 1, 1, 1]
    assert no_rope_layers(3, 1) == [0, 0, 0]


def test_config_maps_the_spec():
    cfg = smollm3_config(SPEC, IDS)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.intermediate_size) == (32, 8, 4, 2, 64)
    assert cfg.rope_parameters["rope_theta"] == 50_000.0
    assert cfg.no_rope_layers == [1, 1, 1, 0, 1, 1, 1, 0]
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id, cfg.vocab_size) == (0, 0, 1, 100)
    assert not cfg.attention_bias and not cfg.mlp_bias and cfg.tie_word_embeddings
    assert cfg.initializer_range == 0.02 and cfg._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        smollm3_config(SPEC, TokenIds(vocab_size=100, bos=0, eos=128001, pad=1))


def test_build_is_seeded_and_counts_params():
    a, b, c = build_model(SPEC, IDS, 0), build_model(SPEC, IDS, 0), build_model(SPEC, IDS, 1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.layers.0.mlp.up_proj.weight"], sc["model.layers.0.mlp.up_proj.weight"])
    assert a.lm_head.weight is a.model.embed_tokens.weight
    total, non_emb = count_params(a)
    assert total - non_emb == 100 * 32
    assert total == sum(p.numel() for p in a.parameters())


def test_reload_gives_same_logits_and_checks_architecture(tmp_path):
    from transformers import AutoModelForCausalLM

    model = build_model(SPEC, IDS, 0).eval()
    model.save_pretrained(str(tmp_path))
    x = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    with torch.no_grad():
        ref = model(input_ids=x).logits
        auto = AutoModelForCausalLM.from_pretrained(str(tmp_path)).float().eval()(input_ids=x).logits
        ours = load_model(tmp_path, SPEC, IDS).eval()(input_ids=x).logits
    assert torch.equal(ref, auto) and torch.equal(ref, ours)
    with pytest.raises(ValueError, match="no_rope_layers: checkpoint has") as e:
        load_model(tmp_path, SPEC.model_copy(update={"nope_interval": 0}), IDS)
    assert "keep `model`" in str(e.value)
    other = smollm3_config(SPEC.model_copy(update={"rope_theta": 1e4, "hidden_size": 64}), IDS)
    # RoPE theta is not architecture: a long-context stage changes it (FACTS 3.10)
    assert [d.split(":")[0] for d in architecture_diff(model.config, other)] == ["hidden_size"]
    longer = SPEC.model_copy(update={"rope_theta": 2e6, "max_position_embeddings": 128})
    extended = load_model(tmp_path, longer, IDS)
    assert extended.config.rope_parameters["rope_theta"] == 2e6 and extended.config.max_position_embeddings == 128
    assert torch.equal(extended.model.embed_tokens.weight, model.model.embed_tokens.weight)
