"""Canonical sharding: what makes curation outputs independent of executor and task count.

Per-document steps decide each document on its own, so only two things could depend on how
the work was split: the output files (datatrove writes one file per task) and which copy a
dedup pass keeps (datatrove's clusters are keyed by (task, index in task)). Both are fixed
here: every pass writes each document into the shard `hash(id) % shards` (one sub-folder
per shard, one file per writing task), and every pass that reads such a folder reads shard
`rank` with `world_size == shards`, merging the tasks' files and sorting documents by id.
A dedup pass therefore always sees the same documents at the same (task, index), whatever
ran before it, and the final outputs are rewritten as one sorted file per shard.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline, Media
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import JsonlWriter

from repro.jsonl import folder_files, iter_lines


def shard_of(doc_id: str, shards: int) -> int:
    """The shard a document id belongs to (stable across machines and Python runs)."""
    return int.from_bytes(hashlib.sha1(doc_id.encode("utf-8")).digest()[:8], "big") % shards


def shard_dir(folder: Path, shard: int) -> Path:
    return Path(folder) / f"{shard:05d}"


class ShardedJsonlWriter(JsonlWriter):
    """JsonlWriter that puts each document in `<folder>/<shard>/<rank>.jsonl`.
    Uncompressed: datatrove's gzip output stores a timestamp in every file."""

    name = "💽 Sharded JSONL"

    def __init__(self, folder: Path, shards: int):
        super().__init__(str(folder), output_filename="${shard}/${rank}.jsonl", compression=None)
        self.shards = shards

    def _get_output_filename(self, document: Document, rank: int | str = 0, **kwargs) -> str:
        return super()._get_output_filename(
            document, rank, shard=f"{shard_of(document.id, self.shards):05d}", **kwargs)


def _sorted_lines(folder: Path) -> list[tuple[str, str]]:
    """(id, raw JSON line) of every document in the `*.jsonl` files of `folder`, sorted.
    Sorting on the raw line after the id makes the order total even if ids repeat."""
    rows = [(line.value["id"], line.text)
            for path in folder_files(folder) for line in iter_lines(path)]
    rows.sort()
    return rows


class CanonicalShardReader(PipelineStep):
    """Reads shard `rank` of a folder written by ShardedJsonlWriter, documents sorted by id.
    Must run with `world_size` equal to the folder's shard count."""

    type = "📖 - READER"
    name = "canonical shards"

    def __init__(self, folder: Path, shards: int):
        super().__init__()
        self.folder = Path(folder)
        self.shards = shards

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != self.shards:
            raise ValueError(f"canonical shards of {self.folder} need {self.shards} tasks, got {world_size}")
        for _, line in _sorted_lines(shard_dir(self.folder, rank)):
            # parsed again, one at a time: _sorted_lines checked every line but keeps only the
            # text, as holding a whole shard parsed as well would double its memory
            d = json.loads(line)
            media = [Media(**m) for m in d.get("media") or []]
            self.stat_update("documents")
            yield Document(text=d["text"], id=d["id"], media=media, metadata=d.get("metadata") or {})


class Canonicalize(PipelineStep):
    """Final pass: for each (sharded source folder, destination folder), write shard `rank`
    as `<dest>/<rank>.jsonl`, documents sorted by id, lines copied byte for byte. Empty
    shards write no file. Files are written to a temporary name and renamed."""

    type = "💽 - WRITER"
    name = "canonicalize"

    def __init__(self, jobs: list[tuple[Path, Path]], shards: int):
        super().__init__()
        self.jobs = [(Path(s), Path(d)) for s, d in jobs]
        self.shards = shards

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != self.shards:
            raise ValueError(f"canonicalize needs {self.shards} tasks, got {world_size}")
        for source, dest in self.jobs:
            rows = _sorted_lines(shard_dir(source, rank))
            if not rows:
                continue
            dest.mkdir(parents=True, exist_ok=True)
            target = dest / f"{rank:05d}.jsonl"
            tmp = target.with_suffix(".jsonl.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(line for _, line in rows)
            os.replace(tmp, target)
            self.stat_update("documents", value=len(rows))
        return
        yield  # a generator, as datatrove expects of a pipeline step
