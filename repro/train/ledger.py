"""The token ledger: per dataset, the tokens available against the tokens training draws
from it, and the epochs that implies; refused when a dataset would be repeated more than its
`max_epochs` (DatasetSpec.max_epochs).

Each train stage checks the ledger through its own phase before it builds a model or reads
a window (repro.stages.train), and `repro compile` checks it from committed token counts
(repro.compile.specs). The ledger is cumulative: a phase adds its own draws to the book its
`init_state` carries (FILE, in the previous phase's state output), so no phase's settings are
copied into a later phase's config, and `dvc exp run -S` on an earlier phase cannot leave a
stale copy behind: the later phase reads the earlier one's draws from what it really wrote.

The numbers are what training really does (repro.train.data, reused here, not re-derived):
training reads windows of seq_len + 1 tokens that do not overlap and drops each shard's tail
shorter than a window; each sequence slot of a step goes to a dataset by smooth weighted
round robin, restarted at every phase. So at a phase's seq_len a dataset offers `windows`
windows, the phase draws one window per slot it wins, and the phase makes windows drawn /
windows available passes over the dataset's tokens; a dataset's epochs are the sum of its
phases' passes (with one seq_len throughout: windows drawn / windows available). Drawn
tokens are counted as training counts them, seq_len per window (the extra token is the last
target). The round robin is simulated exactly up to EXACT_SLOTS slots per phase; beyond that
a dataset's slots are weight x slots rounded, which the round robin never misses by more
than one slot per phase. The book keeps its `stages` keys (a phase's name is the spec's
`training.stages[].name`), as reports and older metrics read them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping

from repro.errors import ReproError
from repro.jsonio import read_json
from repro.train.data import TokenShards, slot_sources

EXACT_SLOTS = 2_000_000
"""Simulate the round robin slot by slot up to this many slots per phase (about a second)."""

FILE = "token_ledger.json"
"""The book through a phase, in that phase's checkpoint folder (the next phase's `init`)."""

FIX = ("lower the dataset's mixture weight or the training stages' token budgets, give it "
       "more data (a larger source, milder curation), or raise datasets.<name>.max_epochs in "
       "the spec if repeating it that often is intended")

Available = Mapping[str, int]
"""{tokens, windows} a dataset offers at one seq_len (`available_tokens`)."""


class LedgerError(ReproError, ValueError):
    """Training would repeat a dataset more than its max_epochs."""


@dataclass(frozen=True)
class Phase:
    """What one training phase draws: its steps of batch_tokens tokens, in sequences of
    seq_len tokens, from its mixture."""

    name: str
    steps: int
    mixture: Mapping[str, float]
    seq_len: int
    batch_tokens: int

    @property
    def slots(self) -> int:
        """Sequences the phase trains on (one window each)."""
        return self.steps * (self.batch_tokens // self.seq_len)


def phase_windows(phase: Phase) -> dict[str, int]:
    """Windows each dataset gives the phase: one per sequence slot it wins."""
    if phase.slots <= EXACT_SLOTS:
        counts = Counter(slot_sources(dict(phase.mixture), phase.slots))
        return {n: counts.get(n, 0) for n in sorted(phase.mixture)}
    total = sum(phase.mixture.values())
    return {n: round(w / total * phase.slots) for n, w in sorted(phase.mixture.items())}


def available_tokens(folder: Path, seq_len: int) -> dict[str, int]:
    """{tokens, windows} of a tokenize output, counted by the loader training uses."""
    shards = TokenShards(folder, seq_len)
    return {"tokens": int(shards.meta["num_tokens"]), "windows": shards.num_windows}


def _epochs(rows: Mapping[str, Mapping[str, Any]]) -> Fraction:
    """A dataset's passes over its tokens through the phases of `rows`, summed exactly (with
    one seq_len throughout, the float of it is windows drawn / windows available)."""
    return sum((Fraction(r["windows"], r["windows_available"]) for r in rows.values()),
               Fraction(0))


def add_phase(book: Mapping[str, Any] | None, experiment: str, phase: Phase,
              available: Mapping[str, Available],
              max_epochs: Mapping[str, float]) -> dict[str, Any]:
    """The book through `phase`: `book` (through the previous phases, None for the first)
    plus the phase's draws from `available` ({tokens, windows} at the phase's seq_len, per
    dataset of its mixture), each dataset of the mixture limited to its `max_epochs`.
    Datasets the phase does not draw from keep their rows and limits."""
    if book is not None and book["experiment"] != experiment:
        raise ReproError(f"the token ledger of the previous phase is experiment "
                         f"{book['experiment']!r}'s, not {experiment!r}'s",
                         fix="run `repro compile` and `dvc repro` so every stage is rebuilt "
                             "from its own spec")
    if book is not None and phase.name in book["stages"]:
        raise ReproError(f"the token ledger of the previous phase already holds phase "
                         f"{phase.name!r}", fix="run `repro compile` and `dvc repro`")
    datasets = {n: dict(d) for n, d in (book or {}).get("datasets", {}).items()}
    for n, windows in phase_windows(phase).items():
        a = available[n]
        rows = dict(datasets.get(n, {}).get("stages", {}))
        row = {"weight": phase.mixture[n],
               "tokens_planned": round(phase.mixture[n] * phase.steps * phase.batch_tokens),
               "windows": windows, "tokens": windows * phase.seq_len,
               "windows_available": a["windows"], "window_tokens": phase.seq_len + 1}
        rows[phase.name] = row
        epochs = _epochs(rows)
        row["epochs_end"] = round(float(epochs), 4)
        datasets[n] = {
            "tokens_available": a["tokens"],
            "windows_available": a["windows"],
            "tokens_drawn": sum(r["tokens"] for r in rows.values()),
            "windows_drawn": sum(r["windows"] for r in rows.values()),
            "epochs": round(float(epochs), 4),
            "max_epochs": max_epochs[n],
            "stages": rows,
        }
    return {"experiment": experiment, "seq_len": phase.seq_len,
            "window_tokens": phase.seq_len + 1,
            # False: some phase was too long to simulate; its windows are off by <= 1
            "round_robin_simulated": (book is None or book["round_robin_simulated"])
            and phase.slots <= EXACT_SLOTS,
            "stages": [*(book["stages"] if book else []), phase.name],
            "datasets": {n: datasets[n] for n in sorted(datasets)}}


def ledger(experiment: str, phases: list[Phase],
           available: Callable[[str, int], Available],
           max_epochs: Mapping[str, float]) -> dict[str, Any]:
    """The book through every phase; `available(dataset, seq_len)` -> {tokens, windows}."""
    book: dict[str, Any] | None = None
    for phase in phases:
        book = add_phase(book, experiment, phase,
                         {n: available(n, phase.seq_len) for n in phase.mixture}, max_epochs)
    if book is None:
        raise ValueError("a token ledger needs at least one phase")
    return book


def check(book: Mapping[str, Any]) -> None:
    """Raise LedgerError naming every dataset repeated beyond its max_epochs, and the fix."""
    problems = []
    for n, d in book["datasets"].items():
        epochs = float(_epochs(d["stages"]))  # unrounded: the passes, correctly rounded once
        if epochs > d["max_epochs"]:
            phases = ", ".join(f"{s} {v['tokens']:,} tokens (weight {v['weight']:g})"
                               for s, v in d["stages"].items())
            last = list(d["stages"].values())[-1]  # the windows counted at its latest seq_len
            problems.append(
                f"dataset {n!r} would be repeated {epochs:.2f} times, more than its "
                f"max_epochs {d['max_epochs']:g}: training draws {d['tokens_drawn']:,} tokens "
                f"({phases}) from {d['tokens_available']:,} tokens ({d['windows_available']:,} "
                f"windows of {last['window_tokens']} tokens)")
    if problems:
        raise LedgerError(
            f"token ledger of experiment {book['experiment']!r}: " + "; ".join(problems),
            field="training.stages", fix=FIX)


def check_known_counts(experiment: str, phases: list[Phase], max_epochs: Mapping[str, float],
                       tokens: Mapping[str, int]) -> None:
    """The compile-time check: with token counts already measured (committed tokenize
    metrics), refuse a mixture that is sure to exceed max_epochs. `tokens // (seq_len + 1)`
    bounds each phase's windows from above (shard tails are dropped), so the epochs estimated
    here never exceed the real ones: this refuses only what the train stages would refuse.
    Does nothing unless every dataset drawn from has a count."""
    needed = {n for p in phases for n in p.mixture}
    if not phases or not needed <= {n for n in tokens if n in max_epochs}:
        return
    check(ledger(experiment, phases,
                 lambda n, seq_len: {"tokens": tokens[n],
                                     "windows": max(1, tokens[n] // (seq_len + 1))},
                 max_epochs))


def read(checkpoint: Path) -> dict[str, Any]:
    """The book a train stage left in its state folder (the next phase's `init_state`)."""
    path = Path(checkpoint) / FILE
    if not path.is_file():
        raise ReproError(f"{checkpoint} holds no token ledger ({FILE}): it was not "
                         "written by a train stage of this version",
                         fix="run `repro compile` and `dvc repro` so the earlier phases are "
                             "trained again")
    return read_json(path)
