"""Bad documents through a whole curation (issue 6 item 6): a PDF corpus holding broken files
next to good ones, from a folder and from a WARC, and JSONL documents whose text is not
UTF-8. Curation finishes, every broken input is counted under a named reason in the funnel
metrics (`read_skipped` for what the reader could not read, the step's `removed` for what
pdf_extract dropped), and the good documents come out. Extraction of single broken PDFs
is tested in test_pdf.py; bad files of other formats in test_bad_input.py."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import posixpath
from pathlib import Path

import pytest

from repro.data.pipeline import Curation
from repro.spec import schema as S

GOOD = {f"good{i}.pdf": f"Good document {i}. The library lends books to every reader who "
        f"asks, and document {i} says so in plain words." for i in range(3)}


def _fpdf():
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))  # same bytes each run
    return pdf


def text_pdf(text: str, pages: int = 1, encrypt: bool = False) -> bytes:
    pdf = _fpdf()
    if encrypt:
        pdf.set_encryption(owner_password="owner", user_password="user")
    for _ in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def zero_page_pdf() -> bytes:
    import pypdfium2 as pdfium

    out = io.BytesIO()
    pdfium.PdfDocument.new().save(out)
    return out.getvalue()


def pdf_corpus() -> tuple[dict[str, bytes], dict[str, str]]:
    """(file name -> bytes, broken file name -> the reason it must be counted under)."""
    files = {name: text_pdf(text) for name, text in GOOD.items()}
    good = files["good0.pdf"]
    broken = {
        "truncated.pdf": (good[: len(good) // 2], "corrupt_pdf"),
        "random.pdf": (b"%PDF-1.7\n" + bytes(range(256)) * 40, "corrupt_pdf"),
        "header_only.pdf": (b"%PDF-1.4\n%%EOF\n", "corrupt_pdf"),
        "html.pdf": (b"<html><body><p>Not a PDF at all.</p></body></html>", "corrupt_pdf"),
        "no_pages.pdf": (zero_page_pdf(), "corrupt_pdf"),
        "zero.pdf": (b"", "empty_file"),
        "encrypted.pdf": (text_pdf("A locked document with a password.", encrypt=True),
                          "encrypted_pdf"),
        # 3,000 pages with no text on any: a scan-sized file, routed to OCR (set aside)
        "blank_pages.pdf": (text_pdf("", pages=3000), "ocr_pending"),
    }
    # a page tree that claims 10^9 pages: pdfium counts the pages that exist, so it is read
    files["lying_count.pdf"] = text_pdf("This one says it has a billion pages.").replace(
        b"/Count 1", b"/Count 1000000000")
    assert b"/Count 1000000000" in files["lying_count.pdf"]
    files |= {name: data for name, (data, _) in broken.items()}
    return files, {name: reason for name, (_, reason) in broken.items()}


def jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines()]


def assert_complete_outputs(out: Path) -> None:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert path.suffix == ".jsonl", path
        for line in path.read_text(encoding="utf-8").splitlines():  # valid UTF-8, whole lines
            assert "media_bytes" not in line
            json.loads(line)


def _name(doc: dict) -> str:
    return posixpath.basename(doc["metadata"]["url"])


@pytest.mark.slow
@pytest.mark.parametrize("container", ["files", "warc"])
def test_pdf_curation_counts_every_broken_file(tmp_path, write_warc, container, funnel_adds_up):
    files, broken = pdf_corpus()
    folder = tmp_path / "pdfs"
    if container == "files":
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        source = S.FilesSource(path=str(folder), glob="*.pdf", format="pdf")
    else:
        write_warc(folder / "crawl.warc.gz", [(f"https://pdfs.example/{name}", data,
                                               "application/pdf")
                                              for name, data in sorted(files.items())], gz=True)
        source = S.WarcSource(path=str(folder), content="pdf")
    steps = [S.PdfExtractStep(), S.ExactDedupStep(content="pdf_bytes")]
    out = tmp_path / "out"
    metrics = Curation("pdf", source, steps, S.ExecutorSpec(tasks=2, workers=2), None, out,
                       tmp_path / "work", shards=2).run().as_metrics()

    expected_removed: dict[str, int] = {}
    for name, reason in broken.items():
        if reason != "empty_file":
            expected_removed[reason] = expected_removed.get(reason, 0) + 1
    assert metrics["read_skipped"] == {"empty_file": 1}
    assert metrics["docs_in"] == len(files) - 1
    assert metrics["steps"]["01_pdf_extract"]["removed"] == expected_removed
    assert metrics["steps"]["02_exact_dedup"]["removed"] == {}
    funnel_adds_up(metrics)

    kept = jsonl(out / "data")
    assert sorted(map(_name, kept)) == sorted([*GOOD, "lying_count.pdf"])
    assert metrics["docs_out"] == len(kept)
    for doc in kept:
        name = _name(doc)
        expected = GOOD.get(name, "This one says it has a billion pages.")
        assert " ".join(doc["text"].split()) == expected
        assert doc["metadata"]["extractor"] == "pypdfium2" and doc["metadata"]["num_pages"] == 1
    removed = jsonl(out / "removed" / "01_pdf_extract")
    assert sorted(map(_name, removed)) == sorted(n for n, r in broken.items() if r != "empty_file")
    assert_complete_outputs(out)


def test_invalid_utf8_inside_jsonl_documents_is_counted(tmp_path):
    """Document-level invalid text in JSONL: raw bytes that are not UTF-8 (in the text, in
    the id, in a metadata field, overlong and surrogate encodings) and escaped lone
    surrogates, which are valid JSON syntax but text no UTF-8 writer can encode. Each costs
    its own line, counted as `invalid_utf8`; valid escapes (a surrogate pair, NUL) pass."""
    folder = tmp_path / "jsonl"
    folder.mkdir()
    text = "A sentence that is long enough to be a document of its own."

    def row(doc_id: str) -> bytes:
        return json.dumps({"id": doc_id, "text": f"{text} ({doc_id})"}).encode()

    lines = [
        row("ok1"),
        b'{"id": "raw", "text": "caf\xe9 au lait ' + text.encode() + b'"}',
        b'{"id": "raw-id-\xff", "text": "' + text.encode() + b'"}',
        b'{"id": "meta", "text": "' + text.encode() + b'", "source": "\xc3\x28"}',
        b'{"id": "overlong", "text": "slash \xc0\xaf ' + text.encode() + b'"}',
        b'{"id": "cesu", "text": "surrogate \xed\xa0\x80 ' + text.encode() + b'"}',
        b'{"id": "lone-high", "text": "x \\ud800 ' + text.encode() + b'"}',
        b'{"id": "lone-low", "text": "' + text.encode() + b' \\udc00"}',
        b'{"id": "\\udfff", "text": "' + text.encode() + b'"}',
        b'{"id": "pair", "text": "smile \\ud83d\\ude00 ' + text.encode() + b'"}',
        b'{"id": "nul", "text": "nul \\u0000 ' + text.encode() + b'"}',
        row("ok2"),
    ]
    (folder / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    packed = b"\n".join([row("gz-ok"), b'{"id": "gz-bad", "text": "\xfe\xff"}', row("gz-ok2")])
    (folder / "packed.jsonl.gz").write_bytes(gzip.compress(packed + b"\n", mtime=0))

    out = tmp_path / "out"
    metrics = Curation("text", S.JsonlSource(path=str(folder)), [S.ExactDedupStep()],
                       S.ExecutorSpec(), None, out, tmp_path / "work").run().as_metrics()
    assert metrics["read_skipped"] == {"invalid_utf8": 9}
    kept = {d["id"]: d["text"] for d in jsonl(out / "data")}
    assert sorted(kept) == ["gz-ok", "gz-ok2", "nul", "ok1", "ok2", "pair"]
    assert kept["pair"].startswith("smile \U0001F600")
    assert metrics["docs_in"] == 6 and metrics["docs_out"] == 6
    assert_complete_outputs(out)
