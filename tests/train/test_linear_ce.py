"""Fused / chunked linear cross-entropy (repro.train.linear_ce) against the plain loss: value
and gradients (hidden, weight, tied weight), ignored targets, z-loss, bf16 autocast, ragged
chunks; the same at TrainModule level on a tiny SmolLM3 (MTP included); Liger on CUDA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repro.model.build import TokenIds, build_model
from repro.spec.schema import DistillationSpec, ModelSpec, MTPSpec
from repro.train import linear_ce
from repro.train.linear_ce import MIN_CHUNK_ROWS, chunk_rows, linear_cross_entropy
from repro.train.objective import ObjectiveSettings, TrainModule
from repro.train.zloss import z_loss

N, H, V = 45, 24, 70  # 45 rows: chunks of 8 leave a ragged last chunk of 5
Z = 0.05  # large enough that the z-loss term moves the gradients visibly
# fp32: both paths compute the same sums in a different order (chunked adds grad_W per chunk)
FP32 = dict(rtol=1e-5, atol=1e-6)
# bf16 autocast: both paths see the same bf16 logits; the gradient matmuls differ in rounding:
# plain rounds grad_W once to bf16 (relative error 2^-8 = 0.4%), chunked sums fp32 chunk
# products, so gradients agree to ~1% of their scale (measured 0.24% for grad_W, grad_hidden
# equal); the loss is fp32 from the same logits.
BF16_LOSS = dict(rtol=1e-4, atol=1e-4)
BF16_GRAD_REL = 1e-2


def _data(seed=0, n=N, h=H, v=V, ignore_every=4):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g)
    weight = torch.randn(v, h, generator=g) * 0.5
    targets = torch.randint(0, v, (n,), generator=g)
    if ignore_every:
        targets[::ignore_every] = -100
    return hidden, weight, targets


def _reference(hidden, weight, targets, z_weight):
    """What the code computed before linear_ce: full logits, F.cross_entropy, zloss.z_loss."""
    logits = F.linear(hidden, weight).float()
    ce = F.cross_entropy(logits, targets, ignore_index=-100)
    z = z_loss(logits, targets)
    return ce + z_weight * z, ce, z


def _grads(fn, hidden, weight):
    h = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    out = fn(h, w)
    loss = out if isinstance(out, torch.Tensor) else out[0] if isinstance(out, tuple) else out.loss
    loss.backward()
    return out, h.grad, w.grad


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("rows", [None, 1, 8, 16, N - 1, N, 1000])
@pytest.mark.parametrize("z_weight", [0.0, Z])
def test_chunked_matches_plain_fp32(rows, z_weight):
    hidden, weight, targets = _data()
    ref, rh, rw = _grads(lambda h, w: _reference(h, w, targets, z_weight), hidden, weight)
    out, ch, cw = _grads(lambda h, w: linear_cross_entropy(h, w, targets, method="chunked", z_weight=z_weight,
                                                           rows=rows), hidden, weight)
    torch.testing.assert_close(out.loss, ref[0], **FP32)
    torch.testing.assert_close(out.ce, ref[1], **FP32)
    if z_weight:
        torch.testing.assert_close(out.z, ref[2], **FP32)
    else:
        assert out.z is None
    assert not out.ce.requires_grad and out.loss.requires_grad
    torch.testing.assert_close(ch, rh, **FP32)
    torch.testing.assert_close(cw, rw, **FP32)
    assert (ch[targets == -100] == 0).all()  # ignored rows get no gradient
    # the plain method of linear_ce is the same reference
    plain, ph, pw = _grads(lambda h, w: linear_cross_entropy(h, w, targets, method="plain", z_weight=z_weight),
                           hidden, weight)
    torch.testing.assert_close(plain.loss, ref[0], **FP32)
    torch.testing.assert_close(ph, rh, **FP32)
    torch.testing.assert_close(pw, rw, **FP32)


def test_batched_shapes_upstream_scale_and_determinism():
    hidden, weight, targets = _data(n=48)
    h3, t3 = hidden.view(4, 12, H), targets.view(4, 12)
    ref, rh, rw = _grads(lambda h, w: 2.5 * _reference(h, w, targets, Z)[0], hidden, weight)
    runs = [_grads(lambda h, w: 2.5 * linear_cross_entropy(h.view(4, 12, H), w, t3, z_weight=Z, rows=8).loss,
                   hidden, weight) for _ in range(2)]
    torch.testing.assert_close(runs[0][0], ref, **FP32)
    torch.testing.assert_close(runs[0][1], rh, **FP32)  # grad_output 2.5 scales the stored grads
    torch.testing.assert_close(runs[0][2], rw, **FP32)
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))  # bitwise rerun
    assert h3.shape == (4, 12, H)


def test_tied_weight_gradient_accumulates():
    """W is also the embedding (tied lm_head): autograd adds the loss's grad_W to the
    embedding's gradient, as with the plain head."""
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, V, (N,), generator=g)
    targets = torch.randint(0, V, (N,), generator=g)
    proj = torch.randn(H, H, generator=g) * 0.3
    emb0 = torch.randn(V, H, generator=g) * 0.5

    def run(method):
        emb = emb0.clone().requires_grad_(True)
        hidden = torch.tanh(F.embedding(tokens, emb) @ proj)
        linear_cross_entropy(hidden, emb, targets, method=method, z_weight=Z, rows=8).loss.backward()
        return emb.grad

    plain, chunked = run("plain"), run("chunked")
    torch.testing.assert_close(chunked, plain, **FP32)
    assert plain[tokens].abs().sum() > 0


def test_bf16_autocast_matches_plain_under_autocast():
    hidden, weight, targets = _data(n=64, h=32, v=96)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref, rh, rw = _grads(lambda h, w: _reference(h, w, targets, Z), hidden, weight)
        out, ch, cw = _grads(lambda h, w: linear_cross_entropy(h, w, targets, z_weight=Z, rows=24), hidden, weight)
    assert out.loss.dtype == torch.float32 and ch.dtype == torch.float32 and cw.dtype == torch.float32
    torch.testing.assert_close(out.loss, ref[0], **BF16_LOSS)
    torch.testing.assert_close(out.ce, ref[1], **BF16_LOSS)
    assert _rel(ch, rh) < BF16_GRAD_REL and _rel(cw, rw) < BF16_GRAD_REL
    # and it really is bf16 arithmetic: far from the fp32 result at fp32 tolerance
    exact = linear_cross_entropy(hidden, weight, targets, z_weight=Z, rows=24).loss
    assert (out.loss - exact).abs() > 1e-5


def test_all_ignored_is_zero_and_no_grad_skips_gradients():
    hidden, weight, _ = _data()
    targets = torch.full((N,), -100)
    out, gh, gw = _grads(lambda h, w: linear_cross_entropy(h, w, targets, z_weight=Z, rows=8), hidden, weight)
    assert out.loss.item() == 0.0 and torch.isfinite(gh).all() and (gh == 0).all() and (gw == 0).all()
    hidden, weight, targets = _data()
    w = weight.clone().requires_grad_(True)
    with torch.no_grad():
        out = linear_cross_entropy(hidden, w, targets, z_weight=Z, rows=8)
    assert not out.loss.requires_grad
    torch.testing.assert_close(out.loss, _reference(hidden, weight, targets, Z)[0], **FP32)


def test_chunk_rule():
    # rows per chunk: logits of one chunk ~ the hidden states, a power of two, >= MIN_CHUNK_ROWS
    assert chunk_rows(32768, 960, 49152) == 1024  # 360M at 16 x 2048: 32 chunks
    assert chunk_rows(131072, 2048, 49152) == 8192  # 1.7B-ish at 64 x 2048
    assert chunk_rows(2048, 128, 4096) == MIN_CHUNK_ROWS  # quickstart micro batch: 2 chunks
    assert chunk_rows(100, 32, 64) == 100  # never more than the rows there are
    with pytest.raises(ValueError, match="unknown cross-entropy"):
        linear_cross_entropy(*_data(), method="auto")


# ----------------------------------------------------------------------------- TrainModule

SPEC = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                 max_position_embeddings=64, nope_interval=2)
IDS = TokenIds(vocab_size=96, bos=0, eos=0, pad=1)


def _windows(seed=5, b=3, t=20):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(2, IDS.vocab_size, (b, t + 1), generator=g)
    w[0, 7] = w[1, 12] = IDS.eos  # documents inside rows (doc masking, MTP boundary labels)
    return w


def _step(method, mtp=None, z=0.0, seed=0):
    model = build_model(SPEC, IDS, seed)
    mtp_mod = None
    if mtp is not None:
        from repro.model.mtp import build_mtp

        mtp_mod = build_mtp(mtp, model.config, 1)
    module = TrainModule(model, ObjectiveSettings(IDS.eos, True, z_loss=z, mtp=mtp, cross_entropy=method),
                         mtp=mtp_mod)
    loss, parts = module(_windows(), [], 0)
    loss.backward()
    return loss, parts, {n: p.grad for n, p in module.named_parameters()}


@pytest.mark.parametrize("mtp", [None, MTPSpec(kind="sequential", depth=2), MTPSpec(kind="parallel", depth=1)])
def test_train_module_chunked_matches_plain(monkeypatch, mtp):
    monkeypatch.setattr(linear_ce, "MIN_CHUNK_ROWS", 16)  # 60 main rows: 4 chunks, the last ragged
    z = 1e-2
    lp, pp, gp = _step("plain", mtp, z)
    lc, pc, gc = _step("chunked", mtp, z)
    assert pp.keys() == pc.keys() and "z_loss" in pc and (mtp is None) == ("mtp_1" not in pc)
    torch.testing.assert_close(lc, lp, **FP32)
    for k in pp:
        torch.testing.assert_close(pc[k], pp[k], **FP32)
    assert gp.keys() == gc.keys() and all(g is not None for g in gc.values())
    for name in gp:  # every parameter, the tied embedding/head included
        torch.testing.assert_close(gc[name], gp[name], rtol=1e-4, atol=1e-6, msg=name)


def test_train_module_plain_is_bitwise_the_models_logits():
    """The plain path (trunk, then lm_head) computes exactly what model(...).logits did."""
    from repro.train.positions import document_position_ids

    w = _windows()
    lp, parts, gp = _step("plain", z=1e-2)
    model = build_model(SPEC, IDS, 0)
    inputs, targets = w[:, :-1], w[:, 1:]
    logits = model(input_ids=inputs, position_ids=document_position_ids(inputs, IDS.eos),
                   use_cache=False).logits.float()
    ce = F.cross_entropy(logits.reshape(-1, IDS.vocab_size), targets.reshape(-1))
    loss = ce + 1e-2 * z_loss(logits)
    loss.backward()
    assert torch.equal(lp, loss) and torch.equal(parts["ce"], ce)
    assert all(torch.equal(gp[f"model.{n}"], p.grad) for n, p in model.named_parameters())


def test_train_module_refuses_unresolved_or_distillation():
    model = build_model(SPEC, IDS, 0)
    with pytest.raises(ValueError, match="resolve"):
        TrainModule(model, ObjectiveSettings(IDS.eos, True, cross_entropy="auto"))
    with pytest.raises(ValueError, match="full logits"):
        TrainModule(model, ObjectiveSettings(IDS.eos, True, distillation=DistillationSpec(teacher="t"),
                                             cross_entropy="chunked"))


# ----------------------------------------------------------------------------- CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (chunked/Liger on the device)")


def _installed_liger() -> bool:
    from repro.train.backends import installed

    return installed("liger_kernel")


@cuda
@pytest.mark.parametrize("method", ["chunked", "liger"])
def test_cuda_bf16_matches_plain_and_saves_memory(method):
    if method == "liger" and not _installed_liger():
        pytest.skip("liger-kernel is not installed")
    torch.backends.cuda.matmul.allow_tf32 = False
    hidden, weight, targets = (x.cuda() for x in _data(n=4096, h=256, v=32768, ignore_every=7))
    peaks = {}
    results = {}
    for name, fn in (("plain", lambda h, w: _reference(h, w, targets, Z)),
                     (method, lambda h, w: linear_cross_entropy(h, w, targets, method=method, z_weight=Z))):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            results[name] = _grads(fn, hidden, weight)
        torch.cuda.synchronize()
        peaks[name] = torch.cuda.max_memory_allocated() - base
    (ref, rh, rw), (out, ch, cw) = results["plain"], results[method]
    torch.testing.assert_close(out.loss, ref[0], rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(out.ce, ref[1], rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(out.z, ref[2], rtol=5e-3, atol=5e-3)
    assert _rel(ch, rh) < BF16_GRAD_REL and _rel(cw, rw) < BF16_GRAD_REL
    # 4096 x 32768 fp32 logits are 512 MiB; the fused loss never holds them
    assert peaks[method] < peaks["plain"] / 2, peaks


@cuda
def test_liger_all_ignored_and_no_z():
    if not _installed_liger():
        pytest.skip("liger-kernel is not installed")
    hidden, weight, targets = (x.cuda() for x in _data())
    ref, rh, rw = _grads(lambda h, w: _reference(h, w, targets, 0.0), hidden, weight)
    out, ch, cw = _grads(lambda h, w: linear_cross_entropy(h, w, targets, method="liger"), hidden, weight)
    assert out.z is None
    torch.testing.assert_close(out.loss, ref[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ch, rh, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(cw, rw, rtol=1e-3, atol=1e-4)
    none = torch.full_like(targets, -100)
    assert linear_cross_entropy(hidden, weight, none, method="liger", z_weight=Z).loss.item() == 0.0


@pytest.mark.parametrize("api", ["tuple", "output", "old"])
def test_liger_adapter_units_with_a_stand_in(monkeypatch, api):
    """The Liger path's bookkeeping, on CPU: a stand-in with Liger's documented contract
    (reduction "sum" over kept rows; the loss includes lse_square_scale * sum lse^2 and
    return_z_loss returns that term; 0.5.3-0.6 return a tuple, >= 0.7 a CrossEntropyOutput,
    < 0.5.3 has no return_z_loss) must give the plain method's loss, ce, z and gradients."""
    import sys
    import types
    from dataclasses import dataclass

    from repro.train.backends import BackendError

    @dataclass
    class Output:
        loss: torch.Tensor
        z_loss: torch.Tensor | None = None

    def fused(input, weight, target, bias=None, ce_weight=None, ignore_index=-100, lse_square_scale=0.0,
              label_smoothing=0.0, reduction="mean", softcap=None, return_z_loss=False):
        assert reduction == "sum" and bias is None
        logits = (input @ weight.t()).float()
        keep = target != ignore_index
        ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
        z = lse_square_scale * torch.where(keep, torch.logsumexp(logits, -1).square(), 0.0).sum()
        if not return_z_loss:
            return ce + z
        return (ce + z, z) if api == "tuple" else Output(ce + z, z)

    def old(input, weight, target, bias=None, ignore_index=-100, lse_square_scale=0.0, label_smoothing=0.0,
            reduction="mean", softcap=None):
        return fused(input, weight, target, ignore_index=ignore_index, lse_square_scale=lse_square_scale,
                     reduction=reduction)

    functional = types.ModuleType("liger_kernel.transformers.functional")
    functional.liger_fused_linear_cross_entropy = old if api == "old" else fused
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.functional", functional)

    hidden, weight, targets = _data()
    ref, rh, rw = _grads(lambda h, w: linear_cross_entropy(h, w, targets, method="plain", z_weight=Z), hidden, weight)
    if api == "old":
        with pytest.raises(BackendError, match="upgrade liger-kernel"):
            linear_cross_entropy(hidden, weight, targets, method="liger", z_weight=Z)
        out = linear_cross_entropy(hidden, weight, targets, method="liger")  # no z-loss: old API is fine
        torch.testing.assert_close(out.loss, _reference(hidden, weight, targets, 0.0)[0], **FP32)
        return
    out, lh, lw = _grads(lambda h, w: linear_cross_entropy(h, w, targets, method="liger", z_weight=Z), hidden, weight)
    for a, b in ((out.loss, ref.loss), (out.ce, ref.ce), (out.z, ref.z), (lh, rh), (lw, rw)):
        torch.testing.assert_close(a, b, **FP32)
    none = torch.full_like(targets, -100)
    assert linear_cross_entropy(hidden, weight, none, method="liger", z_weight=Z).loss.item() == 0.0
