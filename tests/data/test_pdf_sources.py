"""PDF documents and PdfWarcReader: selection by MIME type, damaged WARC files."""

from __future__ import annotations

import gzip
from io import BytesIO

import pytest
from datatrove.data import MediaType
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from repro.data.pdf_sources import PdfWarcReader, mime_type, pdf_document

PDF_A = b"%PDF-1.4 first file " + bytes(range(256)) * 8
PDF_B = b"%PDF-1.7 second file " + bytes(range(255, -1, -1)) * 8


def warc_bytes(records, gz: bool = False) -> bytes:
    """records: (kind, url, content type, body, extra WARC headers)."""
    buf = BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for kind, url, ctype, body, extra in records:
        headers = {"WARC-Record-ID": f"<urn:test:{url.rsplit('/', 1)[-1]}>", **extra}
        if kind == "response":
            http = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
            rec = writer.create_warc_record(url, "response", payload=BytesIO(body),
                                            http_headers=http, warc_headers_dict=headers)
        else:
            rec = writer.create_warc_record(url, kind, payload=BytesIO(body),
                                            warc_content_type=ctype, warc_headers_dict=headers)
        writer.write_record(rec)
    return buf.getvalue()


MIXED = [
    ("response", "https://x.invalid/a", "application/pdf", PDF_A, {}),
    ("response", "https://x.invalid/page", "text/html; charset=utf-8", b"<html>not a pdf</html>", {}),
    ("response", "https://x.invalid/b", "Application/PDF; qs=0.9", PDF_B, {}),
    ("response", "https://x.invalid/img", "image/png", b"\x89PNG....", {}),
    ("request", "https://x.invalid/req", "application/http; msgtype=request", b"GET /a HTTP/1.1\r\n\r\n", {}),
    ("resource", "https://x.invalid/c", "application/pdf", PDF_A + b"c", {}),
]


def read(folder, **kwargs):
    reader = PdfWarcReader(str(folder), **kwargs)
    docs = list(reader.run())
    return docs, reader.stats.stats


def test_pdf_document_follows_the_contract():
    doc = pdf_document(PDF_A, "doc-1", "https://x.invalid/a.pdf")
    assert doc.text == "" and doc.id == "doc-1"
    assert doc.metadata == {"url": "https://x.invalid/a.pdf", "content_type": "application/pdf"}
    (media,) = doc.media
    assert (media.id, media.type, media.url, media.media_bytes) == (
        "doc-1", MediaType.DOCUMENT, "https://x.invalid/a.pdf", PDF_A)


def test_mime_type_parsing():
    assert mime_type("Application/PDF; qs=0.9") == "application/pdf"
    assert mime_type("") is None and mime_type(None) is None


def test_reader_selects_pdf_records_by_mime(tmp_path):
    (tmp_path / "mixed.warc").write_bytes(warc_bytes(MIXED))
    docs, stats = read(tmp_path, glob_pattern="*.warc")
    assert [d.id for d in docs] == ["<urn:test:a>", "<urn:test:b>", "<urn:test:c>"]
    assert [d.media[0].media_bytes for d in docs] == [PDF_A, PDF_B, PDF_A + b"c"]
    for d in docs:
        assert d.text == ""
        assert d.metadata["url"] == d.media[0].url == f"https://x.invalid/{d.id[-2]}"
        assert d.metadata["content_type"] == "application/pdf"
    assert not any(k.startswith("skipped_") for k in stats)
    # same fields as the contract's constructor (the reader adds datatrove's file_path)
    expected = pdf_document(PDF_A, "<urn:test:a>", "https://x.invalid/a")
    assert (docs[0].metadata.keys() - {"file_path"}) == expected.metadata.keys()


def test_reader_reads_gzipped_warcs_and_honours_limit(tmp_path):
    (tmp_path / "mixed.warc.gz").write_bytes(warc_bytes(MIXED, gz=True))
    docs, _ = read(tmp_path, glob_pattern="*.warc.gz")
    assert len(docs) == 3
    docs, _ = read(tmp_path, glob_pattern="*.warc.gz", limit=2)
    assert [d.id for d in docs] == ["<urn:test:a>", "<urn:test:b>"]


def test_crawler_truncated_pdfs_are_counted(tmp_path):
    records = [MIXED[0], ("response", "https://x.invalid/t", "application/pdf", PDF_B[:100],
                          {"WARC-Truncated": "length"})]
    (tmp_path / "t.warc").write_bytes(warc_bytes(records))
    docs, stats = read(tmp_path, glob_pattern="*.warc")
    assert [d.id for d in docs] == ["<urn:test:a>"]
    assert stats["skipped_truncated_pdf"].total == 1


@pytest.mark.parametrize("damage", ["inside_payload", "inside_header", "gzip_cut", "not_a_warc"])
def test_damaged_warc_is_counted_and_reading_goes_on(tmp_path, damage):
    intact = warc_bytes(MIXED)
    first_end = len(warc_bytes(MIXED[:1]))
    second_pdf_at = len(warc_bytes(MIXED[:2]))
    if damage == "inside_payload":  # the file stops inside the second PDF's body
        data = intact[: second_pdf_at + 400]
    elif damage == "inside_header":  # the file stops inside the second record's WARC header
        data = intact[: first_end + 40]
    elif damage == "gzip_cut":
        data = gzip.compress(intact)[:-30]
    else:
        data = b"this is not a WARC file\r\n\r\n" * 3
    name = "bad.warc.gz" if damage == "gzip_cut" else "bad.warc"
    (tmp_path / name).write_bytes(data)
    (tmp_path / "good.warc").write_bytes(warc_bytes(MIXED[:1]))
    docs, stats = read(tmp_path, glob_pattern="*.warc*")
    assert stats["skipped_corrupt_warc"].total == 1
    ids = [d.id for d in docs]
    # bad.warc* sorts before good.warc: whatever it held before the damage, then good's PDF
    assert ids[-1] == "<urn:test:a>"
    assert all(d.media[0].media_bytes in (PDF_A, PDF_B, PDF_A + b"c") for d in docs)
    if damage in ("inside_payload", "inside_header"):
        assert ids == ["<urn:test:a>", "<urn:test:a>"]
