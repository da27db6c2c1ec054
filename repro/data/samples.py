"""A small, deterministic look at what curation kept and removed (`samples.json`)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from repro.jsonl import iter_folder_rows

SAMPLE_CHARS = 500
"""Text is cut to this many characters: samples are for a glance, not for reuse."""


def _brief(doc: dict) -> dict:
    text = doc.get("text", "")
    meta = doc.get("metadata", {})
    out = {"id": doc.get("id"), "chars": len(text), "text": text[:SAMPLE_CHARS]}
    if "filter_reason" in meta:
        out["reason"] = meta["filter_reason"]
    return out


def collect(docs_dir: Path, removed_dir: Path, step_labels: list[str],
            kept: int = 5, removed: int = 3) -> dict:
    """First `kept` kept documents and first `removed` removed documents of each step."""
    return {
        "kept": [_brief(d) for d in islice(iter_folder_rows(docs_dir), kept)],
        "removed": {
            label: [_brief(d) for d in islice(iter_folder_rows(removed_dir / label), removed)]
            for label in step_labels if (removed_dir / label).is_dir()
        },
    }
