"""The dataset card of a curated dataset: `README.md` with Hugging Face YAML front matter, so
that `datasets.load_dataset(<curated folder>)` finds the kept documents through `configs`
and a reader (or the Hub) sees the license, the source, every curation step with its
settings and the funnel of what each step kept.

Front matter: the Hub's own fields, built with huggingface_hub's `DatasetCardData` (license,
pretty_name, size_categories, task_categories, language, configs, and `dataset_info.features`:
the documents' columns and metadata types, declared because `datasets` infers a schema per
file otherwise, and fails when one shard's documents lack a metadata key another's have, or
have it null; with the features declared it casts every file to them), plus one key of ours,
`curation`: the source, the steps (label, kind, settings), the funnel (documents and
characters in and out of each step, removal reasons), the kept documents' size, and where
each step's removed documents are. Counts are documents, characters, UTF-8 bytes and words:
curation runs before any tokenizer, and tokens per tokenizer are counted by the funnel stage
(repro.data.token_funnel). Nothing in the card depends on the executor, the machine or the
time: a rerun writes the same bytes.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as paj
from datasets import DatasetInfo, Features
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData

from repro.data.layout import KEPT_DIR, KEPT_GLOB, REMOVED_DIR, SAMPLES_FILE, removed_dir
from repro.data.signals import SIGNALS_KEY
from repro.jsonl import folder_files, iter_folder_rows
from repro.spec import schema as S

SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                   (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"),
                   (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                   (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"),
                   (1_000_000_000_000, "100B<n<1T"))
"""The Hub's `size_categories` values, by number of examples (documents)."""
SCHEMA_CHUNK_BYTES = 10 << 20
"""Kept files are read this much at a time to infer their schema (as `datasets` reads them)."""

log = logging.getLogger(__name__)


def size_category(docs: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if docs < limit:
            return name
    return "n>1T"


def kept_totals(kept: Path) -> dict[str, int | None]:
    """Documents, characters, bytes and words of the kept documents (from their metadata);
    words None where documents are not counted in words (code: repro.data.signals)."""
    totals: dict[str, int | None] = {"docs": 0, "n_chars": 0, "n_bytes": 0, "n_words": 0}
    for row in iter_folder_rows(kept):
        meta = row.get("metadata") or {}
        totals["docs"] += 1
        for key in ("n_chars", "n_bytes", "n_words"):
            if key == "n_words" and (key not in meta or totals[key] is None):
                totals[key] = None
            else:
                totals[key] += int(meta.get(key, 0))
    return totals


def kept_features(kept: Path) -> Features | None:
    """The `datasets.Features` of the kept documents: the schema pyarrow's JSON reader infers
    for each chunk of each file (what `datasets` infers when it loads them), unified, a
    metadata key missing or null in some documents promoted to its type in the others.
    None when nothing was kept, or when documents disagree on a key's type (then `datasets`
    needs `features=` from the user; the card says so)."""
    schemas = []
    try:
        for path in folder_files(kept):
            with open(path, "rb") as f:
                while batch := f.read(SCHEMA_CHUNK_BYTES):
                    batch += f.readline()
                    schemas.append(paj.read_json(io.BytesIO(batch)).schema)
        if not schemas:
            return None
        return Features.from_arrow_schema(pa.unify_schemas(schemas, promote_options="permissive"))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # a key typed differently (in a chunk, or between)
        log.warning("kept documents disagree on a metadata type, no features in the card: %s", e)
        return None


def _languages(steps: list[S.CurationStep], source: S.Source) -> list[str] | None:
    for step in steps:
        if isinstance(step, S.LanguageStep):
            return list(step.languages)
    if isinstance(source, S.BuiltinSource) and source.name == "stdlib_code":
        return ["code"]
    return None


def card_data(dataset: str, license: str, source: S.Source, steps: list[S.CurationStep],
              labels: list[str], funnel: dict[str, Any], kept: dict[str, int],
              removed_labels: list[str], features: Features | None = None) -> DatasetCardData:
    """The front matter, as huggingface_hub's `DatasetCardData` (`features`: a
    `datasets.Features`, declared as `dataset_info.features` when given)."""

    curation = {
        "source": source.model_dump(mode="json"),
        "steps": [{"label": label, **step.model_dump(mode="json")}
                  for label, step in zip(labels, steps)],
        "funnel": {k: funnel[k] for k in ("docs_in", "chars_in", "docs_out", "chars_out",
                                           "read_skipped", "steps")},
        "kept": {"path": f"{KEPT_DIR}/", **kept},
        "removed": {label: f"{REMOVED_DIR}/{label}/" for label in removed_labels},
        "samples": SAMPLES_FILE,
    }
    data = DatasetCardData(
        license=license,
        pretty_name=f"{dataset} (curated)",
        language=_languages(steps, source),
        size_categories=[size_category(kept["docs"])],
        task_categories=["text-generation"],
        configs=[{"config_name": "default",
                  "data_files": [{"split": "train", "path": KEPT_GLOB}]}],
        curation=curation,
    )
    if features is not None:
        DatasetInfosDict({"default": DatasetInfo(features=features)}).to_dataset_card_data(data)
    return data


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a `|` would end the cell)."""
    return text.replace("|", "\\|")


def _settings(step: S.CurationStep) -> str:
    items = step.model_dump(mode="json", exclude={"kind"})
    return _cell(", ".join(f"`{k}={json.dumps(v, ensure_ascii=False)}`"
                           for k, v in items.items())) or "(none)"


def _reasons(removed: dict[str, int]) -> str:
    return ", ".join(f"{r} {n:,}" for r, n in sorted(removed.items(), key=lambda kv: (-kv[1], kv[0])))


def render(dataset: str, license: str, source: S.Source, steps: list[S.CurationStep],
           labels: list[str], funnel: dict[str, Any], root: Path) -> str:
    """README.md of the curated dataset laid out in `root` (repro.data.layout): its kept
    documents are read for their totals; the steps with a folder of removed documents there
    are listed as such."""
    totals = kept_totals(Path(root) / KEPT_DIR)
    removed_labels = [label for label in labels if removed_dir(root, label).is_dir()]
    features = kept_features(Path(root) / KEPT_DIR)
    data = card_data(dataset, license, source, steps, labels, funnel, totals, removed_labels,
                     features)
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# {data.pretty_name}", "",
        f"Dataset `{dataset}`, curated by repro with datatrove from a `{source.kind}` source; "
        f"license: `{license}`. {totals['docs']:,} documents kept of {funnel['docs_in']:,} "
        f"read ({totals['n_chars']:,} characters, {totals['n_bytes']:,} UTF-8 bytes"
        + (f", {totals['n_words']:,} words)." if totals["n_words"] is not None else ")."), "",
        "## Reading it", "",
        "```python",
        "from datasets import load_dataset",
        "ds = load_dataset(\"<this folder>\", split=\"train\")  # follows `configs` above",
        "",
        "from datatrove.pipeline.readers import JsonlReader",
        f"reader = JsonlReader(\"<this folder>/{KEPT_DIR}\")  # the kept documents alone",
        f"# or JsonlReader(\"<this folder>\", glob_pattern=\"{KEPT_GLOB}\"); without the pattern",
        "# it would also read this card, samples.json and removed/",
        "```", "",
        f"- `{KEPT_DIR}/`: the kept documents, one JSONL file per shard, sorted by id: "
        "`id`, `text`, `metadata`.",
        f"- `{REMOVED_DIR}/<step>/`: the documents each filtering step removed, not part of "
        "the dataset (quality and language filters say why in `metadata.filter_reason`; "
        "the funnel below counts every step's reasons).",
        f"- `{SAMPLES_FILE}`: the first kept and removed documents, cut short, for a glance.", "",
        "## Document metadata", "",
        "Besides what the source and the steps record (url, date, language...), every kept "
        "document has:", "",
        "- `n_chars`, `n_bytes` (UTF-8), `n_words` (datatrove's English word tokenizer, the one "
        "the Gopher filters use; punctuation tokens count; not for code). No token count: "
        "curation runs before any tokenizer; the funnel stage counts tokens per tokenizer.",
        f"- `{SIGNALS_KEY}`: datatrove's per-document statistics (`DocStats`, `WordStats`, "
        "`LineStats`) of the final text, rounded to 4 decimals; code (curated with the "
        "`code_quality` step) has no `WordStats`, English prose statistics.", "",
        *([] if features is not None or not totals["docs"] else [
            "Documents disagree on the type of a metadata key, so the card declares no "
            "`dataset_info.features`: give `load_dataset` the `features=` you want.", ""]),
        "## Curation steps", "",
        "| step | kind | settings |", "|---|---|---|",
        *(f"| {label} | {step.kind} | {_settings(step)} |" for label, step in zip(labels, steps)),
        "",
        "## Funnel", "",
        "| step | docs in | docs out | chars out | removed (reason) | removed documents |",
        "|---|---:|---:|---:|---|---|",
        f"| input | | {funnel['docs_in']:,} | {funnel['chars_in']:,} | | |",
    ]
    for label in labels:
        s = funnel["steps"][label]
        where = f"`{REMOVED_DIR}/{label}/`" if label in removed_labels else ""
        lines.append(f"| {label} | {s['docs_in']:,} | {s['docs_out']:,} | {s['chars_out']:,} | "
                     f"{_reasons(s['removed'])} | {where} |")
    lines.append("")
    return "\n".join(lines)
