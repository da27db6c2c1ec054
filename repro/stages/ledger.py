"""Stage `ledger`: an experiment's token ledger, the gate its train stages wait for.

Per dataset of the mixture: the tokens available (the tokenize stage's shards) against the
tokens every training phase draws from it, and the epochs that implies. Fails, before any
training starts, when a dataset would be repeated more than its `max_epochs`.

The numbers are what training really does (repro.train.data, reused here, not re-derived):
training reads windows of seq_len + 1 tokens that do not overlap and drops each shard's
tail shorter than a window; each sequence slot of a step goes to a dataset by smooth
weighted round robin, restarted at every phase. So a dataset offers `windows` windows, a
phase draws one window per slot it wins, and epochs = windows drawn so far / windows. Drawn
tokens are counted as training counts them, seq_len per window (the extra token is the last
target). The round robin is simulated exactly up to EXACT_SLOTS slots per phase; beyond that
a dataset's slots are weight x slots rounded, which the round robin never misses by more
than one slot per phase. The metrics keep their `stages` keys (a phase's name is the
spec's `training.stages[].name`).

Inputs: `tokens:<dataset>` (tokenize outputs). Outputs: `metrics` (the ledger) and `gate`
(a fixed text, written only when the ledger passes; see repro.paths.ledger_gate).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from repro import paths
from repro.errors import ReproError
from repro.stages.base import StageIO, atomic_write_text, log, write_json
from repro.stages.configs import LedgerConfig, LedgerPhase
from repro.stages.kind import ENV, METRICS, Output, Role, StageKind
from repro.train.data import TokenShards, slot_sources

EXACT_SLOTS = 2_000_000
"""Simulate the round robin slot by slot up to this many slots per phase (about a second)."""


class LedgerError(ReproError, ValueError):
    """Training would repeat a dataset more than its max_epochs."""


def phase_windows(phase: LedgerPhase, sequences_per_step: int) -> dict[str, int]:
    """Windows each dataset gives the phase: one per sequence slot it wins."""
    slots = phase.steps * sequences_per_step
    if slots <= EXACT_SLOTS:
        counts = Counter(slot_sources(phase.mixture, slots))
        return {n: counts.get(n, 0) for n in sorted(phase.mixture)}
    total = sum(phase.mixture.values())
    return {n: round(w / total * slots) for n, w in sorted(phase.mixture.items())}


def ledger(cfg: LedgerConfig, available: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The ledger (metrics) from the config and, per dataset, {tokens, windows} available."""
    seqs = cfg.batch_tokens // cfg.seq_len
    drawn: dict[str, int] = {n: 0 for n in available}
    per_phase: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in available}
    for phase in cfg.phases:
        for n, windows in phase_windows(phase, seqs).items():
            drawn[n] += windows
            per_phase[n][phase.name] = {
                "weight": phase.mixture[n],
                "tokens_planned": round(phase.mixture[n] * phase.steps * cfg.batch_tokens),
                "windows": windows,
                "tokens": windows * cfg.seq_len,
                "epochs_end": round(drawn[n] / available[n]["windows"], 4),
            }
    datasets = {}
    for n in sorted(available):
        a = available[n]
        datasets[n] = {
            "tokens_available": a["tokens"],
            "windows_available": a["windows"],
            "tokens_drawn": drawn[n] * cfg.seq_len,
            "windows_drawn": drawn[n],
            "epochs": round(drawn[n] / a["windows"], 4),
            "max_epochs": cfg.max_epochs[n],
            "stages": per_phase[n],
        }
    return {"experiment": cfg.experiment, "seq_len": cfg.seq_len,
            "window_tokens": cfg.seq_len + 1,
            # False: some phase was too long to simulate; its windows are off by <= 1
            "round_robin_simulated": all(s.steps * seqs <= EXACT_SLOTS for s in cfg.phases),
            "stages": [s.name for s in cfg.phases], "datasets": datasets}


def check(book: dict[str, Any]) -> None:
    """Raise LedgerError naming every dataset repeated beyond its max_epochs, and the fix."""
    problems = []
    for n, d in book["datasets"].items():
        epochs = d["windows_drawn"] / d["windows_available"]  # unrounded
        if epochs > d["max_epochs"]:
            phases = ", ".join(f"{s} {v['tokens']:,} tokens (weight {v['weight']:g})"
                               for s, v in d["stages"].items())
            problems.append(
                f"dataset {n!r} would be repeated {epochs:.2f} times, more than its max_epochs "
                f"{d['max_epochs']:g}: training draws {d['tokens_drawn']:,} tokens ({phases}) "
                f"from {d['tokens_available']:,} tokens ({d['windows_available']:,} windows of "
                f"{book['window_tokens']} tokens)")
    if problems:
        raise LedgerError(
            f"token ledger of experiment {book['experiment']!r}: " + "; ".join(problems),
            field="training.stages",
            fix="lower the dataset's mixture weight or the training stages' token budgets, "
                "give it more data (a larger source, milder curation), or raise "
                "datasets.<name>.max_epochs in the spec if repeating it that often is intended")


def check_known_counts(cfg: LedgerConfig, tokens: dict[str, int]) -> None:
    """The compile-time gate: with token counts already measured (committed tokenize
    metrics), refuse a mixture that is sure to exceed max_epochs. `tokens // (seq_len + 1)`
    bounds the windows from above (shard tails are dropped), so the epochs estimated here
    never exceed the real ones: this refuses only what the ledger stage would refuse."""
    known = {n: {"tokens": t, "windows": max(1, t // (cfg.seq_len + 1))}
             for n, t in tokens.items() if n in cfg.max_epochs}
    needed = {n for s in cfg.phases for n in s.mixture}
    if needed <= set(known):
        check(ledger(cfg, {n: known[n] for n in sorted(needed)}))


def available_tokens(folder: Path, seq_len: int) -> dict[str, int]:
    """{tokens, windows} of a tokenize output, counted by the loader training uses."""
    shards = TokenShards(folder, seq_len)
    return {"tokens": int(shards.meta["num_tokens"]), "windows": shards.num_windows}


def run(cfg: LedgerConfig, io: StageIO) -> None:
    tokens = io.inputs_with_prefix("tokens")
    mixture = sorted({n for s in cfg.phases for n in s.mixture})
    missing = [n for n in mixture if n not in tokens]
    if missing:
        raise KeyError(f"stage {io.name}: the mixture names {missing} but inputs hold tokens "
                       f"for {sorted(tokens)}; rerun `repro compile`")
    no_limit = [n for n in mixture if n not in cfg.max_epochs]
    if no_limit:
        raise KeyError(f"stage {io.name}: no max_epochs for {no_limit}; rerun `repro compile`")
    book = ledger(cfg, {n: available_tokens(tokens[n], cfg.seq_len) for n in mixture})
    for n, d in book["datasets"].items():
        log(io.name, f"{n}: {d['tokens_drawn']:,} tokens drawn of {d['tokens_available']:,} "
            f"available: {d['epochs']:.2f} epochs (max {d['max_epochs']:g})")
    check(book)
    write_json(io.output("metrics"), book)
    atomic_write_text(io.output("gate"), f"token ledger of {cfg.experiment} passed\n")


KIND = StageKind(
    config=LedgerConfig,
    outputs={
        # named by the experiment, not the ledger's id (repro.paths.ledger_gate says why)
        "gate": Output(Role.DATA, lambda stage_id, cfg: paths.ledger_gate(cfg.experiment),
                       named_by="experiment.name"),
        "metrics": METRICS,
        "env": ENV,
    },
    run=run,
)
