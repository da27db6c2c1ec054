"""The export parity gate: what AutoModelForCausalLM loads must compute what was trained.

Each way an export can go wrong is made here on a tiny model and must be refused: a weight
dropped or renamed in model.safetensors (reinitialised on loading), a weight that no longer
matches the trained one, and a config.json that computes another function with the same
weights (RoPE theta, NoPE layers, norm epsilon). Logits perturbed within the documented
tolerance pass and just above it fail, in fp32 and under bf16 autocast (on the CPU here); a
bf16 stage is also compared in fp32, where a config change near init cannot hide in bf16's
rounding.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from repro.model.build import TokenIds, build_model
from repro.spec.schema import ModelSpec
from repro.train.checkpoint import (
    PARITY_FLOOR,
    PARITY_RTOL,
    ExportParityError,
    check_export_parity,
    parity_tolerance,
)

SPEC = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                 max_position_embeddings=64)
IDS = TokenIds(vocab_size=64, bos=0, eos=0, pad=1)
BATCH = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10]])


@pytest.fixture()
def exported(tmp_path):
    model = build_model(SPEC, IDS, 0)
    model.save_pretrained(str(tmp_path))
    return model, tmp_path


def _edit_weights(folder, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def _edit_config(folder, edit) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_parity_passes_on_a_faithful_export(exported, precision):
    model, folder = exported
    parity = check_export_parity(model, folder, BATCH, precision=precision)
    assert parity.max_abs_diff == 0.0  # same weights, kernels and device: nothing to differ
    assert parity.main.precision == precision and parity.device == "cpu"
    assert parity.tolerance == pytest.approx(PARITY_FLOOR + PARITY_RTOL[precision] * parity.main.max_abs_logit)
    assert parity.main.max_abs_logit > 0
    assert [c.precision for c in parity.comparisons] == ([precision, "fp32"] if precision == "bf16" else ["fp32"])
    expected = {"export_parity_max_abs_diff", "export_parity_tolerance"}
    if precision == "bf16":
        expected |= {"export_parity_fp32_max_abs_diff", "export_parity_fp32_tolerance"}
    assert set(parity.metrics()) == expected and parity.metrics()["export_parity_max_abs_diff"] == 0.0
    assert model.training  # the gate leaves the model's mode as it found it


def test_the_trained_model_is_compared_with_the_exports_attention(exported):
    model, folder = exported
    model.config._attn_implementation = "eager"  # training may run another kernel
    parity = check_export_parity(model, folder, BATCH)
    assert parity.attn_implementation == "sdpa" and parity.max_abs_diff == 0.0
    assert model.config._attn_implementation == "eager"  # restored


def test_a_dropped_weight_is_refused_by_name(exported):
    model, folder = exported
    _edit_weights(folder, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))
    with pytest.raises(ExportParityError, match=r"not in the checkpoint \(reinitialised on loading\): "
                                                r"model\.layers\.1\.mlp\.down_proj\.weight"):
        check_export_parity(model, folder, BATCH)


def test_a_renamed_weight_is_refused_by_name(exported):
    model, folder = exported

    def rename(t):
        t["model.layers.0.self_attn.q_proj.weights"] = t.pop("model.layers.0.self_attn.q_proj.weight")

    _edit_weights(folder, rename)
    with pytest.raises(ExportParityError, match=r"model\.layers\.0\.self_attn\.q_proj\.weight") as e:
        check_export_parity(model, folder, BATCH)
    assert "reinitialised" in str(e.value)


def test_weights_that_changed_after_export_are_refused(exported):
    model, folder = exported
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.add_(1e-7)  # below any logits tolerance
    with pytest.raises(ExportParityError, match=r"differ from the trained ones: model\.layers\.1\.mlp\.down_proj\.weight"):
        check_export_parity(model, folder, BATCH)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("edit", [
    pytest.param(lambda c: c["rope_parameters"].update(rope_theta=10.0), id="rope_theta"),
    pytest.param(lambda c: c.update(no_rope_layers=[1, 0]), id="no_rope_layers"),
    pytest.param(lambda c: c.update(rms_norm_eps=1e-3), id="rms_norm_eps"),
])
def test_a_changed_config_is_refused(exported, edit, precision):
    model, folder = exported
    _edit_config(folder, edit)
    with pytest.raises(ExportParityError, match=r"differing from the trained model's by up to .* with the "
                                                r"same weights: the exported config computes another function"):
        check_export_parity(model, folder, BATCH, precision=precision)


def _perturb(model, delta: float, only_under_autocast: bool):
    """Adds `delta` to the logit of smallest magnitude (so max|logits| stays the same); with
    only_under_autocast, only in bf16 forwards, as a bf16 kernel's rounding would."""
    with torch.no_grad():
        logits = model(input_ids=BATCH, use_cache=False).logits.float()
    index = torch.unravel_index(logits.abs().argmin(), logits.shape)
    assert float(logits[index].abs()) + abs(delta) < float(logits.abs().max())

    def hook(module, args, out):
        if only_under_autocast and not torch.is_autocast_enabled("cpu"):
            return out
        bump = torch.zeros(out.logits.shape)
        bump[index] = delta
        out.logits = out.logits.float() + bump
        return out

    return model.register_forward_hook(hook)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_logits_within_the_documented_tolerance_pass_and_just_above_fail(exported, precision):
    model, folder = exported
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"), torch.no_grad():
        top = float(model(input_ids=BATCH, use_cache=False).logits.float().abs().max())
    tol = parity_tolerance(top, precision)
    handle = _perturb(model, 0.9 * tol, only_under_autocast=precision == "bf16")
    try:
        parity = check_export_parity(model, folder, BATCH, precision=precision)
    finally:
        handle.remove()
    assert parity.tolerance == pytest.approx(tol) and 0.85 * tol < parity.max_abs_diff < tol
    handle = _perturb(model, 1.1 * tol, only_under_autocast=precision == "bf16")
    try:
        with pytest.raises(ExportParityError, match=rf"tolerance [0-9.e-]+ = 1e-05 \+ [0-9.e-]+ x max\|logits\| [0-9.e-]+, {precision} on cpu\)"):
            check_export_parity(model, folder, BATCH, precision=precision)
    finally:
        handle.remove()


def test_a_bf16_stage_is_also_compared_in_fp32(exported):
    """RoPE theta changed on a model near init moves its logits by ~0.6% (its attention is
    almost uniform): inside bf16's tolerance, far outside fp32's."""
    model, folder = exported
    _edit_config(folder, lambda c: c["rope_parameters"].update(rope_theta=10.0))
    with pytest.raises(ExportParityError, match=r"fp32 on cpu\) \(the stage trains in bf16; in fp32 "
                                                r"rounding cannot hide it\)"):
        check_export_parity(model, folder, BATCH, precision="bf16")


def test_tolerance_scales_with_the_logits_and_depends_on_precision():
    assert parity_tolerance(0.0, "fp32") == PARITY_FLOOR
    assert parity_tolerance(10.0, "fp32") == pytest.approx(PARITY_FLOOR + 1e-3)
    # a bf16 logit of 10 is stored to 2**-4 (one ulp in [8, 16)): 8 ulps of it are 0.5
    assert parity_tolerance(10.0, "bf16") == pytest.approx(PARITY_FLOOR + 10 * 2 ** -4)
    # issue 17: an H200 vs the CPU at 1.7B differed by 5.2e-5 on logits up to ~5; the same
    # device must allow at least that
    assert parity_tolerance(5.0, "fp32") > 5.2e-5
    with pytest.raises(ValueError, match="unknown precision"):
        parity_tolerance(1.0, "fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the gate reloads onto the training device)")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_parity_on_the_gpu_reloads_there_with_tf32_off(exported, precision):
    model, folder = exported
    model.cuda()
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        parity = check_export_parity(model, folder, BATCH, precision=precision)
        assert torch.backends.cuda.matmul.allow_tf32  # restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert parity.device.startswith("cuda") and parity.max_abs_diff <= parity.tolerance
