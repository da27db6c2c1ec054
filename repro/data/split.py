"""Held-out assignment by a stable hash of (seed, document id)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from repro.jsonl import iter_folder_rows

_SCALE = float(1 << 64)


def unit_hash(seed: int, doc_id: str) -> float:
    """SHA-256 of `seed:id` mapped to [0, 1): the same on every machine and Python run
    (unlike `hash()`, which is salted per process)."""
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


@dataclass
class Split:
    train: list[dict] = field(default_factory=list)
    heldout: list[dict] = field(default_factory=list)

    def metrics(self) -> dict:
        return {
            "train_docs": len(self.train),
            "heldout_docs": len(self.heldout),
            "train_chars": sum(len(d["text"]) for d in self.train),
            "heldout_chars": sum(len(d["text"]) for d in self.heldout),
        }


def split_documents(docs_dir: Path, fraction: float, max_docs: int, seed: int) -> Split:
    """Read curated documents (the JSONL files directly in `docs_dir`, the kept documents'
    folder of a curated dataset: repro.data.layout.kept_dir) and split them. Both parts are sorted by (hash, id), a fixed order that does not
    follow the source's (module/alphabetical) order."""
    from tqdm import tqdm

    scored = []
    for doc in tqdm(iter_folder_rows(docs_dir), desc="split", unit="doc"):
        doc_id = str(doc["id"])
        scored.append((unit_hash(seed, doc_id), doc_id, doc["text"]))
    scored.sort()
    held = [s for s in scored if s[0] < fraction][:max_docs]
    held_ids = {id(s) for s in held}
    out = Split()
    for s in scored:
        (out.heldout if id(s) in held_ids else out.train).append({"id": s[1], "text": s[2]})
    return out


def write_split(split: Split, out: Path) -> None:
    for name, docs in (("train", split.train), ("heldout", split.heldout)):
        with open(Path(out) / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            for doc in docs:
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
