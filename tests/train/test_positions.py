"""Intra-document masking: positions restart after every EOS and no token attends across a
document boundary, so changing document A leaves document B's logits in the same row as
they are (FACTS 3.3). Checked under every attention path this machine runs
(repro.model.attention: sdpa and flex here, flash on a GPU with flash-attn)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from repro.model.attention import attention_inputs, set_attention
from repro.model.build import TokenIds, build_model
from repro.spec.schema import ModelSpec
from repro.train.positions import document_position_ids

FLASH = torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
PATHS = ["sdpa", "flex", pytest.param("flash", marks=pytest.mark.skipif(
    not FLASH, reason="flash-attn's varlen kernel needs a CUDA GPU with flash-attn installed"))]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

EOS = 0
SPEC = ModelSpec(hidden_size=32, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=64,
                 nope_interval=2, max_position_embeddings=64)  # RoPE and NoPE layers both


def test_positions_restart_after_eos():
    x = torch.tensor([[5, 6, EOS, 7, EOS, EOS, 8, 9], [EOS, 1, 2, 3, 4, 5, 6, 7]])
    assert document_position_ids(x, EOS).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], [0, 0, 1, 2, 3, 4, 5, 6]]


def _model(kind: str):
    model = build_model(SPEC, TokenIds(vocab_size=50, bos=EOS, eos=EOS, pad=1), seed=0).to(DEVICE)
    set_attention(model, kind)
    return model


def _run(model, kind, x, doc_masking=True, **kw):
    """Logits (rows, seq, vocab) through attention path `kind`, in bf16 autocast for flash."""
    ai = attention_inputs(x.to(DEVICE), EOS, kind, doc_masking)
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=kind == "flash"):
        out = model(input_ids=ai.input_ids, use_cache=False, **ai.kwargs, **kw).logits
    return ai.unflatten(out).float()


def _logits(model, kind, row):
    with torch.no_grad():
        return _run(model, kind, torch.tensor([row]))[0]


@pytest.mark.parametrize("kind", PATHS)
def test_document_b_does_not_see_document_a(kind):
    model = _model(kind).eval()
    tol = 2e-2 if kind == "flash" else 1e-5  # bf16 under flash
    doc_b = [11, 12, 13, 14, 15, EOS]
    row1 = [3, 4, 5, EOS] + doc_b
    row2 = [9, 8, 7, 6, 5, 4, 3, EOS] + doc_b  # a different and longer document A
    b1, b2 = _logits(model, kind, row1)[4:], _logits(model, kind, row2)[8:]
    # same tokens at the same per-document positions, nothing else visible: same logits
    torch.testing.assert_close(b1, b2, rtol=0, atol=tol)
    # and document B alone, at the start of a row, computes the very same thing
    torch.testing.assert_close(b1, _logits(model, kind, doc_b), rtol=0, atol=tol)
    # without document masking the mask is plain causal: B would see A
    with torch.no_grad():
        plain1 = _run(model, kind, torch.tensor([row1]), doc_masking=False)[0, 4:]
        plain2 = _run(model, kind, torch.tensor([row2]), doc_masking=False)[0, 8:]
    assert (plain1 - plain2).abs().max() > 1e-3


@pytest.mark.parametrize("kind", PATHS)
def test_rows_of_a_micro_batch_stay_apart(kind):
    """Several rows per micro batch (flash flattens them into one packed row): each row computes
    what it computes alone."""
    model = _model(kind).eval()
    tol = 2e-2 if kind == "flash" else 1e-5
    rows = torch.tensor([[3, 4, 5, EOS, 11, 12, 13, 14], [21, 22, 23, 24, 25, 26, 27, 28],
                         [EOS, 7, 8, EOS, 9, 10, 11, 12]])
    with torch.no_grad():
        batch = _run(model, kind, rows)
        for r in range(3):
            torch.testing.assert_close(batch[r], _run(model, kind, rows[r:r + 1])[0], rtol=0, atol=tol)


@pytest.mark.parametrize("kind", PATHS)
def test_document_a_changes_nothing_in_b_under_gradients(kind):
    """The masking also holds for the training graph: B's loss has no gradient w.r.t. A's
    embeddings."""
    model = _model(kind)
    x = torch.tensor([[3, 4, 5, EOS, 11, 12, 13, 14], [6, 7, EOS, 8, 9, 10, EOS, 11]], device=DEVICE)
    ai = attention_inputs(x, EOS, kind, True)
    emb = model.model.embed_tokens(ai.input_ids).detach().requires_grad_(True)
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=kind == "flash"):
        out = ai.unflatten(model(inputs_embeds=emb, use_cache=False, **ai.kwargs).logits)
    out[0, 4:].float().sum().backward()
    grad = ai.unflatten(emb.grad)
    assert grad[0, :4].abs().max() == 0
    assert grad[0, 4:].abs().max() > 0
    assert grad[1].abs().max() == 0  # another row: never visible
