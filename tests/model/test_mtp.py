"""Multi-token prediction modules (FACTS 6.1/6.2): shapes, determinism, causality of the
sequential chain, document-boundary handling, learning, and export beside an HF checkpoint."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors import safe_open

from repro.model.build import TokenIds, build_model
from repro.model.mtp import (
    IGNORE_INDEX,
    MTP_CONFIG,
    MTP_WEIGHTS,
    build_mtp,
    document_ids,
    load_mtp,
    mtp_labels,
    mtp_losses,
    save_mtp,
    total_mtp_loss,
    trunk_forward,
    trunk_states,
)
from repro.spec.schema import ModelSpec, MTPSpec

SPEC = ModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                 max_position_embeddings=64, rope_theta=50_000.0, init_std=0.02, nope_interval=2)
IDS = TokenIds(vocab_size=300, bos=0, eos=0, pad=1)
B, T = 2, 16


def _model(seed=0):
    return build_model(SPEC, IDS, seed).eval()


def _window(seed=1, b=B, t=T):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, IDS.vocab_size, (b, t + 1), generator=g)


def _mtp_logits(mtp, model, window, position_ids=None):
    hidden, _ = trunk_forward(model, window[:, :-1], position_ids)
    return mtp.logits(model, hidden, window, position_ids)


@pytest.mark.parametrize("kind", ["sequential", "parallel"])
def test_shapes_and_deterministic_init(kind):
    model = _model()
    spec = MTPSpec(kind=kind, depth=3)
    a, b, c = build_mtp(spec, model.config, 7), build_mtp(spec, model.config, 7), build_mtp(spec, model.config, 8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if "proj" in k or "block" in k)
    # Shared parts are borrowed, not owned (FACTS 6.1/6.2).
    assert not any("embed" in k or "lm_head" in k for k in sa)
    assert len(a.depths) == 3 and all(d.block.self_attn.use_rope for d in a.depths)
    std = [p.std().item() for n, p in a.named_parameters() if n.endswith("q_proj.weight")]
    assert all(0.015 < s < 0.025 for s in std)  # initializer_range 0.02
    w = _window()
    logits = _mtp_logits(a, model, w)
    assert [tuple(x.shape) for x in logits] == [(B, T - k, IDS.vocab_size) for k in (1, 2, 3)]
    hidden, _ = trunk_forward(model, w[:, :-1])
    losses = mtp_losses(a, model, hidden, w)
    assert len(losses) == 3 and all(x.ndim == 0 and torch.isfinite(x) for x in losses)
    # Near-uniform predictions at init: CE close to log V.
    assert all(abs(x.item() - torch.log(torch.tensor(300.0)).item()) < 0.5 for x in losses)
    assert torch.allclose(total_mtp_loss(losses, 0.3), 0.3 / 3 * (losses[0] + losses[1] + losses[2]))


def test_trunk_forward_gives_pre_norm_state_and_main_logits():
    model = _model()
    w = _window()
    hidden, logits = trunk_forward(model, w[:, :-1])
    out = model(input_ids=w[:, :-1])
    assert torch.allclose(logits, out.logits)
    post = model.model(input_ids=w[:, :-1]).last_hidden_state
    assert not torch.allclose(hidden, post)
    assert torch.allclose(model.model.norm(hidden), post, atol=1e-6)
    assert not model.model.norm._forward_hooks  # hook removed
    # the trunk alone (no head): the same pre-norm state and the final hidden state
    pre, final = trunk_states(model, w[:, :-1])
    assert torch.equal(pre, hidden) and torch.equal(final, post)
    assert torch.equal(model.lm_head(final), out.logits)  # head applied by the caller: same bits
    assert not model.model.norm._forward_hooks


def test_sequential_uses_embedding_of_token_t_plus_k():
    torch.manual_seed(0)
    model = _model()
    mtp = build_mtp(MTPSpec(kind="sequential", depth=2), model.config, 3)
    w = _window()
    base = _mtp_logits(mtp, model, w)
    t = 5
    for k in (1, 2):
        # Changing t_{t+k}: the trunk state at t cannot see it, only module k's embedding input does.
        w2 = w.clone()
        w2[:, t + k] = (w2[:, t + k] + 1) % IDS.vocab_size
        changed = _mtp_logits(mtp, model, w2)
        assert not torch.allclose(changed[k - 1][:, t], base[k - 1][:, t])
        assert torch.allclose(changed[k - 1][:, :t], base[k - 1][:, :t], atol=1e-6)  # earlier positions
        # Changing t_{t+k+1} (the target itself): causality forbids any effect at t.
        w3 = w.clone()
        w3[:, t + k + 1] = (w3[:, t + k + 1] + 1) % IDS.vocab_size
        same = _mtp_logits(mtp, model, w3)
        assert torch.allclose(same[k - 1][:, : t + 1], base[k - 1][:, : t + 1], atol=1e-6)
    # Depth 2 chains through depth 1: changing t_{t+1} changes depth-2 logits at t too.
    w4 = w.clone()
    w4[:, t + 1] = (w4[:, t + 1] + 1) % IDS.vocab_size
    assert not torch.allclose(_mtp_logits(mtp, model, w4)[1][:, t], base[1][:, t])


def test_parallel_heads_see_only_the_trunk():
    model = _model()
    mtp = build_mtp(MTPSpec(kind="parallel", depth=2), model.config, 3)
    w = _window()
    base = _mtp_logits(mtp, model, w)
    t = 5
    w2 = w.clone()
    w2[:, t + 1] = (w2[:, t + 1] + 1) % IDS.vocab_size  # no token lookahead in parallel heads
    for k in (1, 2):
        assert torch.allclose(_mtp_logits(mtp, model, w2)[k - 1][:, : t + 1], base[k - 1][:, : t + 1], atol=1e-6)
    w2[:, t] = (w2[:, t] + 1) % IDS.vocab_size
    assert not torch.allclose(_mtp_logits(mtp, model, w2)[0][:, t], base[0][:, t])


def test_document_boundaries():
    # Row 0: documents of 6 and 10 inputs; the window's last token continues document 2.
    # Row 1: one document.
    pos = torch.stack([torch.cat([torch.arange(6), torch.arange(10)]), torch.arange(T)])
    assert document_ids(pos)[0].tolist() == [0] * 6 + [1] * 10
    w = _window()
    for k in (1, 2):
        labels = mtp_labels(w, k, pos)
        assert labels.shape == (B, T - k)
        ignored = (labels[0] == IGNORE_INDEX).nonzero().flatten().tolist()
        # Position i (doc 0 for i < 6) predicts token i+k+1, in doc 1 once i+k+1 >= 6.
        assert ignored == list(range(6 - k - 1, 6))
        assert (labels[1] != IGNORE_INDEX).all()
        assert torch.equal(labels[1], w[1, k + 1:])
    # Position ids over the whole window (T+1) are accepted as well; a boundary at the last
    # token then ignores the targets that reach it.
    pos_full = torch.cat([torch.arange(T), torch.arange(1)]).unsqueeze(0)
    assert (mtp_labels(w, 1, pos_full)[:, -1] == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="position_ids"):
        mtp_labels(w, 1, pos[:, :5])

    model = _model()
    for kind in ("sequential", "parallel"):
        mtp = build_mtp(MTPSpec(kind=kind, depth=2), model.config, 3)
        base = _mtp_logits(mtp, model, w, pos)
        # Intra-document masking in the MTP blocks: document 2 of row 0 cannot see document 1.
        w2 = w.clone()
        w2[0, 1] = (w2[0, 1] + 1) % IDS.vocab_size
        after = _mtp_logits(mtp, model, w2, pos)
        for k in (1, 2):
            assert torch.allclose(after[k - 1][0, 6:], base[k - 1][0, 6:], atol=1e-5)
            assert not torch.allclose(after[k - 1][0, 1:6 - k], base[k - 1][0, 1:6 - k])
        # Loss = mean CE over the unignored targets only.
        hidden, _ = trunk_forward(model, w[:, :-1], pos)
        losses = mtp_losses(mtp, model, hidden, w, pos)
        for k in (1, 2):
            labels = mtp_labels(w, k, pos)
            keep = labels != IGNORE_INDEX
            ref = torch.nn.functional.cross_entropy(base[k - 1][keep], labels[keep])
            assert torch.allclose(losses[k - 1], ref, atol=1e-5)


def test_training_reduces_mtp_loss():
    torch.manual_seed(0)
    model = _model().train()
    spec = MTPSpec(kind="sequential", depth=2, loss_weight=0.3)
    mtp = build_mtp(spec, model.config, 3)
    w = _window(b=4)
    opt = torch.optim.AdamW(list(model.parameters()) + list(mtp.parameters()), lr=3e-3)
    history = []
    for _ in range(8):
        hidden, logits = trunk_forward(model, w[:, :-1])
        main = torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten())
        losses = mtp_losses(mtp, model, hidden, w)
        history.append(sum(x.item() for x in losses))
        loss = main + total_mtp_loss(losses, spec.loss_weight)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in mtp.parameters())
        opt.step()
    assert history[-1] < history[0] - 0.5, history


@pytest.mark.parametrize("kind", ["sequential", "parallel"])
def test_export_beside_hf_checkpoint(tmp_path, kind, caplog):
    from transformers import AutoModelForCausalLM

    model = _model()
    spec = MTPSpec(kind=kind, depth=2)
    mtp = build_mtp(spec, model.config, 3)
    model.save_pretrained(tmp_path)
    save_mtp(tmp_path, mtp, spec)
    assert (tmp_path / MTP_WEIGHTS).is_file() and (tmp_path / MTP_CONFIG).is_file()
    saved = json.loads((tmp_path / MTP_CONFIG).read_text())
    assert (saved["kind"], saved["depth"]) == (kind, 2)

    # The HF checkpoint is the plain model: no MTP keys, loads with no missing/unexpected keys.
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith(("model.", "lm_head.")) for k in keys)
    assert not any(k.startswith("depths.") or ".depths." in k for k in keys)
    with caplog.at_level(logging.WARNING):
        loaded, info = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32,
                                                            output_loading_info=True)
    assert not any(v for v in info.values()), info
    assert not any("missing" in r.message.lower() or "unexpected" in r.message.lower() for r in caplog.records)
    w = _window()
    assert torch.equal(loaded.eval()(input_ids=w[:, :-1]).logits, model(input_ids=w[:, :-1]).logits)

    # Deterministic bytes, and an exact round trip of the MTP modules.
    first = (tmp_path / MTP_WEIGHTS).read_bytes()
    save_mtp(tmp_path, mtp, spec)
    assert (tmp_path / MTP_WEIGHTS).read_bytes() == first
    back = load_mtp(tmp_path, spec, loaded.config)
    hidden, _ = trunk_forward(loaded, w[:, :-1])
    a = mtp_losses(mtp, model, hidden, w)
    b = mtp_losses(back, loaded, hidden, w)
    assert all(torch.equal(x, y) for x, y in zip(a, b))

    other = "parallel" if kind == "sequential" else "sequential"
    with pytest.raises(ValueError, match="kind"):
        load_mtp(tmp_path, MTPSpec(kind=other, depth=2), loaded.config)
    with pytest.raises(ValueError, match="depth"):
        load_mtp(tmp_path, MTPSpec(kind=kind, depth=1), loaded.config)
    with pytest.raises(FileNotFoundError):
        load_mtp(tmp_path / "nowhere", spec, loaded.config)


def test_depth_beyond_trunk_layers_and_short_windows():
    model = _model()  # 2 layers
    mtp = build_mtp(MTPSpec(depth=4), model.config, 0)
    assert model.config.num_hidden_layers == 2 and model.config.no_rope_layers == [1, 0]  # config untouched
    w = _window(t=5)
    hidden, _ = trunk_forward(model, w[:, :-1])
    assert len(mtp_losses(mtp, model, hidden, w)) == 4
    with pytest.raises(ValueError, match="too short"):
        mtp_losses(mtp, model, hidden[:, :4], w[:, :5])


@pytest.mark.parametrize("kind", ["sequential", "parallel"])
def test_fused_cross_entropy_per_depth(kind, monkeypatch):
    """cross_entropy plain is bit for bit the full-logits CE of each depth (mean over its
    unignored targets); chunked gives the same losses and gradients to fp32 rounding."""
    import torch.nn.functional as F

    from repro.train import linear_ce

    monkeypatch.setattr(linear_ce, "MIN_CHUNK_ROWS", 8)  # several chunks, the last ragged
    model = _model()
    mtp = build_mtp(MTPSpec(kind=kind, depth=2), model.config, 3)
    w = _window()
    pos = torch.stack([torch.cat([torch.arange(6), torch.arange(10)]), torch.arange(T)])
    params = list(model.parameters()) + list(mtp.parameters())

    def run(method):
        hidden, _ = trunk_forward(model, w[:, :-1], pos)
        losses = mtp_losses(mtp, model, hidden, w, pos, cross_entropy=method)
        return losses, torch.autograd.grad(sum(losses), params)

    hidden, _ = trunk_forward(model, w[:, :-1], pos)
    ref = []
    for k, h in enumerate(mtp.hidden_states(model, hidden, w, pos), start=1):
        labels = mtp_labels(w, k, pos)
        logits = model.lm_head(model.model.norm(h)).float()
        total = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        ref.append(total / (labels != IGNORE_INDEX).sum())
    ref_grads = torch.autograd.grad(sum(ref), params)
    plain, plain_grads = run("plain")
    assert all(torch.equal(a, b) for a, b in zip(plain, ref))
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, ref_grads))
    chunked, chunked_grads = run("chunked")
    for a, b in zip(chunked, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(chunked_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
