"""The offline PDF sample: deterministic bytes, image-only documents, byte-identical copies."""

from __future__ import annotations

import sys

import pytest

from repro.data import pydoc_pdf as PP
from repro.data.pdf import PdfExtractor, open_pdf, page_texts
from repro.data.pdf_sources import pdf_document
from repro.data.pydoc_web import HOST
from repro.spec.schema import PdfExtractStep

N = 30


@pytest.fixture(scope="module")
def corpus() -> list[PP.PdfFile]:
    return list(PP.iter_pdfs(N))


def originals(corpus):
    return [f for f in corpus if f.duplicate_of is None]


@pytest.mark.slow
def test_two_builds_give_identical_bytes(corpus, tmp_path):
    again = list(PP.iter_pdfs(N))
    assert [(f.url, f.data) for f in again] == [(f.url, f.data) for f in corpus]
    PP.write_corpus(tmp_path / "a.warc", 6, progress=False)
    PP.write_corpus(tmp_path / "b.warc", 6, progress=False)
    assert (tmp_path / "a.warc").read_bytes() == (tmp_path / "b.warc").read_bytes()


def test_documents_are_real_pdfs_of_their_modules(corpus):
    assert len(corpus) == N
    names = [f.module for f in originals(corpus)]
    assert names == sorted(names) and len(set(names)) == len(names)
    for f in corpus:
        assert f.data.startswith(b"%PDF-")
        assert f.url.startswith(f"{HOST}/") and f.url.endswith(f"/{f.module}.pdf")
    text_doc = next(f for f in corpus if not f.image_only)
    pdf = open_pdf(text_doc.data)
    try:
        pages = page_texts(pdf, len(pdf))
    finally:
        pdf.close()
    assert len(pages) >= 1
    assert pages[0].startswith(f"{text_doc.module} module")
    assert "NAME" in pages[0] and text_doc.module in pages[0]


def test_about_one_in_ten_is_image_only_without_text_layer(corpus):
    docs = originals(corpus)
    flags = [f.image_only for f in docs]
    assert flags == [i % PP.IMAGE_EVERY == PP.IMAGE_OFFSET for i in range(len(docs))]
    assert sum(flags) == 3  # positions 4, 14, 24 of 29 originals
    for f in docs:
        pdf = open_pdf(f.data)
        try:
            chars = sum(len(p) for p in page_texts(pdf, len(pdf)))
            assert (chars == 0) == f.image_only
            if f.image_only:
                assert 1 <= len(pdf) <= PP.IMAGE_PAGES
        finally:
            pdf.close()


def test_about_one_in_twenty_five_appears_twice_with_identical_bytes(corpus):
    dups = [(i, f) for i, f in enumerate(corpus) if f.duplicate_of is not None]
    assert len(dups) == 1
    i, dup = dups[0]
    first = corpus[i - 1]
    assert first.url == dup.duplicate_of and first.url != dup.url
    assert first.data == dup.data and "/mirror/" in dup.url
    assert originals(corpus).index(first) % PP.DUPLICATE_EVERY == PP.DUPLICATE_OFFSET
    assert not dup.image_only  # copies have a text layer: they reach the dedup on bytes


def test_max_docs_counts_records_duplicates_included():
    # 8 records: originals 0..7; the copy of original 7 (DUPLICATE_OFFSET) would be the 9th
    files = list(PP.iter_pdfs(PP.DUPLICATE_OFFSET + 1))
    assert len(files) == PP.DUPLICATE_OFFSET + 1 and all(f.duplicate_of is None for f in files)
    files = list(PP.iter_pdfs(PP.DUPLICATE_OFFSET + 2))
    assert files[-1].duplicate_of == files[-2].url


def test_extraction_routes_exactly_the_image_only_documents(corpus):
    docs = [pdf_document(f.data, f.url, f.url) for f in corpus]
    kept = list(PdfExtractor(PdfExtractStep()).run(iter(docs)))
    routed = {d.id for d in docs if d.metadata["ocr_route"]}
    assert routed == {f.url for f in corpus if f.image_only}
    assert len(kept) == len(corpus) - len(routed)
    for d in kept:  # text layers are clean: nothing garbled survives the latin-1 mapping
        assert d.metadata["garbled_ratio"] == 0.0 and d.metadata["extractor"] == "pypdfium2"


def test_module_data_reprs_do_not_leak_the_environment(monkeypatch):
    canary = "canary-3f9a1c-do-not-leak"
    monkeypatch.setenv("REPRO_TEST_CANARY", canary)
    import os

    text = PP.module_text("os", os, limit=None)
    assert text and "environ = <_Environ>" in text
    assert canary not in text and "FILE" not in text.splitlines()


def test_to_latin1_is_deterministic_and_printable():
    assert PP.to_latin1("caf\u00e9 \u2014 \u201cquoted\u201d \u0141\u00f3d\u017a \u4e2d\tx\x0cy") == \
        'caf\u00e9 -- "quoted" L\u00f3dz ?  x y'


@pytest.mark.slow
def test_no_module_text_leaks_the_environment(monkeypatch):
    """Every module the corpus renders, signatures included: cgi's `environ=os.environ`
    default once printed the whole environment into the PDFs."""
    import warnings

    canary = "canary-7d21e0-do-not-leak"
    monkeypatch.setenv("REPRO_TEST_CANARY", canary)
    leaked = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in PP.module_names():
            mod = PP._import(name)
            if mod is not None and canary in PP.module_text(name, mod, limit=None):
                leaked.append(name)
    assert leaked == []
    import cgi  # noqa: F401 - deprecated, still in 3.11: the module that leaked

    assert "environ=..." in PP.module_text("cgi", sys.modules["cgi"], limit=None)
