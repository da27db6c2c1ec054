"""Feature-learning monitor: update/weight RMS ratios, effective rank, probe metrics, CSV."""

from __future__ import annotations

import math

import pytest
import torch

from repro.model.build import TokenIds, build_model
from repro.spec.schema import ModelSpec
from repro.train.attention_probe import MaxLogitProbe
from repro.train.monitor import (
    MonitorRow,
    effective_rank,
    monitor_csv,
    monitor_rows,
    probe_metrics,
    snapshot,
    update_rms_ratios,
)

SPEC = ModelSpec(hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=48,
                 max_position_embeddings=64)
IDS = TokenIds(vocab_size=40, bos=0, eos=0, pad=1)


def orthonormal(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    return q


@pytest.mark.parametrize("r", [1, 3, 10])
def test_effective_rank_of_rank_r_with_equal_singular_values_is_r(r):
    x = orthonormal(200, r, 0) @ orthonormal(64, r, 1).T * 5.0  # 200 tokens x 64 hidden, rank r
    assert effective_rank(x) == pytest.approx(r, rel=1e-6)


def test_effective_rank_identity_gaussian_and_centering():
    assert effective_rank(torch.eye(17)) == pytest.approx(17, rel=1e-9)
    # centring the identity removes the all-ones direction: n - 1 equal singular values
    assert effective_rank(torch.eye(17), center=True) == pytest.approx(16, rel=1e-9)
    g = torch.Generator().manual_seed(0)
    low = (torch.randn(500, 4, generator=g) @ torch.randn(4, 64, generator=g)).double()  # rank 4, unequal σ
    assert 2.5 < effective_rank(low) <= 4 + 1e-6
    # a large shared mean vector dominates the uncentred value, not the centred one
    shifted = low + 100 * torch.randn(64, generator=g).double()
    assert effective_rank(shifted) < 1.5
    assert effective_rank(shifted, center=True) == pytest.approx(effective_rank(low, center=True), rel=1e-6)
    assert effective_rank(torch.zeros(5, 3)) == 0.0
    assert effective_rank(low.reshape(10, 50, 64)) == pytest.approx(effective_rank(low), rel=1e-9)


def test_update_rms_ratios_per_layer_and_embedding():
    model = build_model(SPEC, IDS, 0)
    before = snapshot(model)
    names = set(before)
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names  # tied: once
    assert not any("norm" in n for n in names)  # 1-D gains are not monitored
    with torch.no_grad():
        layer1 = [p for n, p in model.named_parameters() if ".layers.1." in n and p.ndim == 2]
        for p in layer1:
            p.mul_(1.1)  # ΔW = 0.1 W for every matrix in layer 1
        model.model.layers[2].mlp.down_proj.weight.add_(1.0)
        model.model.norm.weight.add_(5.0)  # ignored
    ratios = update_rms_ratios(before, model)
    assert set(ratios) == {"embed", "0", "1", "2"}
    assert ratios["0"] == 0.0 and ratios["embed"] == 0.0
    assert ratios["1"] == pytest.approx(0.1, rel=1e-5)
    # layer 2: only down_proj moved, by 1 per entry; pooled RMS over the layer's matrices
    mats = [before[n] for n in before if ".layers.2." in n]
    total = sum(m.numel() for m in mats)
    rms_w = math.sqrt(sum(float(m.double().pow(2).sum()) for m in mats) / total)
    rms_d = math.sqrt(model.model.layers[2].mlp.down_proj.weight.numel() / total)
    assert ratios["2"] == pytest.approx(rms_d / rms_w, rel=1e-5)
    # snapshot is a copy, not a view
    assert not torch.equal(before["model.layers.1.self_attn.q_proj.weight"],
                           model.model.layers[1].self_attn.q_proj.weight)


def test_untied_lm_head_gets_its_own_row():
    model = build_model(SPEC.model_copy(update={"tie_embeddings": False}), IDS, 0)
    before = snapshot(model, device="cpu")
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    ratios = update_rms_ratios(before, model)
    assert ratios["lm_head"] == pytest.approx(0.5, rel=1e-5) and ratios["embed"] == 0.0


def test_probe_metrics_matches_its_parts_and_leaves_model_alone():
    model = build_model(SPEC, IDS, 0).train()
    torch.manual_seed(0)
    x = torch.randint(2, 40, (2, 16))
    pos = torch.cat([torch.arange(16)[None], torch.tensor([[*range(6), *range(10)]])])
    m = probe_metrics(model, x, pos)
    assert model.training
    assert list(m) == ["effective_rank", "max_attn_logit"]
    assert list(m["effective_rank"]) == ["embed", "0", "1", "2"]
    assert list(m["max_attn_logit"]) == ["0", "1", "2"]
    with torch.no_grad():
        out = model(input_ids=x, position_ids=pos, output_hidden_states=True)
        with MaxLogitProbe(model) as probe:
            model(input_ids=x, position_ids=pos)
    hs = out.hidden_states  # [embed, layer 0, layer 1, final-norm(layer 2)]
    for i, label in enumerate(["embed", "0", "1"]):
        assert m["effective_rank"][label] == pytest.approx(effective_rank(hs[i], center=True), rel=1e-6)
    assert 1.0 <= m["effective_rank"]["2"] <= 32
    for i in range(3):
        assert m["max_attn_logit"][str(i)] == pytest.approx(float(probe.result()[i].max()), rel=1e-6)


def test_monitor_csv_is_sorted_long_format():
    rows = monitor_rows(20, 640, {"max_attn_logit": {"10": 2.0, "2": 1.5},
                                  "update_rms_ratio": {"embed": 0.001234567891, "lm_head": math.nan}})
    rows += [MonitorRow(10, 320, "effective_rank", "0", 3.0)]
    csv = monitor_csv(rows)
    assert csv == (
        "step,tokens,metric,layer,value\n"
        "10,320,effective_rank,0,3\n"
        "20,640,max_attn_logit,2,1.5\n"
        "20,640,max_attn_logit,10,2\n"
        "20,640,update_rms_ratio,embed,0.001234568\n"
        "20,640,update_rms_ratio,lm_head,nan\n"
    )
    assert monitor_csv(list(reversed(rows))) == csv
