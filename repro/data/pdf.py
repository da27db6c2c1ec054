"""PDF text extraction with an OCR routing decision, in the FinePDFs style (FACTS 2.3).

FinePDFs dedups PDFs on their bytes, then sends a document to OCR when an XGBoost classifier
on PyMuPDF features says so (ocr_prob >= 0.2) or when its text layer holds any garbled
text, and extracts the embedded text otherwise (FACTS 2.3, 2.4). The classifier is not
available offline, so the routing here uses the two signals it is built on, with thresholds
from the spec (`PdfExtractStep`):

- the fraction of pages without a text layer (fewer than `min_chars_per_page` non-blank
  characters): scanned documents and image-only pages have none; above
  `max_textless_page_fraction` -> OCR, reason `textless_pages`;
- the garbled-character ratio (U+FFFD, private-use, surrogate and control characters other
  than newline, tab and carriage return, over all extracted characters): fonts without a
  usable Unicode map extract as such characters; above `max_garbled_ratio` -> OCR, reason
  `garbled_text`.

Routed documents go to the OCR backend named in the spec, or, with `ocr_backend: none`, are
set aside under `removed/` with reason `ocr_pending` (their metadata says where they came
from), never silently lost. Unreadable input never stops the task: it is dropped with a
reason (`no_pdf_bytes`, `encrypted_pdf`, `corrupt_pdf`, `empty_pdf`, `empty_extraction`,
`ocr_failed`) that datatrove counts as `dropped_<reason>`.

The PDF bytes are removed from every document this block lets through or sets aside (bytes
are not JSON, and the writers after it write JSON); the SHA-256 of the bytes stays in the
metadata for `exact_dedup` with `on: pdf_bytes`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.logging import logger

from repro.spec.schema import PdfExtractStep

if TYPE_CHECKING:
    import pypdfium2

# pdfium error codes (fpdfview.h) that mean "needs a password" / "unsupported security handler"
_FPDF_ERR_PASSWORD = 4
_FPDF_ERR_SECURITY = 6

_GARBLED_CATEGORIES = frozenset({"Co", "Cs", "Cc"})
_ALLOWED_CONTROLS = frozenset("\n\t\r")


# ----------------------------------------------------------------------- features


def garbled_count(text: str) -> int:
    """Characters that are not readable text: U+FFFD (replacement), private-use (Co),
    surrogates (Cs, from invalid UTF-16) and control characters (Cc) other than \\n \\t \\r."""
    n = 0
    for ch in text:
        if ch == "\ufffd":
            n += 1
        elif ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in _GARBLED_CATEGORIES:
            n += 1
    return n


def garbled_ratio(text: str) -> float:
    """Fraction of garbled characters in `text` (0 for empty text)."""
    return garbled_count(text) / len(text) if text else 0.0


def normalise_page(raw: str) -> str:
    """pdfium's page text made plain: CRLF/CR line ends -> \\n; U+FFFE, which pdfium puts in
    place of a hyphen at a line end (joining the two lines), -> "-"; NULs pdfium sometimes
    appends at a page end removed; surrounding blank space stripped."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "-")
    return text.rstrip("\x00").strip()


def non_blank_chars(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


@dataclass(frozen=True)
class PdfFeatures:
    """What the routing decision looks at, for one document."""

    num_pages: int
    pages_extracted: int
    chars_per_page: float
    """Mean non-blank characters per extracted page."""
    textless_page_fraction: float
    garbled_ratio: float


def features(pages: list[str], num_pages: int, min_chars_per_page: int) -> PdfFeatures:
    """Features of a document from its (normalised) page texts."""
    counts = [non_blank_chars(p) for p in pages]
    total = sum(len(p) for p in pages)
    garbled = sum(garbled_count(p) for p in pages)
    n = len(pages)
    return PdfFeatures(
        num_pages=num_pages,
        pages_extracted=n,
        chars_per_page=sum(counts) / n if n else 0.0,
        textless_page_fraction=sum(c < min_chars_per_page for c in counts) / n if n else 1.0,
        garbled_ratio=garbled / total if total else 0.0,
    )


def ocr_reason(f: PdfFeatures, step: PdfExtractStep) -> str | None:
    """Why a document goes to OCR (None: its text layer is used). Missing text first: a
    document with no text layer has nothing to be garbled."""
    if f.textless_page_fraction > step.max_textless_page_fraction:
        return "textless_pages"
    if f.garbled_ratio > step.max_garbled_ratio:
        return "garbled_text"
    return None


# ------------------------------------------------------------------------ pdfium


class EncryptedPdf(Exception):
    """The PDF needs a password (or uses a security handler pdfium does not support)."""


def open_pdf(data: bytes) -> "pypdfium2.PdfDocument":
    """Open PDF bytes; EncryptedPdf for password-protected files, PdfiumError otherwise."""
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        if getattr(e, "err_code", None) in (_FPDF_ERR_PASSWORD, _FPDF_ERR_SECURITY):
            raise EncryptedPdf(str(e)) from e
        raise


def page_texts(pdf: "pypdfium2.PdfDocument", count: int) -> list[str]:
    """Text layer of the first `count` pages, normalised; every pdfium object closed."""
    out = []
    for i in range(count):
        page = pdf[i]
        try:
            textpage = page.get_textpage()
            try:
                # "replace": invalid UTF-16 shows up as U+FFFD (counted as garbled) instead
                # of vanishing silently
                out.append(normalise_page(textpage.get_text_range(errors="replace")))
            finally:
                textpage.close()
        finally:
            page.close()
    return out


# --------------------------------------------------------------------------- OCR


class OcrBackend(Protocol):
    """An OCR engine: page images rendered by pypdfium2 at `dpi` -> text per page."""

    name: ClassVar[str]

    def __init__(self, dpi: int) -> None: ...

    def pages(self, pdf: "pypdfium2.PdfDocument", count: int) -> list[str]:
        """Text of the first `count` pages of `pdf`, one string per page."""
        ...


class RenderingOcr:
    """Base of image-based backends: renders each page with pdfium, then `image_text`."""

    name: ClassVar[str] = ""

    def __init__(self, dpi: int) -> None:
        self.dpi = dpi

    def image_text(self, image) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def pages(self, pdf: "pypdfium2.PdfDocument", count: int) -> list[str]:
        out = []
        for i in range(count):
            page = pdf[i]
            try:
                bitmap = page.render(scale=self.dpi / 72, grayscale=True)
                try:
                    image = bitmap.to_pil()
                    out.append(normalise_page(self.image_text(image)))
                finally:
                    bitmap.close()
            finally:
                page.close()
        return out


class TesseractOcr(RenderingOcr):
    """Tesseract through pytesseract, one page image at a time, single-threaded (tesseract's
    OpenMP threads would compete with datatrove's worker processes)."""

    name: ClassVar[str] = "tesseract"

    def __init__(self, dpi: int, lang: str = "eng") -> None:
        super().__init__(dpi)
        if shutil.which("tesseract") is None:
            raise RuntimeError(
                "ocr_backend `tesseract` needs the tesseract binary on PATH; install it "
                "(Debian/Ubuntu: `apt-get install tesseract-ocr`; macOS: `brew install "
                "tesseract`) and the Python wrapper (`pip install pytesseract`), or set "
                "`ocr_backend: none` to set routed documents aside as `ocr_pending`."
            )
        try:
            import pytesseract  # noqa: F401
        except ImportError as e:
            raise RuntimeError("ocr_backend `tesseract` needs `pip install pytesseract` "
                               "(the `ocr` extra)") from e
        self.lang = lang

    def image_text(self, image) -> str:
        import pytesseract

        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        return pytesseract.image_to_string(image, lang=self.lang)


OCR_BACKENDS: dict[str, type] = {TesseractOcr.name: TesseractOcr}
"""`PdfExtractStep.ocr_backend` name -> backend class (an `OcrBackend`)."""


def ocr_backend(name: str, dpi: int) -> OcrBackend | None:
    """The backend named in the spec, built now so a missing engine fails before any
    document is read; None for `none`."""
    if name == "none":
        return None
    try:
        cls = OCR_BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown OCR backend {name!r}; known: {sorted(OCR_BACKENDS)}") from None
    return cls(dpi=dpi)


# ------------------------------------------------------------------------- block


def take_pdf_bytes(doc: Document) -> bytes | None:
    """The document's PDF bytes, removed from it (media emptied): whatever happens next,
    no bytes travel further down the pipeline."""
    data = doc.media[0].media_bytes if doc.media else None
    doc.media = []
    return data or None


class PdfExtractor(BaseFilter):
    """Per-document PDF step: bytes in `doc.media[0]` -> text, or a drop with a reason.

    Metadata added to every document that had bytes: `pdf_sha256`, `num_pages`,
    `pages_extracted`, `chars_per_page`, `textless_page_fraction`, `garbled_ratio`,
    `ocr_route`, `ocr_reason`, and for kept documents `extractor` (`pypdfium2` or
    `ocr:<backend>`). Ratios are rounded to 4 places so outputs print the same everywhere."""

    name = "📄 PDF extract"

    def __init__(self, step: PdfExtractStep, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.step = step
        self.ocr = ocr_backend(step.ocr_backend, step.ocr_dpi)
        self._warned = False

    def _warn_once(self, doc: Document, what: str, err: Exception) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(f"{what} in document {doc.id}: {err!r} (further such errors are "
                           "counted in the stats, not logged)")

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        data = take_pdf_bytes(doc)
        if data is None:
            return False, "no_pdf_bytes"
        doc.metadata["pdf_sha256"] = hashlib.sha256(data).hexdigest()
        try:
            pdf = open_pdf(data)
        except EncryptedPdf:
            return False, "encrypted_pdf"
        except Exception as e:  # noqa: BLE001 - any unreadable file is a drop, not a crash
            self._warn_once(doc, "unreadable PDF", e)
            return False, "corrupt_pdf"
        try:
            return self._extract(doc, pdf)
        except Exception as e:  # noqa: BLE001
            self._warn_once(doc, "PDF extraction error", e)
            return False, "corrupt_pdf"
        finally:
            pdf.close()

    def _extract(self, doc: Document, pdf: "pypdfium2.PdfDocument") -> bool | tuple[bool, str]:
        step = self.step
        num_pages = len(pdf)
        count = num_pages if step.max_pages is None else min(num_pages, step.max_pages)
        doc.metadata["num_pages"] = num_pages
        doc.metadata["pages_extracted"] = count
        if count == 0:
            return False, "empty_pdf"
        pages = page_texts(pdf, count)
        f = features(pages, num_pages, step.min_chars_per_page)
        reason = ocr_reason(f, step)
        doc.metadata.update({
            "chars_per_page": round(f.chars_per_page, 1),
            "textless_page_fraction": round(f.textless_page_fraction, 4),
            "garbled_ratio": round(f.garbled_ratio, 4),
            "ocr_route": reason is not None,
            "ocr_reason": reason,
        })
        self.stat_update("pages", value=count)
        if reason is not None:
            self.stat_update(f"ocr_route_{reason}")
            if self.ocr is None:
                return False, "ocr_pending"
            try:
                pages = self.ocr.pages(pdf, count)
            except Exception as e:  # noqa: BLE001 - one page the engine chokes on drops one document
                self._warn_once(doc, "OCR error", e)
                return False, "ocr_failed"
            doc.metadata["extractor"] = f"ocr:{self.ocr.name}"
        else:
            doc.metadata["extractor"] = "pypdfium2"
        doc.text = "\n\n".join(p for p in pages if p)
        if not doc.text:
            return False, "empty_extraction"
        return True
