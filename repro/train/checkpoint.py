"""A training stage's checkpoint: the export, which lm-eval, the next user and the hub load,
and the state, which only the next training phase reads. Two folders (two DVC outputs of the
stage), so the export can be uploaded as it is:

  export (the `checkpoint` output: what `AutoModelForCausalLM` / `AutoTokenizer` load)
    config.json, generation_config.json, model.safetensors   model.save_pretrained (fp32),
                                                             use_cache on for generation
    tokenizer.json, tokenizer_config.json, ...               copied from the tokenizer stage,
                                                             model_max_length = the phase's seq_len
    trainer_state.json                                       progress only (PROGRESS_KEYS:
                                                             tokens seen, seq_len, ...), which
                                                             the evaluate stage reads
    README.md                                                the model card (repro.model.card)
  state (the `state` output: to continue training)
    optimizer.pt                                             torch.save(optimizer.state_dict())
    trainer_state.json                                       the whole state: global_step,
                                                             tokens_seen, data_positions,
                                                             lr_scale, ...
    (and the train stage's data order, token ledger and MTP modules)

A snapshot (evaluation over training) is an export without state: it is never continued.
Every file is byte-identical across reruns: safetensors sorts tensors and stores no time;
torch.save's zip has no timestamps and its serialization id is derived from the content
(checked in tests/train/test_loop.py).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from repro.model.build import ATTN_IMPLEMENTATION
from repro.model.card import CARD_FILE
from repro.jsonio import dumps_json, read_json

OPTIMIZER_FILE = "optimizer.pt"
TRAINER_STATE_FILE = "trainer_state.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
PROGRESS_KEYS = ("experiment", "stage", "global_step", "tokens_seen", "seq_len", "seed",
                 "data_seed", "snapshot", "sequences_per_step")
"""The trainer state an export keeps: how far training got (the evaluate stage reads tokens
seen and seq_len, as HF Trainer's checkpoints carry num_input_tokens_seen); what only a
continuing phase needs (data positions, LR scale) stays in the state folder."""


@contextlib.contextmanager
def _for_generation(model) -> Iterator[None]:
    """The model's config and generation config with `use_cache` on for the duration. A
    model is built with it off (repro.model.build: training never keeps a KV cache), but a
    user of the export generating text wants it on: transformers' SmolLM3 caches keys and
    values for RoPE and NoPE layers alike (tests/train/test_checkpoint.py checks that
    generation with the cache gives the tokens it gives without)."""
    configs = [c for c in (model.config, getattr(model, "generation_config", None)) if c is not None]
    saved = [c.use_cache for c in configs]
    for c in configs:
        c.use_cache = True
    try:
        yield
    finally:
        for c, value in zip(configs, saved):
            c.use_cache = value


def _copy_tokenizer(tokenizer_dir: Path, folder: Path, seq_len: int | None) -> None:
    """The tokenizer stage's files, never over the model's own; `model_max_length` set to the
    context the model was trained at (the tokenizer stage knows no context length, and
    transformers' placeholder of 1e30 means "no limit")."""
    for f in sorted(Path(tokenizer_dir).iterdir()):
        if f.is_file() and not (folder / f.name).exists():
            shutil.copyfile(f, folder / f.name)
    config = folder / TOKENIZER_CONFIG
    if seq_len is not None and config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        data["model_max_length"] = int(seq_len)
        config.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_export(folder: Path, model, tokenizer_dir: Path, trainer_state: dict,
                card: str | None = None) -> None:
    """What lm-eval, a user and the hub load: save_pretrained weights and config (use_cache
    on), the tokenizer (model_max_length = trainer_state's seq_len), trainer_state.json's
    PROGRESS_KEYS and the model card `card` (README.md); no optimizer state."""
    folder = Path(folder)
    with _for_generation(model):
        model.save_pretrained(str(folder), safe_serialization=True)
    _copy_tokenizer(tokenizer_dir, folder, trainer_state.get("seq_len"))
    progress = {k: trainer_state[k] for k in PROGRESS_KEYS if k in trainer_state}
    (folder / TRAINER_STATE_FILE).write_text(dumps_json(progress), encoding="utf-8")
    if card is not None:
        (folder / CARD_FILE).write_text(card, encoding="utf-8")


def save_state(folder: Path, optimizer_state: dict, trainer_state: dict) -> None:
    """What the next phase continues from: optimizer_state, the optimizer's state_dict()
    (unsharded; see repro.train.distributed.optimizer_state), and the whole trainer state."""
    folder = Path(folder)
    torch.save(optimizer_state, folder / OPTIMIZER_FILE)
    (folder / TRAINER_STATE_FILE).write_text(dumps_json(trainer_state), encoding="utf-8")


def read_trainer_state(folder: Path) -> dict:
    path = Path(folder) / TRAINER_STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; is {folder} the state output of a `train` stage?")
    return read_json(path)


def load_optimizer_state(folder: Path) -> dict:
    # weights_only: the file holds tensors and plain containers only.
    return torch.load(Path(folder) / OPTIMIZER_FILE, map_location="cpu", weights_only=True)


class ExportParityError(RuntimeError):
    """The exported checkpoint does not compute what the trained model computes."""


# Tolerance of the logits comparison: FLOOR + RTOL[precision] * max|logits of the trained model|.
#
# Both models run on the same device, in the same precision, with the same attention
# implementation, TF32 off, on bitwise-equal weights (checked first). With identical kernels
# the logits are then identical in principle (the CPU train-stage tests measure 0.0). What can still
# differ is which kernel runs: a GEMM's tiling or split-K chosen by cuBLAS's heuristics, an
# attention backend, a fused norm patched into the trained model by a kernel library. A
# different summation order moves each logit by rounding only, relative to the logits' size:
# - fp32: measured 8e-7 of max|logits| for sdpa vs eager attention (8 layers, hidden 512, CPU)
#   and about 1e-5 for a whole change of hardware (issue 17: an H200 vs the CPU at 1.7B
#   differed by 5.2e-5; a fresh 1.7B model's logits reach about 5, estimated from init_std
#   0.02 x sqrt(2048) = 0.9 per logit and 5-6 sigma over 1e8 logits); 1e-4 is ten times that.
# - bf16 autocast: every matmul output is rounded to bfloat16 (8 significant bits), so one
#   differently rounded accumulation moves a logit by a bf16 ulp, up to 2**-7 of its size,
#   and such steps add up over the layers: measured 8.4e-3 (2 ulps) for sdpa vs eager at 8
#   layers; 2**-4 allows 8 ulps of the largest logit.
# A lost, renamed or reinitialised weight is caught exactly by the weight check. A config
# that computes another function moves logits by far more than the fp32 tolerance, but a
# subtle one (RMSNorm epsilon, RoPE theta or NoPE layers of a model near its init, whose
# attention is still almost uniform) by only 0.3-4% of max|logits|: measured on the tests'
# tiny model at init_std 0.02-0.2, inside bf16's tolerance. So a bf16 stage is also compared in fp32 (same weights, no autocast),
# where rounding cannot hide it. FLOOR (the previous fixed tolerance) keeps near-zero logits
# from demanding exact equality.
PARITY_FLOOR = 1e-5
PARITY_RTOL = {"fp32": 1e-4, "bf16": 2.0 ** -4}


def parity_tolerance(max_abs_logit: float, precision: str) -> float:
    """The largest logit difference the export gate accepts (see PARITY_RTOL for why)."""
    if precision not in PARITY_RTOL:
        raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(PARITY_RTOL)}")
    return PARITY_FLOOR + PARITY_RTOL[precision] * float(max_abs_logit)


@dataclass(frozen=True)
class LogitsComparison:
    precision: str
    max_abs_diff: float
    tolerance: float
    max_abs_logit: float

    @property
    def within(self) -> bool:
        return self.max_abs_diff <= self.tolerance  # False for NaN


@dataclass(frozen=True)
class ExportParity:
    """What the export gate measured: one comparison in the stage's precision, and for a
    bf16 stage a second one in fp32 (see PARITY_RTOL for why)."""

    comparisons: tuple[LogitsComparison, ...]
    attn_implementation: str
    device: str

    @property
    def main(self) -> LogitsComparison:
        """The comparison in the stage's own precision."""
        return self.comparisons[0]

    @property
    def max_abs_diff(self) -> float:
        return self.main.max_abs_diff

    @property
    def tolerance(self) -> float:
        return self.main.tolerance

    def metrics(self) -> dict[str, float]:
        """The train stage's metrics keys; the fp32 companion of a bf16 stage as `_fp32_`."""
        out = {"export_parity_max_abs_diff": self.main.max_abs_diff,
               "export_parity_tolerance": self.main.tolerance}
        for c in self.comparisons[1:]:
            out[f"export_parity_{c.precision}_max_abs_diff"] = c.max_abs_diff
            out[f"export_parity_{c.precision}_tolerance"] = c.tolerance
        return out


@contextlib.contextmanager
def _tf32_off(device: torch.device):
    """fp32 matmuls and convolutions in full precision on CUDA for the duration, restored
    afterwards. TF32 keeps 10 mantissa bits: with it on, kernel choice moves logits by 1e-3,
    which would hide an export error in the tolerance. The legacy flags are used because
    inductor in torch 2.9-2.12 still reads them and refuses a state last written through
    the new `fp32_precision` API; when the process already uses the new API (reading the
    legacy flag then raises), the new API is used instead. Nothing to do on a CPU."""
    if device.type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.9+ notes the legacy flags are deprecated
        try:
            saved, legacy = (matmul.allow_tf32, cudnn.allow_tf32), True
        except RuntimeError:
            saved, legacy = (matmul.fp32_precision, cudnn.fp32_precision), False
        if legacy:
            matmul.allow_tf32, cudnn.allow_tf32 = False, False
        else:
            matmul.fp32_precision, cudnn.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if legacy:
                matmul.allow_tf32, cudnn.allow_tf32 = saved
            else:
                matmul.fp32_precision, cudnn.fp32_precision = saved


@contextlib.contextmanager
def _attention(model, implementation: str):
    """Run `model` with `implementation` (the one its export loads with) for the duration.
    Attention functions are looked up from config._attn_implementation at every forward in
    transformers 5, so setting it switches the kernel without touching the weights."""
    config = model.config
    saved = config._attn_implementation
    config._attn_implementation = implementation
    try:
        yield
    finally:
        config._attn_implementation = saved


def _autocast(device: torch.device, precision: str):
    """The training loop's autocast (repro.train.loop.Trainer._autocast)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _weights_differ(model, reloaded, info: dict) -> list[str]:
    """Why the reloaded weights are not the trained ones, bit for bit ([] when they are).
    safetensors stores the fp32 bits, so an exact round trip is the only right answer."""
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in (info.get(kind) or ()))
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            what = {"missing_keys": "not in the checkpoint (reinitialised on loading)",
                    "unexpected_keys": "in the checkpoint but not in the model",
                    "mismatched_keys": "of the wrong shape"}[kind]
            problems.append(f"weights {what}: {shown}")
    ours, theirs = model.state_dict(), reloaded.state_dict()
    only = sorted(set(ours) ^ set(theirs))
    if only:
        problems.append(f"weights in only one of the two models: {', '.join(only[:5])}")
    changed = [k for k in sorted(set(ours) & set(theirs))
               if ours[k].dtype != theirs[k].dtype or ours[k].shape != theirs[k].shape
               or not torch.equal(ours[k], theirs[k].to(ours[k].device))]
    if changed:
        problems.append(f"weights that differ from the trained ones: {', '.join(changed[:5])}"
                        + (f" and {len(changed) - 5} more" if len(changed) > 5 else ""))
    return problems


def _compare_logits(model, reloaded, ids: torch.Tensor, device: torch.device,
                    precision: str) -> LogitsComparison:
    with _autocast(device, precision):
        ours = model(input_ids=ids, use_cache=False).logits
        theirs = reloaded(input_ids=ids, use_cache=False).logits
    ours, theirs = ours.float(), theirs.float()
    top = float(ours.abs().max())
    return LogitsComparison(precision, float((ours - theirs).abs().max()),
                            parity_tolerance(top, precision), top)


def check_export_parity(model, folder: Path, input_ids: torch.Tensor, *, precision: str = "fp32",
                        attn_implementation: str = ATTN_IMPLEMENTATION) -> ExportParity:
    """Reload `folder` with plain AutoModelForCausalLM, as lm-eval and every downstream user
    will, and check that it computes what the trained `model` computes; ExportParityError
    otherwise, so nothing evaluates a broken export.

    Both run where and how training ran: the reloaded model on `model`'s device, the forward
    under the stage's `precision` (fp32, or bf16 autocast over fp32 weights as in
    repro.train.loop), TF32 off, and both with `attn_implementation`, the one the export
    loads with (the trained model is switched to it for the comparison, since training may
    use another kernel, repro.train.backends). Checks:
    1. the weights round-trip bit for bit (names, shapes, dtypes, values): catches a dropped,
       renamed or reinitialised weight by name;
    2. the logits on `input_ids` agree within parity_tolerance(max|logits|, precision), and
       for a bf16 stage also in fp32: catches a config that changes the function (RoPE
       theta, NoPE layers, norm epsilon), which the weights cannot show. PARITY_RTOL says
       why the tolerances are what they are.
    Comparing across devices (the trained model on a GPU, the export on the CPU, as before)
    measured hardware instead: 5.2e-5 at 1.7B on an H200, over a fixed 1e-5."""
    from transformers import AutoModelForCausalLM

    device = next(model.parameters()).device
    reloaded, info = AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation=attn_implementation,
        trust_remote_code=False, output_loading_info=True)
    reloaded = reloaded.to(device).eval()
    problems = _weights_differ(model, reloaded, info)
    if problems:
        raise ExportParityError(
            f"the exported checkpoint {folder} reloaded with AutoModelForCausalLM does not hold "
            f"the trained weights: {'; '.join(problems)}; nothing was evaluated")
    was_training = model.training
    model.eval()
    ids = input_ids.to(device)
    comparisons = []
    try:
        with torch.no_grad(), _tf32_off(device), _attention(model, attn_implementation):
            for p in dict.fromkeys((precision, "fp32")):
                comparisons.append(_compare_logits(model, reloaded, ids, device, p))
    finally:
        model.train(was_training)
        del reloaded
    for c in comparisons:
        if not c.within:
            also = "" if c.precision == precision else f" (the stage trains in {precision}; in fp32 rounding cannot hide it)"
            raise ExportParityError(
                f"the exported checkpoint {folder} reloaded with AutoModelForCausalLM gives logits "
                f"differing from the trained model's by up to {c.max_abs_diff:.3g} (tolerance "
                f"{c.tolerance:.3g} = {PARITY_FLOOR:g} + {PARITY_RTOL[c.precision]:g} x max|logits| "
                f"{c.max_abs_logit:.3g}, {c.precision} on {device}){also} on a fixed batch, with the "
                "same weights: the exported config computes another function (compare its "
                "config.json with the spec); nothing was evaluated"
            )
    return ExportParity(tuple(comparisons), attn_implementation, str(device))
