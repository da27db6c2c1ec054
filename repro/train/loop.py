"""The training loop: one optimizer step per global step, gradient accumulation over micro
batches, global-norm clipping, LR from the schedule, loss logged every few steps.

It is the plain torch loop (no Trainer/accelerate): on CPU every layer of indirection
shows in the step time, and nothing here needs more. The loss is token-mean cross entropy
over the whole step (micro-batch losses weighted by their share of the step's sequences),
which is what the gradient is of.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from repro.stages.configs import ScheduleSegment
from repro.train.data import MixtureSampler
from repro.train.schedule import lr_at


@dataclass(frozen=True)
class LogRow:
    """One point of the loss curve: the mean loss of the steps since the previous point."""

    step: int  # global step (1-based) of the last update in the window
    tokens: int  # tokens trained on through this step, all stages
    loss: float
    lr: float  # LR of that last update


def causal_lm_loss(model: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy of (batch, seq_len + 1) windows."""
    inputs, targets = windows[:, :-1], windows[:, 1:]  # (batch, seq_len) each
    logits = model(input_ids=inputs, use_cache=False).logits  # (batch, seq_len, vocab)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def train_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: MixtureSampler,
    schedule: ScheduleSegment,
    *,
    step_start: int,
    steps: int,
    micro_batch_size: int,
    grad_clip: float | None,
    log_every: int,
    tokens_start: int,
    seq_len: int,
    progress: bool = True,
) -> list[LogRow]:
    """Run updates step_start+1 .. step_start+steps; return the loss curve."""
    from tqdm import tqdm

    seqs = sampler.sequences_per_step
    plan = sampler.plan(steps)
    model.train()
    rows: list[LogRow] = []
    window: list[torch.Tensor] = []
    bar = tqdm(range(steps), desc="train", unit="step", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for k in bar:
        n = step_start + k + 1
        lr = lr_at(schedule, n)
        for g in optimizer.param_groups:
            g["lr"] = lr
        batch = torch.from_numpy(sampler.take(plan[k * seqs:(k + 1) * seqs]))  # (seqs, seq_len + 1)
        step_loss = torch.zeros(())
        for micro in batch.split(micro_batch_size):
            share = micro.size(0) / seqs
            loss = causal_lm_loss(model, micro)
            (loss * share).backward()
            step_loss += loss.detach() * share
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        window.append(step_loss)
        if n % log_every == 0 or k == steps - 1:
            mean = float(torch.stack(window).mean())
            rows.append(LogRow(n, tokens_start + (k + 1) * seqs * seq_len, mean, lr))
            window = []
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
    return rows


def loss_csv(rows: list[LogRow]) -> str:
    """The loss curve as CSV: `step,tokens,loss,lr`."""
    lines = ["step,tokens,loss,lr"]
    lines += [f"{r.step},{r.tokens},{r.loss:.6f},{r.lr:.6g}" for r in rows]
    return "\n".join(lines) + "\n"
