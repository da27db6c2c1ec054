"""A dataset's funnel with token counts: what each curation step removed, what the split held
out, what decontamination removed, and what is left to train on, in documents, characters
and tokens of the experiment's tokenizer.

Tokens are text tokens (no EOS or other special tokens), counted with the tokenizer the
shards are made with, special-token strings in text encoded as text exactly as the tokenize
stage does; the shards hold `training.tokens + training.docs` tokens (one EOS per document).

What the numbers mean, exactly:
  * `tokens_removed` of a curation step: tokens of the documents the step removed, measured
    on their text as the step received it (after the rewrites of earlier steps; a filter
    that also rewrites, like c4_quality, removes documents before rewriting them). Steps
    that write no removed documents (text extractors: a failed extraction has no text) have
    `tokens_removed: null` when they removed any.
  * `tokens_out` of a curation step: tokens of the documents still in after it, each counted
    on the last text it had (its text at a later removal, or its final text). Steps that
    rewrite kept documents (c4_quality drops lines, pii replaces addresses) change their
    tokens without removing them; that change is in `chars_out` but is not measured in
    tokens: counting it would need the text before and after each step, which curation does
    not keep. The raw input (HTML, PDF bytes) has no meaningful token count.
  * `curation.tokens_out`, `heldout.tokens`, `training.tokens`: exact, on the final texts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from repro.data.layout import removed_dir as removed_folder
from repro.data.special_tokens import text_only
from repro.jsonl import iter_folder_rows, iter_rows

BATCH = 1000
"""Documents per tokenizer call."""


class TokenCounter:
    """Counts text tokens with a `tokenizer.json` (special-token strings count as text)."""

    def __init__(self, tokenizer_json: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = text_only(Tokenizer.from_file(str(tokenizer_json)))

    def count(self, texts: Iterable[str]) -> int:
        total, batch = 0, []
        for t in texts:
            batch.append(t)
            if len(batch) == BATCH:
                total += self._count(batch)
                batch = []
        return total + (self._count(batch) if batch else 0)

    def _count(self, batch: list[str]) -> int:
        return sum(len(e.ids) for e in self.tokenizer.encode_batch(batch, add_special_tokens=False))


def _read(path: Path) -> Iterator[dict]:
    """Rows of `path`; none when it does not exist (a dataset without held-out documents)."""
    return iter_rows(path) if path.exists() else iter(())


def _texts(rows: Iterable[dict]) -> Iterator[str]:
    return (r.get("text", "") for r in rows)


def _summary(rows: list[dict], counter: TokenCounter) -> dict[str, int]:
    return {"docs": len(rows), "chars": sum(len(r["text"]) for r in rows),
            "tokens": counter.count(_texts(rows))}


def curation_funnel(curated: Path, curate_metrics: dict[str, Any], kept_tokens: int,
                    counter: TokenCounter) -> dict[str, Any]:
    """Curate's funnel (docs/chars per step and reasons) with tokens per step."""
    steps: dict[str, dict[str, Any]] = {}
    for label, counts in sorted(curate_metrics["steps"].items()):
        removed_dir = removed_folder(curated, label)
        removed = counts["docs_in"] - counts["docs_out"]
        if removed_dir.is_dir():
            tokens: int | None = counter.count(_texts(iter_folder_rows(removed_dir)))
        else:
            tokens = 0 if removed == 0 else None
        steps[label] = dict(counts, tokens_removed=tokens)
    # tokens still in after each step: the kept tokens plus what later steps removed
    after: int | None = kept_tokens
    for label in reversed(list(steps)):
        steps[label]["tokens_out"] = after
        removed_tokens = steps[label]["tokens_removed"]
        after = None if after is None or removed_tokens is None else after + removed_tokens
    return {
        "docs_in": curate_metrics["docs_in"], "chars_in": curate_metrics["chars_in"],
        "docs_out": curate_metrics["docs_out"], "chars_out": curate_metrics["chars_out"],
        "tokens_out": kept_tokens,
        "steps": steps,
    }


def dataset_funnel(dataset: str, curated: Path, curate_metrics: dict[str, Any], split: Path,
                   decontaminated: Path | None, tokenizer_json: Path) -> dict[str, Any]:
    """The whole funnel of one dataset (see the module docstring for the definitions)."""
    counter = TokenCounter(tokenizer_json)
    split_train = list(_read(Path(split) / "train.jsonl"))
    heldout = _summary(list(_read(Path(split) / "heldout.jsonl")), counter)
    train = _summary(split_train, counter)
    if train["docs"] + heldout["docs"] != curate_metrics["docs_out"]:
        raise ValueError(
            f"dataset {dataset}: the split holds {train['docs']} + {heldout['docs']} documents "
            f"but curation kept {curate_metrics['docs_out']}; the inputs come from different "
            "runs: rerun `dvc repro`")
    out: dict[str, Any] = {
        "dataset": dataset,
        "curation": curation_funnel(curated, curate_metrics, train["tokens"] + heldout["tokens"],
                                    counter),
        "heldout": heldout,
    }
    if decontaminated is not None:
        removed_rows = list(_read(Path(decontaminated) / "removed.jsonl"))
        kept = _summary(list(_read(Path(decontaminated) / "train.jsonl")), counter)
        if kept["docs"] + len(removed_rows) != train["docs"]:
            raise ValueError(
                f"dataset {dataset}: decontamination kept {kept['docs']} and removed "
                f"{len(removed_rows)} documents of a {train['docs']}-document training split; "
                "the inputs come from different runs: rerun `dvc repro`")
        by_task: dict[str, list[dict]] = {}
        for r in removed_rows:
            by_task.setdefault(r["task"], []).append(r)
        out["decontamination"] = {
            "docs_in": train["docs"], "docs_out": kept["docs"], "chars_out": kept["chars"],
            "removed": dict(sorted(Counter(r["task"] for r in removed_rows).items())),
            "tokens_removed": {t: counter.count(_texts(rows)) for t, rows in sorted(by_task.items())},
            "tokens_out": kept["tokens"],
        }
        train = kept
    out["training"] = train
    return out
