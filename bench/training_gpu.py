"""Training throughput at real sizes, side by side in one run (issue 17 item 7, shared PERF.md).

    python -m bench.training --device cuda --size 360m|1.7b|3b [--json [PATH]]
    python -m bench.training --device cpu --size tiny          # a rehearsal in seconds

(`python -m bench.training` without --size/--device runs the CPU loop-overhead and Muon
bench of bench/training.py, unchanged.)

Every variant trains the same model (same seeded init), on the same synthetic text-like
tokens (an EOS every 100-300 tokens, bench.training.synthetic_tokens), the same windows in
the same order, with bf16 autocast over fp32 weights, AdamW and a gradient clip of 1.0:

  minimal                a hand-written loop: model(input_ids).logits -> fp32 cross entropy
                         -> backward; clip -> AdamW step -> zero_grad; plain causal attention
                         (sdpa's flash kernel on a GPU). The anchor.
  minimal_doc_positions  the same with per-document position ids (transformers' dense
                         block-diagonal mask): what doc masking cost before issue 17.
  minimal_compiled       the anchor under torch.compile (whole model), plain causal.
  ours_same_work         ours (repro.train: TrainModule + build_optimizer + MixtureSampler +
                         Trainer) doing the minimal loop's work: doc masking off, sdpa,
                         plain cross entropy, no compile. ours_same_work / minimal is the
                         loop's own overhead (goal >= 0.98).
  ours_no_doc_mask       ours, doc masking off, attention and cross entropy `auto`.
  ours_doc_<path>        ours, doc masking on, attention <path> for every path this machine
                         has (sdpa: dense mask; flex: BlockMask; flash: varlen, where
                         flash-attn is installed), cross entropy `auto`, no compile.
  ours_doc_plain_ce      ours, doc masking on, attention `auto`, plain cross entropy (full
                         fp32 logits): the fused loss's memory and speed, by difference.
  ours_default           the spec's defaults: doc masking on, attention, cross entropy and
                         compile `auto` (compile on with CUDA; on CPU `auto` is off). The
                         goal figures (MFU, memory) are read from this one.

`auto` choices are made by repro.train.backends.resolve, as the train stage makes them, and
recorded per variant. Variants run one after another (one model on the device at a time, so
each one's peak memory is its own: torch.cuda.max_memory_allocated, reset before its model
is built); each runs `warmup` untimed steps (the compile warmup is timed apart and reported),
then `rounds` timed blocks of `steps` steps; tokens/s is the median block. Compiled variants
are measured once (their warmup is 65-80 s on a 32-layer model on an H200). A variant that
fails (out of memory, a missing kernel) is recorded with its error; the others still run.

MFU = tokens/s x FLOPs/token (repro.train.flops.flops_per_token: 6N + causal attention, PaLM
app. B) / peak, against the datasheet's dense bf16 peak of the GPU (DATASHEET_BF16, by device
name) and against the bf16 matmul peak measured in this run (measure_peak_flops, before and
after the variants, the higher). On CPU the measured peak is the only one.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/training_gpu.py` from anywhere
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.training import Data, Setup, _ids, _schedule, draw_batches, prepare_data  # noqa: E402
from repro.model.build import build_model, smollm3_config  # noqa: E402
from repro.spec.schema import AdamWSpec, ModelSpec, MuonSpec, TrainingSettings  # noqa: E402
from repro.train.flops import datasheet_peak, flops_per_token, measure_peak_flops, mfu  # noqa: E402
from repro.train.positions import document_position_ids  # noqa: E402

RESULTS = REPO / "bench" / "results"

# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Size:
    name: str
    model: ModelSpec
    vocab_size: int
    seq_len: int
    seqs: int  # sequences per step
    micro_batch_size: int
    shape_from: str


def _smollm3_3b() -> ModelSpec:
    from repro.spec.load import load_spec

    return load_spec(REPO / "specs" / "reference" / "smollm3-3b.yaml").model


SIZES: dict[str, Size] = {
    "tiny": Size("tiny", ModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                   intermediate_size=128, max_position_embeddings=128),
                 512, 128, 8, 4, "a toy model for a CPU rehearsal"),
    # SmolLM2-360M's shape (head dim 64, GQA 3:1, tied, vocab 49152); SmolLM3 layers (NoPE
    # every 4th). Issue 17 measured at 32 x 2048 tokens per step, micro batch 16.
    "360m": Size("360m", ModelSpec(hidden_size=960, num_layers=32, num_heads=15, num_kv_heads=5,
                                   intermediate_size=2560, max_position_embeddings=2048),
                 49152, 2048, 32, 16, "SmolLM2-360M shape"),
    # SmolLM2-1.7B's width and depth (hidden 2048, 24 layers, 32 heads of 64, FFN 8192, vocab
    # 49152) with 8 KV heads, the shape issue 17 measured (its 37.1% MFU at 36.8k tokens/s
    # is 9.97 GFLOP/token: 8 KV heads; SmolLM2-1.7B itself has 32). 16 x 2048 per step.
    "1.7b": Size("1.7b", ModelSpec(hidden_size=2048, num_layers=24, num_heads=32, num_kv_heads=8,
                                   intermediate_size=8192, max_position_embeddings=2048),
                 49152, 2048, 16, 8, "SmolLM2-1.7B width/depth, 8 KV heads"),
    # specs/reference/smollm3-3b.yaml (FACTS 3.1), 8 x 4096 tokens per step.
    "3b": Size("3b", ModelSpec(hidden_size=2048, num_layers=36, num_heads=16, num_kv_heads=4,
                               intermediate_size=11008, max_position_embeddings=4096),
               128256, 4096, 8, 2, "SmolLM3-3B (specs/reference/smollm3-3b.yaml)"),
}


def check_3b_matches_reference() -> list[str]:
    """Differences between SIZES['3b'] and the reference spec's model (tests call this)."""
    ref, ours = _smollm3_3b(), SIZES["3b"].model
    keys = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size")
    return [k for k in keys if getattr(ref, k) != getattr(ours, k)]


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    name: str
    loop: str  # "minimal" | "ours"
    doc_masking: bool
    attention: str = "sdpa"  # ours: auto|sdpa|flex|flash; minimal: sdpa (transformers')
    cross_entropy: str = "plain"  # ours: auto|plain|chunked|liger; minimal: plain
    compile: bool | str = False  # ours: auto|True|False


def attention_paths(device: torch.device) -> list[str]:
    """Attention paths with doc masking this machine can run (repro.train.backends' rules)."""
    from repro.train.backends import flex_available, installed

    paths = ["sdpa"]
    if flex_available():
        paths.append("flex")
    if device.type == "cuda" and installed("flash_attn"):
        paths.append("flash")
    return paths


def all_variants(device: torch.device) -> list[Variant]:
    out = [Variant("minimal", "minimal", False),
           Variant("minimal_doc_positions", "minimal", True),
           Variant("ours_same_work", "ours", False, "sdpa", "plain", False),
           Variant("ours_no_doc_mask", "ours", False, "auto", "auto", False)]
    out += [Variant(f"ours_doc_{p}", "ours", True, p, "auto", False) for p in attention_paths(device)]
    out += [Variant("ours_doc_plain_ce", "ours", True, "auto", "plain", False),
            Variant("minimal_compiled", "minimal", False, compile=True),
            Variant("ours_default", "ours", True, "auto", "auto", "auto")]
    return out


def select(variants: list[Variant], only: list[str] | None, skip: list[str] | None) -> list[Variant]:
    names = [v.name for v in variants]
    for n in (only or []) + (skip or []):
        if n not in names:
            raise SystemExit(f"unknown variant {n!r}; this machine has {names}")
    return [v for v in variants if (not only or v.name in only) and v.name not in (skip or [])]


# --------------------------------------------------------------------------- loops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


ADAMW = AdamWSpec(lr=3e-4, weight_decay=0.1, grad_clip=1.0)


class MinimalLoop:
    """A minimal hand-written torch loop over the given batches: no library code besides
    building the model and (with doc masking) the position ids. Batches are stacked on the
    main thread and copied from pinned memory (nanoGPT's habit); the step loss is read once
    per step (one host sync, as ours)."""

    def __init__(self, model: torch.nn.Module, data: Data, batches: list, micro: int,
                 device: torch.device, precision: str, doc_positions: bool, compile: bool):
        self.model, self.data, self.batches, self.micro = model, data, batches, micro
        self.device, self.precision, self.doc_positions = device, precision, doc_positions
        self.forward = torch.compile(model) if compile else model
        a = ADAMW
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=tuple(a.betas),
                                           eps=a.eps, weight_decay=a.weight_decay)
        self.done = 0
        self.losses: list[float] = []

    def run(self, steps: int) -> float:
        model, dev = self.model, self.device
        vocab = model.config.vocab_size
        model.train()
        _sync(dev)
        start = time.perf_counter()
        for _ in range(steps):
            rows = self.batches[self.done]
            batch = torch.from_numpy(np.stack([self.data.sources[n].window(i) for n, i in rows]))
            if dev.type == "cuda":
                batch = batch.pin_memory()
            batch = batch.to(dev, non_blocking=True)
            step_loss = torch.zeros((), device=dev)
            for j in range(0, batch.size(0), self.micro):
                windows = batch[j:j + self.micro]
                inputs, targets = windows[:, :-1], windows[:, 1:]
                pos = document_position_ids(inputs, self.data.eos_id) if self.doc_positions else None
                with _autocast(dev, self.precision):
                    logits = self.forward(input_ids=inputs, position_ids=pos, use_cache=False).logits
                loss = F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1))
                share = windows.size(0) / batch.size(0)
                (loss * share).backward()
                step_loss += loss.detach() * share
            torch.nn.utils.clip_grad_norm_(model.parameters(), ADAMW.grad_clip, foreach=True)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.losses.append(step_loss.item())
            self.done += 1
        _sync(dev)
        return time.perf_counter() - start


def build_ours(model: torch.nn.Module, eos: int, doc_masking: bool, backends):
    """TrainModule as the train stage builds it for `backends` (repro.train.backends.Backends):
    the model switched to the attention path (repro.model.attention.set_attention), the
    objective told the path and the cross-entropy method, and, when compiling, the trunk
    (model.model, no LM head) under torch.compile, so the fused loss stays eager."""
    from repro.model.attention import set_attention
    from repro.stages.train import compile_trunk
    from repro.train.objective import ObjectiveSettings, TrainModule

    set_attention(model, backends.attention)
    settings = ObjectiveSettings(eos_id=eos, doc_masking=doc_masking, attention=backends.attention,
                                 cross_entropy=backends.cross_entropy)
    return TrainModule(model, settings, compiled_trunk=compile_trunk(model, backends))


class OursLoop:
    """The library's loop: TrainModule + build_optimizer + MixtureSampler + Trainer.run; one
    Trainer per block of steps (a stage's Trainer runs to its end), the state carried over."""

    def __init__(self, model: torch.nn.Module, setup: Setup, data: Data, device: torch.device,
                 precision: str, variant: Variant):
        from repro.train.backends import resolve
        from repro.train.data import MixtureSampler
        from repro.train.distributed import DistContext
        from repro.train.optim import build_optimizer
        from repro.train.stability import StabilityGuard

        self.backends = resolve(attention=variant.attention, compile=variant.compile,
                                cross_entropy=variant.cross_entropy, precision=precision,
                                doc_masking=variant.doc_masking, distillation=False, device=device,
                                head_dim=setup.model.hidden_size // setup.model.num_heads,
                                seq_len=setup.seq_len)
        self.setup, self.device, self.precision = setup, device, precision
        self.module = build_ours(model, data.eos_id, variant.doc_masking, self.backends)
        self.optimizer = build_optimizer(self.module, ADAMW)
        self.sampler = MixtureSampler(data.sources, dict(data.weights), setup.seqs, setup.seed, {})
        self.guard = StabilityGuard(setup.stability)
        self.ctx = DistContext(0, 1, device, "single")
        self.schedule = _schedule(1)  # a shape; the LR is the optimizer's
        self.done = 0
        self.losses: list[float] = []
        self.fingerprints: list[str] = []

    def run(self, steps: int) -> float:
        from repro.train.loop import LoopSettings, Trainer

        s = self.setup
        training = TrainingSettings(micro_batch_size=s.micro_batch_size, log_every_steps=1,
                                    precision=self.precision, monitor=None,
                                    checkpoint_every_steps=None)
        settings = LoopSettings(
            training=training, optimizer=ADAMW, schedule=self.schedule, step_start=self.done,
            steps=steps, seq_len=s.seq_len, tokens_start=self.done * s.tokens_per_step, progress=False)
        _sync(self.device)
        start = time.perf_counter()
        result = Trainer(self.module, self.optimizer, self.sampler, settings, self.ctx, self.guard).run()
        _sync(self.device)
        seconds = time.perf_counter() - start
        self.done += steps
        self.losses += [r.loss for r in result.rows]
        self.fingerprints += result.fingerprints
        return seconds


# --------------------------------------------------------------------------- measuring


def _memory_reset(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def measure_variant(v: Variant, base: torch.nn.Module, setup: Setup, data: Data, batches: list,
                    device: torch.device, precision: str, *, warmup: int, rounds: int,
                    steps: int) -> dict:
    """Build the variant's model from `base` (same init), warm up, time `rounds` blocks."""
    _memory_reset(device)
    if v.compile:
        torch._dynamo.reset()  # each compiled variant compiles its own model from scratch
    row: dict = {"loop": v.loop, "doc_masking": v.doc_masking, "requested": {
        "attention": v.attention, "cross_entropy": v.cross_entropy, "compile": v.compile}}
    model = copy.deepcopy(base).to(device)
    if v.loop == "minimal":
        loop = MinimalLoop(model, data, batches, setup.micro_batch_size, device, precision,
                           doc_positions=v.doc_masking, compile=bool(v.compile))
        row["backends"] = {"attention": "sdpa", "compile": bool(v.compile), "cross_entropy": "plain"}
    else:
        loop = OursLoop(model, setup, data, device, precision, v)
        row["backends"] = loop.backends.as_dict()
    t0 = time.perf_counter()
    loop.run(1)
    row["first_step_seconds"] = time.perf_counter() - t0  # compile, autotuning, allocator
    if warmup > 1:
        loop.run(warmup - 1)
    rates = [steps * setup.tokens_per_step / loop.run(steps) for _ in range(rounds)]
    row.update({"tokens_per_s": statistics.median(rates), "rounds_tokens_per_s": rates,
                "peak_memory_bytes": _peak_memory(device), "first_loss": loop.losses[0],
                "last_loss": loop.losses[-1]})
    if isinstance(loop, OursLoop):
        row["fingerprints"] = loop.fingerprints
    del loop, model
    _memory_reset(device)
    return row


def bench(size: Size, device: torch.device, *, precision: str = "bf16", warmup: int = 2,
          rounds: int = 2, steps: int = 3, only: list[str] | None = None,
          skip: list[str] | None = None, micro_batch_size: int | None = None,
          peak_seconds: float = 2.0, seed: int = 0,
          on_variant: Callable[[str, dict], None] | None = None) -> dict:
    """Every selected variant at `size` on `device`; the numbers, ratios and MFUs.
    `on_variant(name, row)` is called after each variant (progress: a run cut short by a
    time limit still leaves what it measured)."""
    variants = select(all_variants(device), only, skip)
    micro = micro_batch_size or size.micro_batch_size
    setup = Setup(model=size.model, seq_len=size.seq_len, batch_tokens=size.seqs * size.seq_len,
                  micro_batch_size=micro, adamw=ADAMW, muon=MuonSpec(), warmup_steps=1, log_every=1,
                  seed=seed, vocab_size=size.vocab_size, eos_id=0, doc_len=(100, 300))
    if setup.seqs % micro:
        raise SystemExit(f"micro batch {micro} does not divide the {setup.seqs} sequences per step")
    total_steps = warmup + rounds * steps
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-gpu-"))
    try:
        data = prepare_data(setup, ["synthetic"], tmp, val_windows=1,
                            min_train_tokens=(total_steps + 1) * setup.seqs * (setup.seq_len + 1))
        # the blocks OursLoop runs, each its own Trainer (whose sampler plan restarts)
        blocks = [1] + ([warmup - 1] if warmup > 1 else []) + [steps] * rounds
        batches, prints = draw_batches(setup, data, blocks)
        ids = _ids(data)
        t0 = time.perf_counter()
        base = build_model(size.model, ids, seed)  # on the CPU, once: every variant copies it
        build_seconds = time.perf_counter() - t0
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        matmul = 8192 if device.type == "cuda" else 512
        peak_before = measure_peak_flops(dtype, seconds=peak_seconds, size=matmul, device=device)
        results: dict[str, dict] = {}
        for v in variants:
            print(f"[{size.name}] {v.name} ...", file=sys.stderr, flush=True)
            try:
                results[v.name] = measure_variant(v, base, setup, data, batches, device, precision,
                                                  warmup=warmup, rounds=rounds, steps=steps)
            except Exception as e:  # noqa: BLE001 - recorded; the next variant still runs
                results[v.name] = {"error": f"{type(e).__name__}: {e}"[:2000],
                                   "traceback": traceback.format_exc()[-4000:]}
                _memory_reset(device)
            r = results[v.name]
            print(f"[{size.name}] {v.name}: " + (f"{r['tokens_per_s']:,.0f} tokens/s" if "error" not in r
                                                 else r["error"].splitlines()[0]), file=sys.stderr, flush=True)
            if on_variant is not None:
                on_variant(v.name, r)
        peak_after = measure_peak_flops(dtype, seconds=peak_seconds, size=matmul, device=device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    measured = max(peak_before, peak_after)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    sheet = datasheet_peak(name) if device.type == "cuda" else None
    flops = flops_per_token(smollm3_config(size.model, ids), size.seq_len)
    for r in results.values():
        if "error" in r:
            continue
        r["mfu_measured_peak"] = mfu(r["tokens_per_s"], flops["total"], measured)
        r["mfu_datasheet"] = mfu(r["tokens_per_s"], flops["total"], sheet) if sheet else None
        if "fingerprints" in r:
            r["same_windows"] = r.pop("fingerprints") == prints
    return {
        "size": size.name, "shape_from": size.shape_from, "device": str(device), "device_name": name,
        "precision": precision,
        "model": size.model.model_dump(mode="json"), "vocab_size": size.vocab_size,
        "seq_len": size.seq_len, "sequences_per_step": setup.seqs, "micro_batch_size": micro,
        "tokens_per_step": setup.tokens_per_step, "warmup_steps": warmup, "rounds": rounds,
        "steps_per_round": steps, "model_build_seconds": build_seconds,
        "flops_per_token": flops, "peak_flops_measured": measured,
        "peak_flops_measured_before": peak_before, "peak_flops_measured_after": peak_after,
        "peak_flops_datasheet": sheet, "data": data.description,
        "variants": results, "ratios": ratios(results),
    }


def _rate(results: dict, name: str) -> float | None:
    r = results.get(name)
    return r["tokens_per_s"] if r and "error" not in r else None


def ratios(results: dict) -> dict[str, float | None]:
    """Ratios of tokens/s (None where a side is missing or failed)."""
    def div(a: str, b: str) -> float | None:
        x, y = _rate(results, a), _rate(results, b)
        return x / y if x is not None and y else None

    out = {"ours_same_work_over_minimal": div("ours_same_work", "minimal"),
           "ours_default_over_minimal": div("ours_default", "minimal"),
           "ours_default_over_minimal_compiled": div("ours_default", "minimal_compiled"),
           "minimal_doc_positions_over_minimal": div("minimal_doc_positions", "minimal"),
           "ours_doc_plain_ce_over_ours_no_doc_mask": div("ours_doc_plain_ce", "ours_no_doc_mask")}
    for name in results:
        if name.startswith("ours_doc_") and name != "ours_doc_plain_ce":
            out[f"{name}_over_ours_no_doc_mask"] = div(name, "ours_no_doc_mask")  # doc masking cost
    return out


# --------------------------------------------------------------------------- report


def report(result: dict) -> None:
    sheet, measured = result["peak_flops_datasheet"], result["peak_flops_measured"]
    flops = result["flops_per_token"]["total"]
    print(f"\n{result['size']} ({result['shape_from']}) on {result['device_name']}: "
          f"{result['sequences_per_step']} x {result['seq_len']} tokens/step, micro batch "
          f"{result['micro_batch_size']}, {result['precision']}; {flops / 1e9:.2f} GFLOP/token")
    print(f"peak bf16 matmul measured {measured / 1e12:.1f} TFLOP/s"
          + (f"; datasheet {sheet / 1e12:.0f} TFLOP/s" if sheet else "; no datasheet peak for this device"))
    head = f"{'variant':24} {'tokens/s':>11} {'MFU sheet':>9} {'MFU meas':>9} {'peak GiB':>9} {'1st step s':>10}  kernels"
    print(head)
    for name, r in result["variants"].items():
        if "error" in r:
            print(f"{name:24} {'failed':>11}  {r['error'].splitlines()[0][:100]}")
            continue
        mem = f"{r['peak_memory_bytes'] / 2**30:.1f}" if r["peak_memory_bytes"] is not None else "-"
        ms = f"{100 * r['mfu_datasheet']:.1f}%" if r["mfu_datasheet"] is not None else "-"
        b = r["backends"]
        kern = f"{b['attention']}, ce {b['cross_entropy']}, compile {'on' if b['compile'] else 'off'}"
        print(f"{name:24} {r['tokens_per_s']:>11,.0f} {ms:>9} {100 * r['mfu_measured_peak']:>8.1f}% "
              f"{mem:>9} {r['first_step_seconds']:>10.1f}  {kern}")
    for k, v in result["ratios"].items():
        if v is not None and k != "ours_same_work_over_minimal":
            print(f"ratio {k}: {v:.3f}")
    same = result["ratios"]["ours_same_work_over_minimal"]
    print("ratio ours/minimal training tokens/s (same work): "
          + (f"{same:.3f} (goal >= 0.98)" if same is not None else "not measured"))


def default_json_path(size: str, device_name: str) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in device_name.lower()).strip("-")
    return RESULTS / f"training-{size}-{slug}.json"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.training",
                                description="training throughput at real sizes, variants side by side")
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant (>= 1)")
    p.add_argument("--rounds", type=int, default=2, help="timed blocks per variant (median)")
    p.add_argument("--steps", type=int, default=3, help="steps per timed block")
    p.add_argument("--micro-batch", type=int, default=None, help="override the size's micro batch")
    p.add_argument("--only", action="append", metavar="VARIANT", help="run only these (repeatable)")
    p.add_argument("--skip", action="append", metavar="VARIANT", help="leave these out (repeatable)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="training.deterministic for every variant (the spec's default: on)")
    p.add_argument("--peak-seconds", type=float, default=2.0, help="each peak FLOP/s measurement")
    p.add_argument("--json", nargs="?", const="", default=None, metavar="PATH",
                   help="write the numbers and the machine fingerprint as JSON (default path: "
                        "bench/results/training-<size>-<device>.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine")
    if args.warmup < 1 or args.rounds < 1 or args.steps < 1:
        raise SystemExit("--warmup, --rounds and --steps must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from repro.train.determinism import setup_torch

    # as the train stage sets torch up, once for every variant (threads; on CUDA the
    # determinism switches of training.deterministic, default on: cuBLAS workspace,
    # deterministic kernels); TF32 stays as torch has it (off), as in the stage
    threads = setup_torch(1, device, deterministic=args.deterministic)
    t0 = time.perf_counter()
    path = None
    if args.json is not None:
        path = Path(args.json) if args.json else default_json_path(
            args.size, torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
        path.parent.mkdir(parents=True, exist_ok=True)
    partial: dict = {"size": args.size, "device": str(device), "partial": True, "variants": {}}

    def progress(name: str, row: dict) -> None:  # the JSON so far, replaced at the end
        if path is not None:
            partial["variants"][name] = {k: v for k, v in row.items() if k not in ("fingerprints", "traceback")}
            path.write_text(json.dumps(partial, indent=2) + "\n", encoding="utf-8")

    result = bench(SIZES[args.size], device, precision=args.precision, warmup=args.warmup,
                   rounds=args.rounds, steps=args.steps, only=args.only, skip=args.skip,
                   micro_batch_size=args.micro_batch, peak_seconds=args.peak_seconds,
                   on_variant=progress)
    from repro.environment import fingerprint

    result["machine"] = fingerprint()
    result["deterministic"] = args.deterministic
    result["threads"] = threads
    result["torch"] = torch.__version__
    result["seconds"] = time.perf_counter() - t0
    report(result)
    if path is not None:
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
