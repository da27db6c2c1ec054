"""Run the training computation once on fixed inputs and hash every intermediate result.

What runs is the train stage's own code (repro.stages.train, repro.train.*) on a train
stage's settings as compiled into params.yaml, so the probe follows the pipeline: its model,
attention path (document masking), loss, gradient clipping and optimizers. Inputs are drawn
from a seeded generator, never from data files, so the probe needs no built outputs.

Each hash is sha256 over a result's dtype, shape and bytes (16 hex digits kept). Forward
outputs are recorded by forward hooks in execution order, gradients by tensor hooks in the
order autograd computes them: the first differing entry is the first operation whose result
differs (later ones differ because their inputs did).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from repro.model.attention import set_attention
from repro.model.build import TokenIds, build_model
from repro.model.mtp import build_mtp
from repro.spec.schema import DistillationSpec, MTPSpec
from repro.stages.configs import TrainConfig
from repro.stages.tokenizer import train_bpe
from repro.stages.train import backends_for
from repro.train.distill import teacher_attention
from repro.train.objective import ObjectiveSettings, TrainModule
from repro.train.optim import build_optimizer

PROBE_SEED = 1234
"""Seed of the probe's input windows and tokenizer corpus (the model's init seed is the
stage's own)."""

EOS_EVERY = 61
"""A document boundary every EOS_EVERY tokens, so document masking has several documents
per window (a prime: boundaries fall at a different offset in every row)."""

PROBE_TOKEN_IDS_SPECIALS = 3
"""Token ids 0..2 are eos, bos, pad in the probe's vocabulary (as a two-special-token
repro tokenizer gives: eos = bos = 0, pad = 1; a third id spare)."""


INPUT_RECORDED = ("o_proj", "down_proj")
"""Modules whose input is recorded too: it is the result of a computation that is not a
module (o_proj: the attention kernel over the rotated queries and keys, document mask
included; down_proj: SwiGLU's act(gate) * up), so a difference there is named, not lumped
into the next projection."""


@dataclass(frozen=True)
class OpHash:
    name: str
    """Where the result comes from: `<variant>/<kind>:<module or parameter>`."""
    digest: str
    """sha256 of dtype, shape and bytes, first 16 hex digits."""
    shape: tuple[int, ...]


def tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().to("cpu").contiguous()
    raw = t.view(torch.int16) if t.dtype in (torch.bfloat16, torch.float16) else t
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(raw.numpy().tobytes())
    return h.hexdigest()[:16]


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The tensors of a module's output (a tensor, a tuple, or a transformers ModelOutput)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


class Recorder:
    """The ordered list of hashes, one per recorded result."""

    def __init__(self) -> None:
        self.ops: list[OpHash] = []

    def add(self, name: str, value: Any) -> None:
        for i, t in enumerate(_tensors(value)):
            self.ops.append(OpHash(name if i == 0 else f"{name}[{i}]", tensor_digest(t),
                                   tuple(t.shape)))

    def hook_forward(self, module: torch.nn.Module, prefix: str) -> list[Any]:
        handles = []
        for name, sub in module.named_modules():
            if not name or isinstance(sub, (torch.nn.ModuleList, torch.nn.ModuleDict)):
                continue
            handles.append(sub.register_forward_hook(
                lambda _m, _args, out, n=f"{prefix}/forward:{name}": self.add(n, out)))
            if name.rsplit(".", 1)[-1] in INPUT_RECORDED:
                handles.append(sub.register_forward_pre_hook(
                    lambda _m, args, n=f"{prefix}/input:{name}": self.add(n, args[0])))
        return handles

    def hook_grads(self, module: torch.nn.Module, prefix: str) -> list[Any]:
        def record(name: str) -> Callable[[torch.Tensor], None]:
            return lambda g: self.add(name, g)
        return [p.register_hook(record(f"{prefix}/grad:{name}"))
                for name, p in module.named_parameters() if p.requires_grad]


def probe_windows(cfg: TrainConfig, vocab_size: int) -> torch.Tensor:
    """One micro batch of windows (micro_batch_size, seq_len + 1) of seeded random tokens,
    with an end-of-document token every EOS_EVERY positions."""
    gen = torch.Generator().manual_seed(PROBE_SEED)
    rows = cfg.micro_batch_size
    windows = torch.randint(PROBE_TOKEN_IDS_SPECIALS, vocab_size, (rows, cfg.seq_len + 1),
                            generator=gen)
    flat = windows.view(-1)
    flat[EOS_EVERY - 1::EOS_EVERY] = 0
    return windows


def probe_corpus(docs: int = 200) -> list[str]:
    """Seeded pseudo-text for the tokenizer: words from a fixed alphabet, Zipf-like repeats."""
    rng = random.Random(PROBE_SEED)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(300)]
    weights = [1 / (i + 1) for i in range(len(words))]
    return [" ".join(rng.choices(words, weights, k=rng.randint(20, 120))) + "." for _ in range(docs)]


def _tokenizer_ops(rec: Recorder) -> None:
    corpus = probe_corpus()
    tok = train_bpe(iter(corpus), vocab_size=600, min_frequency=2, special_tokens=["<eos>", "<pad>"])
    rec.ops.append(OpHash("tokenizer/bpe:vocab_and_merges",
                          hashlib.sha256(tok.to_str().encode()).hexdigest()[:16], ()))
    rec.add("tokenizer/encode", torch.tensor([i for e in tok.encode_batch(corpus[:20]) for i in e.ids]))


def build_training(cfg: TrainConfig, ids: TokenIds, teacher: torch.nn.Module | None = None
                   ) -> tuple[TrainModule, Any]:
    """(TrainModule, optimizer) on the CPU, built as the train stage builds them: the model
    from the stage's seed, MTP modules if asked, the attention path and loss its backends
    resolve to (bench/numerics_cost.py times steps of the same)."""
    device = torch.device("cpu")
    backends = backends_for(cfg, device)
    model = build_model(cfg.model, ids, cfg.seed)
    mtp = build_mtp(cfg.mtp, model.config, cfg.seed) if cfg.mtp is not None else None
    set_attention(model, backends.attention)
    if mtp is not None:
        set_attention(mtp, backends.attention)
    if teacher is not None:
        teacher_attention(teacher, backends.attention)
    objective = ObjectiveSettings(ids.eos, cfg.doc_masking, cfg.z_loss, cfg.mtp, cfg.distillation,
                                  cross_entropy=backends.cross_entropy, attention=backends.attention)
    module = TrainModule(model, objective, mtp=mtp, teacher=teacher)
    return module, build_optimizer(module, cfg.optimizer)


def _train_step(rec: Recorder, variant: str, cfg: TrainConfig, ids: TokenIds,
                windows: torch.Tensor, *, watch: str | None = None, forward: bool = True,
                grads: bool = True, teacher: torch.nn.Module | None = None) -> None:
    """One forward, backward, clip and optimizer step as the train stage and loop run them
    (fp32 on the CPU: the loop's autocast is for bf16 only), recorded under `variant`:
    forward outputs (if `forward`), gradients (if `grads`) and updated parameters of the whole
    module, or of its submodule `watch` only; the loss parts, the total and the gradient norm
    always."""
    module, optimizer = build_training(cfg, ids, teacher)
    watched = module if watch is None else getattr(module, watch)
    if forward:  # the initial weights: torch's CPU normal_ is vectorized (ISA-dependent)
        for name, p in watched.named_parameters():
            rec.add(f"{variant}/init:{name}", p)
    handles = rec.hook_forward(watched, variant) if forward else []
    handles += rec.hook_grads(watched, variant) if grads else []
    loss, parts = module(windows, [("probe", 0)] * windows.size(0), 0)
    for key in sorted(parts):
        rec.add(f"{variant}/loss:{key}", parts[key])
    rec.add(f"{variant}/loss:total", loss)
    loss.backward()
    for h in handles:
        h.remove()
    params = [p for p in module.parameters() if p.requires_grad]
    clip = cfg.optimizer.grad_clip if cfg.optimizer.grad_clip is not None else float("inf")
    rec.add(f"{variant}/grad_norm", torch.nn.utils.clip_grad_norm_(params, clip, foreach=True))
    optimizer.step()
    for name, p in watched.named_parameters():
        rec.add(f"{variant}/{cfg.optimizer.kind}_step:{name}", p)


def run_probe(adamw: TrainConfig, muon: TrainConfig | None, vocab_size: int) -> list[OpHash]:
    """Every hash, in order: tokenizer; the AdamW stage's forward, loss, gradients and step;
    the Muon stage's step; the MTP head (the AdamW stage with DeepSeek-V3's MTP default);
    the distillation loss (the AdamW stage with a teacher of the same shape, full logits)."""
    rec = Recorder()
    _tokenizer_ops(rec)
    ids = TokenIds(vocab_size=vocab_size, bos=0, eos=0, pad=1)
    windows = probe_windows(adamw, vocab_size)
    rec.add("input/windows", windows)
    _train_step(rec, "adamw", adamw, ids, windows)
    if muon is not None:  # the same model and gradients: only the step is new
        _train_step(rec, "muon", muon, ids, windows, forward=False, grads=False)
    mtp = adamw.model_copy(update={"mtp": MTPSpec()})
    _train_step(rec, "mtp", mtp, ids, windows, watch="mtp")
    distill = adamw.model_copy(update={
        "distillation": DistillationSpec(teacher="experiment:probe-teacher", logits="full"),
        "cross_entropy": "plain"})
    teacher = build_model(adamw.model, ids, adamw.seed + 1).eval().requires_grad_(False)
    for name, p in teacher.named_parameters():
        rec.add(f"distill/teacher/init:{name}", p)
    handles = rec.hook_forward(teacher, "distill/teacher")
    _train_step(rec, "distill", distill, ids, windows, forward=False, teacher=teacher)
    for h in handles:
        h.remove()
    return rec.ops
