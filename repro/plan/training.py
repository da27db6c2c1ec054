"""Training FLOPs per curriculum phase, and the accelerator hours they take.

Per token, forward + backward (repro.train.flops, PaLM App. B): dense = 6·N with N the
matmul parameters (attention + MLP + the LM-head matmul, counted even when tied), and causal
attention = 6·L·H·Q·T at the phase's own sequence length T, stated separately. For a tied
model N is the parameter count less the norm gains, i.e. Chinchilla's convention of counting
all parameters in C ≈ 6ND (FACTS 9.1); Kaplan's N (non-embedding) is reported beside it.
D is what training really consumes: whole optimizer steps × batch_tokens per phase (the
compiler floors tokens to steps, repro.compile.graph.schedule_segments).

Extras, stated separately when the spec has them: MTP modules (per depth one transformer
block, the shared LM head and, for sequential modules, the 2d→d projection; FACTS 6.1-6.2)
and, for distillation with full teacher logits, the teacher's forward pass (2·N_teacher +
its attention per token) when the teacher is another experiment given to the same command.
Every replica run trains again, so totals are per run × runs.

Hours = FLOPs / (peak × MFU). Defaults: H100 SXM bf16 dense 989 TFLOP/s and MFU 40%, between
SmolLM3's ~29% in nanotron and nanochat/llm.c's ~50% (shared PERF.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from repro.spec import schema as S
from repro.train.flops import flops_per_token, param_counts

DEFAULT_MFU = 0.40
DEFAULT_PEAK_TFLOPS = 989.0
"""H100 SXM bf16 dense (shared PERF.md)."""


@dataclass(frozen=True)
class PhaseFlops:
    name: str
    seq_len: int
    steps: int
    tokens: int
    """Tokens trained: steps × batch_tokens."""
    dense: float
    """6·N·D."""
    attention: float
    """Causal attention, 6·L·H·Q·T·D."""
    extra: float
    """MTP modules and teacher forward (see `TrainingPlan.notes`)."""

    @property
    def total(self) -> float:
        return self.dense + self.attention + self.extra


@dataclass(frozen=True)
class TrainingPlan:
    params_total: int
    params_non_embedding: int
    params_6nd: int
    """N of 6·N·D: the matmul parameters (repro.train.flops.param_counts 'matmul')."""
    vocab_size: int
    phases: list[PhaseFlops]
    """Per curriculum phase, in training order (the plan's JSON lists them as `stages`)."""
    runs: int
    """Training runs: the main run plus replicas."""
    mfu: float
    peak_flops: float
    cpu_peak_flops: float | None
    """fp32 matmul FLOP/s of one core of the machine that ran bench/curation_steps.py."""
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_run(self) -> int:
        return sum(s.tokens for s in self.phases)

    @property
    def flops_per_run(self) -> float:
        return sum(s.total for s in self.phases)

    @property
    def flops(self) -> float:
        return self.flops_per_run * self.runs

    @property
    def gpu_hours(self) -> float:
        return self.flops / (self.peak_flops * self.mfu) / 3600

    @property
    def cpu_core_hours(self) -> float | None:
        if not self.cpu_peak_flops:
            return None
        return self.flops / (self.cpu_peak_flops * self.mfu) / 3600


def _mtp_per_token(spec: S.ExperimentSpec, vocab: int, seq_len: int) -> float:
    mtp, m = spec.training.mtp, spec.model
    p = param_counts(m, vocab_size=vocab)
    block = (p["attention"] + p["mlp"]) / m.num_layers
    proj = 2 * m.hidden_size * m.hidden_size if mtp.kind == "sequential" else 0
    head_dim = m.hidden_size // m.num_heads
    attention = 6.0 * m.num_heads * head_dim * seq_len
    return mtp.depth * (6.0 * (block + proj + vocab * m.hidden_size) + attention)


def _teacher_per_token(spec: S.ExperimentSpec, vocab: int, seq_len: int,
                       others: dict[str, S.ExperimentSpec], notes: list[str]) -> float:
    d = spec.training.distillation
    if d.logits != "full":
        notes.append(f"distillation ({d.logits}): the teacher-logits stages' forward passes "
                     "over each dataset are not included")
        return 0.0
    name = d.teacher.removeprefix("experiment:") if d.teacher.startswith("experiment:") else None
    if name is None or name not in others:
        notes.append(f"distillation teacher {d.teacher!r}: size unknown here, its forward pass "
                     "is not included (plan the teacher's spec together with this one)")
        return 0.0
    notes.append(f"extra FLOPs include teacher {name}'s forward pass (2·N_teacher + attention)")
    return flops_per_token(others[name].model, seq_len, vocab_size=vocab)["total"] / 3


def plan_training(spec: S.ExperimentSpec, vocab: int, *, mfu: float = DEFAULT_MFU,
                  peak_tflops: float = DEFAULT_PEAK_TFLOPS, cpu_peak_flops: float | None = None,
                  others: dict[str, S.ExperimentSpec] | None = None) -> TrainingPlan:
    tr, notes = spec.training, []
    p = param_counts(spec.model, vocab_size=vocab)
    phases = []
    for phase, seq_len in zip(tr.stages, tr.phase_seq_lens()):
        steps = phase.tokens // tr.batch_tokens
        tokens = steps * tr.batch_tokens
        f = flops_per_token(spec.model, seq_len, vocab_size=vocab)
        extra = 0.0
        if tr.mtp is not None:
            extra += _mtp_per_token(spec, vocab, seq_len)
        if tr.distillation is not None:
            extra += _teacher_per_token(spec, vocab, seq_len, others or {}, notes)
        phases.append(PhaseFlops(phase.name, seq_len, steps, tokens, f["dense"] * tokens,
                                 f["attention"] * tokens, extra * tokens))
    if tr.mtp is not None:
        notes.append(f"extra FLOPs include {tr.mtp.depth} {tr.mtp.kind} MTP module(s)")
    notes += _slurm_checkpoint_notes(tr, phases, mfu, peak_tflops * 1e12)
    return TrainingPlan(p["total"], p["non_embedding"], p["matmul"], vocab, phases,
                        len(spec.experiment.runs()), mfu, peak_tflops * 1e12, cpu_peak_flops,
                        list(dict.fromkeys(notes)))


def _slurm_checkpoint_notes(tr: S.TrainingSpec, phases: list[PhaseFlops], mfu: float,
                            peak_flops: float) -> list[str]:
    """A GPU Slurm launcher's checkpoint interval against its time limit, at the plan's MFU
    and peak (an estimate: the stage cannot measure its step time before the job runs). A
    job that Slurm signals before its first in-stage checkpoint is requeued and starts over,
    every time: that is what the note warns about (repro.launch.slurm)."""
    slurm = tr.launcher.slurm
    every = tr.checkpoint_every_steps
    if tr.launcher.kind != "slurm" or slurm is None or not slurm.gpus_per_node or not every:
        return []
    step = max(p.total / p.steps for p in phases if p.steps)  # FLOPs of the costliest step
    seconds = every * step / (tr.distributed.nproc * peak_flops * mfu)
    usable = S.slurm_time_seconds(slurm.time) - slurm.signal_grace_s
    note = (f"Slurm: a checkpoint interval ({every} steps) takes about {seconds / 60:,.1f} min "
            f"on {tr.distributed.nproc} GPU(s) at MFU {mfu:.0%}; a job has {usable / 60:,.1f} "
            "min before Slurm signals it to requeue")
    if seconds < usable:
        return [note]
    return [note + ": it would be requeued before its first checkpoint and start over each "
            "time; lower training.checkpoint_every_steps or raise training.launcher.slurm.time"]
