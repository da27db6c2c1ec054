"""The report's data section: each dataset's funnel (curation steps, held-out split,
decontamination) in documents, characters and tokens, and the token ledger (tokens available
vs drawn, epochs) of each experiment.

Experiments that share a dataset's stages have identical funnels and are shown once; ledger
rows identical across experiments are merged, so the quickstart's two experiments (same data,
same budgets) give one table per dataset and one ledger row per dataset.
"""

from __future__ import annotations

from typing import Any, Mapping

from repro.report.collect import ExperimentRun
from repro.report.render import Block, Heading, Paragraph, Table

MISSING = "—"
TOP_REASONS = 3
"""Removal reasons listed per step (most frequent first); the rest are summed as `other`."""


def _int(x: Any) -> str:
    return MISSING if x is None else f"{x:,}"


def _reasons(removed: Mapping[str, int]) -> str:
    items = sorted(removed.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [f"{k} {v:,}" for k, v in items[:TOP_REASONS]]
    rest = sum(v for _, v in items[TOP_REASONS:])
    return ", ".join(shown + ([f"other {rest:,}"] if rest else []))


def funnel_rows(f: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Rows: input, each curation step, held out, decontamination (if any); the last row's
    docs/chars/tokens are what the dataset trains on."""
    cur = f["curation"]
    rows = [("input", _int(cur["docs_in"]), _int(cur["chars_in"]), MISSING, "", "", "")]
    for label, s in cur["steps"].items():
        rows.append((label, _int(s["docs_out"]), _int(s["chars_out"]), _int(s.get("tokens_out")),
                     _int(s["docs_in"] - s["docs_out"]), _int(s.get("tokens_removed")),
                     _reasons(s.get("removed") or {})))
    held = f["heldout"]
    rows.append(("held out (evaluation)", _int(cur["docs_out"] - held["docs"]),
                 _int(cur["chars_out"] - held["chars"]), _int(cur["tokens_out"] - held["tokens"]),
                 _int(held["docs"]), _int(held["tokens"]), "held-out split"))
    dec = f.get("decontamination")
    if dec:
        removed_tokens = dec.get("tokens_removed") or {}
        rows.append(("decontamination", _int(dec["docs_out"]), _int(dec["chars_out"]),
                     _int(dec["tokens_out"]), _int(dec["docs_in"] - dec["docs_out"]),
                     _int(sum(removed_tokens.values())), _reasons(dec.get("removed") or {})))
    return rows


FUNNEL_HEADER = ("step", "docs", "chars", "tokens", "docs removed", "tokens removed",
                 "why (documents)")


def _unique_funnels(runs: list[ExperimentRun]) -> list[tuple[str, Mapping[str, Any]]]:
    """(title, funnel) per distinct funnel, in experiment then dataset order."""
    seen: list[tuple[str, Mapping[str, Any], list[str]]] = []
    for run in runs:
        for dataset, f in run.funnels.items():
            for _, g, names in seen:
                if g == f:
                    names.append(run.name)
                    break
            else:
                seen.append((dataset, f, [run.name]))
    all_names = [r.name for r in runs if r.funnels]
    out = []
    for dataset, f, names in seen:
        # name the experiments only when a dataset's funnel differs between them
        clash = sum(1 for d, _, _ in seen if d == dataset) > 1
        title = f"{dataset} ({', '.join(names)})" if clash and names != all_names else dataset
        out.append((title, f))
    return out


def ledger_rows(runs: list[ExperimentRun]) -> list[tuple[str, ...]]:
    """One row per (dataset, ledger numbers); experiments with identical rows are merged."""
    rows: list[tuple[list[str], str, tuple[str, ...]]] = []
    for run in runs:
        if run.ledger is None:
            continue
        book = run.ledger
        for dataset, d in book["datasets"].items():
            by_phase = " + ".join(f"{s} {d['stages'][s]['tokens']:,}"
                                  for s in book["stages"] if s in d["stages"])
            cells = (dataset, _int(d["tokens_available"]), _int(d["tokens_drawn"]), by_phase,
                     f"{d['epochs']:.2f}", f"{d['max_epochs']:g}")
            for names, _, other in rows:
                if other == cells:
                    names.append(run.name)
                    break
            else:
                rows.append(([run.name], dataset, cells))
    return [(", ".join(names), *cells) for names, _, cells in rows]


def funnel_counts(f: Mapping[str, Any]) -> list[tuple[str, int, int | None]]:
    """(step, docs kept, tokens kept or None) from input to what the dataset trains on."""
    cur = f["curation"]
    out: list[tuple[str, int, int | None]] = [("input", cur["docs_in"], None)]
    out += [(label, s["docs_out"], s.get("tokens_out")) for label, s in cur["steps"].items()]
    held = f["heldout"]
    out.append(("held out", cur["docs_out"] - held["docs"], cur["tokens_out"] - held["tokens"]))
    dec = f.get("decontamination")
    if dec:
        out.append(("decontamination", dec["docs_out"], dec["tokens_out"]))
    return out


def unique_funnels(runs: list[ExperimentRun]) -> list[tuple[str, Mapping[str, Any]]]:
    """(title, funnel) per distinct funnel (shared funnels once)."""
    return _unique_funnels(runs)


def ledger_numbers(runs: list[ExperimentRun]) -> list[tuple[str, str, int, int, int]]:
    """(experiments, dataset, tokens available, tokens planned, tokens drawn); experiments
    with identical numbers merged. Planned = mixture weight x phase tokens, summed over
    phases; drawn = whole windows training takes (repro.train.ledger)."""
    rows: list[tuple[list[str], tuple[str, int, int, int]]] = []
    for run in runs:
        if run.ledger is None:
            continue
        for dataset, d in run.ledger["datasets"].items():
            planned = sum(int(s.get("tokens_planned", s["tokens"])) for s in d["stages"].values())
            cells = (dataset, int(d["tokens_available"]), planned, int(d["tokens_drawn"]))
            for names, other in rows:
                if other == cells:
                    names.append(run.name)
                    break
            else:
                rows.append(([run.name], cells))
    return [(", ".join(names), *cells) for names, cells in rows]


LEDGER_HEADER = ("experiment", "dataset", "tokens available", "tokens drawn",
                 "drawn per stage", "epochs", "max epochs")


def blocks(runs: list[ExperimentRun]) -> list[Block]:
    """The data section, or nothing when no run carries funnels or a ledger."""
    funnels = _unique_funnels(runs)
    ledger = ledger_rows(runs)
    if not funnels and not ledger:
        return []
    out: list[Block] = [Heading(2, "Data")]
    if funnels:
        out.append(Paragraph(
            "Each row is what is left after the step. Tokens are text tokens of the experiment's "
            "tokenizer (token shards add one end-of-text token per document); a step's tokens "
            "count each document on the last text it had, so text rewritten by a step (c4_quality "
            "line removal, pii) shows in chars, not in that step's tokens. Decontamination "
            "removes training documents sharing a word n-gram with an evaluation task."))
        for title, f in funnels:
            out += [Heading(3, f"Funnel: {title}"),
                    Table(FUNNEL_HEADER, tuple(funnel_rows(f)),
                          ("left",) + ("right",) * 5 + ("left",))]
    if ledger:
        out += [Heading(3, "Token ledger"),
                Paragraph("Tokens each dataset offers against what training draws from it "
                          "(whole windows of seq_len + 1 tokens; a shard's tail shorter than a "
                          "window is never drawn); epochs = windows drawn / windows available."),
                Table(LEDGER_HEADER, tuple(ledger),
                      ("left", "left", "right", "right", "left", "right", "right"))]
    return out


def summary(runs: list[ExperimentRun]) -> dict[str, Any]:
    """Funnels and ledgers at full precision, for summary.json."""
    return {"funnels": {r.name: dict(r.funnels) for r in runs if r.funnels},
            "ledgers": {r.name: r.ledger for r in runs if r.ledger is not None}}
