"""Stage `train`: one curriculum phase of SmolLM3 pretraining (SmolLM3's "stages", a spec's
`training.stages`; "phase" in code, so that "stage" always means a DVC stage).

The first phase builds the model from the spec with torch seeded by cfg.seed; a later phase
gets the previous phase's export as `init` (its model) and its state as `init_state`
(optimizer state unless `reset_optimizer`, MTP modules, global step, per-source data
positions, token ledger); it may change the sequence length and RoPE theta (long-context
phases). The stage writes the two the same way (repro.train.checkpoint): `checkpoint`, a
Hugging Face model folder with its model card, ready to upload as it is, and `state`.
trainer_state.json and the metrics record the phase's name under their `stage` key, as they
always have. Library code is in repro.model (config/build/MTP/model card) and repro.train
(data, schedule, optimizers, objective, loop, resume, stability, monitor, distributed,
checkpoint).

Before anything else, the stage checks the experiment's token ledger through its phase
(repro.train.ledger): the windows each dataset gave the earlier phases, as the `init`
checkpoint recorded them, plus this phase's, against the windows its `tokens:<dataset>`
inputs offer; a dataset repeated more than its `max_epochs` is a LedgerError, before a model
is built or a window read. The book through this phase is the `ledger` output (metrics) and
travels in the state folder to the next phase.

Kernels (attention path, torch.compile of the trunk, LM-head cross-entropy) are resolved for
the device first, by repro.train.backends: `auto` becomes a concrete choice recorded with its
reason in perf.json's `backends`, and a choice this machine cannot run is a BackendError
(field, fix) before the tokenizer, data or model are loaded.

Everything that can be wrong with the inputs (vocabulary, architecture, teacher, step
count, empty data) is checked before the first step. Reruns are byte-identical: no
randomness besides seeded init and the seeded sampler, torch deterministic algorithms on,
and a fixed thread count (REPRO_NUM_THREADS, else the CPUs this process may use; float
reductions depend on it, so compare reruns made with the same count). The `perf` output
(tokens/s, MFU) is measured and differs between runs by nature: `tokens_per_s` and `mfu`
are the steady rate over the updates after this process's first; the first update (trunk
compilation, kernel autotuning, allocator warmup) is `warmup_seconds`, and
`tokens_per_s_with_warmup` counts every update.

While it trains, the main process writes the `live` outputs, a DVCLive folder (repro.train.
live) that DVC reads mid-run, and prints each stability event as an ALERT line on stderr;
`live_sinks` (execution-only) copies the records to TensorBoard, W&B or trackio.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import astuple
from pathlib import Path
from typing import Any

import torch

from repro import paths
from repro.model.attention import attention_inputs, set_attention
from repro.model.build import (
    TokenIds,
    build_model,
    count_params,
    export_inference_config,
    inference_rope,
    load_model,
    smollm3_config,
)
from repro.model.card import CardFacts, render as render_card
from repro.model.mtp import build_mtp, load_mtp, save_mtp
from repro.stages import worker
from repro.stages.base import StageIO, atomic_dir, atomic_write_text, dumps_json, log, write_json
from repro.stages.configs import TrainConfig
from repro.stages.kind import ENV, METRICS, PERF, SNAPSHOT, Output, Role, StageKind, data, plot
from repro.train import determinism
from repro.train import distributed as dist_mod
from repro.train import ledger
from repro.train import live
from repro.train import resume
from repro.train.attention_probe import MaxLogitProbe
from repro.train.checkpoint import (
    check_export_parity,
    load_optimizer_state,
    read_trainer_state,
    save_export,
    save_state,
)
from repro.train.backends import Backends, resolve
from repro.train.data import MixtureSampler, TokenShards
from repro.train.data_order import LEDGER_FILE, ledger_csv, read_ledger
from repro.train.distill import TeacherCache, load_teacher, teacher_attention
from repro.train.flops import datasheet_peak, flops_per_token, measure_peak_flops, mfu
from repro.train.loop import LoopSettings, Trainer, loss_csv
from repro.train.monitor import (
    METRICS as MONITOR_METRIC_NAMES,
    UPDATE_RMS_RATIO,
    MonitorRow,
    monitor_csv,
    monitor_rows,
    probe_metrics,
    snapshot,
    update_rms_ratios,
)
from repro.train.objective import ObjectiveSettings, TrainModule
from repro.train.optim import (
    build_optimizer,
    load_state,
    reference_lr,
    resolve_ns_dtype,
    set_lr_multiplier,
)
from repro.train.qk_clip import apply_qk_clip
from repro.train.schedule import multiplier_at
from repro.train.stability import StabilityGuard


def token_ids(tokenizer_dir) -> TokenIds:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), trust_remote_code=False)
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


def config_fingerprint(cfg: TrainConfig, io: StageIO) -> str:
    """What a resumable state must have been written by: this config (execution-only
    fields aside: the checkpoint interval and the launcher, so a stage stopped under Slurm
    resumes here and back) and these input paths."""
    body = {"config": cfg.model_dump(mode="json", exclude=KIND.identity_exclude()),
            "inputs": {k: str(v) for k, v in sorted(io.inputs.items())}}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _init_state(cfg: TrainConfig, io: StageIO) -> tuple[dict[str, Any] | None, Path | None]:
    """(the previous phase's trainer state, the folder holding it: the `init_state` input),
    checked to be this experiment's previous phase ending where this one starts; (None,
    None) for a first phase. Reads only trainer_state.json: the token ledger relies on it
    before anything else is loaded."""
    if "init" not in io.inputs:
        if cfg.step_start != 0:
            raise ValueError(f"phase {cfg.phase} starts at step {cfg.step_start} but has no `init` checkpoint")
        return None, None
    if "init_state" not in io.inputs:
        raise ValueError(f"phase {cfg.phase} continues the checkpoint {io.input('init')} but has "
                         "no `init_state` input (its optimizer and trainer state): run "
                         "`repro compile`, then `dvc repro`")
    init = io.input("init_state")
    state = read_trainer_state(init)
    if state.get("experiment") != cfg.experiment:
        raise ValueError(
            f"checkpoint {init} was written by experiment {state.get('experiment')!r}, not "
            f"{cfg.experiment!r}: a phase continues only its own experiment's previous phase. "
            "Run `repro compile` and `dvc repro` so every stage is rebuilt from its own spec"
        )
    if state["global_step"] != cfg.step_start:
        raise ValueError(
            f"checkpoint {init} ended at global step {state['global_step']} but phase "
            f"{cfg.phase} starts at step {cfg.step_start}; the phase budgets disagree: "
            "run `repro compile` and `dvc repro` so every stage is rebuilt consistently"
        )
    return state, init


def _model_and_state(cfg: TrainConfig, io: StageIO, ids: TokenIds):
    """(model, init trainer state or None, init state folder or None)."""
    state, init = _init_state(cfg, io)
    if init is None:
        return build_model(cfg.model, ids, cfg.seed), None, None
    return load_model(io.input("init"), cfg.model, ids), state, init


def _mtp_modules(cfg: TrainConfig, model, init: Path | None):
    """The MTP modules: built for a first phase, else from the previous phase's state folder
    `init` (training-only weights: an export holds the plain model)."""
    if cfg.mtp is None:
        return None
    if init is not None and (init / "mtp.safetensors").exists():
        return load_mtp(init, cfg.mtp, model.config)
    return build_mtp(cfg.mtp, model.config, cfg.seed)


def _teacher(cfg: TrainConfig, io: StageIO, ids: TokenIds):
    """(teacher model for `full` targets, {dataset: TeacherCache} for cached ones)."""
    d = cfg.distillation
    if d is None:
        return None, {}
    if d.logits != "full":
        caches = io.inputs_with_prefix("teacher_targets")
        missing = sorted(set(cfg.mixture) - set(caches))
        if missing:
            raise KeyError(f"stage {io.name}: no cached teacher targets for {missing}; run `repro compile`")
        out = {}
        for name in sorted(cfg.mixture):
            cache = TeacherCache(caches[name])
            cache.check(mode=d.logits, k=d.k, temperature=d.temperature, seq_len=cfg.seq_len,
                        doc_masking=cfg.doc_masking)
            out[name] = cache
        return None, out
    ref = str(io.inputs["teacher"]) if "teacher" in io.inputs else d.teacher
    return load_teacher(ref, ids.vocab_size, trust_remote_code=d.trust_remote_code), {}


def backends_for(cfg: TrainConfig, device: torch.device) -> Backends:
    """The kernels this stage runs on `device` (repro.train.backends): `auto` made concrete,
    or BackendError naming the field and the fix, before anything heavy is built."""
    return resolve(attention=cfg.attention, compile=cfg.compile, cross_entropy=cfg.cross_entropy,
                   precision=cfg.precision, doc_masking=cfg.doc_masking,
                   distillation=cfg.distillation is not None, device=device,
                   head_dim=cfg.model.hidden_size // cfg.model.num_heads, seq_len=cfg.seq_len,
                   qk_clip=cfg.qk_clip is not None, mtp=cfg.mtp is not None)


def compile_trunk(model, backends: Backends):
    """torch.compile of the trunk (`model.model`, no LM head: the head and the fused loss stay
    eager, repro.train.objective), or None. dynamic=False: a stage's shapes are static (seq_len
    fixed per phase, every micro batch micro_batch_size rows, the attention path's extra
    inputs of fixed shape), so one graph is compiled on the first step and reused; dynamic
    shapes would only add guards and slower kernels. Compiling is lazy: the cost shows in the
    first update, reported as perf.json's warmup_seconds."""
    if not backends.compile:
        return None
    determinism.inductor_follows_torch()
    return torch.compile(model.model, dynamic=False)


def _monitor_hooks(cfg: TrainConfig, module: TrainModule, sources: dict[str, TokenShards], eos: int,
                   attention: str, device: torch.device):
    """(monitor(step, tokens, before) -> rows, snapshot() -> before), or Nones."""
    if cfg.monitor is None:
        return None, None
    first = sources[sorted(sources)[0]]
    count = min(cfg.monitor.probe_sequences, first.num_windows)
    probe = torch.from_numpy(__import__("numpy").stack([first.window(i) for i in range(count)]))[:, :-1]
    # the probe forward runs on the model's device through the stage's attention path
    probe_att = attention_inputs(probe.to(device), eos, attention, cfg.doc_masking)

    def monitor(step: int, tokens: int, before: dict) -> list[tuple]:
        metrics = {UPDATE_RMS_RATIO: update_rms_ratios(before, module.model),
                   **probe_metrics(module.model, probe_att.input_ids, probe_att.position_ids,
                                   attention=probe_att)}
        # plain tuples: they travel in the resumable state (weights_only loading)
        return [astuple(r) for r in monitor_rows(step, tokens, metrics)]

    return monitor, (lambda: snapshot(module.model))


def token_ledger(cfg: TrainConfig, io: StageIO, quiet: bool = False) -> dict[str, Any]:
    """The experiment's token ledger through this phase (repro.train.ledger): the earlier
    phases' draws as the `init` checkpoint recorded them, plus this phase's, against the
    windows its `tokens:<dataset>` inputs offer at its seq_len; LedgerError (field
    training.stages, with the fix) when a dataset would pass its max_epochs."""
    tokens = io.inputs_with_prefix("tokens")
    missing = sorted(set(cfg.mixture) - set(tokens))
    if missing:
        raise KeyError(f"stage {io.name}: mixture names {missing} but inputs hold tokens for "
                       f"{sorted(tokens)}; rerun `repro compile`")
    _, init = _init_state(cfg, io)
    previous = ledger.read(init) if init is not None else None
    phase = ledger.Phase(cfg.phase, cfg.steps, dict(cfg.mixture), cfg.seq_len, cfg.batch_tokens)
    available = {n: ledger.available_tokens(tokens[n], cfg.seq_len) for n in sorted(cfg.mixture)}
    book = ledger.add_phase(previous, cfg.experiment, phase, available, cfg.max_epochs)
    if not quiet:
        for n in sorted(cfg.mixture):
            d = book["datasets"][n]
            log(io.name, f"{n}: {d['tokens_drawn']:,} tokens drawn through this phase of "
                f"{d['tokens_available']:,} available: {d['epochs']:.2f} epochs (max "
                f"{d['max_epochs']:g})")
    ledger.check(book)
    return book


def run(cfg: TrainConfig, io: StageIO) -> None:
    live.check_sinks(cfg.live_sinks)  # a selected live sink without its package: say so first
    # the ledger first: a mixture that repeats a dataset too often starts no process, builds
    # no model and reads no window (the ranks torchrun starts check it again, quietly)
    book = token_ledger(cfg, io, quiet=dist_mod.under_torchrun())
    if cfg.distributed.nproc > 1 and not dist_mod.under_torchrun():
        payload = Path(paths.resume_dir(io.name)) / "launch.json"
        dist_mod.relaunch_with_torchrun(cfg.distributed, worker.write_payload(payload, "train", cfg, io))
        return
    ctx = dist_mod.init(cfg.distributed)
    try:
        with determinism.explain_nondeterminism():  # an op without a deterministic CUDA kernel
            _run(cfg, io, ctx, book)
    finally:
        dist_mod.shutdown(ctx)


def _run(cfg: TrainConfig, io: StageIO, ctx: dist_mod.DistContext, book: dict[str, Any]) -> None:
    determinism.setup_torch(ctx.world, ctx.device, cfg.deterministic)
    backends = backends_for(cfg, ctx.device)  # an impossible kernel choice fails here, first
    tok_dir = io.input("tokenizer")
    ids = token_ids(tok_dir)
    sources = load_sources(cfg, io, ids)
    model, init_state, init = _model_and_state(cfg, io, ids)
    teacher, caches = _teacher(cfg, io, ids)
    mtp = _mtp_modules(cfg, model, init)
    model.to(ctx.device)
    set_attention(model, backends.attention)
    if mtp is not None:
        mtp.to(ctx.device)
        set_attention(mtp, backends.attention)
    if teacher is not None:
        teacher.to(ctx.device)
        teacher_attention(teacher, backends.attention)
    objective = ObjectiveSettings(ids.eos, cfg.doc_masking, cfg.z_loss, cfg.mtp, cfg.distillation,
                                  cross_entropy=backends.cross_entropy, attention=backends.attention)
    module = TrainModule(model, objective, mtp=mtp, teacher=teacher, teacher_cache=caches,
                         compiled_trunk=compile_trunk(model, backends))
    forward = dist_mod.wrap_model(module, ctx)
    optimizer = build_optimizer(module, cfg.optimizer)
    positions, tokens_before = {}, 0
    if init_state is not None:
        positions, tokens_before = init_state["data_positions"], init_state["tokens_seen"]
        if not cfg.reset_optimizer:
            load_state(optimizer, load_optimizer_state(init), cfg.optimizer,
                       loader=lambda st: dist_mod.load_optimizer_state(module, optimizer, st, ctx))
    seqs = cfg.batch_tokens // cfg.seq_len
    data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
    sampler = MixtureSampler(sources, dict(cfg.mixture), seqs, data_seed, dict(positions))
    start_positions = dict(sampler.positions)

    previous = Path(paths.data_order_ledger(io.name))
    monitor, snap = _monitor_hooks(cfg, module, sources, ids.eos, backends.attention, ctx.device)
    probe_factory = qk_apply = None
    if cfg.qk_clip is not None:
        probe_factory = lambda: MaxLogitProbe(model)  # noqa: E731
        qk_apply = lambda logits: apply_qk_clip(model, logits, cfg.qk_clip.tau)  # noqa: E731
    # the config's own models, as they are: cfg is a TrainingSettings (micro batch, logging,
    # monitor, precision, QK-Clip, in-stage checkpoints), cfg.optimizer holds clip and LR
    settings = LoopSettings(
        training=cfg, optimizer=cfg.optimizer, schedule=cfg.schedule,
        step_start=cfg.step_start, steps=cfg.steps, seq_len=cfg.seq_len, tokens_start=tokens_before,
        resume_dir=Path(paths.resume_dir(io.name)), config_fingerprint=config_fingerprint(cfg, io),
        previous_order=read_ledger(previous) if previous.exists() else {},
        previous_order_source=str(previous),
    )
    staging = _snapshot_staging(io.name)
    # the loop compares global steps with the rerun ledger; its own list is stage-relative
    trainer = Trainer(module, optimizer, sampler, settings, ctx, StabilityGuard(cfg.stability),
                      train_forward=forward, monitor=monitor, monitor_snapshot=snap,
                      max_logit_probe=probe_factory, apply_qk_clip=qk_apply,
                      after_update=_snapshot_hook(cfg, ctx, module, model, tok_dir, staging, io.name)
                      if cfg.snapshot_steps else None,
                      live_log=live_log(cfg, io) if ctx.is_main else None)
    if ctx.is_main:
        log(io.name, f"steps {cfg.step_start + 1}..{cfg.step_start + cfg.steps}, "
            f"{torch.get_num_threads()} torch threads x {ctx.world} process(es), {ctx.device}; "
            f"attention {backends.attention}, compile {'on' if backends.compile else 'off'}, "
            f"cross-entropy {backends.cross_entropy}")
    try:
        result = trainer.run()
    except BaseException:
        if trainer.live_log is not None:
            trainer.live_log.close(ok=False)
        raise
    if trainer.live_log is not None:
        trainer.live_log.close(ok=True)
    # the export is a plain HF checkpoint, loaded with sdpa (repro.model.build.ATTN_IMPLEMENTATION)
    set_attention(model, "sdpa")
    # every rank takes part: under FSDP2 the shards are gathered here
    full = dist_mod.module_state(module, ctx)
    optim_state = dist_mod.optimizer_state(module, optimizer, ctx)
    if not ctx.is_main:
        return
    if ctx.kind == "fsdp2" and ctx.enabled:
        module = _unsharded_copy(cfg, model, full)
    _write_outputs(cfg, io, ctx, module.model, module, optim_state, sampler, sources, start_positions,
                   tokens_before, result, tok_dir, ids, backends, book)
    _publish_snapshots(cfg, io, staging)
    resume.clear(Path(paths.resume_dir(io.name)))
    previous.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(previous, ledger_csv(cfg.step_start + 1, result.fingerprints))


def live_log(cfg: TrainConfig, io: StageIO) -> live.LiveLog:
    """The stage's live record (repro.train.live): its DVCLive folder, the `live` and
    `live_curves` outputs, and the sinks the spec selects (execution-only)."""
    return live.LiveLog(io.output("live"), io.output("live_curves"), io.name, cfg.experiment,
                        sinks=cfg.live_sinks,
                        sink_dirs={s: Path(paths.live_sink_dir(s, io.name)) for s in cfg.live_sinks},
                        config=cfg.model_dump(mode="json"))


def _snapshot_staging(stage_id: str) -> Path:
    """Where snapshots wait until the stage completes: inside the resume folder, so a stage
    resumed after a crash keeps the snapshots it took before it (DVC deletes a failed stage's
    outputs). A stage starting from scratch drops what an older attempt left there."""
    folder = Path(paths.resume_dir(stage_id))
    staging = folder / "snapshots"
    if not (folder / resume.STATE_FILE).exists():
        shutil.rmtree(staging, ignore_errors=True)
    return staging


def _snapshot_hook(cfg: TrainConfig, ctx: dist_mod.DistContext, module: TrainModule, model,
                   tok_dir: Path, staging: Path, io_name: str):
    """after_update callback saving the model after each of cfg.snapshot_steps: an export
    (weights, tokenizer, trainer_state.json with tokens seen and seq_len, model card), no
    optimizer state; enough for the evaluate stage. Saving reads the weights only, so
    training is unchanged by it."""
    wanted = set(cfg.snapshot_steps)
    seqs = cfg.batch_tokens // cfg.seq_len

    def after_update(step: int, tokens_seen: int) -> None:
        if step not in wanted:
            return
        full = dist_mod.module_state(module, ctx)  # collective under FSDP2: every rank calls
        if not ctx.is_main:
            return
        export = (_unsharded_copy(cfg, model, full).model if ctx.kind == "fsdp2" and ctx.enabled
                  else module.model)
        state = {"experiment": cfg.experiment, "stage": cfg.phase, "global_step": step,
                 "tokens_seen": tokens_seen, "seq_len": cfg.seq_len, "seed": cfg.seed,
                 "data_seed": cfg.seed if cfg.data_seed is None else cfg.data_seed,
                 "snapshot": True, "sequences_per_step": seqs}
        card = model_card(cfg, io_name, export, state, (step - cfg.step_start) * cfg.batch_tokens)
        with atomic_dir(staging / _snapshot_name(step)) as tmp:
            save_export(tmp, export, tok_dir, state, card)

    return after_update


def _snapshot_name(step: int) -> str:
    return f"step-{step:07d}"


def _publish_snapshots(cfg: TrainConfig, io: StageIO, staging: Path) -> None:
    """Move the staged snapshots to their outputs (called once the stage has succeeded)."""
    for step in cfg.snapshot_steps:
        src = staging / _snapshot_name(step)
        if not src.is_dir():
            raise RuntimeError(f"snapshot after step {step} was not saved in {staging}; delete "
                               f"{staging.parent} and rerun the stage")
        dst = Path(io.output(f"snapshot:{step}"))
        if dst.exists():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


PEAK_SECONDS_CPU = (0.05, 0.5)
"""Bounds of the CPU peak measurement (s). Between them it lasts PEAK_SHARE of the training
time: the peak MFU divides by must be measured in the same run (other jobs, clocks), but a
fixed half second doubled the cost of a one-second phase (the tests, the CI spec) for an MFU
that says little there; 0.05 s still times best-of-3 1024² matmuls."""
PEAK_SHARE = 0.1


def _peaks(cfg: TrainConfig, device: torch.device,
           train_seconds: float) -> tuple[float, str, float | None, float]:
    """(matmul peak measured now on the training device in the training dtype, that dtype,
    the GPU's datasheet dense bf16 peak or None, the seconds the measurement took). On CPU
    the datasheet means little (clocks, AVX offsets, other jobs), so the measured peak is the
    one MFU divides by, measured for a tenth of the training time (PEAK_SECONDS_CPU); on a
    GPU both are reported. A GPU needs large matrices to reach its peak (8192² bf16 ≈ 1.1
    TFLOP each)."""
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    t0 = time.perf_counter()
    if device.type != "cuda":
        low, high = PEAK_SECONDS_CPU
        peak = measure_peak_flops(dtype=torch.float32,
                                  seconds=min(high, max(low, PEAK_SHARE * train_seconds)))
        return peak, "float32", None, time.perf_counter() - t0
    measured = measure_peak_flops(dtype=dtype, seconds=1.0, size=8192, device=device)
    sheet = datasheet_peak(torch.cuda.get_device_name(device)) if cfg.precision == "bf16" else None
    return measured, str(dtype).removeprefix("torch."), sheet, time.perf_counter() - t0


def _unsharded_copy(cfg: TrainConfig, sharded_model, full: dict) -> TrainModule:
    """A plain (single-process) copy of the trained modules from their gathered state, for
    export: FSDP2's parameters are shards."""
    from transformers import SmolLM3ForCausalLM

    model = SmolLM3ForCausalLM(sharded_model.config).float()
    model.load_state_dict({k[len("model."):]: v for k, v in full.items() if k.startswith("model.")})
    mtp = None
    if cfg.mtp is not None:
        mtp = build_mtp(cfg.mtp, model.config, cfg.seed)
        mtp.load_state_dict({k[len("mtp."):]: v for k, v in full.items() if k.startswith("mtp.")})
    return TrainModule(model, ObjectiveSettings(0, cfg.doc_masking), mtp=mtp)


def steady_tokens_per_s(result, batch_tokens: int) -> tuple[float, float]:
    """(tokens/s over the updates after this process's first, tokens/s over all of them).
    The first update compiles the trunk (training.compile), autotunes kernels and grows the
    allocator's pools: seconds to minutes on a GPU, which a short stage's average would
    mostly measure. With a single update only the second number exists and both are it."""
    total = result.steps_timed * batch_tokens / result.seconds if result.seconds > 0 else 0.0
    steady_seconds = result.seconds - result.warmup_seconds
    if result.steps_timed < 2 or steady_seconds <= 0:
        return total, total
    return (result.steps_timed - 1) * batch_tokens / steady_seconds, total


def model_card(cfg: TrainConfig, stage_id: str, model, trainer_state: dict[str, Any],
               tokens_phase: int, state_path: str = "") -> str:
    """The export's README.md (repro.model.card) from this stage's settings: the same
    settings and weights give the same bytes. `tokens_phase`: tokens this phase trained on
    up to the export (a snapshot's are fewer than the phase's)."""
    total, non_emb = count_params(model)
    extra: dict[str, Any] = {"intra-document attention masking": cfg.doc_masking}
    if cfg.mtp is not None:
        extra["multi-token prediction (training only; not in this folder)"] = (
            f"{cfg.mtp.kind}, depth {cfg.mtp.depth}")
    if cfg.distillation is not None:
        extra["distilled from"] = (f"{cfg.distillation.teacher} (alpha {cfg.distillation.alpha:g}, "
                                   f"T {cfg.distillation.temperature:g}, {cfg.distillation.logits} logits)")
    if cfg.z_loss:
        extra["z-loss"] = cfg.z_loss
    if cfg.qk_clip is not None:
        extra["QK-Clip tau"] = cfg.qk_clip.tau
    arch = cfg.model.model_dump(mode="json", exclude_none=True)
    facts = CardFacts(
        stage_id=stage_id, experiment=cfg.experiment, phase=cfg.phase,
        architecture=arch, params_total=total, params_non_embedding=non_emb,
        mixture=dict(cfg.mixture), tokens_phase=tokens_phase,
        tokens_total=trainer_state["tokens_seen"], global_step=trainer_state["global_step"],
        steps=tokens_phase // cfg.batch_tokens, seq_len=cfg.seq_len,
        batch_tokens=cfg.batch_tokens, optimizer=cfg.optimizer.model_dump(mode="json", exclude_none=True),
        schedule=cfg.schedule.model_dump(mode="json", exclude_none=True), seed=cfg.seed,
        data_seed=cfg.seed if cfg.data_seed is None else cfg.data_seed,
        precision=cfg.precision, state_path=state_path,
        snapshot=bool(trainer_state.get("snapshot")), extra=extra)
    return render_card(facts)


def _write_outputs(cfg, io, ctx, model, module, optim_state, sampler, sources, start_positions,
                   tokens_before, result, tok_dir, ids, backends: Backends,
                   book: dict[str, Any]) -> None:
    tokens = cfg.steps * (cfg.batch_tokens // cfg.seq_len) * cfg.seq_len
    step_end = cfg.step_start + cfg.steps
    trainer_state = {
        "experiment": cfg.experiment,
        "stage": cfg.phase,  # the key predates the word "phase"; readers expect it
        "global_step": step_end,
        "tokens_seen": tokens_before + tokens,
        "data_positions": sampler.positions,  # windows consumed per source, all phases so far
        "seq_len": cfg.seq_len,
        "seed": cfg.seed,
        "data_seed": cfg.seed if cfg.data_seed is None else cfg.data_seed,
        "lr_scale": result.lr_scale,  # < 1 after stability rollbacks
    }
    model.eval()
    with atomic_dir(io.output("state")) as tmp:
        save_state(tmp, optim_state, trainer_state)
        (tmp / LEDGER_FILE).write_text(ledger_csv(cfg.step_start + 1, result.fingerprints), encoding="utf-8")
        # the token ledger through this phase: the next phase adds its draws to it
        (tmp / ledger.FILE).write_text(dumps_json(book), encoding="utf-8")
        if module.mtp is not None:  # training-only modules: the export is the plain model
            save_mtp(tmp, module.mtp, cfg.mtp)
    # where the state lies seen from the export (a workspace-independent path: same bytes)
    state_path = os.path.relpath(io.output("state"), io.output("checkpoint"))
    card = model_card(cfg, io.name, model, trainer_state, tokens, state_path=state_path)
    with atomic_dir(io.output("checkpoint")) as tmp:
        save_export(tmp, model, tok_dir, trainer_state, card)
        # the export parity gate: what lm-eval will load must compute what we trained
        probe = torch.from_numpy(sources[sorted(sources)[0]].window(0)[None, :-1].copy())
        parity = check_export_parity(model, tmp, probe, precision=cfg.precision)
        if cfg.model.inference_yarn is not None:  # the compiler sets it on the last phase only
            export_inference_config(tmp, cfg.model)
    write_json(io.output("ledger"), book)
    atomic_write_text(io.output("loss"), loss_csv(result.rows))
    atomic_write_text(io.output("monitor"), monitor_csv([MonitorRow(*r) for r in result.monitor_rows]))

    total, non_emb = count_params(model)
    planned = {n: round(w * cfg.steps * cfg.batch_tokens) for n, w in sorted(cfg.mixture.items())}
    consumed = {n: (sampler.positions[n] - start_positions[n]) * cfg.seq_len for n in sorted(cfg.mixture)}
    epochs = {n: round(sampler.positions[n] / s.num_windows, 4) for n, s in sources.items()}
    for n in planned:
        log(io.name, f"{n}: planned {planned[n]} tokens, consumed {consumed[n]}, "
            f"{epochs[n]:.2f} epochs of its windows so far")
    last = result.rows[-1]
    write_json(io.output("metrics"), {
        "experiment": cfg.experiment,
        "stage": cfg.phase,  # the metrics' key, as reports read it
        "steps": cfg.steps,
        "step_end": step_end,
        "tokens": tokens,
        "tokens_total": tokens_before + tokens,
        "final_loss": round(last.loss, 6),
        **{f"final_{k}": round(v, 6) for k, v in last.parts},
        "params_total": total,
        "params_non_embedding": non_emb,
        "mixture_planned_tokens": planned,
        "mixture_consumed_tokens": consumed,
        "epochs": epochs,  # passes over each source's windows through this phase
        "stability_events": result.events,
        "qk_clip_events": result.qk_clip_events,
        "lr_scale": result.lr_scale,
        **parity.metrics(),  # export_parity_max_abs_diff, export_parity_tolerance
        **determinism.describe(cfg.deterministic, ctx.device).metrics(),  # reruns_bitwise when not
        "data_order_sha256": hashlib.sha256("".join(result.fingerprints).encode()).hexdigest()[:16],
    })
    # measured, not reproducible: kept apart from the metrics above
    flops = flops_per_token(smollm3_config(cfg.model, ids), cfg.seq_len)  # PaLM app. B: 6N + attention
    peak, peak_dtype, sheet, peak_seconds = _peaks(cfg, ctx.device, result.seconds)
    tps, tps_all = steady_tokens_per_s(result, cfg.batch_tokens)
    write_json(io.output("perf"), {
        # after the first update (compile, autotuning, allocator): the rate a longer run keeps
        "tokens_per_s": round(tps, 1),
        "tokens_per_s_per_process": round(tps / ctx.world, 1),
        "tokens_per_s_with_warmup": round(tps_all, 1),  # every update this process did
        "warmup_seconds": round(result.warmup_seconds, 3),  # this process's first update
        "backends": backends.as_dict(),  # the kernels `auto` resolved to here, and why
        "train_flops_per_token": flops["total"],
        "flops_formula": "6N (matmul params incl. LM head) + 6*L*H*Q*T causal attention (PaLM app. B)",
        "peak_flops_measured": round(peak, 1),
        "peak_flops_dtype": peak_dtype,
        "peak_flops_seconds": round(peak_seconds, 3),
        "mfu": round(mfu(tps / ctx.world, flops["total"], peak), 5),
        # GPUs: against the vendor's dense bf16 peak, as llm-foundry/OLMo-core/nanotron report
        "peak_flops_datasheet": sheet,
        "mfu_datasheet": round(mfu(tps / ctx.world, flops["total"], sheet), 5) if sheet else None,
        "processes": ctx.world,
        "threads_per_process": torch.get_num_threads(),
        "seconds": round(result.seconds, 2),
        "steps_timed": result.steps_timed,
        "resumed_from_step": cfg.step_start + result.resumed_from if result.resumed_from else None,
    })


EFFECTS_TOKEN_IDS = TokenIds(vocab_size=256, bos=0, eos=1, pad=2)
"""Stand-in special tokens for `effects`, which runs without the tokenizer input: the model's
vocabulary comes from the tokenizer stage (its own settings), not from this stage's."""


def effects(cfg: TrainConfig) -> dict[str, Any]:
    """What a training stage builds from its settings before it reads a token, as values
    (StageKind.effects: the test that every params.yaml key is live compares them). Built by
    the functions `run` calls: the model's config and its init seed, every optimizer group's
    hyperparameters and its LR at each update of the phase (the schedule's shape times the
    group's own LR, repro.train.schedule), the MTP weight at each update, the data order's
    draw, the kernels asked for, and the settings the loop, the stability guard and the
    launcher read (handed to them as the config's own models)."""
    ids = EFFECTS_TOKEN_IDS
    with torch.device("meta"):  # shapes and names only: nothing is allocated or drawn
        model = build_model(cfg.model, ids, cfg.seed)
        mtp = _mtp_modules(cfg, model, None)
        objective = ObjectiveSettings(ids.eos, cfg.doc_masking, cfg.z_loss, cfg.mtp,
                                      cfg.distillation)
        module = TrainModule(model, objective, mtp=mtp)
        optimizer = build_optimizer(module, cfg.optimizer)
    updates = range(cfg.step_start + 1, cfg.step_start + cfg.steps + 1)
    lrs = []
    for n in updates:
        set_lr_multiplier(optimizer, multiplier_at(cfg.schedule, n, reference_lr(cfg.optimizer)))
        lrs.append(tuple(g["lr"] for g in optimizer.param_groups))
    groups = [{k: v for k, v in g.items() if k not in ("params", "lr", "names")} | {
        "params": len(g["params"])} for g in optimizer.param_groups]
    # Newton-Schulz precision, as resolved on the CPU and on CUDA (`auto` differs by device)
    muon = getattr(optimizer, "muon", None)
    ns_dtypes = None if muon is None else {
        device: str(resolve_ns_dtype(cfg.optimizer.ns_dtype, torch.device(device)))
        for device in ("cpu", "cuda")}
    tokens = [cfg.batch_tokens * n for n in updates]  # tokens seen after update n (all phases)
    return {
        "model_config": {k: v for k, v in smollm3_config(cfg.model, ids).to_dict().items()
                         if k != "transformers_version"},
        "init_seed": cfg.seed if cfg.step_start == 0 else None,  # later phases load `init`
        "optimizer_groups": groups,
        "muon_ns_dtype": ns_dtypes,
        "lr_per_update": lrs,
        "fresh_optimizer_state": cfg.step_start == 0 or cfg.reset_optimizer,
        "mtp_weight_per_update": [cfg.mtp.weight_at(t) for t in tokens] if cfg.mtp else None,
        "objective": objective,
        "data_order": (dict(cfg.mixture), cfg.batch_tokens // cfg.seq_len, cfg.seq_len,
                       cfg.seed if cfg.data_seed is None else cfg.data_seed),
        "snapshots": list(cfg.snapshot_steps),
        "kernels": (cfg.attention, cfg.compile, cfg.cross_entropy, cfg.deterministic,
                    cfg.precision),
        "loop": (cfg.micro_batch_size, cfg.log_every_steps, cfg.monitor, cfg.qk_clip,
                 cfg.optimizer.grad_clip),
        "guard": cfg.stability,
        "launch": cfg.distributed,
        "labels": (cfg.experiment, cfg.phase),  # trainer_state.json
        # the token ledger: what it refuses, and what its `ledger` output records
        "ledger_limits": dict(cfg.max_epochs),
        # the last phase's export serves with YaRN (repro.model.build.inference_rope)
        "export": inference_rope(cfg.model),
    }


MONITOR_METRICS = MONITOR_METRIC_NAMES
"""The values of monitor.csv's `metric` column (repro.train.monitor), each plotted on its own
with one line per layer: on one plot their scales (ranks ~100, logits ~10, ratios ~1e-3) hid
each other (issue 22)."""


LIVE_PLOTS = tuple((f"{name}.tsv", name.rsplit("/", 1)[1], title) for name, title in (
    (live.LOSS, "training loss"), (live.LR, "learning rate"), (live.GRAD_NORM, "gradient norm"),
    (live.TOKENS_PER_S, "tokens per second")))
"""The DVCLive curves (repro.train.live) `dvc plots show` draws while a stage trains, one
titled plot each per experiment; the per-layer monitor TSVs are in the folder for DVCLive's
readers but not drawn (monitor.csv's per-metric plots show them once the stage ends)."""


def _snapshot_outputs(cfg: TrainConfig) -> dict[str, Output]:
    return {f"{SNAPSHOT}:{step}": Output(
        Role.DATA, lambda stage_id, cfg, step=step: paths.snapshot_dir(stage_id, step))
        for step in cfg.snapshot_steps}


KIND = StageKind(
    config=TrainConfig,
    outputs={
        # the export: a Hugging Face model folder (weights, config, tokenizer, model card)
        "checkpoint": data("artifacts/checkpoints"),
        # what the next phase continues from: optimizer and trainer state, token ledger,
        # data order, MTP modules (repro.train.checkpoint)
        "state": data("artifacts/train-state"),
        "metrics": METRICS,
        # the experiment's token ledger through this phase (the report reads the last one's)
        # a record, not a metric: ~85 counters per stage that would bury the scores in
        # `dvc metrics show`
        "ledger": Output(Role.RECORD, lambda stage_id, cfg: paths.stage_ledger(stage_id)),
        "loss": plot("loss.csv", x="tokens", y="loss", title="training loss"),
        "monitor": plot("monitor.csv", x="tokens", title="per layer", series=MONITOR_METRICS,
                        when=lambda cfg: cfg.monitor is not None),
        # DVCLive's folder (repro.train.live), written in place while the stage trains: its
        # summary as metrics, its per-metric step/value TSVs drawn by the experiment's live
        # plots (repro.compile.render). Uncached like every metrics and plots file, so DVC
        # never hides a half-written file in its cache
        "live": Output(Role.METRICS, lambda stage_id, cfg: paths.stage_live_summary(stage_id)),
        "live_curves": Output(Role.PLOT, lambda stage_id, cfg: paths.stage_live_curves(stage_id),
                              plot_x="step", plot_title="live", plot_files=LIVE_PLOTS),
        "perf": PERF,
        "env": ENV,
    },
    run=run,
    # in-stage checkpoints change how a stage runs, not what it makes: a stage resumed from
    # one ends bitwise equal (repro.train.resume); live sinks only receive copies of the
    # live record (repro.train.live)
    execution_only=frozenset({"checkpoint_every_steps", "live_sinks"}),
    extra_outputs=_snapshot_outputs,
    effects=effects,
)
