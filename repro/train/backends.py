"""Which kernels a train stage runs: attention, compile, LM-head cross-entropy, precision.

The spec says `auto` by default for each, and the right choice depends on the machine the
stage runs on (a CPU for the quickstart, a GPU for real runs; issue 17 measured on an H200:
doc masking through sdpa's dense mask costs 12-19% of tokens/s, compile gives +13-26%, fp32
logits take most of the memory). `resolve` turns the spec's choices into concrete ones
before the first step, and refuses impossible ones with the field and the fix, so a GPU run
never fails an hour in. The resolved choices and why are recorded in the stage's perf.json.

Outputs depend on these choices only through floating-point rounding (every path computes
the same function; the tests check each against the plain one), as they depend on the
thread count or the CPU kind; the stage's identity holds what the spec says (`auto`).
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field

import torch

from repro.errors import ReproError


class BackendError(ReproError):
    """A kernel the spec asks for cannot run here (named field, fix)."""


@dataclass(frozen=True)
class Backends:
    """Concrete choices for one stage on one device."""

    attention: str  # "sdpa" | "flex" | "flash"
    compile: bool
    cross_entropy: str  # "plain" | "chunked" | "liger"
    notes: tuple[str, ...] = field(default=())  # why each `auto` became what it is

    def as_dict(self) -> dict:
        return {"attention": self.attention, "compile": self.compile,
                "cross_entropy": self.cross_entropy, "notes": list(self.notes)}


def installed(module: str) -> bool:
    """Whether `module` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def cpp_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU (it honours $CXX, else tries g++/clang++)."""
    import os

    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


FLASH_MAX_HEAD_DIM = 256  # flash-attn 2 kernels exist for head dims up to 256
FLEX_BLOCK = 128  # FlexAttention's default sparse block size (torch.nn.attention.flex_attention)


def _torch_at_least(major: int, minor: int) -> bool:
    parts = torch.__version__.split("+")[0].split(".")
    return (int(parts[0]), int(parts[1])) >= (major, minor)


def resolve(*, attention: str, compile: bool | str, cross_entropy: str, precision: str,
            doc_masking: bool, distillation: bool, device: torch.device,
            head_dim: int | None = None, seq_len: int | None = None,
            qk_clip: bool = False, mtp: bool = False) -> Backends:
    """The kernels this stage runs on `device`, or BackendError naming the field and fix.
    `head_dim` (hidden_size / num_heads) and `seq_len` (the stage's window length), when given,
    are checked against the attention path's limits."""
    cuda = device.type == "cuda"
    notes: list[str] = []

    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise BackendError(
            f"this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16 support",
            field="training.precision", fix="set precision: fp32, or train on an Ampere or newer GPU")

    # attention
    if attention == "auto":
        if not (cuda and doc_masking):
            att = "sdpa"
            notes.append("attention sdpa: " + ("no document masking, plain causal attention uses "
                                               "sdpa's flash kernel" if cuda else "CPU"))
        elif installed("flash_attn") and precision == "bf16" and (head_dim or 0) <= FLASH_MAX_HEAD_DIM:
            att = "flash"
            notes.append("attention flash: CUDA with doc masking and flash-attn installed")
        elif flex_available() and installed("triton"):
            att = "flex"
            notes.append("attention flex: CUDA with doc masking (flash-attn not installed)")
        else:
            att = "sdpa"
            notes.append("attention sdpa: this torch has no FlexAttention and flash-attn is not "
                         "installed; document masking uses a dense mask")
    else:
        att = attention
    if att == "flash":
        if not cuda:
            raise BackendError("flash-attn's varlen kernel runs on CUDA only and this stage runs on "
                               f"{device.type}", field="training.attention",
                               fix="set attention: auto (sdpa on CPU) or run on a GPU")
        if not installed("flash_attn"):
            raise BackendError("the flash-attn package is not installed", field="training.attention",
                               fix="`pip install flash-attn` on the GPU machine, or set attention: "
                                   "auto (FlexAttention)")
        if precision != "bf16":
            raise BackendError("flash-attn computes in bf16/fp16 only and training.precision is fp32",
                               field="training.attention",
                               fix="set precision: bf16, or attention: flex or sdpa")
        if head_dim is not None and head_dim > FLASH_MAX_HEAD_DIM:
            raise BackendError(f"flash-attn supports head dimensions up to {FLASH_MAX_HEAD_DIM} and this "
                               f"model's is {head_dim}", field="training.attention",
                               fix="set attention: flex (or sdpa), or give the model more heads")
    if att == "flex" and not flex_available():
        raise BackendError(f"this torch ({torch.__version__}) has no FlexAttention",
                           field="training.attention", fix="upgrade torch to 2.5+ or set attention: sdpa")
    if att == "flex" and cuda and not installed("triton"):
        # without triton flex_attention runs its unfused reference (full score matrix)
        raise BackendError("FlexAttention on CUDA is compiled with triton, which is not installed",
                           field="training.attention",
                           fix="install triton (it ships with CUDA torch wheels) or set attention: sdpa")
    if att == "flex" and seq_len is not None and seq_len % FLEX_BLOCK and not _torch_at_least(2, 6):
        # torch 2.5's kernels need whole 128-token blocks (transformers pads for this itself)
        raise BackendError(f"FlexAttention in torch {torch.__version__} needs a sequence length that "
                           f"is a multiple of {FLEX_BLOCK}, and seq_len is {seq_len}",
                           field="training.attention",
                           fix=f"set seq_len to a multiple of {FLEX_BLOCK}, upgrade torch to 2.6+, or set "
                               "attention: sdpa")

    # compile
    # Two features read the trunk through forward hooks, which a compiled trunk ignores once
    # traced (dynamo's skip_nnmodule_hook_guards): QK-Clip's max-logit probe on the attention
    # layers (repro.train.attention_probe; the clip would silently never fire) and MTP's grab
    # of the pre-norm state (repro.model.mtp.trunk_states; the objective runs the trunk eager
    # then). With either, the trunk stays eager and the record says so.
    hooked = "QK-Clip's max-logit probe" if qk_clip else "MTP's pre-norm hook" if mtp else None
    if compile == "auto":
        comp = cuda and hooked is None
        notes.append(f"compile off: {hooked} needs the eager trunk" if cuda and hooked else
                     "compile on: CUDA" if cuda else "compile off: CPU (pays off little there)")
    else:
        comp = bool(compile)
    if comp and hooked:
        raise BackendError(f"{hooked} hooks the trunk's layers, which a compiled trunk bypasses",
                           field="training.compile",
                           fix="set compile: auto (off with qk_clip or mtp) or false")
    if comp and not cuda and cpp_compiler() is None:
        raise BackendError("torch.compile on CPU needs a C++ compiler (g++ or clang++) and none is "
                           "on PATH", field="training.compile",
                           fix="install g++ or set compile: auto (off on CPU)")
    if comp and cuda and not installed("triton"):
        raise BackendError("torch.compile on CUDA needs triton, which is not installed",
                           field="training.compile", fix="install triton (it ships with CUDA torch "
                                                         "wheels) or set compile: false")

    # LM-head cross-entropy
    if cross_entropy == "auto":
        if distillation:
            ce = "plain"
            notes.append("cross_entropy plain: distillation needs the full logits")
        elif cuda and installed("liger_kernel"):
            ce = "liger"
            notes.append("cross_entropy liger: CUDA with liger-kernel installed")
        else:
            ce = "chunked"
            notes.append("cross_entropy chunked: " + ("liger-kernel not installed" if cuda else "CPU"))
    else:
        ce = cross_entropy
    if ce in ("chunked", "liger") and distillation:
        raise BackendError(f"cross_entropy {ce} never holds the full logits, which the distillation "
                           "loss needs", field="training.cross_entropy",
                           fix="set cross_entropy: auto or plain for a distillation run")
    if ce == "liger":
        if not cuda:
            raise BackendError(f"Liger's fused kernel runs on CUDA only and this stage runs on {device.type}",
                               field="training.cross_entropy", fix="set cross_entropy: auto (chunked in torch)")
        if not installed("liger_kernel"):
            raise BackendError("the liger-kernel package is not installed", field="training.cross_entropy",
                               fix="`pip install liger-kernel` on the GPU machine, or set "
                                   "cross_entropy: auto (chunked in torch)")
    return Backends(att, comp, ce, tuple(notes))
