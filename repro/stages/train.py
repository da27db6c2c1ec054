"""Stage `train`: one curriculum stage of SmolLM3 pretraining, fp32 on CPU.

The first stage builds the model from the spec with torch seeded by cfg.seed and a fresh
AdamW; a later stage gets the previous stage's checkpoint as `init` and continues its model,
optimizer state, global step and per-source data positions. Library code is in
repro.model (config/build/check) and repro.train (data, schedule, optimizer, loop, checkpoint).

Reruns are byte-identical: no randomness besides seeded init and the seeded sampler,
torch deterministic algorithms on, and a fixed thread count (REPRO_NUM_THREADS, else the
CPUs this process may use). Float reductions can depend on the thread count, so compare
reruns made with the same count.
"""

from __future__ import annotations

import os
import sys

import torch

from repro.model.build import TokenIds, build_model, count_params, load_model
from repro.stages.base import StageIO, atomic_dir, atomic_write_text, write_json
from repro.stages.configs import TrainConfig
from repro.train.checkpoint import load_optimizer_state, read_trainer_state, save_checkpoint
from repro.train.data import MixtureSampler, TokenShards
from repro.train.loop import loss_csv, train_steps
from repro.train.optim import build_adamw, load_state


def setup_torch() -> int:
    threads = int(os.environ.get("REPRO_NUM_THREADS") or len(os.sched_getaffinity(0)))
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return threads


def token_ids(tokenizer_dir) -> TokenIds:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer_dir} has no eos token; the model needs one")
    eos = tok.eos_token_id
    bos = tok.bos_token_id if tok.bos_token_id is not None else eos
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    return TokenIds(vocab_size=len(tok), bos=bos, eos=eos, pad=pad)


def load_sources(cfg: TrainConfig, io: StageIO, ids: TokenIds) -> dict[str, TokenShards]:
    shards = io.inputs_with_prefix("tokens")
    missing = sorted(set(cfg.mixture) - set(shards))
    if missing:
        raise KeyError(f"stage {io.name}: mixture names {missing} but inputs hold tokens for {sorted(shards)}")
    sources = {n: TokenShards(shards[n], cfg.seq_len) for n in sorted(cfg.mixture)}
    for n, s in sources.items():
        if s.vocab_size > ids.vocab_size:
            raise ValueError(f"tokens:{n} were made with a {s.vocab_size}-token vocabulary, "
                             f"larger than the tokenizer's {ids.vocab_size}: retokenize")
    return sources


def start_or_resume(cfg: TrainConfig, io: StageIO, ids: TokenIds):
    """(model, optimizer, data positions, tokens seen): fresh for the first stage, else
    continued from the `init` checkpoint after checking it is the run this stage continues."""
    if "init" not in io.inputs:
        if cfg.step_start != 0:
            raise ValueError(f"stage {cfg.stage} starts at step {cfg.step_start} but has no `init` checkpoint")
        model = build_model(cfg.model, ids, cfg.seed)
        return model, build_adamw(model, cfg.optimizer), {}, 0
    init = io.input("init")
    state = read_trainer_state(init)
    if state["global_step"] != cfg.step_start:
        raise ValueError(
            f"checkpoint {init} ended at global step {state['global_step']} but stage "
            f"{cfg.stage} starts at step {cfg.step_start}; the stage budgets disagree: "
            "run `repro compile` and `dvc repro` so every stage is rebuilt consistently"
        )
    model = load_model(init, cfg.model, ids)
    optimizer = build_adamw(model, cfg.optimizer)
    load_state(optimizer, load_optimizer_state(init), cfg.optimizer)
    return model, optimizer, state["data_positions"], state["tokens_seen"]


def run(cfg: TrainConfig, io: StageIO) -> None:
    setup_torch()
    tok_dir = io.input("tokenizer")
    ids = token_ids(tok_dir)
    sources = load_sources(cfg, io, ids)
    model, optimizer, positions, tokens_before = start_or_resume(cfg, io, ids)
    seqs = cfg.batch_tokens // cfg.seq_len
    sampler = MixtureSampler(sources, dict(cfg.mixture), seqs, cfg.seed, dict(positions))
    start_positions = dict(sampler.positions)
    print(f"[{io.name}] steps {cfg.step_start + 1}..{cfg.step_start + cfg.steps}, "
          f"{torch.get_num_threads()} torch threads", file=sys.stderr)
    rows = train_steps(
        model, optimizer, sampler, cfg.schedule,
        step_start=cfg.step_start, steps=cfg.steps, micro_batch_size=cfg.micro_batch_size,
        grad_clip=cfg.optimizer.grad_clip, log_every=cfg.log_every_steps,
        tokens_start=tokens_before, seq_len=cfg.seq_len,
    )

    tokens = cfg.steps * seqs * cfg.seq_len
    step_end = cfg.step_start + cfg.steps
    trainer_state = {
        "experiment": cfg.experiment,
        "stage": cfg.stage,
        "global_step": step_end,
        "tokens_seen": tokens_before + tokens,
        "data_positions": sampler.positions,  # windows consumed per source, all stages so far
        "seq_len": cfg.seq_len,
        "seed": cfg.seed,
    }
    with atomic_dir(io.output("checkpoint")) as tmp:
        save_checkpoint(tmp, model, optimizer, tok_dir, trainer_state)
    atomic_write_text(io.output("loss"), loss_csv(rows))

    total, non_emb = count_params(model)
    planned = {n: round(w * cfg.steps * cfg.batch_tokens) for n, w in sorted(cfg.mixture.items())}
    consumed = {n: (sampler.positions[n] - start_positions[n]) * cfg.seq_len for n in sorted(cfg.mixture)}
    epochs = {n: round(sampler.positions[n] / s.num_windows, 4) for n, s in sources.items()}
    for n in planned:
        print(f"[{io.name}] {n}: planned {planned[n]} tokens, consumed {consumed[n]}, "
              f"{epochs[n]:.2f} epochs of its windows so far", file=sys.stderr)
    write_json(io.output("metrics"), {
        "experiment": cfg.experiment,
        "stage": cfg.stage,
        "steps": cfg.steps,
        "step_end": step_end,
        "tokens": tokens,
        "tokens_total": tokens_before + tokens,
        "final_loss": round(rows[-1].loss, 6),
        "params_total": total,
        "params_non_embedding": non_emb,
        "mixture_planned_tokens": planned,
        "mixture_consumed_tokens": consumed,
        "epochs": epochs,  # passes over each source's windows through this stage
    })
