"""What the report says: its blocks (headings, tables, legend) from the comparison.

Numbers are rounded here for reading only; the CSV files and summary.json keep full precision.
"""

from __future__ import annotations

from repro.report import data, plots
from repro.report.collect import Collected, ExperimentRun
from repro.report.compare import (AGGREGATE, BOOTSTRAP, METHOD_REPLICAS, NO_SIGNAL, NORMAL,
                                  Comparison, Delta, Direction)
from repro.report.render import Block, Bullets, Heading, Image, Paragraph, Table
from repro.report.tables import final_train_loss, final_train_losses, loss_delta

DIGITS = 4
MISSING = "—"
ARROW = {"lower": " ↓", "higher": " ↑", None: ""}


def fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return MISSING
    return f"{x:+.{DIGITS}f}" if signed else f"{x:.{DIGITS}f}"


def fmt_tokens(x: int | None) -> str:
    return MISSING if x is None else f"{x:,}"


def _pct(confidence: float) -> str:
    return f"{confidence * 100:g}%"


CHECKPOINT_ONLY = "(this checkpoint only)"
WITHIN_SEED_NOISE = "within seed noise"


def verdict(d: Delta, better: Direction | None, interval: bool = True) -> str:
    """better/worse/same by the metric's direction, marked '(this checkpoint only)' when
    a side has a single replica (not a claim about the method); then 'not significant'
    when the interval covers zero (with `interval`: the row has one) and 'within seed
    noise' when |Δ| is below the replicas' seed spread."""
    if d.delta is None:
        return MISSING
    notes = []
    if better is not None:
        notes.append("same" if d.delta == 0 else
                     "better" if (d.delta < 0) == (better == "lower") else "worse")
    if d.claim == "checkpoint":
        notes = [" ".join(notes[:1] + [CHECKPOINT_ONLY])]
    if interval and d.significant is False:
        notes.append("not significant")
    elif interval and d.significant is None:
        notes.append("no interval")
    if d.within_seed_noise:
        notes.append(WITHIN_SEED_NOISE)
    return ", ".join(notes)


def claim_text(d: Delta, replicas: int, baseline_replicas: int) -> str:
    """'method (seeds: 2 vs 2)' or 'checkpoint (seeds: 1 vs 2)': experiment vs baseline."""
    if d.claim is None:
        return MISSING
    return f"{d.claim} (seeds: {replicas} vs {baseline_replicas})"


def _experiment_items(col: Collected) -> tuple[str, ...]:
    items = []
    for run in col.runs:
        role = " (baseline)" if run.name == col.baseline else ""
        reps = ", ".join(r.name for r in run.replicas)
        first = next((r for r in run.replicas if r.phases), None)
        phases = " → ".join(s.name for s in first.phases) if first else MISSING
        final = run.final_phase
        end = (f"{fmt_tokens(final.tokens_total)} tokens; compared at the end of stage "
               f"{final.name} (step {final.step_end})" if final else "no training metrics")
        items.append(f"{run.name}{role}: {len(run.replicas)} replica(s) ({reps}), "
                     f"{len(run.evaluated)} evaluated; stages {phases}; {end}")
    return tuple(items)


def _name(run: ExperimentRun, baseline: str | None) -> str:
    return run.name + (" (baseline)" if run.name == baseline else "")


def _results_table(col: Collected, cmp: Comparison) -> Table:
    header = ["experiment", "replicas", "tokens", "final train loss ↓"]
    header += [f"{c.task} {c.metric}{ARROW[c.direction]}" for c in cmp.columns]
    header.append("aggregate ↑")
    body = []
    for run in col.runs:
        phase = run.final_phase
        cells = [_name(run, col.baseline), str(len(run.evaluated)),
                 fmt_tokens(phase.tokens_total if phase else None), fmt(final_train_loss(run))]
        for key in [c.key for c in cmp.columns] + [AGGREGATE]:
            s = cmp.scores[run.name][key]
            cells.append(fmt(s.value) if s.value is None or s.stderr is None
                         else f"{fmt(s.value)} ± {fmt(s.stderr)}")
        body.append(tuple(cells))
    return Table(tuple(header), tuple(body), ("left",) + ("right",) * (len(header) - 1))


def _normalised_table(col: Collected, cmp: Comparison) -> Table | None:
    cols = [c for c in cmp.columns if cmp.primary.get(c.task) == c.metric]
    if not cols:
        return None
    header = ["experiment"] + [f"{c.task} {c.metric}" for c in cols] + ["aggregate"]
    body = []
    for run in col.runs:
        sc = cmp.scores[run.name]
        body.append(tuple([_name(run, col.baseline)]
                          + [fmt(sc[c.key].normalised) for c in cols]
                          + [fmt(sc[AGGREGATE].value)]))
    return Table(tuple(header), tuple(body), ("left",) + ("right",) * (len(header) - 1))


def _delta_table(col: Collected, cmp: Comparison) -> Table:
    pct = _pct(cmp.settings.confidence)
    header = ("experiment", "metric", "value", "baseline", "Δ", "seed spread",
              f"{pct} interval", "verdict", "claim", "method")
    body = []
    b_run = next((r for r in col.runs if r.name == col.baseline), None)
    for run in col.runs:
        ds = cmp.deltas.get(run.name)
        if ds is None:
            continue
        ld = loss_delta(run, b_run)
        if ld.delta is not None and b_run is not None:
            losses, base = final_train_losses(run), final_train_losses(b_run)
            body.append((run.name, "final train loss ↓", fmt(final_train_loss(run)),
                         fmt(final_train_loss(b_run)), fmt(ld.delta, True), fmt(ld.seed_spread),
                         MISSING, verdict(ld, "lower", interval=False),
                         claim_text(ld, len(losses), len(base)), "difference of means"))
        for c in [*cmp.columns, None]:
            key = AGGREGATE if c is None else c.key
            d = ds[key]
            mine = cmp.scores[run.name][key]
            theirs = cmp.scores[col.baseline][key]  # type: ignore[index]
            better: Direction | None = "higher" if c is None else c.direction
            label = "aggregate ↑" if c is None else f"{c.task} {c.metric}{ARROW[c.direction]}"
            flat = cmp.no_signal(key)
            interval = (NO_SIGNAL if flat else MISSING if d.low is None or d.high is None
                        else f"[{fmt(d.low, True)}, {fmt(d.high, True)}]")
            method = {BOOTSTRAP: "bootstrap", NORMAL: "normal approx."}.get(d.method or "",
                                                                             MISSING)
            if d.items is not None:
                method += f", {d.items} items"
            body.append((run.name, label, fmt(mine.value), fmt(theirs.value),
                         fmt(d.delta, True), fmt(d.seed_spread), interval,
                         NO_SIGNAL if flat else verdict(d, better),
                         claim_text(d, len(mine.per_replica), len(theirs.per_replica)), method))
    return Table(header, tuple(body), ("left", "left", "right", "right", "right", "right",
                                       "right", "left", "left", "left"))


def _label(cmp: Comparison, key: str) -> str:
    c = next((c for c in cmp.columns if c.key == key), None)
    return "aggregate ↑" if c is None else f"{c.task} {c.metric}{ARROW[c.direction]}"


def _signal_blocks(col: Collected, cmp: Comparison) -> list[Block]:
    """Signal and noise per task metric; a paragraph naming the metrics with no signal."""
    keys = [c.key for c in cmp.columns] + [AGGREGATE]
    sigs = {k: cmp.signals[k] for k in keys if k in cmp.signals}
    if not sigs:
        return []
    body = []
    for key, sig in sigs.items():
        snr = MISSING if sig.snr is None else f"{sig.snr:.2f}"
        body.append((_label(cmp, key), fmt(sig.signal), fmt(sig.noise), snr, str(sig.scores),
                     NO_SIGNAL if sig.flat else ""))
    blocks: list[Block] = [
        Heading(3, "Signal and noise"),
        Paragraph("Does a task tell these experiments apart? signal: range of the experiments' "
                  "values; noise: seed spread of the replicas; SNR = signal / noise (see "
                  "'How to read')."),
        Table(("metric", "signal", "noise", "SNR", "scores", "note"), tuple(body),
              ("left", "right", "right", "right", "right", "left"))]
    flat = [k for k, sig in sigs.items() if sig.flat]
    if flat:
        scores = {k: next(s.value for s in (cmp.scores[r.name][k] for r in col.runs)
                          if s.value is not None) for k in flat}
        blocks.append(Paragraph(
            f"{NO_SIGNAL.capitalize()}: " + "; ".join(
                f"{_label(cmp, k)} (every replica of every experiment scores {fmt(scores[k])})"
                for k in flat)
            + ". These models are not told apart by it: its differences are 0 with an "
              "interval of zero width, which is not a result; the differences table says "
              f"'{NO_SIGNAL}' instead. A task at chance level, or one answered by a surface cue "
              "(such as the choices' lengths) as every model answers it, reads so."))
    return blocks


def _legend(col: Collected, cmp: Comparison) -> tuple[str, ...]:
    st = cmp.settings
    pct = _pct(st.confidence)
    items = [
        "↓ lower is better, ↑ higher is better. bits_per_byte and training loss: lower is "
        "better. acc, acc_norm and the aggregate: higher is better.",
        "bits_per_byte: bits per UTF-8 byte of held-out text (rolling log-likelihood), the "
        "ratio Σ bits / Σ bytes over documents; it does not depend on the tokenizer.",
        "acc / acc_norm: share of cloze questions where the true continuation scores highest; "
        "acc_norm first divides each choice's log-likelihood by its length.",
        "Each value is the mean over the experiment's evaluated replicas (models trained alike "
        "with another seed and/or data subset; FineWeb averages two per variant).",
        "± is a standard error. With per-item samples it is the bootstrap's: the standard "
        "deviation of the value over resamples of the items and, with several replicas, of the "
        "replicas, so it includes seed/data variance. Without samples it is lm-eval's stderr "
        "(plus the spread of the replicas' mean with several replicas). summary.csv holds "
        "lm-eval's stderr next to it (_stderr_lm_eval).",
        f"Δ = experiment − baseline. Interval: {pct} percentile interval of Δ from a paired "
        f"bootstrap with {st.iterations:,} draws (seed {st.seed}): each draw resamples the "
        "items both models answered (same doc_id) with replacement and, independently per "
        "model, its replicas; Δ is recomputed on each draw (bits_per_byte as a ratio of sums). "
        "'not significant': the interval covers 0.",
        f"claim: 'method' when the experiment and the baseline each have at least "
        f"{METHOD_REPLICAS} evaluated replicas (seeds); the interval then resamples the replicas "
        "as well as the items, so it already includes the seed variance, and the verdict is "
        "about the method. 'checkpoint' when either has fewer: the interval resamples the "
        "evaluation items only, so the verdict is about these trained checkpoints and not the "
        "method (another seed, or the same run on another CPU kind with its other float "
        "rounding, can flip it); such verdicts read '(this checkpoint only)'. The counts are "
        "experiment vs baseline.",
        "seed spread: the noise floor the replicas measured, the pooled standard deviation of "
        "the per-replica values of the experiment and the baseline, each about its own mean: "
        "√(Σ (x − side mean)² / Σ (n − 1)). It is how far one retraining with another seed "
        "typically moves a score; '—' when neither side has 2 replicas. 'within seed noise': "
        "|Δ| is smaller than the seed spread.",
        "Signal and noise (after Heineman et al. 2025, 'Signal and Noise: A Framework for "
        "Reducing Uncertainty in Language Model Evaluation'): signal is the range (max − min) "
        "of the experiments' values of a metric, noise the pooled seed spread of every "
        "experiment's replicas, SNR their ratio; a task separates the experiments only when "
        f"its signal is well above its noise. '{NO_SIGNAL}': every replica of every "
        "experiment scored exactly the same value, so its differences (0, interval [0, 0]) "
        "are not results.",
        "Where there are no per-item samples the interval is a normal approximation, "
        "Δ ± z·√(se² + se_baseline²), which ignores that both models answer the same items "
        "(method 'normal approx.').",
        "above random (normalised): (score − r) / (1 − r) for higher-is-better scores with "
        "chance r; (r − score) / r for bits_per_byte, r being the bits per byte of a uniform "
        "distribution over the model's vocabulary. 0 is chance, 1 is perfect, negative is "
        "below chance.",
        f"aggregate: mean of the normalised primary metric (bits_per_byte, else acc_norm, else "
        f"acc) over the tasks {', '.join(cmp.aggregate_tasks) or MISSING}; its interval uses the "
        "same bootstrap draws for every task.",
        "final train loss: mean over replicas of the next-token cross entropy (nats per token) "
        "over the last log window of the final stage (the cross-entropy part of the objective "
        "for multi-token prediction and distillation runs). It is per token, so it only "
        "compares experiments sharing a tokenizer.",
        "Plots: in the loss plot each thin line is a replica, dotted vertical lines mark "
        "training stage boundaries and the lower panel is the learning rate; in the score plot "
        "the line is the mean over replicas and the band spans the lowest to highest replica.",
        "Numbers here are rounded; summary.csv, deltas.csv, scores_over_tokens.csv and "
        "summary.json hold every number at full precision.",
    ]
    unknown = sorted({c.metric for c in cmp.columns if c.direction is None})
    if unknown:
        items.insert(1, f"Direction unknown to this report (read with care): {', '.join(unknown)}.")
    return tuple(items)


def build(name: str, baseline: str, col: Collected, cmp: Comparison,
          images: dict[str, bytes]) -> list[Block]:
    """The report's blocks; `images` holds the PNGs that exist (file name -> bytes)."""
    blocks: list[Block] = [
        Heading(1, f"Report: {name}"),
        Paragraph(f"Compares {len(col.runs)} experiment(s) at their final checkpoints (the "
                  f"training stage with the largest step) against the baseline {baseline}."),
        Heading(2, "Experiments"),
        Bullets(_experiment_items(col)),
    ]
    if col.problems:
        blocks += [Heading(2, "Missing or incomplete"),
                   Paragraph("The report shows everything else; these parts are missing or "
                             "partial, and why:"),
                   Bullets(tuple(p.text() for p in col.problems))]
    blocks += [Heading(2, "Results"),
               Paragraph("Mean over replicas ± standard error (see 'How to read')."),
               _results_table(col, cmp)]
    norm = _normalised_table(col, cmp)
    if norm is not None:
        blocks += [Heading(2, "Scores above random"),
                   Paragraph("Each task's primary metric normalised so that 0 is chance and 1 "
                             "is perfect; the aggregate is their mean over the aggregate tasks."),
                   norm]
    blocks.append(Heading(2, f"Differences vs baseline ({baseline})"))
    if col.baseline is None:
        blocks.append(Paragraph(f"No differences: the baseline {baseline} cannot be compared "
                                f"against (see 'Missing or incomplete')."))
    elif len(col.runs) > 1:
        blocks += [Paragraph(f"Δ = experiment − baseline with a {_pct(cmp.settings.confidence)} "
                             f"interval; 'not significant' when the interval covers 0. A verdict "
                             f"is about the method only with {METHOD_REPLICAS} or more replicas "
                             f"(seeds) on both sides; otherwise it holds for this checkpoint "
                             f"only (see 'How to read')."),
                   _delta_table(col, cmp), *_signal_blocks(col, cmp)]
    else:
        blocks.append(Paragraph("Only the baseline is in this report; nothing to compare."))
    blocks += [Heading(2, "Training curves"),
               Image(plots.LOSS_FILE, "Training loss and learning rate vs tokens, all replicas"),
               Heading(2, "Scores vs tokens"),
               Image(plots.SCORES_FILE, "Primary metric of each task vs tokens seen")]
    data_blocks = data.blocks(col.runs)
    if data_blocks:
        for file, alt in ((plots.FUNNEL_FILE, "Documents left after each curation step"),
                          (plots.LEDGER_FILE, "Tokens available, planned and drawn per dataset")):
            if file in images:
                data_blocks.append(Image(file, alt))
    blocks += [*data_blocks, Heading(2, "How to read this report"), Bullets(_legend(col, cmp))]
    return blocks
