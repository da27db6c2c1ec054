"""bench/numerics_cost.py: one measurement, in process (the bench runs each in a fresh
process, as MKL reads MKL_CBWR once)."""

from __future__ import annotations

from pathlib import Path

from bench import numerics_cost

REPO = Path(__file__).resolve().parents[2]


def test_a_measurement_times_real_steps_and_reads_back_the_mkl_branch():
    out = numerics_cost.child(str(REPO / "params.yaml"), steps=1)
    assert out["tokens_per_s"] > 0 and out["seconds"] > 0
    assert out["last_loss"] > 0  # a cross-entropy over a 4096-token vocabulary
    assert out["threads"] >= 1
    # torch's x86 wheels link MKL: the branch it runs is read back, never guessed
    assert out["mkl_branch"] is None or out["mkl_branch"].split(",")[0] in (
        "AUTO", "COMPATIBLE", "AVX2", "AVX512", "AVX", "SSE4_2", "SSE2", "OFF")
    assert out["mkl_branch"] is None or out["mkl_branch"].endswith(",STRICT")  # tests pin


def test_each_variant_child_gets_only_its_own_numerics_settings():
    from repro.numerics import NUMERICS_ENV_KEYS

    base = {"PATH": "/bin", "MKL_CBWR": "AVX512", "ATEN_CPU_CAPABILITY": "default",
            "OPENBLAS_CORETYPE": "SkylakeX", "NPY_DISABLE_CPU_FEATURES": "",
            numerics_cost.NO_PINS: "1"}
    default = numerics_cost.variant_env("default pins", base)
    unpinned = numerics_cost.variant_env("no pins", base)
    portable = numerics_cost.variant_env("MKL_CBWR=COMPATIBLE", base)
    # a pin inherited from the caller would make "default" measure the caller's choice
    assert not set(default) & set(NUMERICS_ENV_KEYS) and numerics_cost.NO_PINS not in default
    assert not set(unpinned) & set(NUMERICS_ENV_KEYS) and unpinned[numerics_cost.NO_PINS] == "1"
    assert portable["MKL_CBWR"] == "COMPATIBLE" and numerics_cost.NO_PINS not in portable
    assert default["PATH"] == unpinned["PATH"] == portable["PATH"] == "/bin"
