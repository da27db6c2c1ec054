"""MaxLogitProbe against logits computed by hand (explicit weights, hand-written RoPE, explicit
causal and document masks), on a tiny SmolLM3 with RoPE and NoPE layers and GQA, under sdpa
(boolean / None masks) and eager (float masks); and under the other attention paths of
repro.model.attention (flex's BlockMask, flash's flattened batch with cu_seqlens: on CPU through
a varlen reference implementation whose name marks it as flash)."""

from __future__ import annotations

import math

import pytest
import torch

from repro.model.build import TokenIds, build_model
from repro.spec.schema import ModelSpec
from repro.model.attention import attention_inputs, set_attention
from repro.train.attention_probe import MaxLogitProbe, allowed_mask

# head_dim 8, 4 query heads sharing 2 KV heads (GQA), layers 0 and 2 RoPE, 1 and 3 NoPE.
# theta 1e12: the slowest RoPE pair (dims 3 and 7) rotates by ~1e-9 rad per position, which the
# document-masking test uses to plant a position-independent cross-document logit.
SPEC = ModelSpec(hidden_size=32, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=48,
                 nope_interval=2, rope_theta=1e12, max_position_embeddings=64)
IDS = TokenIds(vocab_size=40, bos=0, eos=0, pad=1)


def model_with(impl: str, seed: int = 0):
    model = build_model(SPEC, IDS, seed)
    with torch.no_grad():  # larger weights than init_std 0.02, so logits are not all ~0
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.3)
    model.config._attn_implementation = impl
    return model.eval()


def capture_attn_inputs(model):
    """Hidden states each self_attn receives (plain capture, no computation)."""
    seen: dict[int, list[torch.Tensor]] = {}
    handles = []
    for i, layer in enumerate(model.model.layers):
        def hook(module, args, kwargs, i=i):
            seen.setdefault(i, []).append(kwargs["hidden_states"].detach().clone())
        handles.append(layer.self_attn.register_forward_pre_hook(hook, with_kwargs=True))
    return seen, handles


def rope_by_hand(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """x (b, h, s, d), pos (b, s): rotate pairs (i, i + d/2) by pos * theta^(-2i/d)."""
    d = x.shape[-1]
    half = d // 2
    out = x.clone()
    for i in range(half):
        ang = pos.double() * theta ** (-2.0 * i / d)  # (b, s)
        c, s = ang.cos()[:, None, :], ang.sin()[:, None, :]
        a, b = x[..., i].double(), x[..., i + half].double()
        out[..., i] = (a * c - b * s).to(x.dtype)
        out[..., i + half] = (b * c + a * s).to(x.dtype)
    return out


@torch.no_grad()
def brute_max(model, layer: int, hidden: torch.Tensor, pos: torch.Tensor, docs: torch.Tensor | None):
    """(heads,) max over allowed pairs: key j <= query i and, if docs given, same document."""
    attn = model.model.layers[layer].self_attn
    b, s, _ = hidden.shape
    hd, H, KV = 8, SPEC.num_heads, SPEC.num_kv_heads
    q = (hidden @ attn.q_proj.weight.T).view(b, s, H, hd).transpose(1, 2)
    k = (hidden @ attn.k_proj.weight.T).view(b, s, KV, hd).transpose(1, 2)
    if model.config.no_rope_layers[layer]:
        q, k = rope_by_hand(q, pos, SPEC.rope_theta), rope_by_hand(k, pos, SPEC.rope_theta)
    out = torch.full((H,), -math.inf)
    for h in range(H):
        kh = k[:, h // (H // KV)]  # GQA: query head h reads KV head h // group
        for r in range(b):
            for i in range(s):
                for j in range(i + 1):
                    if docs is not None and docs[r, i] != docs[r, j]:
                        continue
                    logit = float(q[r, h, i] @ kh[r, j]) / math.sqrt(hd)
                    out[h] = max(out[h], logit)
    return out


def doc_ids(pos: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros_like(pos[:, :1]), (torch.diff(pos, dim=-1) != 1).long()], dim=1).cumsum(1)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_probe_matches_hand_computation_with_packed_rows(impl):
    model = model_with(impl)
    torch.manual_seed(1)
    x = torch.randint(2, 40, (2, 12))
    # row 0: one document; row 1: three packed documents (positions restart)
    pos = torch.tensor([list(range(12)), [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2]])
    seen, handles = capture_attn_inputs(model)
    with MaxLogitProbe(model) as probe, torch.no_grad():
        model(input_ids=x, position_ids=pos)
    for h in handles:
        h.remove()
    got = probe.result()
    assert sorted(got) == [0, 1, 2, 3]
    docs = doc_ids(pos)
    for layer in range(4):
        want = brute_max(model, layer, seen[layer][0], pos, docs)
        assert got[layer].shape == (4,)
        torch.testing.assert_close(got[layer], want, rtol=1e-5, atol=1e-5)


def test_probe_plain_causal_when_mask_is_none_and_accumulates():
    model = model_with("sdpa")
    torch.manual_seed(2)
    a, b = torch.randint(2, 40, (1, 10)), torch.randint(2, 40, (3, 7))
    seen, handles = capture_attn_inputs(model)
    with MaxLogitProbe(model) as probe, torch.no_grad():
        model(input_ids=a)  # no position_ids: sdpa gets mask None (is_causal)
        model(input_ids=b)
    for h in handles:
        h.remove()
    for layer in range(4):
        want = torch.maximum(
            brute_max(model, layer, seen[layer][0], torch.arange(10)[None], None),
            brute_max(model, layer, seen[layer][1], torch.arange(7).expand(3, 7), None),
        )
        torch.testing.assert_close(probe.result()[layer], want, rtol=1e-5, atol=1e-5)
    # hooks are gone after the block: another forward changes nothing
    before = probe.result()
    with torch.no_grad():
        model(input_ids=b * 0 + 5)
    assert all(torch.equal(before[i], probe.result()[i]) for i in before)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_cross_document_maximum_is_excluded(impl):
    """Plant one huge logit from a query in document 2 to a key in document 1 (layer 0) and
    check the probe reports the largest *within-document* logit instead."""
    model = model_with(impl)
    A, B = 7, 9  # key token in doc 1, query token in doc 2
    attn0 = model.model.layers[0].self_attn
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.mul_(0.05)
        emb[A].zero_()
        emb[A, 0] = 10.0  # after RMSNorm, A ~ sqrt(32) e_0
        emb[B].zero_()
        emb[B, 1] = 10.0  # B ~ sqrt(32) e_1
        # dim 3 of each head is in the slowest RoPE pair (rotates ~1e-9 rad/position)
        attn0.q_proj.weight[[3, 11, 19, 27], 1] += 3.0  # B -> large q in dim 3 of every head
        attn0.k_proj.weight[[3, 11], 0] += 3.0  # A -> large k in dim 3 of both KV heads
    x = torch.tensor([[2, A, 3, 4, 5, B, 6, 8, B, 10]])
    pos = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]])  # doc 1 = first 5 tokens, doc 2 = rest
    seen, handles = capture_attn_inputs(model)
    with MaxLogitProbe(model) as probe, torch.no_grad():
        model(input_ids=x, position_ids=pos)
    for h in handles:
        h.remove()
    hidden0 = seen[0][0]
    causal_only = brute_max(model, 0, hidden0, pos, None)
    within_doc = brute_max(model, 0, hidden0, pos, doc_ids(pos))
    assert (causal_only > within_doc + 5).all()  # the cross-document logit is the largest one
    torch.testing.assert_close(probe.result()[0], within_doc, rtol=1e-5, atol=1e-5)


def test_probe_changes_neither_outputs_nor_gradients():
    model = model_with("sdpa").train()
    torch.manual_seed(3)
    x = torch.randint(2, 40, (2, 12))
    pos = torch.tensor([list(range(12)), [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2]])

    def run():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=x, position_ids=pos, labels=x)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    logits0, grads0 = run()
    with MaxLogitProbe(model) as probe:
        logits1, grads1 = run()
    assert torch.equal(logits0, logits1)
    assert grads0.keys() == grads1.keys() and all(torch.equal(grads0[n], grads1[n]) for n in grads0)
    assert len(probe.result()) == 4 and all(torch.isfinite(v).all() for v in probe.result().values())


def test_allowed_mask_conventions():
    causal = allowed_mask(None, 3, 3, "cpu", implementation="sdpa")
    assert causal[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    f = torch.tensor([[[[0.0, torch.finfo(torch.float32).min], [0.0, 0.0]]]])
    assert allowed_mask(f, 2, 2, "cpu")[0, 0].tolist() == [[True, False], [True, True]]
    # flash packs a single row by its position ids (documents start at the minimum) ...
    flash = allowed_mask(None, 4, 4, "cpu", implementation="flash_attention_2",
                         position_ids=torch.tensor([[0, 1, 0, 1]]))
    assert flash[0, 0].tolist() == [[True, False, False, False], [True, True, False, False],
                                     [False, False, True, False], [False, False, True, True]]
    # ... or by the cu_seqlens it is given (empty trailing documents are padding)
    cu = {"cu_seq_lens_q": torch.tensor([0, 1, 4, 4], dtype=torch.int32)}
    assert allowed_mask(None, 4, 4, "cpu", implementation="flash_attention_2",
                        attn_kwargs=cu)[0, 0].tolist() == [[True, False, False, False],
                                                            [False, True, False, False],
                                                            [False, True, True, False],
                                                            [False, True, True, True]]
    # several rows: transformers' flash path does not pack them (plain causal per row)
    rows = allowed_mask(None, 2, 2, "cpu", implementation="flash_attention_2", bsz=2,
                        position_ids=torch.tensor([[0, 0], [0, 1]]))
    assert rows[0, 0].tolist() == [[True, False], [True, True]]
    with pytest.raises(NotImplementedError):  # an implementation whose packing rule is unknown
        allowed_mask(None, 4, 4, "cpu", implementation="some_kernel",
                     position_ids=torch.tensor([[0, 1, 0, 1]]))


_VARLEN_REF = "flash_varlen_reference_for_probe_tests"


def _varlen_reference(module, query, key, value, attention_mask, scaling=None, cu_seq_lens_q=None, **kwargs):
    """flash_attn_varlen_func's result in plain torch (causal within each cu_seqlens segment)."""
    n = query.shape[2]
    seg = torch.bucketize(torch.arange(n), cu_seq_lens_q[1:].long(), right=True)
    mask = torch.ones(n, n, dtype=torch.bool).tril() & (seg[:, None] == seg[None, :])
    rep = query.shape[1] // key.shape[1]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1), attn_mask=mask, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("kind", ["flex", "flash"])
def test_probe_reads_each_attention_paths_mask(kind):
    """The same packed micro batch under flex (BlockMask) and flash (one flattened row with
    cu_seqlens) gives sdpa's per-head maxima, which the tests above check by hand; chunks of
    a few queries exercise the document windows of the flattened row."""
    torch.manual_seed(4)
    x = torch.randint(2, 40, (3, 12))
    x[0, [3, 8]] = 0  # EOS (IDS.eos = 0)
    x[1, 0] = 0
    results = {}
    for k in ("sdpa", kind):
        model = model_with("sdpa")
        if k == "flex":
            set_attention(model, "flex")
        elif k == "flash":
            from transformers import AttentionInterface

            AttentionInterface.register(_VARLEN_REF, _varlen_reference)
            model.config._attn_implementation = _VARLEN_REF
        ai = attention_inputs(x, 0, k, True)
        with MaxLogitProbe(model, max_elements=4 * 4 * 12) as probe, torch.no_grad():
            model(input_ids=ai.input_ids, use_cache=False, **ai.kwargs)
        results[k] = probe.result()
    assert sorted(results[kind]) == [0, 1, 2, 3]
    for layer, want in results["sdpa"].items():
        torch.testing.assert_close(results[kind][layer], want, rtol=1e-5, atol=1e-5)
