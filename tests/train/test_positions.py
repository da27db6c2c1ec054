"""Intra-document masking: positions restart after every EOS and no token attends across a
document boundary, so changing document A leaves document B's logits in the same row as
they are (FACTS 3.3)."""

from __future__ import annotations

import torch

from repro.model.build import TokenIds, build_model
from repro.spec.schema import ModelSpec
from repro.train.positions import document_position_ids

EOS = 0
SPEC = ModelSpec(hidden_size=32, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=64,
                 nope_interval=2, max_position_embeddings=64)  # RoPE and NoPE layers both


def test_positions_restart_after_eos():
    x = torch.tensor([[5, 6, EOS, 7, EOS, EOS, 8, 9], [EOS, 1, 2, 3, 4, 5, 6, 7]])
    assert document_position_ids(x, EOS).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], [0, 0, 1, 2, 3, 4, 5, 6]]


def _logits(model, row):
    x = torch.tensor([row])
    with torch.no_grad():
        return model(input_ids=x, position_ids=document_position_ids(x, EOS), use_cache=False).logits[0]


def test_document_b_does_not_see_document_a():
    model = build_model(SPEC, TokenIds(vocab_size=50, bos=EOS, eos=EOS, pad=1), seed=0).eval()
    doc_b = [11, 12, 13, 14, 15, EOS]
    row1 = [3, 4, 5, EOS] + doc_b
    row2 = [9, 8, 7, 6, 5, 4, 3, EOS] + doc_b  # a different and longer document A
    b1, b2 = _logits(model, row1)[4:], _logits(model, row2)[8:]
    # same tokens at the same per-document positions, nothing else visible: same logits
    torch.testing.assert_close(b1, b2, rtol=0, atol=1e-5)
    # and document B alone, at the start of a row, computes the very same thing
    torch.testing.assert_close(b1, _logits(model, doc_b), rtol=0, atol=1e-5)
    # without document positions the mask is plain causal: B would see A
    with torch.no_grad():
        plain1 = model(input_ids=torch.tensor([row1]), use_cache=False).logits[0, 4:]
        plain2 = model(input_ids=torch.tensor([row2]), use_cache=False).logits[0, 8:]
    assert (plain1 - plain2).abs().max() > 1e-3


def test_document_a_changes_nothing_in_b_under_gradients():
    """The masking also holds for the training graph: B's loss has no gradient w.r.t. A's
    embeddings."""
    model = build_model(SPEC, TokenIds(vocab_size=50, bos=EOS, eos=EOS, pad=1), seed=0)
    x = torch.tensor([[3, 4, 5, EOS, 11, 12, 13, 14]])
    emb = model.model.embed_tokens(x).detach().requires_grad_(True)
    out = model(inputs_embeds=emb, position_ids=document_position_ids(x, EOS), use_cache=False).logits
    out[0, 4:].sum().backward()
    assert emb.grad[0, :4].abs().max() == 0
    assert emb.grad[0, 4:].abs().max() > 0
