"""Optimizers from the spec: weight-decay grouping, the Muon/AdamW split (FACTS 5.4), LR
multipliers, state reloading across stages, and bitwise determinism."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from repro.model.build import TokenIds, build_model
from repro.spec.schema import AdamWSpec, ModelSpec, MuonSpec
from repro.train.optim import (
    Muon,
    MuonWithAdamW,
    build_adamw,
    build_optimizer,
    load_state,
    param_groups,
    reference_lr,
    resolve_ns_dtype,
    set_lr_multiplier,
)

SPEC = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                 max_position_embeddings=64)
IDS = TokenIds(vocab_size=100, bos=0, eos=0, pad=1)
BATCH = torch.randint(2, 100, (4, 17), generator=torch.Generator().manual_seed(0))
MUON = MuonSpec(lr=0.02, adamw=AdamWSpec(lr=3e-3, weight_decay=0.01))
ADAMW = AdamWSpec(lr=3e-3)


def names(group):
    return [n for n, _ in group["params"]]


def loss_of(model) -> torch.Tensor:
    logits = model(input_ids=BATCH[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), BATCH[:, 1:].reshape(-1))


def train(model, opt, steps: int, first: int = 0) -> list[float]:
    """`steps` updates with a step-dependent LR multiplier (exercises set_lr_multiplier)."""
    losses = []
    for k in range(first, first + steps):
        set_lr_multiplier(opt, 1.0 / (1 + k))
        loss = loss_of(model)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for n in a:
        assert torch.equal(a[n], b[n]), n


# --------------------------------------------------------------------------- AdamW grouping


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


def test_empty_no_decay_group_is_fine():
    model = build_model(SPEC, IDS, 0)
    opt = build_optimizer(model, AdamWSpec(no_decay_patterns=[]))
    assert [len(g["params"]) for g in opt.param_groups][1] == 0
    train(model, opt, 1)


def test_load_state_reapplies_spec_and_checks_groups():
    model = build_model(SPEC, IDS, 0)
    opt = build_adamw(model, AdamWSpec())
    model(input_ids=torch.tensor([[2, 3, 4]])).logits.sum().backward()
    opt.step()
    state = opt.state_dict()
    later = AdamWSpec(weight_decay=0.05, betas=(0.8, 0.9), lr=1e-4)
    again = build_optimizer(model, later)
    load_state(again, state, later)
    g = again.param_groups[0]
    assert g["weight_decay"] == 0.05 and g["betas"] == (0.8, 0.9) and g["base_lr"] == 1e-4
    assert again.param_groups[1]["weight_decay"] == 0.0
    assert int(again.state_dict()["state"][0]["step"]) == 1
    other = build_adamw(model, AdamWSpec(no_decay_patterns=[r".*norm.*"]))
    with pytest.raises(ValueError, match="no_decay_patterns"):
        load_state(other, state, AdamWSpec(no_decay_patterns=[r".*norm.*"]))


# --------------------------------------------------------------------------- Muon


def test_muon_gets_exactly_the_hidden_matrices():
    model = build_model(SPEC, IDS, 0)
    opt = build_optimizer(model, MUON)
    assert isinstance(opt, MuonWithAdamW)
    muon_group, decay, no_decay = opt.param_groups
    assert (muon_group["group"], decay["group"], no_decay["group"]) == ("muon", "decay", "no_decay")
    expected = [f"model.layers.{i}.{m}.weight" for i in range(SPEC.num_layers)
                for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
    assert muon_group["param_names"] == expected
    assert no_decay["param_names"] == ["model.embed_tokens.weight"]  # tied with lm_head -> AdamW
    assert "model.norm.weight" in decay["param_names"]
    assert all(p.ndim == 1 for p in decay["params"])
    # every parameter exactly once
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert muon_group["lr"] == muon_group["base_lr"] == 0.02 and decay["base_lr"] == 3e-3
    assert muon_group["weight_decay"] == MUON.weight_decay and decay["weight_decay"] == 0.01
    assert muon_group["adjust_lr_fn"] == "original" and muon_group["momentum"] == 0.95


def test_untied_lm_head_goes_to_adamw():
    model = build_model(SPEC.model_copy(update={"tie_embeddings": False}), IDS, 0)
    opt = build_optimizer(model, MUON)
    assert "lm_head.weight" in opt.adamw.param_groups[0]["param_names"]
    assert "lm_head.weight" not in opt.muon.param_groups[0]["param_names"]


def test_muon_reduces_the_loss():
    model = build_model(SPEC, IDS, 0)
    opt = build_optimizer(model, MUON)
    before = loss_of(model).item()
    for _ in range(8):
        loss_of(model).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    after = loss_of(model).item()
    assert after < before - 0.3, (before, after)


def test_lr_multiplier_and_reference():
    model = build_model(SPEC, IDS, 0)
    opt = build_optimizer(model, MUON)
    set_lr_multiplier(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 1.5e-3, 1.5e-3]
    assert opt.muon.param_groups[0]["lr"] == 0.01  # the groups are the sub-optimizers' own
    assert reference_lr(MUON) == 3e-3 and reference_lr(ADAMW) == 3e-3


def test_muon_load_state_reapplies_spec_and_checks_kind():
    model = build_model(SPEC, IDS, 0)
    opt = build_optimizer(model, MUON)
    train(model, opt, 1)
    state = opt.state_dict()
    later = MuonSpec(lr=0.01, momentum=0.9, weight_decay=0.0, adjust_lr="match_rms_adamw",
                     adamw=AdamWSpec(lr=1e-3, betas=(0.8, 0.9), weight_decay=0.02))
    again = build_optimizer(model, later)
    load_state(again, state, later)
    m, d, nd = again.param_groups
    assert (m["base_lr"], m["momentum"], m["weight_decay"], m["adjust_lr_fn"]) == (0.01, 0.9, 0.0, "match_rms_adamw")
    assert (d["base_lr"], d["betas"], d["weight_decay"], nd["weight_decay"]) == (1e-3, (0.8, 0.9), 0.02, 0.0)
    assert len(again.state) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="kind"):
        load_state(build_optimizer(model, ADAMW), state, ADAMW)
    with pytest.raises(ValueError, match="kind"):
        load_state(again, build_optimizer(model, ADAMW).state_dict(), later)
    changed = MUON.model_copy(update={"adamw": AdamWSpec(no_decay_patterns=[r".*norm.*"])})
    with pytest.raises(ValueError, match="no_decay_patterns"):
        load_state(build_optimizer(model, changed), state, changed)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("spec", [ADAMW, MUON], ids=["adamw", "muon"])
def test_same_seed_same_weights(spec):
    runs = []
    for _ in range(2):
        model = build_model(SPEC, IDS, 0)
        train(model, build_optimizer(model, spec), 3)
        runs.append(weights(model))
    assert_bitwise_equal(*runs)


@pytest.mark.parametrize("spec", [ADAMW, MUON], ids=["adamw", "muon"])
def test_save_load_resume_is_bitwise_identical(spec):
    model = build_model(SPEC, IDS, 0)
    opt = build_optimizer(model, spec)
    train(model, opt, 3)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)  # as checkpoint.save_checkpoint does
    resumed = build_model(SPEC, IDS, 1)  # different init, overwritten by the saved weights
    resumed.load_state_dict(weights(model))
    opt2 = build_optimizer(resumed, spec)
    buf.seek(0)
    load_state(opt2, torch.load(buf, map_location="cpu", weights_only=True), spec)

    a = train(model, opt, 3, first=3)
    b = train(resumed, opt2, 3, first=3)
    assert a == b
    assert_bitwise_equal(weights(model), weights(resumed))


def test_match_rms_adamw_scales_the_muon_update_by_its_shape():
    """adjust_lr `match_rms_adamw` gives the update RMS AdamW would have (0.2*sqrt(max(A,B)),
    Moonlight; FACTS 5.3), `original` sqrt(max(1, A/B)): same gradient, different step."""
    import torch

    from repro.spec.schema import MuonSpec
    from repro.train.optim import build_optimizer

    steps = {}
    for mode in ("original", "match_rms_adamw"):
        torch.manual_seed(0)
        lin = torch.nn.Module()
        lin.model = torch.nn.Module()
        lin.model.layers = torch.nn.ModuleList([torch.nn.Linear(16, 64, bias=False)])
        before = lin.model.layers[0].weight.detach().clone()
        opt = build_optimizer(lin, MuonSpec(lr=0.01, weight_decay=0.0, adjust_lr=mode))
        lin.model.layers[0].weight.grad = torch.ones_like(before)
        opt.step()
        steps[mode] = (lin.model.layers[0].weight.detach() - before).norm().item()
    # weight (64, 16): original scales by sqrt(64/16) = 2, match_rms_adamw by 0.2*sqrt(64) = 1.6
    assert steps["match_rms_adamw"] / steps["original"] == pytest.approx(1.6 / 2.0, rel=1e-3)


# ----------------------------------------------------------- Newton-Schulz precision


def _two_steps(opt, model, data):
    for _ in range(2):
        opt.zero_grad()
        model(data).square().mean().backward()
        opt.step()


def test_muon_bfloat16_is_torch_muon_bit_for_bit():
    torch.manual_seed(0)
    ref = torch.nn.Linear(24, 16, bias=False)
    ours = torch.nn.Linear(24, 16, bias=False)
    ours.load_state_dict(ref.state_dict())
    data = torch.randn(8, 24)
    settings = dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.01)
    _two_steps(torch.optim.Muon(ref.parameters(), **settings), ref, data)
    _two_steps(Muon(ours.parameters(), ns_dtype=torch.bfloat16, **settings), ours, data)
    assert torch.equal(ref.weight, ours.weight)


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_float32_follows_the_muon_update(nesterov):
    """The float32 path is Muon's update written out (momentum, Nesterov, decoupled weight
    decay, sqrt(max(1, A/B)) LR, Keller's quintic), checked against that formula, and it
    orthogonalises: the update's singular values land in Keller's (0.5, 1.5) band."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(24, 16, bias=False)  # weight 16 x 24: wide, no transpose
    w0 = layer.weight.detach().clone()
    data = torch.randn(64, 24)  # a full-rank gradient
    lr, mom, wd = 0.02, 0.95, 0.01
    opt = Muon(layer.parameters(), ns_dtype=torch.float32, lr=lr, momentum=mom,
               nesterov=nesterov, weight_decay=wd)
    layer(data).square().mean().backward()
    grad = layer.weight.grad.detach().clone()
    opt.step()
    buf = grad * (1 - mom)  # lerp from a zero buffer
    update = grad + (buf - grad) * mom if nesterov else buf
    x = update / update.norm()
    for _ in range(5):
        gram = x @ x.T
        x = 3.4445 * x + (-4.7750 * gram + 2.0315 * gram @ gram) @ x
    expected = w0 * (1 - lr * wd) - lr * 1.0 * x  # A/B = 16/24 < 1: no LR scaling
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=1e-5, atol=1e-6)
    singular = torch.linalg.svdvals(x)
    assert singular.min() > 0.3 and singular.max() < 1.6


def test_muon_ns_dtype_auto_is_bfloat16_only_on_cuda():
    assert resolve_ns_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_ns_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_ns_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    opt = build_optimizer(build_model(SPEC, IDS, 0), MUON)
    assert opt.muon.ns_dtype == torch.float32  # built on the CPU
