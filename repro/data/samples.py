"""A small, deterministic look at what curation kept and removed (`samples.json`)."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Iterator

SAMPLE_CHARS = 500
"""Text is cut to this many characters: samples are for a glance, not for reuse."""


def iter_jsonl(folder: Path) -> Iterator[dict]:
    """Documents of the `*.jsonl` files directly in `folder`, in sorted file order."""
    for path in sorted(Path(folder).glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


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
        "kept": [_brief(d) for d in islice(iter_jsonl(docs_dir), kept)],
        "removed": {
            label: [_brief(d) for d in islice(iter_jsonl(removed_dir / label), removed)]
            for label in step_labels if (removed_dir / label).is_dir()
        },
    }
