"""QK-Clip (FACTS 5.7): the clipped head's max logit lands on tau, every other head and
weight is bitwise untouched; MHA scales W_q and W_k by sqrt(gamma), GQA only W_q by gamma.
The reference logits are computed here head by head from q_proj/k_proj and HF's RoPE."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.models.smollm3.modeling_smollm3 import apply_rotary_pos_emb

from repro.model.build import TokenIds, build_model
from repro.spec.schema import ModelSpec
from repro.train.attention_probe import MaxLogitProbe
from repro.train.qk_clip import QKClipEvent, apply_qk_clip

IDS = TokenIds(vocab_size=50, bos=0, eos=0, pad=1)
# nope_interval 2: layer 0 uses RoPE, layer 1 is NoPE (FACTS 3.2)
BASE = dict(hidden_size=32, num_layers=2, intermediate_size=64, max_position_embeddings=64, nope_interval=2)
GQA = ModelSpec(num_heads=4, num_kv_heads=2, **BASE)
MHA = ModelSpec(num_heads=4, num_kv_heads=4, **BASE)
INPUT = torch.randint(2, 50, (2, 12), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def true_max_logits(model, input_ids, position_ids=None, segments=None, hidden=None) -> dict[int, torch.Tensor]:
    """Per layer, per query head: max over batch and allowed (i, j <= i) pairs of
    q_i.k_j/sqrt(d). `segments` (batch, T) restricts pairs to one document. `hidden`: the
    layers' inputs to use (default: this forward's), so that a clip in one layer does not
    move later layers' inputs between two measurements."""
    cfg = model.config
    b, t = input_ids.shape
    d = cfg.hidden_size // cfg.num_attention_heads
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    if position_ids is None:
        position_ids = torch.arange(t).expand(b, t)
    if hidden is None:
        hidden = layer_inputs(model, input_ids, position_ids)
    allowed = torch.ones(t, t, dtype=torch.bool).tril().expand(b, t, t)
    if segments is not None:
        allowed = allowed & (segments[:, :, None] == segments[:, None, :])
    result = {}
    for i, layer in enumerate(model.model.layers):
        x = layer.input_layernorm(hidden[i])
        attn = layer.self_attn
        q = attn.q_proj(x).view(b, t, -1, d).transpose(1, 2)
        k = attn.k_proj(x).view(b, t, -1, d).transpose(1, 2)
        if cfg.no_rope_layers[i]:
            cos, sin = model.model.rotary_emb(x, position_ids)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
        heads = []
        for h in range(cfg.num_attention_heads):
            logits = q[:, h] @ k[:, h // group].transpose(-1, -2) / math.sqrt(d)  # (b, t, t)
            heads.append(logits.masked_fill(~allowed, -math.inf).amax())
        result[i] = torch.stack(heads)
    return result


@torch.no_grad()
def layer_inputs(model, input_ids, position_ids=None):
    return model(input_ids=input_ids, position_ids=position_ids, output_hidden_states=True).hidden_states


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("layer", [0, 1], ids=["rope", "nope"])
@pytest.mark.parametrize("spec", [GQA, MHA], ids=["gqa", "mha"])
def test_clip_brings_the_head_to_tau(spec, layer):
    model = build_model(spec, IDS, 0)
    head, d = 2, spec.hidden_size // spec.num_heads
    attn = model.model.layers[layer].self_attn
    with torch.no_grad():
        attn.q_proj.weight[head * d:(head + 1) * d] *= 300.0  # the runaway head
    hidden = layer_inputs(model, INPUT)  # the step's activations, fixed for both measurements
    before = true_max_logits(model, INPUT, hidden=hidden)
    s = float(before[layer][head])
    tau = s / 3
    others = [float(v) for i, m in before.items() for h, v in enumerate(m) if (i, h) != (layer, head)]
    assert max(others) < tau < s  # exactly one head over tau
    w_before = params(model)

    events = apply_qk_clip(model, before, tau)

    assert events == [QKClipEvent(layer, head, s, tau / s)]
    after = true_max_logits(model, INPUT, hidden=hidden)
    assert float(after[layer][head]) == pytest.approx(tau, rel=1e-4)
    for i in after:
        for h in range(spec.num_heads):
            if (i, h) != (layer, head):
                assert torch.equal(after[i][h], before[i][h]), (i, h)
    # only head `head`'s rows of W_q (and, for MHA, of W_k) changed
    rows = slice(head * d, (head + 1) * d)
    w_after = params(model)
    pre = f"model.layers.{layer}.self_attn."
    changed = {pre + "q_proj.weight"} | ({pre + "k_proj.weight"} if spec.num_kv_heads == spec.num_heads else set())
    for n in w_before:
        if n not in changed:
            assert torch.equal(w_before[n], w_after[n]), n
    for n in changed:
        keep = torch.ones(w_before[n].size(0), dtype=torch.bool)
        keep[rows] = False
        assert torch.equal(w_before[n][keep], w_after[n][keep])
    gamma = tau / s
    if spec.num_kv_heads == spec.num_heads:  # MHA: sqrt(gamma) on each of W_q, W_k
        for n in changed:
            assert torch.allclose(w_after[n][rows], w_before[n][rows] * math.sqrt(gamma))
    else:  # GQA: gamma on W_q only
        assert torch.allclose(w_after[pre + "q_proj.weight"][rows], w_before[pre + "q_proj.weight"][rows] * gamma)


def test_nothing_over_tau_is_a_no_op():
    model = build_model(GQA, IDS, 0)
    s = true_max_logits(model, INPUT)
    w = params(model)
    assert apply_qk_clip(model, s, tau=100.0) == []
    for n, p in params(model).items():
        assert torch.equal(p, w[n])


def test_bad_input_raises():
    model = build_model(GQA, IDS, 0)
    with pytest.raises(ValueError, match="shape"):
        apply_qk_clip(model, {0: torch.zeros(3)}, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        apply_qk_clip(model, {0: torch.tensor([1.0, float("inf"), 0.0, 0.0])}, 1.0)


@pytest.mark.parametrize("spec", [GQA, MHA], ids=["gqa", "mha"])
def test_probe_feeds_qk_clip_matches_reference(spec):
    model = build_model(spec, IDS, 0)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(50.0)  # logits well away from 0
    with MaxLogitProbe(model) as rec:
        model(input_ids=INPUT[:1])
        model(input_ids=INPUT[1:])  # a second micro-batch: running max
    ref = true_max_logits(model, INPUT)
    got = rec.result()
    assert got.keys() == ref.keys()
    for i in ref:
        assert torch.allclose(got[i], ref[i], rtol=1e-5, atol=1e-6)
    # hooks are gone after the block
    rec.reset()
    model(input_ids=INPUT)
    assert all(torch.isinf(v).all() for v in rec.result().values()) or rec.result() == {}


def test_probe_feeds_qk_clip_respects_document_masking():
    """Packed documents (positions restart at each document, FACTS 3.3): transformers turns
    the position_ids into a block-causal mask; the recorder reads logits through it."""
    model = build_model(GQA, IDS, 0)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(50.0)
    position_ids = torch.tensor([list(range(5)) + list(range(7)), list(range(12))])
    segments = torch.tensor([[0] * 5 + [1] * 7, [0] * 12])
    with MaxLogitProbe(model) as rec:
        model(input_ids=INPUT, position_ids=position_ids)
    ref = true_max_logits(model, INPUT, position_ids, segments)
    plain = true_max_logits(model, INPUT, position_ids)
    assert any(not torch.allclose(ref[i], plain[i]) for i in ref)  # the mask matters here
    got = rec.result()
    for i in ref:
        assert torch.allclose(got[i], ref[i], rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_probe_feeds_qk_clip_under_flex():
    """The flex path (repro.model.attention): the attention gets a BlockMask, built here by the
    registered mask function from the restarting position_ids; the recorder reads logits
    through that BlockMask and finds the same per-head maxima as the reference."""
    from repro.model.attention import set_attention

    model = build_model(GQA, IDS, 0)
    set_attention(model, "flex")
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(50.0)
    position_ids = torch.tensor([list(range(5)) + list(range(7)), list(range(12))])
    segments = torch.tensor([[0] * 5 + [1] * 7, [0] * 12])
    with MaxLogitProbe(model) as rec:
        model(input_ids=INPUT, position_ids=position_ids)
    ref = true_max_logits(model, INPUT, position_ids, segments)
    got = rec.result()
    for i in ref:
        assert torch.allclose(got[i], ref[i], rtol=1e-5, atol=1e-6)
