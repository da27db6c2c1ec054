"""Evaluation cost per checkpoint: forward FLOPs ≈ 2·N per scored token (plus causal
attention at the request's length, stated separately) × tokens scored, times the evaluated
checkpoints (final, phase ends, snapshots every `evaluation.every_tokens`, for every run).

Tokens scored, with every assumption explicit:
  * standard lm-eval tasks: documents = the evaluation split's size (table below, from the
    datasets' cards; not in FACTS), capped by `limit` / a preset's cap per leaf task;
    requests = documents × choices (lm-eval scores each choice of a multiple-choice question
    as its own request); tokens per request ASSUMED_TOKENS_PER_REQUEST (question + one
    answer), × (1 + num_fewshot) for few-shot contexts;
  * local bpb tasks: held-out documents (≤ max_docs) × their mean tokens (rolling
    loglikelihood scores every token once);
  * local cloze tasks: questions × choices, each at most the context and answer character
    bounds of repro.eval.local_tasks, converted with the tokenizer's bytes per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from repro.eval import local_tasks as L
from repro.plan.quantity import Q, total
from repro.spec import schema as S
from repro.train.flops import param_counts

ASSUMED_TOKENS_PER_REQUEST = 128
"""Our assumption for a 0-shot multiple-choice request (question + one choice); lm-eval's
prompts for these tasks are a sentence to a short paragraph. Not measured."""
ASSUMED_BYTES_PER_TOKEN = 4.0
"""Used when no committed tokenize metrics give the tokenizer's own ratio (our 4096-token BPE
measures 3.66 on pydoc pages, metrics/tokenize-web-*.json; larger vocabularies compress more)."""
ROW_BYTES = 200
"""Our estimate of one per-document row of samples_<task>.jsonl (numbers only: per-choice
loglikelihoods, gold, acc; repro.eval.extract.sample_rows)."""

# (documents in the split lm-eval scores, choices per question, split, leaf tasks)
TASK_SIZES: dict[str, tuple[int, float, str, int]] = {
    "hellaswag": (10042, 4, "validation", 1),
    "arc_easy": (2376, 4, "test", 1),           # a few questions have 3 or 5 choices
    "arc_challenge": (1172, 4, "test", 1),
    "mmlu": (14042, 4, "test", 57),
    "mmlu_continuation": (14042, 4, "test", 57),
    "boolq": (3270, 2, "validation", 1),
    "commonsense_qa": (1221, 5, "validation", 1),
    "winogrande": (1267, 2, "validation", 1),
    "openbookqa": (500, 4, "test", 1),
    "piqa": (1838, 2, "validation", 1),
    "social_iqa": (1954, 3, "validation", 1),
}


@dataclass(frozen=True)
class TaskCost:
    task: str
    docs: Q
    requests: Q
    tokens: Q
    note: str = ""


@dataclass(frozen=True)
class EvaluationPlan:
    tasks: list[TaskCost]
    checkpoints: int
    """Evaluated checkpoints over all runs."""
    dense_per_checkpoint: Q
    """2·N × tokens scored."""
    attention_per_checkpoint: Q
    output_bytes_per_checkpoint: Q
    notes: list[str] = field(default_factory=list)

    @property
    def flops_per_checkpoint(self) -> Q:
        return self.dense_per_checkpoint + self.attention_per_checkpoint

    @property
    def flops(self) -> Q:
        return self.flops_per_checkpoint.scale(self.checkpoints)


def _standard(ev: S.EvaluationSpec) -> list[TaskCost]:
    out = []
    shots = 1 + ev.num_fewshot
    for task, limit in ev.task_limits().items():
        if task not in TASK_SIZES:
            unknown = Q.unknown("split size not in repro.plan.evaluation.TASK_SIZES")
            out.append(TaskCost(task, unknown, unknown, unknown, unknown.basis))
            continue
        n, choices, split, leaves = TASK_SIZES[task]
        if limit is None or limit >= n:
            docs = Q.exact(n, f"{split} split")
        elif leaves == 1:
            docs = Q.exact(limit, f"limit {limit}")
        else:  # the cap applies per leaf task: at most min(split, leaves × limit)
            docs = Q.at_most(min(n, leaves * limit), f"limit {limit} per each of {leaves} subtasks")
        requests = docs.scale(choices)
        tokens = requests.scale(ASSUMED_TOKENS_PER_REQUEST * shots, approx=True,
                                basis=f"{ASSUMED_TOKENS_PER_REQUEST} tokens/request assumed")
        out.append(TaskCost(task, docs, requests, tokens, f"{split}, {choices} choices"))
    return out


def _local(ev: S.EvaluationSpec, kept_docs: dict[str, Q], kept_bytes: dict[str, Q],
           bytes_per_token: dict[str, float], heldout: dict[str, S.HeldoutSpec]) -> list[TaskCost]:
    out = []
    for t in ev.local_tasks:
        bpt = bytes_per_token.get(t.dataset, ASSUMED_BYTES_PER_TOKEN)
        if t.kind == "bpb":
            h, kept = heldout[t.dataset], kept_docs[t.dataset]
            cap = min(t.max_docs, h.max_docs)
            held = Q(min(kept.low * h.fraction, cap), min(kept.high * h.fraction, cap), kept.approx)
            per_doc = (kept_bytes[t.dataset].high / kept.high) if kept.high not in (0, float("inf")) else None
            docs = held.with_basis(f"held-out {h.fraction:g} of kept, at most {cap}")
            tokens = (docs.scale(per_doc / bpt, approx=True, basis="mean kept document")
                      if per_doc else Q.unknown("mean document size unknown"))
            out.append(TaskCost(t.task_name, docs, docs, tokens, f"{bpt:.2f} bytes/token"))
            continue
        chars = (L.MAX_CONTEXT_CHARS + L.MAX_UNIT_CHARS if t.kind == "cloze"
                 else (L.MAX_CODE_CONTEXT_LINES + 1) * L.MAX_CODE_LINE_CHARS)
        docs = Q.at_most(t.max_docs, "max_docs questions")
        requests = docs.scale(t.num_choices)
        tokens = requests.scale(chars / bpt, approx=True,
                                basis=f"at most {chars} chars/request at {bpt:.2f} bytes/token")
        out.append(TaskCost(t.task_name, docs, requests, tokens, tokens.basis))
    return out


def plan_evaluation(spec: S.ExperimentSpec, vocab: int, checkpoints: int,
                    kept_docs: dict[str, Q], kept_bytes: dict[str, Q],
                    bytes_per_token: dict[str, float]) -> EvaluationPlan:
    ev, m = spec.evaluation, spec.model
    tasks = _standard(ev) + _local(ev, kept_docs, kept_bytes, bytes_per_token,
                                   {n: d.heldout for n, d in spec.datasets.items()})
    tokens = total(t.tokens for t in tasks)
    n = param_counts(m, vocab_size=vocab)["matmul"]
    # forward causal attention per token at request length T: 2·L·H·Q·T (a third of training's)
    seq = ASSUMED_TOKENS_PER_REQUEST * (1 + ev.num_fewshot)
    attn = 2.0 * m.num_layers * m.hidden_size * min(seq, spec.training.seq_len)
    notes = [f"standard tasks: {ASSUMED_TOKENS_PER_REQUEST} tokens per request assumed "
             f"(x{1 + ev.num_fewshot} for {ev.num_fewshot}-shot); attention at that length"]
    if any(t.kind == "bpb" for t in ev.local_tasks):
        notes.append("bpb attention counted at the request length above (an underestimate "
                     f"for documents up to seq_len {spec.training.seq_len})")
    rows = total(t.docs for t in tasks).scale(ROW_BYTES, approx=True,
                                              basis=f"~{ROW_BYTES} B per document row")
    return EvaluationPlan(tasks, checkpoints, tokens.scale(2.0 * n), tokens.scale(attn), rows, notes)
