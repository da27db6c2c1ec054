"""bench/training_gpu.py (the GPU-sized side-by-side bench, run by hand and by
scripts/gpu-check.sh): its wiring at the tiny size on CPU, the size table and the
datasheet table. No timing thresholds here."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import training, training_gpu  # noqa: E402


def test_sizes_are_the_shapes_issue_17_measured():
    from repro.model.build import TokenIds, smollm3_config
    from repro.train.flops import flops_per_token

    assert training_gpu.check_3b_matches_reference() == []
    per_token = {}
    for name in ("360m", "1.7b", "3b"):
        s = training_gpu.SIZES[name]
        assert s.seqs % s.micro_batch_size == 0
        ids = TokenIds(vocab_size=s.vocab_size, bos=0, eos=0, pad=0)
        per_token[name] = flops_per_token(smollm3_config(s.model, ids), s.seq_len)["total"]
    # issue 17's MFU column back to FLOPs/token: 23.2% at 90.1k tok/s, 37.1% at 36.8k,
    # 38.5% at 18.8k, of 989 TFLOP/s
    for name, share, rate in (("360m", 0.232, 90.1e3), ("1.7b", 0.371, 36.8e3), ("3b", 0.385, 18.8e3)):
        assert per_token[name] == pytest.approx(share * 989e12 / rate, rel=0.005)


def test_variants_cover_every_attention_path_here():
    names = [v.name for v in training_gpu.all_variants(torch.device("cpu"))]
    assert names[:4] == ["minimal", "minimal_doc_positions", "ours_same_work", "ours_no_doc_mask"]
    assert {f"ours_doc_{p}" for p in training_gpu.attention_paths(torch.device("cpu"))} <= set(names)
    assert "ours_doc_flash" not in names  # flash-attn runs on CUDA only
    assert names[-1] == "ours_default"
    with pytest.raises(SystemExit, match="unknown variant"):
        training_gpu.select(training_gpu.all_variants(torch.device("cpu")), ["nope"], None)


def check_tiny_cpu_bench(result: dict, printed: list[str], out: Path) -> None:
    """What the tiny bench on CPU (`--device cpu --size tiny --skip minimal_compiled`) must
    report: every variant ran with finite numbers, the same work as the minimal loop, the
    backends `auto` resolves to on CPU, the ratios and the printed lines. Applied to the
    bench run of the GPU check's CPU rehearsal (tests/bench/test_gpu_check.py), which runs
    this very command: one eight-variant bench run per `make test`, not two (~20 s)."""
    v = result["variants"]
    assert "minimal_compiled" not in v and "ours_default" in v
    failed = {n: r["error"] for n, r in v.items() if "error" in r}
    assert not failed
    flops = result["flops_per_token"]["total"]
    for name, r in v.items():
        assert math.isfinite(r["tokens_per_s"]) and r["tokens_per_s"] > 0
        assert r["mfu_measured_peak"] == pytest.approx(r["tokens_per_s"] * flops / result["peak_flops_measured"])
        assert r["mfu_datasheet"] is None and r["peak_memory_bytes"] is None  # CPU: neither
        if r["loop"] == "ours":
            assert r["same_windows"] is True  # the minimal loop's batches, in the same order
    # on CPU `auto` resolves as the train stage resolves it: sdpa, chunked CE, no compile
    assert v["ours_default"]["backends"]["attention"] == "sdpa"
    assert v["ours_default"]["backends"]["compile"] is False
    assert v["ours_same_work"]["backends"]["cross_entropy"] == "plain"
    # same work: same init, same windows, same first loss (to float rounding)
    assert v["ours_same_work"]["first_loss"] == pytest.approx(v["minimal"]["first_loss"], rel=1e-5)
    assert v["ours_doc_sdpa"]["first_loss"] == pytest.approx(v["minimal_doc_positions"]["first_loss"], rel=1e-5)
    r = result["ratios"]
    assert r["ours_same_work_over_minimal"] == v["ours_same_work"]["tokens_per_s"] / v["minimal"]["tokens_per_s"]
    assert r["ours_default_over_minimal_compiled"] is None  # skipped
    saved = json.loads(out.read_text())
    assert saved["machine"]["numerics"] and saved["variants"].keys() == v.keys()
    # its stdout ends with the ratio, then where it wrote (the log puts stderr after it)
    wrote = printed.index(f"wrote {out}")
    assert printed[wrote - 1].startswith("ratio ours/minimal training tokens/s (same work): ")


@pytest.mark.slow
def test_a_failing_variant_is_recorded_and_the_others_run(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setenv("REPRO_NUM_THREADS", "1")
    monkeypatch.setattr(training_gpu.MinimalLoop, "run", broken)
    result = training_gpu.bench(training_gpu.SIZES["tiny"], torch.device("cpu"), warmup=1, rounds=1,
                                steps=1, only=["minimal", "ours_same_work"], peak_seconds=0.05)
    assert result["variants"]["minimal"]["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert result["variants"]["ours_same_work"]["tokens_per_s"] > 0
    assert result["ratios"]["ours_same_work_over_minimal"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tiny_run_on_cuda_measures_memory_and_datasheet_mfu():
    result = training_gpu.bench(training_gpu.SIZES["tiny"], torch.device("cuda"), warmup=1, rounds=1,
                                steps=1, skip=["minimal_compiled"], peak_seconds=0.2)
    for r in result["variants"].values():
        assert "error" not in r and r["peak_memory_bytes"] > 0
    assert result["variants"]["ours_default"]["backends"]["compile"] is True
