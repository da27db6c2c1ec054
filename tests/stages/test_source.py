"""source stage: builtin corpora in the contract's formats, `max_docs`, byte-identical reruns."""

from __future__ import annotations

import json

from warcio.archiveiterator import ArchiveIterator

from repro.stages import source
from repro.stages.base import StageIO
from repro.stages.configs import SourceConfig


def build(tmp_path, name, out, max_docs):
    cfg = SourceConfig.model_validate({"source": {"kind": "builtin", "name": name, "max_docs": max_docs}})
    source.run(cfg, StageIO("src", {}, {"corpus": tmp_path / out}))
    return tmp_path / out


def test_pydoc_web(tmp_path):
    a = build(tmp_path, "pydoc_web", "a", 4)
    b = build(tmp_path, "pydoc_web", "b", 4)
    assert sorted(p.name for p in a.iterdir()) == ["pydoc_web.warc"]
    assert (a / "pydoc_web.warc").read_bytes() == (b / "pydoc_web.warc").read_bytes()
    with open(a / "pydoc_web.warc", "rb") as f:
        records = [(r.rec_type, r.rec_headers["WARC-Target-URI"], r.content_stream().read())
                   for r in ArchiveIterator(f)]
    assert len(records) == 4
    assert all(t == "response" and u.startswith("https://docs.python.invalid/") for t, u, _ in records)
    assert all(body.startswith(b"<!DOCTYPE html>") for _, _, body in records)


def test_stdlib_code(tmp_path):
    a = build(tmp_path, "stdlib_code", "a", 7)
    b = build(tmp_path, "stdlib_code", "b", 7)
    data = (a / "stdlib_code.jsonl").read_bytes()
    assert data == (b / "stdlib_code.jsonl").read_bytes()
    docs = [json.loads(line) for line in data.decode().splitlines()]
    assert len(docs) == 7
    ids = [d["id"] for d in docs]
    assert ids == sorted(ids)
    for d in docs:
        assert set(d) == {"id", "text", "metadata"}
        assert d["metadata"] == {"path": d["id"], "language": "python"}


def test_pydoc_pdf(tmp_path):
    from repro.data.pydoc_pdf import DUPLICATE_OFFSET

    n = DUPLICATE_OFFSET + 2  # originals 0..DUPLICATE_OFFSET, then the copy of the last one
    a = build(tmp_path, "pydoc_pdf", "a", n)
    b = build(tmp_path, "pydoc_pdf", "b", n)
    assert sorted(p.name for p in a.iterdir()) == ["pydoc_pdf.warc"]
    assert (a / "pydoc_pdf.warc").read_bytes() == (b / "pydoc_pdf.warc").read_bytes()
    with open(a / "pydoc_pdf.warc", "rb") as f:
        records = [(r.rec_type, r.rec_headers["WARC-Target-URI"],
                    r.http_headers.get_header("Content-Type"), r.content_stream().read())
                   for r in ArchiveIterator(f)]
    assert len(records) == n
    assert all(t == "response" and u.startswith("https://docs.python.invalid/")
               and ct == "application/pdf" and body.startswith(b"%PDF-")
               for t, u, ct, body in records)
    urls = [u for _, u, _, _ in records]
    assert len(set(urls)) == n
    assert records[-1][3] == records[-2][3]  # the copy: same bytes under another URL
