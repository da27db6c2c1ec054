"""Attention paths for document masking (repro.model.attention): sdpa (position ids, dense
mask), flex (BlockMask from EOS positions) and flash (flattened micro batch, cu_seqlens).

On CPU: flex runs its dense reference (torch has no FlexAttention backward on CPU) and torch's
real flex_attention kernel is checked forward-only; flash cannot run, so its pure-torch parts
(flattening, cu_seqlens, unflattening, the probe's document rule) are checked, and the whole
flash plumbing runs through a varlen reference registered as a transformers attention
implementation. The kernels themselves are checked on CUDA (skipped here with the reason).

Tolerance flex vs sdpa on CPU: both end in sdpa's math on the same boolean mask, so logits and
gradients agree to fp32 rounding (measured: bitwise); the tests allow atol 1e-5 on O(1)
logits. Torch's flex_attention kernel vs sdpa (forward, CPU fp32): atol 1e-5. On CUDA in
bf16: atol 2e-2 on logits (bf16 has 8 mantissa bits; different kernels accumulate in
different orders).
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from repro.model import attention as A
from repro.model.build import TokenIds, build_model
from repro.spec.schema import ModelSpec
from repro.train.positions import document_position_ids

EOS = 0
IDS = TokenIds(vocab_size=50, bos=EOS, eos=EOS, pad=1)
SPEC = ModelSpec(hidden_size=32, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=64,
                 nope_interval=2, max_position_embeddings=64)  # RoPE and NoPE layers, GQA
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (the flex/flash kernels run there)")
needs_flash = pytest.mark.skipif(not (CUDA and importlib.util.find_spec("flash_attn")),
                                 reason="needs a CUDA GPU with flash-attn installed")

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def _batch(seed: int = 0, b: int = 3, t: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(2, 50, (b, t), generator=g)
    x[0, [4, 5, 17]] = EOS  # two EOS in a row: an empty-bodied document
    x[1, 0] = EOS
    x[1, t - 1] = EOS
    return x  # row 2: one document


def _model(seed: int = 0):
    return build_model(SPEC, IDS, seed)


# --------------------------------------------------------------------------- documents


def test_document_ids_agree_with_position_restarts():
    x = _batch()
    docs = A.document_ids(x, EOS)
    pos = document_position_ids(x, EOS)
    restart = torch.ones_like(pos, dtype=torch.bool)
    restart[:, 1:] = pos[:, 1:] == 0
    assert torch.equal(docs, restart.long().cumsum(1).to(docs.dtype) - 1)
    assert docs[1, :2].tolist() == [0, 1] and docs[2].eq(0).all()


def test_block_mask_is_causal_within_documents():
    x = _batch()
    mask = A.dense_mask(A.document_block_mask(x, EOS))
    docs = A.document_ids(x, EOS)
    t = x.shape[1]
    want = torch.ones(t, t, dtype=torch.bool).tril()[None] & (docs[:, :, None] == docs[:, None, :])
    assert torch.equal(mask[:, 0], want)
    # query rows from an offset (the probe's chunks) read the same mask
    assert torch.equal(A.dense_mask(A.document_block_mask(x, EOS), 5, 11)[:, 0], want[:, 5:11])


def test_torch_flex_kernel_matches_the_dense_reference_on_cpu():
    """torch's own flex_attention (forward; no backward on CPU) reads our BlockMask the way the
    CPU reference does: the mask the GPU kernel gets means what the CPU path computes."""
    from torch.nn.attention.flex_attention import flex_attention

    torch.manual_seed(0)
    x = _batch(t=150)  # more than one 128-token block
    bm = A.document_block_mask(x, EOS)
    q, k, v = torch.randn(3, 4, 150, 8), torch.randn(3, 2, 150, 8), torch.randn(3, 2, 150, 8)
    with torch.no_grad():
        got = flex_attention(q, k, v, block_mask=bm, enable_gqa=True)
        want = torch.nn.functional.scaled_dot_product_attention(
            q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=A.dense_mask(bm))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- flex through the model


def _forward(model, x, kind, doc_masking=True):
    ai = A.attention_inputs(x, EOS, kind, doc_masking)
    return ai.unflatten(model(input_ids=ai.input_ids, use_cache=False, **ai.kwargs).logits)


def test_flex_matches_sdpa_logits_and_gradients():
    x = _batch()
    ref = _model()
    out_ref = _forward(ref, x, "sdpa")
    out_ref.square().mean().backward()
    flex = _model()
    assert A.set_attention(flex, "flex") == "sdpa"
    assert flex.config._attn_implementation == A.FLEX_IMPLEMENTATION
    out = _forward(flex, x, "flex")
    out.square().mean().backward()
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-5)
    for (n, p), (_, p_ref) in zip(flex.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_flex_without_doc_masking_is_plain_causal():
    x = _batch()
    model = _model()
    want = model(input_ids=x, use_cache=False).logits
    A.set_attention(model, "flex")
    torch.testing.assert_close(_forward(model, x, "flex", doc_masking=False), want, rtol=0, atol=1e-5)


def test_flex_model_without_a_block_mask_builds_one_from_position_ids():
    """Forwards that pass only position ids (MTP blocks, evaluation of a model still switched to
    flex) get the BlockMask of transformers' packed-sequence rule: same logits."""
    x = _batch()
    model = _model()
    A.set_attention(model, "flex")
    pos = document_position_ids(x, EOS)
    torch.testing.assert_close(model(input_ids=x, position_ids=pos, use_cache=False).logits,
                               _forward(model, x, "flex"), rtol=0, atol=1e-6)


def test_switched_model_saves_a_plain_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    x = _batch()
    model = _model()
    A.set_attention(model, "flex")
    want = _forward(model, x, "flex").detach()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert not any("attn_implementation" in k for k in config)
    assert "repro_flex" not in (tmp_path / "config.json").read_text()
    back = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    assert back.config._attn_implementation == "sdpa"
    got = back(input_ids=x, position_ids=document_position_ids(x, EOS), use_cache=False).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert A.set_attention(model, "sdpa") == "flex" and A.kind_of(model) == "sdpa"


@pytest.mark.slow
def test_a_new_batch_does_not_recompile():
    """The BlockMask enters the compiled trunk as an input of fixed shape (B, T fixed per
    stage): different document layouts reuse the one graph (Dynamo only, backend eager)."""
    from torch._dynamo.utils import counters

    model = _model()
    A.set_attention(model, "flex")
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model.model, backend="eager")
    for seed in range(3):
        x = _batch(seed)
        x[2, 3 + seed] = EOS  # a different layout each time
        ai = A.attention_inputs(x, EOS, "flex", True)
        got = compiled(input_ids=ai.input_ids, use_cache=False, **ai.kwargs).last_hidden_state
        want = model.model(input_ids=ai.input_ids, use_cache=False, **ai.kwargs).last_hidden_state
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


def test_mtp_blocks_under_flex_match_sdpa():
    from repro.model.mtp import build_mtp, mtp_losses, trunk_forward
    from repro.spec.schema import MTPSpec

    spec = MTPSpec(depth=2, kind="sequential")
    window = torch.cat([_batch(), torch.full((3, 1), 7)], dim=1)
    inputs = window[:, :-1]
    losses = {}
    for kind in ("sdpa", "flex"):
        model = _model()
        mtp = build_mtp(spec, model.config, seed=1)
        A.set_attention(model, kind)
        A.set_attention(mtp, kind)
        ai = A.attention_inputs(inputs, EOS, kind, True)
        kw = dict(ai.kwargs)
        hidden, _ = trunk_forward(model, ai.input_ids, kw.pop("position_ids"), **kw)
        losses[kind] = torch.stack(mtp_losses(mtp, model, hidden, window, ai.position_ids))
    assert mtp.config._attn_implementation == A.FLEX_IMPLEMENTATION
    torch.testing.assert_close(losses["flex"], losses["sdpa"], rtol=0, atol=1e-6)


def test_teacher_runs_the_students_path():
    from repro.train.distill import teacher_attention, teacher_logits

    x = _batch()
    teacher = _model(seed=3).eval()
    want = teacher_logits(teacher, x, document_position_ids(x, EOS))
    assert teacher_attention(teacher, "flex") == "flex"
    ai = A.attention_inputs(x, EOS, "flex", True)
    got = teacher_logits(teacher, x, ai.position_ids, attention=ai)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_flex_refuses_what_it_does_not_implement():
    model = _model()
    A.set_attention(model, "flex")
    attn = model.model.layers[0].self_attn
    q = torch.zeros(1, 4, 5, 8)
    with pytest.raises(NotImplementedError, match="sliding window"):
        A.flex_attention_forward(attn, q, q[:, :2], q[:, :2], None, sliding_window=3)
    bm = A.document_block_mask(torch.zeros(1, 6, dtype=torch.long), EOS)
    with pytest.raises(ValueError, match="one per micro batch"):
        A.flex_attention_forward(attn, q, q[:, :2], q[:, :2], bm)
    with pytest.raises(ValueError, match="unknown attention kind"):
        A.attention_inputs(torch.zeros(1, 4, dtype=torch.long), EOS, "flash2", True)


# --------------------------------------------------------------------------- flash: pure-torch parts


def test_flash_inputs_flatten_the_micro_batch():
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    x = _batch()
    ai = A.attention_inputs(x, EOS, "flash", True)
    b, t = x.shape
    assert ai.flattened and tuple(ai.input_ids.shape) == (1, b * t)
    assert torch.equal(ai.input_ids.view(b, t), x)
    assert torch.equal(ai.kwargs["position_ids"].view(b, t), document_position_ids(x, EOS))
    assert ai.kwargs["max_length_q"] == ai.kwargs["max_length_k"] == t
    cu = ai.kwargs["cu_seq_lens_q"]
    (hf_cu, _), (hf_max, _) = prepare_fa_kwargs_from_position_ids(ai.kwargs["position_ids"])
    n = hf_cu.numel()
    assert torch.equal(cu[:n], hf_cu)  # transformers' own documents ...
    assert cu.tolist()[:n] == [0, 5, 6, 18, 24, 25, 48, 72]
    assert cu.dtype == torch.int32 and (cu[n:] == b * t).all()  # ... then empty ones
    assert int(hf_max) <= t
    h = torch.arange(b * t * 2.0).view(1, b * t, 2)
    assert torch.equal(ai.unflatten(h), h.view(b, t, 2))
    plain = A.attention_inputs(x, EOS, "flash", False)  # one document per row: nothing to pack
    assert not plain.flattened and plain.kwargs == {"position_ids": None}


def test_cu_seqlens_padding():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2]])
    assert A.packed_cu_seqlens(pos).tolist() == [0, 3, 5, 8]  # 3 documents -> 4 entries, a power of two
    assert A.packed_cu_seqlens(pos[:, :5]).tolist() == [0, 3, 5, 5]
    assert A.packed_cu_seqlens(pos, pad_to_power_of_two=False).tolist() == [0, 3, 5, 8]
    assert A.packed_cu_seqlens(torch.zeros(1, 3, dtype=torch.long)).tolist() == [0, 1, 2, 3]  # at most B*T+1


_VARLEN_REF = "flash_varlen_reference_for_tests"


def _varlen_reference(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                      cu_seq_lens_q=None, max_length_q=None, **kwargs):
    """What flash_attn_varlen_func computes, in plain torch: causal attention within each
    [cu[i], cu[i+1]) segment of the one packed row (empty segments contribute nothing)."""
    assert attention_mask is None and query.shape[0] == 1 and cu_seq_lens_q is not None
    n = query.shape[2]
    assert max_length_q is not None and int((cu_seq_lens_q.diff()).max()) <= max_length_q
    seg = torch.bucketize(torch.arange(n), cu_seq_lens_q[1:].long(), right=True)
    mask = torch.ones(n, n, dtype=torch.bool).tril() & (seg[:, None] == seg[None, :])
    rep = query.shape[1] // key.shape[1]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1), attn_mask=mask, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _flash_reference_model(seed: int = 0):
    from transformers import AttentionInterface

    AttentionInterface.register(_VARLEN_REF, _varlen_reference)
    model = _model(seed)
    model.config._attn_implementation = _VARLEN_REF  # name holds "flash": the probe's flash rule
    return model


def test_flash_plumbing_with_a_varlen_reference_matches_sdpa():
    """Flattening, cu_seqlens (padded with empty documents) and unflattening give sdpa's logits
    and gradients when the kernel is a varlen reference: on a GPU only the kernel changes."""
    x = _batch()
    ref = _model()
    out_ref = _forward(ref, x, "sdpa")
    out_ref.square().mean().backward()
    model = _flash_reference_model()
    out = _forward(model, x, "flash")
    out.square().mean().backward()
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-5)
    for (n, p), (_, p_ref) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-6, msg=n)


# --------------------------------------------------------------------------- kernels on a GPU


def _cuda_pair(kind: str):
    x = _batch(t=256).cuda()
    out = {}
    for k in ("sdpa", kind):
        model = _model().cuda()
        A.set_attention(model, k)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = _forward(model, x, k).float()
        logits.square().mean().backward()
        out[k] = (logits.detach(), {n: p.grad for n, p in model.named_parameters()})
    return out["sdpa"], out[kind]


@needs_cuda
def test_flex_kernel_matches_sdpa_on_cuda():
    (ref, gref), (got, g) = _cuda_pair("flex")
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-2)
    for n in gref:
        torch.testing.assert_close(g[n], gref[n], rtol=5e-2, atol=5e-3, msg=n)


@needs_flash
def test_flash_kernel_matches_sdpa_on_cuda():
    (ref, gref), (got, g) = _cuda_pair("flash")
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-2)
    for n in gref:
        torch.testing.assert_close(g[n], gref[n], rtol=5e-2, atol=5e-3, msg=n)


@pytest.mark.parametrize("kind", ["flex", "flash"])
def test_train_module_loss_and_gradients_match_sdpa(kind):
    """The objective (trunk, head, MTP heads) under each path: sdpa's loss and gradients. On CPU
    flash runs through the varlen reference (the MTP modules stay on sdpa under flash)."""
    from repro.model.mtp import build_mtp
    from repro.spec.schema import MTPSpec
    from repro.train.objective import ObjectiveSettings, TrainModule

    window = torch.cat([_batch(), torch.full((3, 1), 7)], dim=1)
    spec = MTPSpec(depth=2, kind="parallel")
    out = {}
    for k in ("sdpa", kind):
        model = _flash_reference_model() if k == "flash" else _model()
        mtp = build_mtp(spec, model.config, seed=1)
        if k != "flash":
            A.set_attention(model, k)
        A.set_attention(mtp, k)
        module = TrainModule(model, ObjectiveSettings(EOS, True, mtp=spec, attention=k), mtp=mtp)
        loss, parts = module(window, [("a", i) for i in range(3)], 0)
        loss.backward()
        out[k] = loss.detach(), {n: p.grad for n, p in module.named_parameters()}
    assert A.kind_of(mtp) == ("sdpa" if kind == "flash" else "flex")
    torch.testing.assert_close(out[kind][0], out["sdpa"][0], rtol=0, atol=1e-6)
    for n, g in out["sdpa"][1].items():
        torch.testing.assert_close(out[kind][1][n], g, rtol=1e-4, atol=1e-6, msg=n)
