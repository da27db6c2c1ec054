"""What the report says: its blocks (headings, tables, legend) from the summary table.

Numbers are rounded here for reading only; summary.csv/summary.json keep full precision.
"""

from __future__ import annotations

from typing import Any

from repro.report import data
from repro.report.collect import ExperimentRun
from repro.report.render import Block, Bullets, Heading, Image, Paragraph, Table
from repro.report.tables import NOISE_SIGMAS, STDERR, Direction, MetricColumn

PLOT_FILE = "loss.png"
DIGITS = 4
MISSING = "—"
ARROW = {"lower": " ↓", "higher": " ↑", None: ""}


def fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return MISSING
    return f"{x:+.{DIGITS}f}" if signed else f"{x:.{DIGITS}f}"


def fmt_tokens(x: int | None) -> str:
    return MISSING if x is None else f"{x:,}"


def _value(row: dict, key: str) -> str:
    v, se = row.get(key), row.get(key + STDERR)
    return fmt(v) if se is None or v is None else f"{fmt(v)} ± {fmt(se)}"


def _delta(row: dict, key: str, better: Direction | None) -> str:
    d = row.get(key + "_delta")
    if d is None:
        return MISSING
    notes = []
    if better is not None:
        notes.append("same" if d == 0 else
                     "better" if (d < 0) == (better == "lower") else "worse")
    noise = row.get(key + "_within_noise_2se")
    if noise is not None:
        notes.append("within noise" if noise else "beyond noise")
    return fmt(d, signed=True) + (f" ({', '.join(notes)})" if notes else "")


def _results_table(rows: list[dict], cols: list[MetricColumn], baseline: str) -> Table:
    header = ["experiment", "tokens", "final train loss ↓"]
    for c in cols:
        header.append(f"{c.task} {c.metric}{ARROW[c.direction]}")
        if c.has_random:
            header.append(f"{c.task} {c.metric} above random ↑")
    body = []
    for r in rows:
        name = r["experiment"] + (" (baseline)" if r["experiment"] == baseline else "")
        cells = [name, fmt_tokens(r["tokens"]), fmt(r["final_train_loss"])]
        for c in cols:
            cells.append(_value(r, c.key))
            if c.has_random:
                cells.append(fmt(r.get(c.key + "_above_random")))
        body.append(tuple(cells))
    return Table(tuple(header), tuple(body), ("left",) + ("right",) * (len(header) - 1))


def _delta_table(rows: list[dict], cols: list[MetricColumn]) -> Table:
    header = ["experiment", "final train loss Δ ↓"]
    header += [f"{c.task} {c.metric} Δ{ARROW[c.direction]}" for c in cols]
    body = [tuple([r["experiment"], _delta(r, "final_train_loss", "lower"),
                   *(_delta(r, c.key, c.direction) for c in cols)])
            for r in rows if not r["is_baseline"]]
    return Table(tuple(header), tuple(body), ("left",) + ("right",) * (len(header) - 1))


def _experiment_items(runs: list[ExperimentRun], baseline: str) -> tuple[str, ...]:
    items = []
    for run in runs:
        role = " (baseline)" if run.name == baseline else ""
        stages = " → ".join(s.name for s in run.stages)
        items.append(f"{run.name}{role}: stages {stages}; {fmt_tokens(run.final.tokens_total)} "
                     f"tokens; evaluated at the end of stage {run.final.name} "
                     f"(step {run.final.step_end})")
    return tuple(items)


def _legend(cols: list[MetricColumn]) -> tuple[str, ...]:
    items = [
        "↓ lower is better, ↑ higher is better. bits_per_byte and training loss: lower is "
        "better. acc and acc_norm: higher is better.",
        "bits_per_byte: bits per UTF-8 byte of held-out text (rolling log-likelihood); "
        "it does not depend on the tokenizer, so it compares models with different tokenizers.",
        "acc / acc_norm: share of cloze questions where the true continuation scores highest; "
        "acc_norm first divides each choice's log-likelihood by its length.",
        "above random: (score − r) / (1 − r), r being the task's chance score: 0 is chance, "
        "1 is perfect, negative is below chance.",
        "final train loss: mean next-token cross entropy (nats per token) over the last log "
        "window of the final stage; for multi-token prediction and distillation runs it is the "
        "cross-entropy part of their objective, so all experiments compare alike. It is per "
        "token, so it only compares experiments sharing a tokenizer.",
        "± is the standard error lm-eval reports. Δ = experiment − baseline; better/worse "
        "follow each metric's direction.",
        f"within noise: |Δ| < {NOISE_SIGMAS:g}·√(se² + se_baseline²). This is an "
        "approximate, unpaired two-sigma check: both models answer the same items, so a "
        "paired bootstrap would be sharper (not done yet). Read 'beyond noise' as a hint, "
        "not a significance test.",
        "Plot: dotted vertical lines mark training stage boundaries; the lower panel is the "
        "learning rate.",
        "Numbers here are rounded; summary.csv and summary.json hold every number at full "
        "precision.",
    ]
    unknown = sorted({c.metric for c in cols if c.direction is None})
    if unknown:
        items.insert(1, f"Direction unknown to this report (read with care): {', '.join(unknown)}.")
    return tuple(items)


def build(name: str, baseline: str, runs: list[ExperimentRun], cols: list[MetricColumn],
          table: Any) -> list[Block]:
    rows = table.to_dicts()
    blocks: list[Block] = [
        Heading(1, f"Report: {name}"),
        Paragraph(f"Compares {len(runs)} experiment(s) at their final checkpoints (the training "
                  f"stage with the largest step) against the baseline {baseline}."),
        Heading(2, "Experiments"),
        Bullets(_experiment_items(runs, baseline)),
        Heading(2, "Results"),
        Paragraph("↓ lower is better, ↑ higher is better; ± is the standard error."),
        _results_table(rows, cols, baseline),
        Heading(2, f"Differences vs baseline ({baseline})"),
    ]
    if len(runs) > 1:
        blocks += [Paragraph(f"Δ = experiment − baseline. 'within noise' is an approximate "
                             f"unpaired {NOISE_SIGMAS:g}-sigma check (see below), not a paired "
                             f"bootstrap."),
                   _delta_table(rows, cols)]
    else:
        blocks.append(Paragraph("Only the baseline is in this report; nothing to compare."))
    blocks += [
        Heading(2, "Training curves"),
        Image(PLOT_FILE, "Training loss and learning rate vs tokens, all experiments"),
        *data.blocks(runs),
        Heading(2, "How to read this report"),
        Bullets(_legend(cols)),
    ]
    return blocks
