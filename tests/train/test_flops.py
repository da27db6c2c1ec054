"""FLOPs per token (PaLM App. B), measured peak FLOP/s and MFU."""

from __future__ import annotations

import math
import time

import pytest
import torch

from repro.model.build import TokenIds, build_model, count_params, smollm3_config
from repro.spec.schema import ModelSpec
from repro.train.flops import flops_per_token, measure_peak_flops, mfu, param_counts

SMOLLM3_IDS = TokenIds(vocab_size=128256, bos=128000, eos=128001, pad=128004)


def test_smollm3_3b_counts_and_flops():
    spec = ModelSpec()  # SmolLM3-3B defaults
    p = param_counts(spec, vocab_size=128256)
    assert p["total"] == pytest.approx(3.08e9, rel=2e-3)  # FACTS 3.1: ≈3.08B (computed)
    assert p["total"] == 3_075_098_624
    assert p["embedding"] == 128256 * 2048 and p["lm_head"] == 0  # tied
    # tied: the head matmul reuses the embedding, so N of 6N = every parameter but the norm gains
    assert p["matmul"] == p["total"] - p["norms"]
    f = flops_per_token(spec, 4096, vocab_size=128256)
    assert f["dense"] == 6 * p["matmul"]
    assert f["attention"] == 6 * 36 * 16 * 128 * 4096  # 12·L·H·Q·T halved for causal
    assert f["total"] == f["dense"] + f["attention"]
    assert f["total"] == pytest.approx(20.26e9, rel=1e-3)
    full = flops_per_token(spec, 4096, causal=False, vocab_size=128256)
    assert full["attention"] == 2 * f["attention"] and full["dense"] == f["dense"]
    # a transformers config gives the same numbers
    hf = smollm3_config(spec, SMOLLM3_IDS)
    assert param_counts(hf) == p and flops_per_token(hf, 4096) == f
    with pytest.raises(ValueError, match="vocab_size"):
        param_counts(spec)


@pytest.mark.parametrize("tied", [True, False])
def test_counts_match_a_built_model_and_torch_flop_counter(tied):
    from torch.utils.flop_counter import FlopCounterMode

    spec = ModelSpec(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=48,
                     max_position_embeddings=64, tie_embeddings=tied)
    model = build_model(spec, TokenIds(vocab_size=40, bos=0, eos=0, pad=1), 0)
    total, non_emb = count_params(model)
    p = param_counts(model.config)
    assert (p["total"], p["non_embedding"]) == (total, non_emb)
    # eager attention runs as plain bmm, which FlopCounterMode counts (full, non-causal scores)
    model.config._attn_implementation = "eager"
    x = torch.randint(2, 40, (2, 16))
    counter = FlopCounterMode(display=False)
    with counter:
        model(input_ids=x, labels=x).loss.backward()
    assert counter.get_total_flops() / x.numel() == flops_per_token(model.config, 16, causal=False)["total"]


def test_peak_flops_is_quick_positive_and_finite():
    t0 = time.perf_counter()
    peak = measure_peak_flops(seconds=0.1, size=256)
    assert time.perf_counter() - t0 < 5
    assert math.isfinite(peak) and peak > 1e6
    before = torch.get_num_threads()
    assert measure_peak_flops(seconds=0.05, size=128, threads=1) > 0
    assert torch.get_num_threads() == before


def test_mfu():
    assert mfu(1000.0, 2e9, 4e12) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mfu(1.0, 1.0, 0.0)


def test_datasheet_peaks_by_device_name():
    from repro.train.flops import datasheet_peak as peak

    assert peak("NVIDIA H100 80GB HBM3") == peak("NVIDIA H200") == 989e12
    assert peak("NVIDIA H100 PCIe") == 756e12  # the specific name wins over its family
    assert peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak("NVIDIA L40S") == 362e12 and peak("NVIDIA L4") == 121e12
    assert peak("Some Future GPU") is None
