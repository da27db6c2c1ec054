"""Offline PDF sample: the standard library's documentation typeset as real PDF files.

The PDF chain (FinePDFs style, FACTS 2.2-2.3) needs PDFs with a text layer, PDFs without
one (scans: routed to OCR) and byte-identical copies (removed by the dedup on bytes). No PDF
corpus ships with Python, so this module makes one from the same modules the web corpus
uses (`repro.data.pydoc_web.module_names`, with its normalisation of memory addresses and
install paths), one PDF per module, from pydoc's plain-text renderer:

- text PDFs: fpdf2 with the core Courier font (pydoc's text is indented, so a fixed-width
  font keeps its layout); characters outside latin-1, which core fonts cannot show, are
  replaced deterministically;
- every `IMAGE_EVERY`-th document is image-only: its first pages are drawn into bitmaps
  with Pillow and embedded as images, with no text layer, like a scan;
- every `DUPLICATE_EVERY`-th document is stored a second time under a mirror URL with
  identical bytes.

The PDFs are stored as `application/pdf` response records of one WARC file, as Common Crawl
serves them. Everything that could vary between runs is fixed (creation date, producer,
file identifier; the reprs of module data that pydoc would print, which can hold memory
addresses, paths or environment variables, are reduced to literals or type names), so two
builds on the same Python installation give the same bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import inspect
import pydoc
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from repro.data.pydoc_web import HOST, _import, _literal, _normalise, _quiet, module_names
from repro.data.warc import Record, write_records

IMAGE_EVERY = 10
"""Documents at positions i with i % IMAGE_EVERY == IMAGE_OFFSET are image-only."""
IMAGE_OFFSET = 4
DUPLICATE_EVERY = 25
"""Documents at positions i with i % DUPLICATE_EVERY == DUPLICATE_OFFSET appear twice."""
DUPLICATE_OFFSET = 7

MAX_CHARS = 12_000
"""Text per document is cut (at a line end) after this many characters: about five pages.
pydoc's text of a large module runs to 300k characters; a few pages per document keep the
build and the extraction fast while every document still spans several pages."""
IMAGE_PAGES = 3
"""Image-only documents hold at most this many pages (bitmaps are the slow, large part)."""

CREATION_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
"""Same fixed date as the WARC records (repro.data.warc.WARC_DATE)."""
PRODUCER = "repro pydoc_pdf"

# layout: A4 portrait, 15 mm margins, Courier 9 pt (1.905 mm per character) -> 94 columns
_MARGIN_MM = 15
_FONT_PT = 9
_LINE_MM = 4.0
COLUMNS = 94
"""Characters per line; longer lines are wrapped, keeping their indentation."""
_IMAGE_DPI = 150
_IMAGE_FONT_PX = 20
_IMAGE_LINE_PX = 25

_TYPOGRAPHY = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "--", "\u2212": "-",
    "\u2022": "*", "\u2026": "...", "\u2190": "<-", "\u2192": "->", "\u2194": "<->",
    "\u21d2": "=>", "\u2264": "<=", "\u2265": ">=", "\u2260": "!=",
    # letters without a Unicode decomposition to a latin-1 base
    "\u0141": "L", "\u0142": "l", "\u0110": "D", "\u0111": "d", "\u0152": "OE", "\u0153": "oe",
    "\u0131": "i",
}


@dataclass(frozen=True)
class PdfFile:
    """One PDF of the corpus."""

    url: str
    module: str
    data: bytes
    image_only: bool
    duplicate_of: str | None = None
    """URL of the first copy when this record repeats another one's bytes."""


# --------------------------------------------------------------------------- text


class _SafeTextDoc(pydoc.TextDoc):
    """pydoc's plain-text renderer without what depends on the run or the machine: no
    MODULE REFERENCE (it reads $PYTHONDOCS), no FILE section (install path), and module or
    class data shown as `name = literal` or `name = <type>` instead of its repr (reprs of
    e.g. `os.environ` or `sys.path` would leak the environment into the corpus)."""

    def bold(self, text):
        return text  # TextDoc's bold is overstriking with backspaces, for terminals

    def getdocloc(self, object, basedir=None):  # noqa: A002 - pydoc's signature
        return None

    def section(self, title, contents):
        return "" if title == "FILE" else super().section(title, contents)

    def docother(self, object, name=None, mod=None, parent=None, maxlen=None, doc=None):  # noqa: A002
        lit = _literal(object)
        value = lit if lit is not None else f"<{type(object).__qualname__}>"
        line = (name + " = " if name else "") + value
        if doc:
            line += "\n" + self.indent(str(doc)) + "\n"
        return line


class _Opaque:
    """Stands in for a default value that is not a plain literal: printed as `...`."""

    def __repr__(self) -> str:
        return "..."


class _SafeInspect:
    """What pydoc sees as its `inspect` module while a page is rendered: the real one, but
    signatures show non-literal defaults as `...`, as pydoc_web's pages do (a default such
    as cgi's `environ=os.environ` would otherwise print the whole environment)."""

    def __getattr__(self, name: str):
        return getattr(inspect, name)

    @staticmethod
    def signature(obj, *args, **kwargs):
        sig = inspect.signature(obj, *args, **kwargs)
        params = [p.replace(default=_Opaque())
                  if p.default is not p.empty and _literal(p.default) is None else p
                  for p in sig.parameters.values()]
        return sig.replace(parameters=params)


@contextlib.contextmanager
def _safe_signatures() -> Iterator[None]:
    """Swap pydoc's module-global `inspect` (only pydoc's name, not the inspect module)."""
    real = pydoc.inspect
    pydoc.inspect = _SafeInspect()
    try:
        yield
    finally:
        pydoc.inspect = real


@functools.lru_cache(maxsize=None)
def _textdoc() -> _SafeTextDoc:
    return _SafeTextDoc()


def to_latin1(text: str) -> str:
    """Text the PDF core fonts can show: typographic marks -> ASCII, accented letters outside
    latin-1 -> their base letter, control characters -> space, anything else -> '?'."""
    out = []
    for ch in text.expandtabs(4):
        if ch == "\n":
            out.append(ch)
        elif unicodedata.category(ch) == "Cc":
            out.append(" ")
        elif ord(ch) < 256:
            out.append(ch)
        elif ch in _TYPOGRAPHY:
            out.append(_TYPOGRAPHY[ch])
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            out.append(base if base and all(ord(c) < 256 for c in base) else "?")
    return "".join(out)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    end = text.rfind("\n", 0, limit)
    return text[: end if end > 0 else limit]


def module_text(name: str, mod, limit: int | None = MAX_CHARS) -> str:
    """pydoc's plain-text documentation of a module, run-independent, latin-1, cut to
    `limit` characters; empty when pydoc has nothing to say."""
    with _quiet(), _safe_signatures():
        try:
            text = _textdoc().docmodule(mod, name)
        except Exception:  # noqa: BLE001 - a module whose members break pydoc is left out
            return ""
    text = to_latin1(_normalise(text)).strip()
    return text if limit is None else _cut(text, limit)


def wrap_lines(text: str, width: int = COLUMNS) -> list[str]:
    """Lines of at most `width` characters; wrapped parts keep the line's indentation."""
    out = []
    for line in text.splitlines():
        line = line.rstrip()
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())][: width // 2]
        out += textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False) or [""]
    return out


# ---------------------------------------------------------------------------- pdf


def _file_id(key: str) -> str:
    h = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32].upper()
    return f"<{h}><{h}>"


def _new_pdf(title: str):
    from fpdf import FPDF

    class _FixedIdPDF(FPDF):
        def file_id(self):  # fpdf2 hook: the default hashes the output, fixed here by title
            return _file_id(title)

    pdf = _FixedIdPDF(format="A4", unit="mm")
    pdf.set_creation_date(CREATION_DATE)
    pdf.set_producer(PRODUCER)
    pdf.set_creator(PRODUCER)
    pdf.set_title(title)
    pdf.set_margins(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM)
    pdf.set_auto_page_break(True, margin=_MARGIN_MM)
    return pdf


def text_pdf(title: str, text: str) -> bytes:
    """A PDF with a text layer: the title, then `text` in Courier, wrapped at COLUMNS."""
    pdf = _new_pdf(title)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=14)
    pdf.cell(0, 8, to_latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Courier", size=_FONT_PT)
    for line in wrap_lines(text):
        pdf.cell(0, _LINE_MM, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _page_images(title: str, text: str, max_pages: int):
    """Bitmaps (1-bit, A4 at _IMAGE_DPI) of the title and text, as a scanner would give."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = round(210 / 25.4 * _IMAGE_DPI), round(297 / 25.4 * _IMAGE_DPI)
    margin = round(_MARGIN_MM / 25.4 * _IMAGE_DPI)
    font = ImageFont.load_default(size=_IMAGE_FONT_PX)
    title_font = ImageFont.load_default(size=round(_IMAGE_FONT_PX * 1.5))
    per_page = (height - 2 * margin) // _IMAGE_LINE_PX
    lines = wrap_lines(text)
    images = []
    first = True
    while lines and len(images) < max_pages:
        image = Image.new("1", (width, height), 1)
        draw = ImageDraw.Draw(image)
        y = margin
        rows = per_page
        if first:
            draw.text((margin, y), title, font=title_font, fill=0)
            y += 2 * _IMAGE_LINE_PX
            rows -= 2
            first = False
        for line in lines[:rows]:
            draw.text((margin, y), line, font=font, fill=0)
            y += _IMAGE_LINE_PX
        lines = lines[rows:]
        images.append(image)
    return images


def image_pdf(title: str, text: str, max_pages: int = IMAGE_PAGES) -> bytes:
    """An image-only PDF (no text layer): each page one full-page bitmap of the text."""
    pdf = _new_pdf(title)
    for image in _page_images(to_latin1(title), text, max_pages):
        pdf.add_page()
        pdf.image(image, x=0, y=0, w=210, h=297)
    return bytes(pdf.output())


# ---------------------------------------------------------------------------- all


def pdf_url(module: str, mirror: bool = False) -> str:
    return f"{HOST}/{'mirror/' if mirror else ''}pdf/library/{module}.pdf"


def iter_pdfs(max_docs: int | None = None) -> Iterator[PdfFile]:
    """The corpus in a fixed order: one PDF per module (sorted), each duplicate right after
    its first copy. `max_docs` counts records, duplicates included."""
    count = 0
    index = 0
    for name in module_names():
        if max_docs is not None and count >= max_docs:
            return
        mod = _import(name)
        if mod is None:
            continue
        text = module_text(name, mod)
        if not text:
            continue
        title = f"{name} module"
        image_only = index % IMAGE_EVERY == IMAGE_OFFSET
        data = image_pdf(title, text) if image_only else text_pdf(title, text)
        first = PdfFile(pdf_url(name), name, data, image_only)
        copies = [first]
        if index % DUPLICATE_EVERY == DUPLICATE_OFFSET:
            copies.append(PdfFile(pdf_url(name, mirror=True), name, data, image_only, first.url))
        index += 1
        for pdf_file in copies:
            if max_docs is not None and count >= max_docs:
                return
            count += 1
            yield pdf_file


def write_corpus(path: Path, max_docs: int | None = None, progress: bool = True) -> int:
    """Write the corpus as `application/pdf` response records to the WARC file `path`."""
    records = (Record(f.url, f.data, "application/pdf", "application/pdf")
               for f in iter_pdfs(max_docs))
    return write_records(records, path, progress=progress, desc="pydoc PDFs", unit="pdf")
