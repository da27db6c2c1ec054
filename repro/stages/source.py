"""Source stage: build a builtin raw corpus from the local Python installation.

`pydoc_web` -> `corpus/pydoc_web.warc` (HTML response records, see repro.data.pydoc_web);
`pydoc_pdf` -> `corpus/pydoc_pdf.warc` (application/pdf response records: the same
documentation typeset as PDF files, some image-only, some duplicated; repro.data.pydoc_pdf);
`stdlib_code` -> `corpus/stdlib_code.jsonl`. Nothing third-party is committed: the text is
produced at run time, deterministically for a given Python installation.
"""

from __future__ import annotations

from repro.data.pydoc_pdf import write_corpus
from repro.data.pydoc_web import iter_pages
from repro.data.stdlib_code import iter_documents, write_jsonl
from repro.data.warc import write_warc
from repro.stages.base import StageIO, atomic_dir
from repro.stages.configs import SourceConfig
from repro.stages.kind import DATA_PARAMS, ENV, StageKind, data


def run(cfg: SourceConfig, io: StageIO) -> None:
    src = cfg.source
    with atomic_dir(io.output("corpus")) as out:
        if src.name == "pydoc_web":
            n = write_warc(iter_pages(src.max_docs), out / "pydoc_web.warc")
        elif src.name == "pydoc_pdf":
            n = write_corpus(out / "pydoc_pdf.warc", src.max_docs)
        elif src.name == "stdlib_code":
            from tqdm import tqdm

            docs = tqdm(iter_documents(src.max_docs), desc="stdlib files", unit="file")
            n = write_jsonl(docs, out / "stdlib_code.jsonl")
        else:  # pragma: no cover - the schema's Literal already rejects other names
            raise ValueError(f"unknown builtin source {src.name!r}")
    if n == 0:
        raise RuntimeError(f"builtin source {src.name} produced no documents")


KIND = StageKind(
    config=SourceConfig,
    outputs={"corpus": data("data/raw"), "env": ENV},
    run=run,
    params_file=DATA_PARAMS,
)
