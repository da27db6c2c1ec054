"""Source spec -> datatrove reader."""

from __future__ import annotations

from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from repro.spec import schema as S


class RecordSharded(PipelineStep):
    """Run a reader as one task and keep every `world_size`-th document from `rank` on.

    datatrove shards input by file; a builtin corpus is a single file, which would leave all
    tasks but one idle. Reading the (small) file in every task and interleaving records
    gives each task an equal, fixed share."""

    type = "📖 - READER"
    name = "record-sharded"

    def __init__(self, reader: PipelineStep):
        self.reader = reader  # before super().__init__(), which calls __repr__
        super().__init__()

    def __repr__(self) -> str:
        return f"{self.type}: {self.name} {self.reader.name}"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for i, doc in enumerate(self.reader.run(data, 0, 1)):
            if i % world_size == rank:
                yield doc


def source_reader(source: S.Source, raw: Path | None, progress: bool = True) -> PipelineStep:
    """The reader of a dataset's raw documents. Builtin corpora are read from the source
    stage's output folder `raw`; every other kind from its own path or hub id."""
    if isinstance(source, S.BuiltinSource):
        if raw is None:
            raise ValueError("builtin sources are read from the `raw` input, which is missing")
        if source.name == "pydoc_web":
            from datatrove.pipeline.readers import WarcReader

            inner = WarcReader(str(raw), glob_pattern="*.warc", compression=None,
                               doc_progress=progress, recursive=False)
        else:
            from datatrove.pipeline.readers import JsonlReader

            inner = JsonlReader(str(raw), glob_pattern="*.jsonl", compression=None,
                                doc_progress=progress, recursive=False, add_file_path=False)
        return RecordSharded(inner)
    if isinstance(source, S.WarcSource):
        from datatrove.pipeline.readers import WarcReader

        return WarcReader(source.path, glob_pattern=source.glob, limit=source.limit,
                          doc_progress=progress)
    if isinstance(source, S.JsonlSource):
        from datatrove.pipeline.readers import JsonlReader

        return JsonlReader(source.path, glob_pattern=source.glob, limit=source.limit,
                           text_key=source.text_key, id_key=source.id_key,
                           doc_progress=progress, add_file_path=False)
    if isinstance(source, S.ParquetSource):
        from datatrove.pipeline.readers import ParquetReader

        return ParquetReader(source.path, glob_pattern=source.glob, limit=source.limit,
                             text_key=source.text_key, id_key=source.id_key,
                             doc_progress=progress)
    if isinstance(source, S.HFDatasetSource):
        from datatrove.pipeline.readers import HuggingFaceDatasetReader

        options = {"split": source.split}
        if source.subset:
            options["name"] = source.subset
        return HuggingFaceDatasetReader(source.repo, dataset_options=options, streaming=True,
                                        limit=source.limit, text_key=source.text_key,
                                        doc_progress=progress)
    raise ValueError(f"unknown source kind {source.kind!r}")  # pragma: no cover


def segment_reader(folder: Path) -> PipelineStep:
    """Reader of an intermediate JSONL folder written by the previous pass."""
    from datatrove.pipeline.readers import JsonlReader

    return JsonlReader(str(folder), glob_pattern="*.jsonl", compression=None,
                       recursive=False, add_file_path=False)
