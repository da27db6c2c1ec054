"""PDF extraction and OCR routing (repro.data.pdf) on PDFs the tests make with fpdf2."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from datatrove.pipeline.writers import JsonlWriter

from repro.data import pdf as P
from repro.data.pdf_sources import pdf_document
from repro.spec.schema import PdfExtractStep

PAGE_1 = "The quick brown fox jumps over the lazy dog near the river bank."
PAGE_2 = "Second page: a library is a collection of books kept for reading."
PAGE_3 = "Third page holds a sentence that a two-page limit never reaches."


def _fpdf():
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    return pdf


def text_pdf(*pages: str, encrypt: bool = False) -> bytes:
    pdf = _fpdf()
    if encrypt:
        pdf.set_encryption(owner_password="owner", user_password="user")
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def image_pdf(text: str, pages: int = 1) -> bytes:
    """Pages that are one bitmap each (a scan): text drawn with Pillow, no text layer."""
    from PIL import Image, ImageDraw, ImageFont

    pdf = _fpdf()
    font = ImageFont.load_default(size=28)
    for _ in range(pages):
        image = Image.new("L", (1240, 1754), 255)
        ImageDraw.Draw(image).text((120, 150), text, font=font, fill=0)
        pdf.add_page()
        pdf.image(image, x=0, y=0, w=210, h=297)
    return bytes(pdf.output())


def garbled_pdf(text: str) -> bytes:
    """A text layer holding replacement characters (what unmappable glyphs extract as)."""
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    pdf = _fpdf()
    pdf.add_font("dejavu", fname=str(font))
    pdf.add_page()
    pdf.set_font("dejavu", size=11)
    pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def doc_of(data: bytes | None, name: str = "a"):
    return pdf_document(data, f"id-{name}", f"https://example.invalid/{name}.pdf")


def run(step: PdfExtractStep, docs, exclusion_writer=None):
    block = P.PdfExtractor(step, exclusion_writer=exclusion_writer)
    kept = list(block.run(iter(docs)))
    return kept, block.stats.stats


# ------------------------------------------------------------------------ features


def test_garbled_ratio_counts_replacement_private_use_and_controls():
    assert P.garbled_ratio("abc") == 0.0
    assert P.garbled_ratio("") == 0.0
    # newline, tab and carriage return are text; \x01, U+FFFD, U+E000 are not
    assert P.garbled_ratio("a\n\t\r\x01\ufffd\ue000b") == pytest.approx(3 / 8)


def test_normalise_page_undoes_pdfium_line_conventions():
    assert P.normalise_page("exam\ufffeple\r\nnext\rline\x00") == "exam-ple\nnext\nline"


def test_routing_thresholds():
    step = PdfExtractStep(min_chars_per_page=5, max_textless_page_fraction=0.5, max_garbled_ratio=0.01)
    f = P.features(["plenty of text here", "", "x"], num_pages=3, min_chars_per_page=5)
    assert f.textless_page_fraction == pytest.approx(2 / 3)
    assert P.ocr_reason(f, step) == "textless_pages"
    f = P.features(["plenty of text here", "more text on page two"], 2, 5)
    assert P.ocr_reason(f, step) is None
    f = P.features(["text with \ufffd\ufffd garbage"], 1, 5)
    assert f.garbled_ratio > 0.01 and P.ocr_reason(f, step) == "garbled_text"


# ---------------------------------------------------------------------- extraction


def test_extracts_text_page_by_page():
    data = text_pdf(PAGE_1, PAGE_2)
    doc = doc_of(data)
    kept, stats = run(PdfExtractStep(), [doc])
    assert kept == [doc]
    assert doc.text == f"{PAGE_1}\n\n{PAGE_2}"
    assert doc.media == []
    m = doc.metadata
    assert m["url"] == "https://example.invalid/a.pdf"
    assert m["pdf_sha256"] == hashlib.sha256(data).hexdigest()
    assert (m["num_pages"], m["pages_extracted"]) == (2, 2)
    assert (m["ocr_route"], m["ocr_reason"], m["extractor"]) == (False, None, "pypdfium2")
    assert (m["garbled_ratio"], m["textless_page_fraction"]) == (0.0, 0.0)
    assert stats["forwarded"].total == 1 and stats["pages"].total == 2


def test_max_pages_limits_extraction():
    doc = doc_of(text_pdf(PAGE_1, PAGE_2, PAGE_3))
    kept, _ = run(PdfExtractStep(max_pages=2), [doc])
    assert kept and PAGE_3 not in doc.text and PAGE_2 in doc.text
    assert (doc.metadata["num_pages"], doc.metadata["pages_extracted"]) == (3, 2)


def test_extraction_is_deterministic():
    data = text_pdf(PAGE_1, PAGE_2)
    a, b = doc_of(data), doc_of(data)
    run(PdfExtractStep(), [a])
    run(PdfExtractStep(), [b])
    assert (a.text, a.metadata) == (b.text, b.metadata)


def test_image_only_pdf_is_set_aside_for_ocr(tmp_path):
    docs = [doc_of(image_pdf("A scanned page of text", pages=2), "scan"), doc_of(text_pdf(PAGE_1), "text")]
    writer = JsonlWriter(str(tmp_path / "removed"), output_filename="${rank}.jsonl", compression=None)
    kept, stats = run(PdfExtractStep(), docs, exclusion_writer=writer)
    assert [d.id for d in kept] == ["id-text"]
    assert stats["dropped_ocr_pending"].total == 1
    assert stats["ocr_route_textless_pages"].total == 1
    removed = [json.loads(line) for line in (tmp_path / "removed" / "00000.jsonl").read_text().splitlines()]
    assert len(removed) == 1
    r = removed[0]
    assert r["id"] == "id-scan" and not r.get("media")
    m = r["metadata"]
    assert m["filter_reason"] == "ocr_pending"
    assert m["url"] == "https://example.invalid/scan.pdf"  # where it came from is kept
    assert (m["ocr_route"], m["ocr_reason"], m["textless_page_fraction"]) == (True, "textless_pages", 1.0)
    assert m["num_pages"] == 2 and len(m["pdf_sha256"]) == 64


def test_garbled_text_layer_routes_to_ocr():
    text = "Readable words \ufffd\ufffd\ufffd and then \ufffd\ufffd more words on the page."
    doc = doc_of(garbled_pdf(text))
    kept, stats = run(PdfExtractStep(), [doc])
    assert kept == [] and stats["dropped_ocr_pending"].total == 1
    assert doc.metadata["ocr_reason"] == "garbled_text"
    assert doc.metadata["garbled_ratio"] == pytest.approx(5 / len(text), abs=2e-3)
    # a tolerant threshold keeps the text layer, with its ratio recorded
    doc = doc_of(garbled_pdf(text))
    kept, _ = run(PdfExtractStep(max_garbled_ratio=0.5), [doc])
    assert kept == [doc] and doc.metadata["garbled_ratio"] > 0 and "Readable words" in doc.text


@pytest.mark.parametrize("data,reason", [
    (None, "no_pdf_bytes"),
    (b"this is not a PDF at all", "corrupt_pdf"),
    ("truncated", "corrupt_pdf"),
    ("encrypted", "encrypted_pdf"),
])
def test_unreadable_pdfs_are_dropped_with_a_reason(data, reason):
    if data == "truncated":
        good = text_pdf(PAGE_1, PAGE_2)
        data = good[: len(good) // 3]
    elif data == "encrypted":
        data = text_pdf(PAGE_1, encrypt=True)
    kept, stats = run(PdfExtractStep(), [doc_of(data)])
    assert kept == []
    assert stats[f"dropped_{reason}"].total == 1


def test_bad_pdfs_never_stop_the_task_and_bytes_never_reach_a_writer(tmp_path):
    docs = [doc_of(b"%PDF-1.7 garbage", "bad"), doc_of(text_pdf(PAGE_1, encrypt=True), "enc"),
            doc_of(image_pdf("scan"), "scan"), doc_of(None, "none"), doc_of(text_pdf(PAGE_1), "good")]
    removed = JsonlWriter(str(tmp_path / "removed"), output_filename="${rank}.jsonl", compression=None)
    block = P.PdfExtractor(PdfExtractStep(), exclusion_writer=removed)
    kept_writer = JsonlWriter(str(tmp_path / "kept"), output_filename="${rank}.jsonl", compression=None)
    list(kept_writer.run(block.run(iter(docs))))
    assert all(d.media == [] for d in docs)
    lines = [json.loads(line) for folder in ("kept", "removed")
             for line in (tmp_path / folder / "00000.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in lines) == sorted(d.id for d in docs)
    assert not any(d.get("media") for d in lines)
    assert [d["id"] for d in lines if "filter_reason" not in d["metadata"]] == ["id-good"]


def test_tesseract_backend_needs_its_binary(monkeypatch):
    monkeypatch.setattr(P.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install tesseract-ocr"):
        P.PdfExtractor(PdfExtractStep(ocr_backend="tesseract"))
    assert P.PdfExtractor(PdfExtractStep()).ocr is None


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract binary not installed")
def test_tesseract_reads_image_only_pages():
    doc = doc_of(image_pdf("Scanned letters become text again"), "scan")
    kept, stats = run(PdfExtractStep(ocr_backend="tesseract", ocr_dpi=100), [doc])
    assert kept == [doc]
    assert doc.metadata["extractor"] == "ocr:tesseract"
    assert doc.metadata["ocr_reason"] == "textless_pages"
    assert "Scanned letters become text again" in doc.text
    assert stats["ocr_route_textless_pages"].total == 1
