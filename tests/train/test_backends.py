"""repro.train.backends: `auto` per device, and impossible kernels refused with field and fix."""

from __future__ import annotations

import pytest
import torch

from repro.train import backends
from repro.train.backends import BackendError, resolve

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)


def _resolve(device=CPU, **over):
    args = dict(attention="auto", compile="auto", cross_entropy="auto", precision="fp32",
                doc_masking=True, distillation=False, device=device)
    return resolve(**(args | over))


def test_auto_on_cpu_is_sdpa_uncompiled_chunked():
    b = _resolve()
    assert (b.attention, b.compile, b.cross_entropy) == ("sdpa", False, "chunked")
    assert any("CPU" in n for n in b.notes)
    assert b.as_dict()["attention"] == "sdpa"


def test_auto_under_distillation_keeps_full_logits():
    assert _resolve(distillation=True).cross_entropy == "plain"


@pytest.mark.parametrize("field,value,fix", [
    ("attention", "flash", "attention: auto"),
    ("cross_entropy", "liger", "cross_entropy: auto"),
])
def test_cuda_only_kernels_refused_on_cpu(field, value, fix):
    with pytest.raises(BackendError) as err:
        _resolve(**{field: value})
    assert err.value.field == f"training.{field}"
    assert fix in err.value.fix


def test_fused_losses_refused_with_distillation():
    for kind in ("chunked", "liger"):
        with pytest.raises(BackendError) as err:
            _resolve(cross_entropy=kind, distillation=True)
        assert err.value.field == "training.cross_entropy"


def test_explicit_choices_kept_on_cpu():
    b = _resolve(attention="flex", cross_entropy="plain", compile=False)
    assert (b.attention, b.cross_entropy, b.compile) == ("flex", "plain", False)
    assert b.notes == ()


def test_compile_on_cpu_needs_a_compiler(monkeypatch):
    monkeypatch.setattr(backends, "cpp_compiler", lambda: None)
    with pytest.raises(BackendError) as err:
        _resolve(compile=True)
    assert err.value.field == "training.compile" and "g++" in str(err.value)
    monkeypatch.setattr(backends, "cpp_compiler", lambda: "g++")
    assert _resolve(compile=True).compile is True


def test_cuda_auto_choices_follow_what_is_installed(monkeypatch):
    """The CUDA branch decided without a GPU: what is installed is faked."""
    have: set[str] = {"triton"}
    monkeypatch.setattr(backends, "installed", lambda m: m in have)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    b = _resolve(CUDA, precision="bf16")
    assert (b.attention, b.compile, b.cross_entropy) == ("flex", True, "chunked")
    have |= {"flash_attn", "liger_kernel"}
    b = _resolve(CUDA, precision="bf16")
    assert (b.attention, b.cross_entropy) == ("flash", "liger")
    assert _resolve(CUDA, precision="bf16", doc_masking=False).attention == "sdpa"
    with pytest.raises(BackendError) as err:  # flash computes in half precision only
        _resolve(CUDA, attention="flash", precision="fp32")
    assert "precision: bf16" in err.value.fix
    have.discard("triton")
    with pytest.raises(BackendError) as err:
        _resolve(CUDA, precision="bf16")
    assert err.value.field == "training.compile"


def test_bf16_refused_on_a_gpu_without_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    with pytest.raises(BackendError) as err:
        _resolve(CUDA, precision="bf16")
    assert err.value.field == "training.precision" and "V100" in str(err.value)


def test_qk_clip_keeps_the_trunk_eager(monkeypatch):
    """QK-Clip's probe hooks the attention layers; a compiled trunk would never clip."""
    monkeypatch.setattr(backends, "installed", lambda m: m == "triton")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    b = _resolve(CUDA, precision="bf16", qk_clip=True)
    assert b.compile is False and any("QK-Clip" in n for n in b.notes)
    assert _resolve(CUDA, precision="bf16").compile is True
    with pytest.raises(BackendError) as err:
        _resolve(CUDA, precision="bf16", qk_clip=True, compile=True)
    assert err.value.field == "training.compile" and "qk_clip" in err.value.fix


def test_mtp_keeps_the_trunk_eager(monkeypatch):
    """MTP grabs the pre-norm state with a hook: compile would be recorded on but not run."""
    monkeypatch.setattr(backends, "installed", lambda m: m == "triton")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    b = _resolve(CUDA, precision="bf16", mtp=True)
    assert b.compile is False and any("MTP" in n for n in b.notes)
    with pytest.raises(BackendError) as err:
        _resolve(CUDA, precision="bf16", mtp=True, compile=True)
    assert err.value.field == "training.compile"
