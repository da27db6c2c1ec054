"""The layout of a curated dataset: the curate stage's `docs` output, read by split, funnel
and by people with `datasets` or datatrove. Every reader builds its paths here.

    <curated>/README.md                          dataset card (HF YAML front matter + funnel)
    <curated>/data/<shard>.jsonl                 kept documents, one file per shard, by id
    <curated>/removed/<nn>_<kind>/<shard>.jsonl  documents each filtering step removed
    <curated>/samples.json                       a glance at kept and removed documents

Kept documents sit alone in `data/` because both outside readers take every file they find:
datatrove's `JsonlReader(<folder>)` reads files recursively with no pattern, and
`datasets.load_dataset(<folder>)` without a card takes every data file. So:
  * `<curated>/data` holds the kept documents and nothing else: `JsonlReader(<curated>/data)`
    and `load_dataset(<curated>/data)` both return exactly them;
  * `<curated>` itself is an HF dataset repository: `load_dataset(<curated>)` follows the card's
    `configs` (`data/*.jsonl`) and returns the same documents. (`JsonlReader(<curated>)` would
    also read the card, `samples.json` and `removed/`: give it the `data` folder.)
This module imports nothing heavy: the split stage reads the layout without datatrove.
"""

from __future__ import annotations

from pathlib import Path

from repro.errors import ReproError

KEPT_DIR = "data"
"""Subfolder of kept documents: the folder readers are pointed at."""
REMOVED_DIR = "removed"
"""Subfolder of removed documents, one folder per filtering step (`<nn>_<kind>`)."""
SAMPLES_FILE = "samples.json"
CARD_FILE = "README.md"
KEPT_GLOB = f"{KEPT_DIR}/*.jsonl"
"""The kept files relative to the dataset root, as the card's `configs` names them."""


class LayoutError(ReproError, ValueError):
    """A curated folder without the layout above (written by an older repro)."""


def kept_dir(curated: Path | str) -> Path:
    """The folder of kept documents. It always exists in a curated output (empty when
    curation kept nothing); a folder without it comes from an older layout, whose kept
    shards sat next to `removed/`: reading it as empty would lose the dataset silently."""
    folder = Path(curated) / KEPT_DIR
    if not folder.is_dir():
        raise LayoutError(f"{curated} has no {KEPT_DIR}/ folder of kept documents: it was "
                          "written by an older repro (kept shards at the top)",
                          fix="rerun its curate stage (`dvc repro`)")
    return folder


def removed_dir(curated: Path | str, label: str) -> Path:
    """Documents step `label` (`<nn>_<kind>`) removed; absent when it removed none or keeps
    no removed documents (text extractors)."""
    return Path(curated) / REMOVED_DIR / label
