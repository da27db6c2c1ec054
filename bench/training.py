"""Training loop throughput and Muon's sample efficiency, measured side by side in one run
(shared PERF.md).

    python -m bench.training            # or: python bench/training.py [--quick] [--json PATH]
    python -m bench.training --device cuda --size 360m|1.7b|3b   # GPU sizes: bench/training_gpu.py

1. Loop overhead: our loop (repro.train: TrainModule + Trainer.run, the library's own classes)
   vs a minimal hand-written torch loop, same model config (the quickstart's, specs/qs-nope.yaml),
   same initial weights and the very same batches: the same windows in the same order (checked
   by the Trainer's own batch fingerprints) and the same per-document position ids, so both
   do the same work per micro batch: model(input_ids, position_ids).logits -> cross entropy
   -> backward; per step: clip the gradient norm to 1.0 -> AdamW step -> zero_grad.
   Ours runs with the quickstart's settings: doc masking on, grad clip 1.0, AdamW with
   decay/no-decay groups, the warmup-then-constant LR schedule, the default stability guard
   (stop on a non-finite loss; no spike check, so no in-memory snapshots), logging every
   5 steps, the feature-learning monitor OFF (the quickstart's spec turns it on every 50
   steps; it is extra work by design, not loop overhead) and no progress bar. The minimal
   loop uses one AdamW group at the peak LR (same cost per step).
   After a warmup round, rounds alternate the order of the variants (ours, minimal, and the
   minimal loop without position ids, i.e. plain causal attention: the cost of document
   masking, as information). Reported: the median tokens/s of each and the ratio
   ours/minimal (goal >= 0.95), and MFU = tokens/s x FLOPs/token / peak, where FLOPs/token
   is repro.train.flops.flops_per_token (6N with the LM head matmul + causal attention,
   PaLM app. B) and peak is fp32 matmul FLOP/s measured in this run (measure_peak_flops,
   before and after the rounds, the higher of the two).
2. Muon vs AdamW: the quickstart model trained with AdamW (qs-nope: lr 3e-3) for N steps
   (default 150) and with Muon (qs-muon: Muon lr 0.02 on the hidden matrices, AdamW lr 3e-3
   on the rest), both with warmup 10 then a constant LR (no decay), the same init, the same
   data order and validation loss on the same held-out windows every `--eval-every` steps.
   Reported: the first evaluated step at which Muon's validation loss is at or below
   AdamW's final one, divided by N (lower is better for Muon; PERF.md anchor: Muon needs
   ~1.35-1.7x fewer steps, i.e. a ratio ~0.59-0.74), or "not reached" within N steps. Muon
   stops once it reaches the target. Resolution: `--eval-every` steps.

About 8 minutes with one thread on this 2-core machine (REPRO_NUM_THREADS=1); `--quick`
shrinks every count (with `--tiny`, a toy model: seconds), `--part` runs one half.

Data: by default the quickstart's token shards and stable-stage mixture (the
`train-qs-nope-stable-*` stage in dvc.yaml: web 0.6, pdf 0.05, code 0.35) when they exist
under data/tokens/, else synthetic text-like tokens (a Zipfian Markov chain, an EOS every
100-300 tokens). `--tokens DIR` (repeatable; equal weights) names token folders, `--tokens
synthetic` forces synthetic data. The last `--val-windows` windows (split over the sources
by mixture weight) are held out of training for part 2.

Threads: set once at start as the train stage does (repro.train.determinism.setup_torch:
REPRO_NUM_THREADS, else all cores this process may use; deterministic algorithms on), the
same for every variant. On a machine shared with other CPU-heavy work use
REPRO_NUM_THREADS=1: OpenMP threads that wait on a descheduled peer slow every op down.

The overhead ratio is printed last. Absolute numbers depend on the machine; compare ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/training.py` from anywhere
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from repro.model.build import TokenIds, build_model, smollm3_config  # noqa: E402
from repro.spec.schema import AdamWSpec, ModelSpec, MuonSpec, StabilitySpec, TrainingSettings  # noqa: E402
from repro.train.schedule import ScheduleSegment  # noqa: E402
from repro.train.data import MixtureSampler, TokenShards  # noqa: E402
from repro.train.data_order import fingerprint  # noqa: E402
from repro.train.distributed import DistContext  # noqa: E402
from repro.train.flops import flops_per_token, measure_peak_flops, mfu  # noqa: E402
from repro.train.loop import LoopSettings, Trainer  # noqa: E402
from repro.train.objective import ObjectiveSettings, TrainModule  # noqa: E402
from repro.train.optim import build_optimizer  # noqa: E402
from repro.train.positions import document_position_ids  # noqa: E402
from repro.train.stability import StabilityGuard, TrainingStopped  # noqa: E402

CPU = DistContext(0, 1, torch.device("cpu"), "single")
QUICKSTART_STAGE = "train-qs-nope-stable-"  # dvc.yaml stage whose token inputs we reuse
NOT_REACHED = "not reached"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setup:
    """The model and batch both parts train (default: the quickstart's, from the specs)."""

    model: ModelSpec
    seq_len: int
    batch_tokens: int
    micro_batch_size: int
    adamw: AdamWSpec
    muon: MuonSpec
    warmup_steps: int = 10
    log_every: int = 5
    seed: int = 0
    stability: StabilitySpec = field(default_factory=StabilitySpec)
    mixture: dict[str, float] = field(default_factory=dict)  # the quickstart stage's weights
    vocab_size: int = 4096  # synthetic data only; real shards bring their own
    eos_id: int = 0
    doc_len: tuple[int, int] = (100, 300)  # synthetic documents' length range

    @property
    def seqs(self) -> int:
        return self.batch_tokens // self.seq_len

    @property
    def tokens_per_step(self) -> int:
        return self.seqs * self.seq_len


def quickstart_setup() -> Setup:
    """qs-nope's model, batch, AdamW, warmup and stability; qs-muon's Muon."""
    from repro.spec.load import load_spec

    nope = load_spec(REPO / "specs" / "qs-nope.yaml")
    muon = load_spec(REPO / "specs" / "qs-muon.yaml")
    t = nope.training
    if not isinstance(t.optimizer, AdamWSpec) or not isinstance(muon.training.optimizer, MuonSpec):
        raise ValueError("specs/qs-nope.yaml should train with AdamW and specs/qs-muon.yaml with Muon")
    return Setup(model=nope.model, seq_len=t.seq_len, batch_tokens=t.batch_tokens,
                 micro_batch_size=t.micro_batch_size, adamw=t.optimizer, muon=muon.training.optimizer,
                 warmup_steps=t.schedule.warmup_steps, log_every=t.log_every_steps,
                 seed=nope.experiment.seed, stability=t.stability,
                 mixture=dict(t.stages[0].mixture), vocab_size=nope.tokenizer.vocab_size)


def tiny_setup() -> Setup:
    """A model and batch small enough for a test (seconds); quickstart optimizers."""
    qs = quickstart_setup()
    model = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                      max_position_embeddings=64)
    return replace(qs, model=model, seq_len=32, batch_tokens=256, micro_batch_size=4, warmup_steps=2,
                   vocab_size=256, doc_len=(10, 40))


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    sources: dict[str, TokenShards]  # training windows (validation windows held out)
    weights: dict[str, float]
    val: torch.Tensor  # (n, seq_len + 1) held-out windows
    vocab_size: int
    eos_id: int
    description: str


def quickstart_tokens(repo: Path = REPO) -> dict[str, Path]:
    """{source: token folder} of the quickstart's stable stage, from dvc.yaml ({} if absent)."""
    dvc = repo / "dvc.yaml"
    if not dvc.exists():
        return {}
    text = dvc.read_text(encoding="utf-8")
    start = text.find(f"  {QUICKSTART_STAGE}")
    if start < 0:
        return {}
    cmd = text[start:text.find("deps:", start)]
    found = {name: repo / path for name, path in re.findall(r"--in tokens:(\w+)=(\S+)", cmd)}
    if not found or not all((p / "meta.json").exists() for p in found.values()):
        return {}
    return found


def synthetic_tokens(n: int, vocab: int, eos: int, doc_len: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Text-like tokens: documents of doc_len[0]..doc_len[1] tokens, each ended by EOS, drawn
    from a Markov chain where every token has 16 successors with Zipfian probabilities over
    a Zipfian vocabulary (learnable structure, ~2.4 nats per token at best)."""
    rng = np.random.default_rng(seed)
    ids = np.array([i for i in range(vocab) if i != eos])
    unigram = 1.0 / (np.arange(len(ids)) + 2.0)
    unigram /= unigram.sum()
    succ = rng.choice(ids, size=(vocab, 16), p=unigram)
    succ_p = 1.0 / np.arange(1, 17)
    succ_p /= succ_p.sum()
    out = np.empty(n, dtype=np.int64)
    i = 0
    while i < n:
        length = int(rng.integers(doc_len[0], doc_len[1] + 1))
        picks = rng.choice(16, size=length, p=succ_p)
        tok = int(rng.choice(ids, p=unigram))
        for k in range(length):
            if i >= n:
                break
            out[i] = tok
            i += 1
            tok = int(succ[tok, picks[k]])
        if i < n:
            out[i] = eos
            i += 1
    return out


def _write_shards(folder: Path, files: dict[str, np.ndarray], vocab: int, eos: int) -> None:
    """The TokenShards format: meta.json + raw little-endian token files."""
    folder.mkdir(parents=True, exist_ok=True)
    dtype = "uint16" if vocab <= 2**16 else "uint32"
    for name, tokens in files.items():
        tokens.astype(np.dtype(dtype).newbyteorder("<")).tofile(folder / name)
    meta = {"files": list(files), "dtype": dtype, "vocab_size": vocab, "eos_id": eos,
            "num_tokens": int(sum(len(t) for t in files.values()))}
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _split_counts(weights: dict[str, float], total: int) -> dict[str, int]:
    """Held-out windows per source, about proportional to the weights, at least 1 each."""
    s = sum(weights.values())
    return {n: max(1, round(total * w / s)) for n, w in sorted(weights.items())}


def prepare_data(setup: Setup, tokens: list[str] | None, tmp: Path, val_windows: int,
                 min_train_tokens: int) -> Data:
    """Token folders (None: the quickstart's if present, else synthetic), each copied into
    `tmp` with its last windows held out for validation."""
    L = setup.seq_len + 1
    folders: dict[str, Path] = {}
    if tokens is None:
        folders = quickstart_tokens()
        weights = {n: setup.mixture.get(n, 1.0) for n in folders}
        origin = f"quickstart tokens ({QUICKSTART_STAGE}* in dvc.yaml)"
    elif tokens != ["synthetic"]:
        folders = {Path(t).name: Path(t) for t in tokens}
        weights = {n: 1.0 for n in folders}
        origin = "token folders " + ", ".join(str(p) for p in folders.values())
    if not folders:  # synthetic
        n = min_train_tokens + (val_windows + 1) * L
        arr = synthetic_tokens(n, setup.vocab_size, setup.eos_id, setup.doc_len, setup.seed)
        folders = {"synthetic": tmp / "synthetic-src"}
        _write_shards(folders["synthetic"], {"tokens.ds": arr}, setup.vocab_size, setup.eos_id)
        weights = {"synthetic": 1.0}
        origin = (f"synthetic Markov-chain tokens (vocab {setup.vocab_size}, an EOS every "
                  f"{setup.doc_len[0]}-{setup.doc_len[1]} tokens)")
    held = _split_counts(weights, val_windows)
    sources, val_rows, metas, docs, n_tokens = {}, [], [], 0, 0
    for name, folder in sorted(folders.items()):
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        dtype = np.dtype(meta["dtype"]).newbyteorder("<")
        files = {f: np.fromfile(folder / f, dtype=dtype).astype(np.int64) for f in meta["files"]}
        last = meta["files"][-1]
        cut = len(files[last]) - held[name] * L
        if cut < L:
            raise ValueError(f"{folder}: too few tokens to hold out {held[name]} windows of {L}")
        val_rows.append(files[last][cut:].reshape(held[name], L))
        files[last] = files[last][:cut]
        out = tmp / f"train-{name}"
        _write_shards(out, files, int(meta["vocab_size"]), int(meta["eos_id"]))
        sources[name] = TokenShards(out, setup.seq_len)
        metas.append(meta)
        all_tokens = np.concatenate(list(files.values()))
        docs += int((all_tokens == int(meta["eos_id"])).sum())
        n_tokens += len(all_tokens)
    eos = {int(m["eos_id"]) for m in metas}
    if len(eos) != 1:
        raise ValueError(f"the token folders disagree on the EOS id: {sorted(eos)}")
    vocab = max(int(m["vocab_size"]) for m in metas)
    mix = ", ".join(f"{n} {w:g} ({sources[n].num_windows} windows)" for n, w in sorted(weights.items()))
    description = (f"{origin}: {mix}; {n_tokens:,} training tokens, ~{n_tokens / max(docs, 1):.0f} "
                   f"tokens per document; {sum(held.values())} held-out windows")
    return Data(sources, weights, torch.from_numpy(np.concatenate(val_rows)), vocab, eos.pop(), description)


# --------------------------------------------------------------------------- the loops


def _ids(data: Data) -> TokenIds:
    return TokenIds(vocab_size=data.vocab_size, bos=data.eos_id, eos=data.eos_id, pad=data.eos_id)


def _schedule(warmup: int) -> ScheduleSegment:
    """Warmup, then constant (no decay); a shape on the optimizer's LR."""
    return ScheduleSegment(warmup_steps=warmup)  # no decay


class Ours:
    """The library's loop: TrainModule + build_optimizer + MixtureSampler + Trainer.run; one
    Trainer per round (a stage's Trainer runs to its end), the state carried over."""

    def __init__(self, setup: Setup, data: Data, optimizer_spec: AdamWSpec | MuonSpec | None = None):
        self.setup, self.data = setup, data
        spec = optimizer_spec or setup.adamw
        self.spec = spec
        model = build_model(setup.model, _ids(data), setup.seed)
        self.module = TrainModule(model, ObjectiveSettings(eos_id=data.eos_id, doc_masking=True))
        self.optimizer = build_optimizer(self.module, spec)
        self.sampler = MixtureSampler(data.sources, dict(data.weights), setup.seqs, setup.seed, {})
        self.guard = StabilityGuard(setup.stability)
        self.schedule = _schedule(setup.warmup_steps)
        self.done = 0
        self.fingerprints: list[str] = []
        self.step_losses: list[float] = []  # only for rounds run with log_every=1

    def run(self, steps: int, log_every: int | None = None) -> float:
        """Seconds for `steps` updates (building the round's Trainer included)."""
        s = self.setup
        start = time.perf_counter()
        training = TrainingSettings(micro_batch_size=s.micro_batch_size,
                                    log_every_steps=log_every or s.log_every, monitor=None,
                                    checkpoint_every_steps=None)
        settings = LoopSettings(
            training=training, optimizer=self.spec, schedule=self.schedule, step_start=self.done,
            steps=steps, seq_len=s.seq_len, tokens_start=self.done * s.tokens_per_step, progress=False)
        result = Trainer(self.module, self.optimizer, self.sampler, settings, CPU, self.guard).run()
        seconds = time.perf_counter() - start
        self.done += steps
        self.fingerprints += result.fingerprints
        if log_every == 1:
            self.step_losses += [r.loss for r in result.rows]
        return seconds


def draw_batches(setup: Setup, data: Data, rounds: list[int]) -> tuple[list[list[tuple[str, int]]], list[str]]:
    """The (source, window) rows of every step, as a twin MixtureSampler with Ours's seed
    draws them over the same rounds (each round's Trainer restarts the round robin), and
    their fingerprints. Done before timing: the minimal loop then only reads windows."""
    twin = MixtureSampler(data.sources, dict(data.weights), setup.seqs, setup.seed, {})
    steps, prints = [], []
    for n in rounds:
        plan = twin.plan(n)
        for k in range(n):
            batch, meta = twin.take_with_meta(plan[k * setup.seqs:(k + 1) * setup.seqs])
            steps.append(meta)
            prints.append(fingerprint(batch))
    return steps, prints


class Minimal:
    """A minimal hand-written torch loop over the same batches: no library code besides
    building the same model (and, with doc masking, the same position ids)."""

    def __init__(self, setup: Setup, data: Data, batches: list[list[tuple[str, int]]], doc_masking: bool = True):
        self.setup, self.data, self.batches, self.doc_masking = setup, data, batches, doc_masking
        self.model = build_model(setup.model, _ids(data), setup.seed)
        a = setup.adamw
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=a.lr, betas=tuple(a.betas), eps=a.eps,
                                           weight_decay=a.weight_decay)
        self.done = 0
        self.step_losses: list[float] = []

    def run(self, steps: int) -> float:
        s, model, opt, sources = self.setup, self.model, self.optimizer, self.data.sources
        vocab = model.config.vocab_size
        model.train()
        start = time.perf_counter()
        for _ in range(steps):
            rows = self.batches[self.done]
            batch = torch.from_numpy(np.stack([sources[name].window(i) for name, i in rows]))
            step_loss = 0.0
            for j in range(0, batch.size(0), s.micro_batch_size):
                windows = batch[j:j + s.micro_batch_size]
                inputs, targets = windows[:, :-1], windows[:, 1:]
                pos = document_position_ids(inputs, self.data.eos_id) if self.doc_masking else None
                logits = model(input_ids=inputs, position_ids=pos).logits
                loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
                share = windows.size(0) / batch.size(0)
                (loss * share).backward()
                step_loss += loss.item() * share
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.adamw.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            self.step_losses.append(step_loss)
            self.done += 1
        return time.perf_counter() - start


# --------------------------------------------------------------------------- part 1


def throughput(setup: Setup, data: Data, *, rounds: int = 3, steps: int = 15, warmup: int = 3,
               peak_seconds: float = 1.0) -> dict:
    """Part 1: ours vs minimal (with and without doc masking), interleaved rounds."""
    plan = [warmup] + [steps] * rounds
    batches, prints = draw_batches(setup, data, plan)
    variants = {"ours": Ours(setup, data), "minimal": Minimal(setup, data, batches),
                "minimal_no_doc_mask": Minimal(setup, data, batches, doc_masking=False)}
    peak_before = measure_peak_flops(seconds=peak_seconds)
    variants["ours"].run(warmup, log_every=1)  # per-step losses: the same-work check below
    variants["minimal"].run(warmup)
    variants["minimal_no_doc_mask"].run(warmup)
    runs: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        if r % 2:
            order = order[::-1]
        for name in order:
            seconds = variants[name].run(steps)
            runs[name].append(steps * setup.tokens_per_step / seconds)
    peak_after = measure_peak_flops(seconds=peak_seconds)
    peak = max(peak_before, peak_after)
    flops = flops_per_token(smollm3_config(setup.model, _ids(data)), setup.seq_len)
    out: dict = {"variants": {}}
    for name, rates in runs.items():
        median = statistics.median(rates)
        out["variants"][name] = {"tokens_per_s": median, "runs_tokens_per_s": rates,
                                 "mfu": mfu(median, flops["total"], peak)}
    v = out["variants"]
    first_ours, first_min = variants["ours"].step_losses[0], variants["minimal"].step_losses[0]
    out.update({
        "ratio_ours_over_minimal": v["ours"]["tokens_per_s"] / v["minimal"]["tokens_per_s"],
        "doc_masking_cost": 1.0 - v["minimal"]["tokens_per_s"] / v["minimal_no_doc_mask"]["tokens_per_s"],
        "peak_flops": peak, "peak_flops_before": peak_before, "peak_flops_after": peak_after,
        "flops_per_token": flops,
        "tokens_per_step": setup.tokens_per_step, "warmup_steps": warmup, "rounds": rounds,
        "steps_per_round": steps,
        "same_windows": variants["ours"].fingerprints == prints,
        "first_step_loss": {"ours": first_ours, "minimal": first_min},
        "threads": torch.get_num_threads(),
    })
    return out


# --------------------------------------------------------------------------- part 2


@torch.no_grad()
def validation_loss(module: TrainModule, val: torch.Tensor, eos: int, micro: int) -> float:
    """Token-mean next-token CE over the held-out windows (doc masking, as in training)."""
    model = module.model
    model.eval()
    total, count = 0.0, 0
    for j in range(0, val.size(0), micro):
        w = val[j:j + micro]
        inputs, targets = w[:, :-1], w[:, 1:]
        logits = model(input_ids=inputs, position_ids=document_position_ids(inputs, eos)).logits
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                 reduction="sum").item()
        count += targets.numel()
    model.train()
    return total / count


def train_curve(setup: Setup, data: Data, spec: AdamWSpec | MuonSpec, steps: int, eval_every: int,
                target: float | None = None) -> tuple[list[tuple[int, float]], float]:
    """[(step, validation loss)] every `eval_every` steps through `steps` (stopping early
    once at or below `target`), and the training seconds."""
    run = Ours(setup, data, spec)
    curve = [(0, validation_loss(run.module, data.val, data.eos_id, setup.micro_batch_size))]
    seconds = 0.0
    while run.done < steps:
        try:
            seconds += run.run(min(eval_every, steps - run.done))
        except TrainingStopped as err:  # diverged: the stability guard's `stop`
            print(f"{type(spec).__name__}: {err}", file=sys.stderr)
            curve.append((run.done, math.inf))
            break
        loss = validation_loss(run.module, data.val, data.eos_id, setup.micro_batch_size)
        curve.append((run.done, loss))
        if not math.isfinite(loss) or (target is not None and loss <= target):
            break
    return curve, seconds


def muon_vs_adamw(setup: Setup, data: Data, *, steps: int = 150, eval_every: int = 5) -> dict:
    """Part 2: steps Muon needs to reach AdamW's final validation loss, / AdamW's steps."""
    adamw_curve, adamw_s = train_curve(setup, data, setup.adamw, steps, eval_every)
    target = adamw_curve[-1][1]
    muon_curve, muon_s = train_curve(setup, data, setup.muon, steps, eval_every, target=target)
    reached = next((step for step, loss in muon_curve if step > 0 and loss <= target), None)
    return {
        "steps": steps, "eval_every": eval_every, "val_windows": int(data.val.size(0)),
        "adamw_final_val_loss": target,
        "muon_steps_to_adamw_final": reached if reached is not None else NOT_REACHED,
        "steps_ratio": reached / steps if reached is not None else None,
        "muon_val_loss_at_reach": dict(muon_curve).get(reached) if reached is not None else None,
        "adamw_val_loss_at_same_step": dict(adamw_curve).get(reached) if reached is not None else None,
        "adamw_curve": adamw_curve, "muon_curve": muon_curve,
        "adamw_seconds": adamw_s, "muon_seconds": muon_s,
        "adamw": {"lr": setup.adamw.lr, "weight_decay": setup.adamw.weight_decay},
        "muon": {"lr": setup.muon.lr, "adamw_lr": setup.muon.adamw.lr,
                 "weight_decay": setup.muon.weight_decay, "adamw_weight_decay": setup.muon.adamw.weight_decay},
        "warmup_steps": setup.warmup_steps,
    }


# --------------------------------------------------------------------------- CLI


def _row(measure: str, value: str, note: str = "") -> None:
    print(f"{measure:52} {value:>12}  {note}")


def report(result: dict) -> None:
    tp, mv = result.get("throughput"), result.get("muon_vs_adamw")
    print()
    _row("measure", "value", "note")
    if tp is not None:
        v = tp["variants"]
        flops = tp["flops_per_token"]
        _row("FLOPs per token (fwd+bwd)", f"{flops['total'] / 1e6:.2f} M",
             f"6N {flops['dense'] / 1e6:.2f} M + causal attention {flops['attention'] / 1e6:.2f} M")
        _row("peak fp32 matmul, GFLOP/s (this run)", f"{tp['peak_flops'] / 1e9:.1f}",
             f"before {tp['peak_flops_before'] / 1e9:.1f}, after {tp['peak_flops_after'] / 1e9:.1f}; "
             f"{tp['threads']} threads")
        notes = {"ours": "TrainModule + Trainer.run, monitor off",
                 "minimal": "hand-written loop, same batches",
                 "minimal_no_doc_mask": "hand-written loop, no position ids"}
        for name in ("ours", "minimal", "minimal_no_doc_mask"):
            runs = ", ".join(f"{r:.0f}" for r in v[name]["runs_tokens_per_s"])
            _row(f"{name} tokens/s (median)", f"{v[name]['tokens_per_s']:,.0f}",
                 f"MFU {100 * v[name]['mfu']:.1f}%; rounds: {runs}; {notes[name]}")
        _row("doc masking cost (minimal loop)", f"{100 * tp['doc_masking_cost']:.1f}%",
             "of tokens/s, position ids vs plain causal")
        fl = tp["first_step_loss"]
        _row("same work: first-step loss ours / minimal", f"{fl['ours']:.4f}",
             f"{fl['minimal']:.4f}; same windows every step: {tp['same_windows']}")
    if mv is not None:
        _row(f"AdamW final val loss after {mv['steps']} steps", f"{mv['adamw_final_val_loss']:.4f}",
             f"lr {mv['adamw']['lr']:g}; {mv['adamw_seconds']:.0f} s training")
        reached = mv["muon_steps_to_adamw_final"]
        if reached == NOT_REACHED:
            _row("Muon steps to reach it", NOT_REACHED,
                 f"val loss {mv['muon_curve'][-1][1]:.4f} at step {mv['muon_curve'][-1][0]}")
        else:
            _row("Muon steps to reach it", f"{reached}",
                 f"val loss {mv['muon_val_loss_at_reach']:.4f} (AdamW at that step "
                 f"{mv['adamw_val_loss_at_same_step']:.4f}); checked every {mv['eval_every']} steps")
    print(f"total bench time {result['seconds']:.0f} s")
    if mv is not None:
        ratio = mv["steps_ratio"]
        text = f"{ratio:.3f} ({1 / ratio:.2f}x fewer steps)" if ratio is not None else NOT_REACHED
        print(f"ratio Muon/AdamW steps to AdamW's final val loss: {text} "
              f"(lower is better; anchor ~0.59-0.74)")
    if tp is not None:
        print(f"ratio ours/minimal training tokens/s: {tp['ratio_ours_over_minimal']:.3f} (goal >= 0.95)")


def main(argv: list[str] | None = None) -> dict:
    # --size or --device: the side-by-side bench at real sizes (bench/training_gpu.py)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--size")
    pre.add_argument("--device")
    known, _ = pre.parse_known_args(argv)
    if known.size is not None or known.device is not None:
        from bench import training_gpu

        return training_gpu.main(argv)
    parser = argparse.ArgumentParser(description="training loop throughput (ours vs minimal) and Muon vs AdamW")
    parser.add_argument("--tokens", action="append", metavar="DIR",
                        help="token folder (repeatable; equal weights), or 'synthetic'; "
                             "default: the quickstart's tokens if present, else synthetic")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per loop (interleaved)")
    parser.add_argument("--steps", type=int, default=15, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warmup steps per loop")
    parser.add_argument("--muon-steps", type=int, default=150, help="N: AdamW's steps (Muon's budget)")
    parser.add_argument("--eval-every", type=int, default=5, help="steps between validation losses")
    parser.add_argument("--val-windows", type=int, default=32, help="held-out validation windows")
    parser.add_argument("--peak-seconds", type=float, default=1.0, help="each peak FLOP/s measurement")
    parser.add_argument("--part", choices=("all", "throughput", "muon"), default="all")
    parser.add_argument("--quick", action="store_true",
                        help="a short run (2 rounds x 2 steps, N=20): checks the wiring, not the numbers")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and batch instead of the quickstart's")
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 2, 2, 1
        args.muon_steps, args.eval_every, args.val_windows = 20, 5, min(args.val_windows, 8)
        args.peak_seconds = min(args.peak_seconds, 0.2)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from repro.train.determinism import setup_torch

    old = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    threads = setup_torch()  # once, for every variant: what the train stage does
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    t0 = time.perf_counter()
    try:
        setup = tiny_setup() if args.tiny else quickstart_setup()
        train_steps = max(args.muon_steps, args.warmup + args.rounds * args.steps)
        data = prepare_data(setup, args.tokens, tmp, args.val_windows,
                            min_train_tokens=(train_steps + 1) * setup.seqs * (setup.seq_len + 1))
        m = setup.model
        print(f"model: hidden {m.hidden_size}, {m.num_layers} layers, {m.num_heads} heads "
              f"({m.num_kv_heads} kv), ffn {m.intermediate_size}, vocab {data.vocab_size}; batch "
              f"{setup.seqs} x {setup.seq_len} tokens, micro batch {setup.micro_batch_size}")
        print(f"data: {data.description}")
        print(f"threads {threads} (cpu_count={os.cpu_count()}); torch {torch.__version__}; "
              f"Python {sys.version.split()[0]}; data ready in {time.perf_counter() - t0:.1f} s")
        result: dict = {"setup": {"model": m.model_dump(mode="json"), "seq_len": setup.seq_len,
                                  "batch_tokens": setup.batch_tokens,
                                  "micro_batch_size": setup.micro_batch_size,
                                  "vocab_size": data.vocab_size, "data": data.description,
                                  "threads": threads}}
        if args.part in ("all", "throughput"):
            result["throughput"] = throughput(setup, data, rounds=args.rounds, steps=args.steps,
                                              warmup=args.warmup, peak_seconds=args.peak_seconds)
        if args.part in ("all", "muon"):
            result["muon_vs_adamw"] = muon_vs_adamw(setup, data, steps=args.muon_steps,
                                                    eval_every=args.eval_every)
        result["seconds"] = time.perf_counter() - t0
        report(result)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(old[0])
        torch.use_deterministic_algorithms(old[1], warn_only=old[2])


if __name__ == "__main__":
    main()
