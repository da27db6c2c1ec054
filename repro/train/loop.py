"""The training loop of one curriculum phase (one train stage).

One optimizer step per global step: the mixture sampler draws the step's windows (every
rank draws the same ones; each rank trains on rows rank, rank + world, ...), micro batches
accumulate gradients, the stability guard looks at the step's mean loss and gradient norm
before the update, then the optimizer steps and QK-Clip (if on) rescales attention heads.

It is the plain torch loop (no Trainer/accelerate): on CPU every layer of indirection
shows in the step time (bench/training.py measures it against a minimal hand-written loop).
The loss is the token mean over the whole step (micro-batch losses weighted by their share
of the step's sequences), which is what the gradient is of.

Exactness. Given the same thread count, a stage's outputs are bitwise reproducible: the
only inputs are the seeded init, the deterministic sampler and deterministic kernels. The
loop's whole state is packed every `checkpoint_every_steps` updates (repro.train.resume); a
killed stage resumes from it and ends with bitwise-identical weights, and the stability
guard's rollbacks restore the same state from memory.

Feeding the device (issue 17). Batches come from repro.train.prefetch.BatchFeed: step k+1's
windows are drawn, fingerprinted and pinned on a background thread while step k runs, and
copied to the device once per step with non_blocking=True. Losses stay on the device: the
micro batches' losses and loss parts are summed there, and the step makes ONE host sync, a
single `.tolist()` of (loss, parts..., grad norm). That sync cannot go further: the
stability guard decides before the update whether to apply it (skip/rollback on a spike or
a non-finite value), so it needs this step's loss and gradient norm every step, and the
logged window keeps the parts. On CPU the arithmetic is the one of the synchronous loop
(float64 sums of the same values in the same order), so curves, fingerprints and resumed
weights are bitwise what they were.

Static shapes for torch.compile: every micro batch is (micro_batch_size, seq_len + 1) (the
spec refuses a micro batch size that does not divide a rank's sequences) and seq_len is fixed
per phase, so the compiled trunk sees one shape and never recompiles after its first step;
that first update's time is reported apart as `warmup_seconds`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from repro.spec.schema import OptimizerSpec, TrainingSettings
from repro.train import live, resume
from repro.train.data import MixtureSampler
from repro.train.data_order import check_against, fingerprint
from repro.train.distributed import (DistContext, all_max_, all_mean, load_module_state,
                                     load_optimizer_state, module_state, optimizer_state)
from repro.train.objective import TrainModule
from repro.train.optim import reference_lr, set_lr_multiplier
from repro.train.preemption import Preempted, StopRequest
from repro.train.prefetch import BatchFeed
from repro.train.schedule import ScheduleSegment, multiplier_at
from repro.train.stability import StabilityGuard


@dataclass(frozen=True)
class LogRow:
    """One point of the loss curve: means over the updates since the previous point."""

    step: int  # global step (1-based) of the last update in the window
    tokens: int  # tokens trained on through this step, all phases
    loss: float  # the optimised loss (CE, or the distillation mix, plus auxiliary terms)
    lr: float  # LR of the reference group at that last update
    grad_norm: float  # global gradient norm before clipping
    parts: tuple[tuple[str, float], ...] = ()  # ce, z_loss, mtp, kd ... window means


LOSS_COLUMNS = ("step", "tokens", "loss", "lr", "grad_norm")


def loss_csv(rows: list[LogRow]) -> str:
    """The loss curve as CSV: step,tokens,loss,lr,grad_norm, then one column per loss part."""
    part_names = sorted({k for r in rows for k, _ in r.parts})
    lines = [",".join(LOSS_COLUMNS + tuple(part_names))]
    for r in rows:
        parts = dict(r.parts)
        cells = [str(r.step), str(r.tokens), f"{r.loss:.6f}", f"{r.lr:.6g}", f"{r.grad_norm:.6g}"]
        cells += [f"{parts[k]:.6f}" if k in parts else "" for k in part_names]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


@dataclass
class LoopSettings:
    """What the loop runs with: the stage config's own models and fields, under their config
    names (nothing renamed or copied out of them), and where the run's state lives."""

    training: TrainingSettings
    """The experiment's training settings as the stage config holds them (the train stage
    passes its TrainConfig, which extends TrainingSettings). The loop reads
    micro_batch_size, log_every_steps, precision, monitor (its every_steps),
    checkpoint_every_steps and whether qk_clip is on (the stage applies its tau)."""
    optimizer: OptimizerSpec
    """The optimizer's settings: grad_clip, and the reference LR (repro.train.optim.
    reference_lr) that the loss curve's `lr` column reports and the schedule's factor is
    rounded at. The LRs themselves are already in the torch optimizer's groups."""
    schedule: ScheduleSegment  # a shape: multiplies each group's own LR (optimizer's base_lr)
    step_start: int
    steps: int
    seq_len: int
    tokens_start: int  # tokens trained on by earlier phases
    resume_dir: Path | None = None
    config_fingerprint: str = ""
    previous_order: dict[int, str] = field(default_factory=dict)  # rerun check
    previous_order_source: str = ""
    progress: bool = True
    prefetch: bool = True  # draw the next step's batch on a background thread (False: inline)


@dataclass
class LoopResult:
    rows: list[LogRow]
    fingerprints: list[str]
    events: list[dict]
    qk_clip_events: int
    monitor_rows: list
    seconds: float  # wall time of the updates done by this process (not of a resumed part)
    steps_timed: int
    resumed_from: int  # updates already done when this process started (0: fresh)
    lr_scale: float
    # the first update of this process (compile, autotuning, allocator warmup) timed apart;
    # steady tokens/s = (steps_timed - 1) updates over (seconds - warmup_seconds)
    warmup_seconds: float = 0.0


class Trainer:
    """Runs the updates of one phase; state in, state out, outputs left to the caller."""

    def __init__(self, module: TrainModule, optimizer: torch.optim.Optimizer, sampler: MixtureSampler,
                 settings: LoopSettings, ctx: DistContext, guard: StabilityGuard,
                 train_forward: torch.nn.Module | None = None,
                 monitor: Callable[[int, int, dict], list] | None = None,
                 monitor_snapshot: Callable[[], dict] | None = None,
                 max_logit_probe: Callable[[], contextlib.AbstractContextManager] | None = None,
                 apply_qk_clip: Callable[[dict], list] | None = None,
                 after_update: Callable[[int, int], None] | None = None,
                 live_log: live.LiveLog | None = None) -> None:
        self.module = module
        self.forward = train_forward or module  # DDP wrapper or the module itself
        self.optimizer = optimizer
        self.sampler = sampler
        self.s = settings
        self.t = settings.training
        self.reference_lr = reference_lr(settings.optimizer)
        self.ctx = ctx
        self.guard = guard
        self.monitor = monitor
        self.monitor_snapshot = monitor_snapshot
        self.max_logit_probe = max_logit_probe
        self.apply_qk_clip = apply_qk_clip
        # called with (global step, tokens seen) after every completed update, on every
        # process (the train stage saves evaluation snapshots from it)
        self.after_update = after_update
        # the live record (repro.train.live): given (global step, {metric: value}) as the run
        # logs each loss-curve point, monitor record and stability event, and each event's
        # alert; the train stage gives one to the main process only
        self.live_log = live_log
        self.seqs = sampler.sequences_per_step
        self.plan = sampler.plan(settings.steps)
        # loop state (everything below is packed into the resumable state)
        self.done = 0
        # the sampler's positions after the last completed update's batch: while the feed
        # draws ahead, the sampler's own are one step further (repro.train.prefetch)
        self.positions: dict[str, int] = dict(sampler.positions)
        self.lr_scale = 1.0
        self.rows: list[LogRow] = []
        self.fingerprints: list[str] = []
        self.window: list[tuple[float, float, dict[str, float]]] = []
        self.monitor_rows: list = []
        self.qk_events = 0

    # ---------------------------------------------------------------- resumable state
    def pack_state(self) -> bytes:
        return resume.pack({
            "config_fingerprint": self.s.config_fingerprint,
            "done": self.done,
            "module": module_state(self.module, self.ctx),  # the model and MTP modules
            "optimizer": optimizer_state(self.module, self.optimizer, self.ctx),
            "positions": dict(self.positions),
            "lr_scale": self.lr_scale,
            "guard": self.guard.state_dict(),
            "rows": [(r.step, r.tokens, r.loss, r.lr, r.grad_norm, list(r.parts)) for r in self.rows],
            "fingerprints": list(self.fingerprints),
            "window": [(a, b, sorted(c.items())) for a, b, c in self.window],
            "monitor_rows": [tuple(m) for m in self.monitor_rows],
            "qk_events": self.qk_events,
            "rng": torch.get_rng_state(),
        })

    def load_state(self, state: dict, *, keep_events: bool = False, keep_lr_scale: bool = False) -> None:
        load_module_state(self.module, state["module"], self.ctx)
        load_optimizer_state(self.module, self.optimizer, state["optimizer"], self.ctx)
        self.sampler.positions = dict(state["positions"])
        self.positions = dict(state["positions"])
        self.done = int(state["done"])
        if not keep_lr_scale:
            self.lr_scale = float(state["lr_scale"])
        events = list(self.guard.events)
        self.guard.load_state_dict(state["guard"])
        if keep_events:  # a rollback undoes the updates, not the record of why
            self.guard.events = events
        self.rows = [LogRow(a, b, c, d, e, tuple(tuple(p) for p in f)) for a, b, c, d, e, f in state["rows"]]
        self.fingerprints = list(state["fingerprints"])
        self.window = [(a, b, dict(c)) for a, b, c in state["window"]]
        self.monitor_rows = [tuple(m) for m in state["monitor_rows"]]
        self.qk_events = int(state["qk_events"])
        torch.set_rng_state(state["rng"])

    def _verify_replay(self, start_positions: dict[str, int]) -> None:
        """The saved fingerprints must be what the sampler draws again from the stage's
        start: the resumed run continues the very same data order."""
        replay = MixtureSampler(self.sampler.sources, self.sampler.weights, self.seqs, self.sampler.seed,
                                dict(start_positions))
        for k in range(self.done):
            fp = fingerprint(replay.take(self.plan[k * self.seqs:(k + 1) * self.seqs]))
            check_against({k: self.fingerprints[k]}, k, fp, f"the resumable state in {self.s.resume_dir}")
        if replay.positions != self.positions:
            raise resume.ResumeError(
                f"resumable state in {self.s.resume_dir} has data positions {self.positions}, "
                f"but replaying its {self.done} steps gives {replay.positions}; delete the folder "
                "to restart the stage"
            )

    # ------------------------------------------------------------------------ steps
    def _lr_multiplier(self, n: int) -> float:
        """The factor on every group's base LR at update n: the schedule's shape times the
        stability guard's LR scale. Evaluated at the reference LR so its float rounding is
        the one checkpoints were trained with (repro.train.schedule)."""
        return multiplier_at(self.s.schedule, n, self.reference_lr) * self.lr_scale

    def _autocast(self):
        if self.t.precision == "bf16":
            return torch.autocast(device_type=self.ctx.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _backward(self, local: torch.Tensor, meta: list, tokens_seen: int) -> tuple[torch.Tensor, dict]:
        """Forward/backward over the micro batches of this rank's rows (already on the
        device); the step's loss and loss parts as float64 tensors on the device (no sync)."""
        micro = self.t.micro_batch_size
        chunks = list(range(0, local.size(0), micro))
        device = local.device
        step_loss = torch.zeros((), dtype=torch.float64, device=device)
        parts_sum: dict[str, torch.Tensor] = {}
        for j, begin in enumerate(chunks):
            rows = local[begin:begin + micro]  # equal sizes: one static shape for torch.compile
            share = rows.size(0) / local.size(0)
            sync = j == len(chunks) - 1
            no_sync = getattr(self.forward, "no_sync", None)
            ctx = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
            with ctx:  # DDP: gradients are averaged over ranks on the last micro batch only
                with self._autocast():
                    loss, parts = self.forward(rows, meta[begin:begin + micro], tokens_seen)
                (loss * share).backward()
            step_loss += loss.detach().double() * share
            for k, v in parts.items():
                zero = torch.zeros((), dtype=torch.float64, device=device)
                parts_sum[k] = parts_sum.get(k, zero) + v.detach().double() * share
        return step_loss, parts_sum

    def _grad_norm(self) -> torch.Tensor:
        """The global gradient norm before clipping, a device tensor (clipping needs no sync)."""
        params = [p for p in self.module.parameters() if p.grad is not None]
        clip = self.s.optimizer.grad_clip if self.s.optimizer.grad_clip is not None else math.inf
        # clip_grad_norm_ returns the norm before clipping; with inf it only measures
        norm = torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        # FSDP2: a DTensor over the shards; its full value (a collective) is the global norm
        full = getattr(norm, "full_tensor", None)
        return full() if callable(full) else norm

    def _step_values(self, local_loss: torch.Tensor, parts: dict[str, torch.Tensor]
                     ) -> tuple[float, dict[str, float], float]:
        """(step loss, parts, gradient norm) as floats: the step's one host sync.

        The stability guard must judge this step's loss and gradient norm before the update
        is applied, so they cannot wait for a log step; the parts ride along in the same
        transfer (one all-reduce over ranks, one device-to-host copy)."""
        names = sorted(parts)
        reduced = all_mean(self.ctx, torch.stack([local_loss] + [parts[k] for k in names]))
        norm = self._grad_norm().detach().to(device=reduced.device, dtype=torch.float64).reshape(1)
        values = torch.cat([reduced, norm]).tolist()
        return values[0], dict(zip(names, values[1:-1])), values[-1]

    def _checkpoint(self) -> bytes:
        blob = self.pack_state()
        if self.ctx.is_main and self.s.resume_dir is not None:
            resume.write_state(self.s.resume_dir, blob)
        return blob

    def run(self) -> LoopResult:
        from tqdm import tqdm

        s = self.s
        start_positions = dict(self.sampler.positions)
        resumed_from = 0
        if s.resume_dir is not None:
            state = resume.read_state(s.resume_dir, s.config_fingerprint)
            if state is not None:
                self.load_state(state)
                self._verify_replay(start_positions)
                resumed_from = self.done
                if self.ctx.is_main:
                    print(f"resuming at update {self.done} of {s.steps} from {s.resume_dir}", file=sys.stderr)
                if self.live_log is not None:  # the live folder was cleaned with the outputs
                    for step, metrics in live.history(self.rows, self.monitor_rows, self.guard.events):
                        self.live_log.record(step, metrics)
        rollback_target = self.pack_state() if self.guard.spec.on_nonfinite == "rollback" or \
            self.guard.spec.on_spike == "rollback" else None
        self.module.train()
        bar = tqdm(total=s.steps, initial=self.done, desc="train", unit="step", file=sys.stderr,
                   disable=not (s.progress and self.ctx.is_main), dynamic_ncols=True)
        cuda = self.ctx.device.type == "cuda"
        feed = BatchFeed(self.sampler, self.plan, s.steps, rank=self.ctx.rank, world=self.ctx.world,
                         pin_memory=cuda, ahead=s.prefetch)
        # a resumable run stops on SIGTERM/SIGUSR1 after saving its state (repro.train.preemption)
        stop = StopRequest() if s.resume_dir is not None else None
        with feed, stop if stop is not None else contextlib.nullcontext():
            seconds, warmup, timed = self._updates(feed, bar, rollback_target, stop)
        bar.close()
        return LoopResult(self.rows, self.fingerprints, [e.as_dict() for e in self.guard.events], self.qk_events,
                          self.monitor_rows, seconds, timed, resumed_from, self.lr_scale, warmup)

    def _updates(self, feed: BatchFeed, bar, rollback_target: bytes | None,
                 stop: StopRequest | None = None) -> tuple[float, float, int]:
        """The updates left to do; (seconds, seconds of the first one, updates done).
        Preempted once `stop` was signalled, after the update in progress and its state."""
        s, t = self.s, self.t
        cuda = self.ctx.device.type == "cuda"
        t0, timed, warmup = time.perf_counter(), 0, 0.0
        # the live tokens/s: updates and wall time since the previous loss-curve point (the
        # step's one host sync bounds how far a GPU can run ahead of this clock)
        window_t0, window_done = t0, self.done
        while self.done < s.steps:
            k = self.done
            n = s.step_start + k + 1
            mult = self._lr_multiplier(n)
            set_lr_multiplier(self.optimizer, mult)
            batch = feed.get(k)  # drawn while step k-1 ran; step k+1 is being drawn now
            fp = batch.fingerprint
            check_against(s.previous_order, n, fp, s.previous_order_source)
            local = batch.local.to(self.ctx.device, non_blocking=True)  # pinned on CUDA: async
            local_meta = batch.meta
            tokens_seen = s.tokens_start + k * self.seqs * s.seq_len
            monitored = self.monitor is not None and t.monitor is not None and (
                n % t.monitor.every_steps == 0 or k == s.steps - 1)
            before = self.monitor_snapshot() if monitored and self.monitor_snapshot else None
            probe = self.max_logit_probe() if (t.qk_clip is not None and self.max_logit_probe) else None
            with probe if probe is not None else contextlib.nullcontext():
                local_loss, parts = self._backward(local, local_meta, tokens_seen)
            step_loss, parts, grad_norm = self._step_values(local_loss, parts)  # the one sync
            action = self.guard.check(n, step_loss, grad_norm)
            record: dict[str, float] = {}
            if action != "ok":  # the guard recorded an event: alert now, not at the stage's end
                self._alert(bar, self.guard.events[-1])
                record[live.EVENTS] = len(self.guard.events)
            if action == "rollback":
                self.optimizer.zero_grad(set_to_none=True)
                self.lr_scale *= self.guard.spec.rollback_lr_factor
                scale = self.lr_scale
                feed.discard()  # step k+1's draw moved the sampler on; the state resets it
                self.load_state(resume.unpack(rollback_target), keep_events=True, keep_lr_scale=True)
                self.lr_scale = scale
                if self.ctx.is_main:
                    print(f"step {n}: rolled back to update {self.done}, LR scale now {scale:g}", file=sys.stderr)
                if self.live_log is not None:
                    self.live_log.record(n, record)
                window_t0, window_done = time.perf_counter(), self.done
                bar.n = self.done
                bar.refresh()
                continue
            if action == "ok":
                self.optimizer.step()
                if probe is not None and self.apply_qk_clip is not None:
                    logits = {layer: all_max_(self.ctx, v) for layer, v in probe.result().items()}
                    self.qk_events += len(self.apply_qk_clip(logits))
            self.optimizer.zero_grad(set_to_none=True)
            self.fingerprints.append(fp)
            self.window.append((step_loss, grad_norm, parts))
            self.positions = batch.positions
            self.done += 1
            timed += 1
            if timed == 1:
                if cuda:  # the first update's kernels (compiled on first use) have all run
                    torch.cuda.synchronize(self.ctx.device)
                warmup = time.perf_counter() - t0
            if monitored:
                rows = self.monitor(n, s.tokens_start + self.done * self.seqs * s.seq_len, before)
                self.monitor_rows += rows
                record.update(live.monitor_metrics(rows))
            if n % t.log_every_steps == 0 or self.done == s.steps:
                self._log(n, mult * self.reference_lr)
                bar.set_postfix(loss=f"{self.rows[-1].loss:.4f}", lr=f"{self.rows[-1].lr:.2e}")
                now = time.perf_counter()
                record.update(live.curve_metrics(self.rows[-1]))
                record[live.EVENTS] = len(self.guard.events)
                if now > window_t0:
                    record[live.TOKENS_PER_S] = round(
                        (self.done - window_done) * self.seqs * s.seq_len / (now - window_t0), 1)
                window_t0, window_done = now, self.done
            if record and self.live_log is not None:
                self.live_log.record(n, record)
            bar.update(1)
            if self.after_update is not None:
                self.after_update(n, s.tokens_start + self.done * self.seqs * s.seq_len)
            every = t.checkpoint_every_steps
            saved = bool(every and self.done % every == 0 and self.done < s.steps)
            if saved:
                blob = self._checkpoint()
                if rollback_target is not None:
                    rollback_target = blob
            signum = stop.agreed(self.ctx) if stop is not None else None
            if signum is not None and self.done < s.steps:  # after the last: just finish
                if not saved:
                    self._checkpoint()
                bar.close()
                raise Preempted(signum, self.done, s.steps, s.resume_dir)
        if cuda:
            torch.cuda.synchronize(self.ctx.device)  # the last optimizer step has run
        return time.perf_counter() - t0, warmup, timed

    def _alert(self, bar, event) -> None:
        """A stability event as a line on stderr, above the progress bar (main process)."""
        if self.ctx.is_main:
            bar.write(live.alert_line(event), file=sys.stderr)
        if self.live_log is not None:
            self.live_log.alert(live.alert_line(event))

    def _log(self, n: int, lr: float) -> None:
        losses = [w[0] for w in self.window]
        norms = [w[1] for w in self.window]
        names = sorted({k for w in self.window for k in w[2]})
        parts = tuple((k, float(np.mean([w[2][k] for w in self.window if k in w[2]]))) for k in names)
        tokens = self.s.tokens_start + self.done * self.seqs * self.s.seq_len
        self.rows.append(LogRow(n, tokens, float(np.mean(losses)), lr, float(np.mean(norms)), parts))
        self.window = []
