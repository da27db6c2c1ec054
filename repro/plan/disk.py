"""Disk footprint of an experiment's DVC outputs (each is kept in DVC's cache).

  raw corpora      builtin corpora written by their source stage (other sources are read
                   where they live)
  curated          curated text, kept and removed documents (repro.data.pipeline)
  splits           the split stage's copy of the kept documents, and the decontaminated copy
                   of each trained dataset when decontamination is on
  token shards     tokens × bytes per id (uint16, or uint32 above 65,536 ids;
                   repro.stages.tokenize) + 8 bytes per document end (the .index file)
  checkpoints      one per training phase and run: the export's fp32 weights (save_pretrained)
                   and, in the stage's `state` output, the optimizer state (torch.save; AdamW:
                   2 fp32 tensors per parameter; Muon: 1 momentum buffer per hidden matrix,
                   AdamW's 2 for the rest), plus MTP weights
  snapshots        fp32 weights only (repro.train.checkpoint.save_export)
  eval outputs     per-document sample rows per evaluated checkpoint
Bytes of text are counted as characters (UTF-8, mostly ASCII), JSON overhead left out.
Tokenizer files, metrics and plots are small and left out; so is the transient resume state.
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.plan.curation import DatasetCuration
from repro.plan.evaluation import ASSUMED_BYTES_PER_TOKEN, EvaluationPlan
from repro.plan.quantity import Q, total
from repro.plan.training import TrainingPlan
from repro.spec import schema as S
from repro.train.flops import param_counts

FP32 = 4
KEPT_METADATA_BYTES = 720
"""Bytes each kept document's size measures and quality signals add to the curated folder
(repro.data.signals; 717-735 B per document, measured on tests/stages/test_curate.py's run)."""


@dataclass(frozen=True)
class DiskPlan:
    parts: dict[str, Q]
    token_counts: dict[str, Q]
    """Tokens in each trained dataset's shards."""

    @property
    def total(self) -> Q:
        return total(self.parts.values())


def tokens_drawn(spec: S.ExperimentSpec) -> dict[str, float]:
    """Tokens each dataset supplies to one run (weight × phase tokens, summed)."""
    out: dict[str, float] = {}
    for phase in spec.training.stages:
        trained = phase.tokens // spec.training.batch_tokens * spec.training.batch_tokens
        for name, w in phase.mixture.items():
            out[name] = out.get(name, 0.0) + w * trained
    return out


def dataset_tokens(spec: S.ExperimentSpec, name: str, measured: dict | None, kept: Q,
                   bytes_per_token: float | None) -> Q:
    """Tokens of one trained dataset: measured by its tokenize stage; else its kept text ÷
    bytes per token less the held-out share; at least what training draws ÷ max_epochs (the
    token ledger refuses anything less)."""
    if measured is not None:
        return Q.exact(measured["tokens"], "committed tokenize metrics")
    floor = tokens_drawn(spec)[name] / spec.datasets[name].max_epochs
    if kept.high == float("inf"):
        return Q.at_least(floor, f"training draws ÷ max_epochs {spec.datasets[name].max_epochs:g}")
    bpt = bytes_per_token or ASSUMED_BYTES_PER_TOKEN
    est = kept.scale((1 - spec.datasets[name].heldout.fraction) / bpt, approx=True,
                     basis=f"kept text at {bpt:.2f} bytes/token")
    return Q(max(est.low, floor), max(est.high, floor), True, est.basis)


def _optimizer_states(spec: S.ExperimentSpec, vocab: int) -> float:
    """fp32 optimizer tensors per model parameter."""
    if spec.training.optimizer.kind != "muon":
        return 2.0
    p = param_counts(spec.model, vocab_size=vocab)
    matrices = p["attention"] + p["mlp"]
    return (matrices * 1 + (p["total"] - matrices) * 2) / p["total"]


def _mtp_params(spec: S.ExperimentSpec, vocab: int) -> int:
    mtp, m = spec.training.mtp, spec.model
    if mtp is None:
        return 0
    p = param_counts(m, vocab_size=vocab)
    block = (p["attention"] + p["mlp"] + 2 * m.hidden_size) // m.num_layers
    proj = 2 * m.hidden_size * m.hidden_size + 2 * m.hidden_size if mtp.kind == "sequential" else 0
    return mtp.depth * (block + proj)


def plan_disk(spec: S.ExperimentSpec, curation: list[DatasetCuration], training: TrainingPlan,
              evaluation: EvaluationPlan, snapshots: int, tokenize_metrics: dict[str, dict | None],
              bytes_per_token: dict[str, float]) -> DiskPlan:
    by_name = {c.name: c for c in curation}
    trained = sorted({n for s in spec.training.stages for n in s.mixture})
    decont = spec.evaluation.decontamination is not None
    splits = [c.kept_bytes for c in curation] + ([by_name[n].kept_bytes for n in trained] if decont else [])
    tokens = {n: dataset_tokens(spec, n, tokenize_metrics.get(n), by_name[n].kept_bytes,
                                bytes_per_token.get(n)) for n in trained}
    id_bytes = 4 if training.vocab_size > 65536 else 2
    shards = total(tokens[n].scale(id_bytes) for n in trained)
    index = total(by_name[n].kept_docs.scale(8) for n in trained)
    params = training.params_total + _mtp_params(spec, training.vocab_size)
    states = _optimizer_states(spec, training.vocab_size)
    ckpts = training.runs * len(spec.training.stages)
    parts = {
        "raw corpora": total(c.raw_bytes for c in curation).with_basis(
            "builtin corpora's source stages; other sources are read in place"),
        "curated": total(c.extracted_bytes + c.kept_docs.scale(KEPT_METADATA_BYTES, approx=True)
                         for c in curation).with_basis(
            f"text after extraction, kept and removed documents, + {KEPT_METADATA_BYTES} B of "
            "signals per kept document"),
        "splits" + (" + decontaminated" if decont else ""): total(splits).with_basis(
            "kept text" + (" twice for trained datasets" if decont else "")),
        "token shards": (shards + index).with_basis(
            f"{id_bytes} B per token id + 8 B per document end"),
        "checkpoints": Q.exact(ckpts * params * FP32 * (1 + states),
                               f"{ckpts} x {params:,} params x 4 B x (1 + {states:.2f} states)"),
        "snapshots": Q.exact(snapshots * training.params_total * FP32, f"{snapshots} snapshots"),
        "eval outputs": evaluation.output_bytes_per_checkpoint.scale(evaluation.checkpoints),
    }
    return DiskPlan(parts, tokens)
