"""HTML text extraction with resiliparse, as a datatrove extractor.

datatrove 0.10.1 ships only a trafilatura extractor; resiliparse is published as 5-30x
faster (shared OFFLINE.md, PERF.md), so a spec may choose it with a `resiliparse` step.
The class follows datatrove's `Trafilatura`: extraction runs in datatrove's sandbox process
with a per-document timeout (FineWeb: 1 s, FACTS 1.3), and a document whose extraction is
empty, times out or fails is dropped and counted in the step's stats.
"""

from __future__ import annotations

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.extractors.base import BaseExtractor

from repro.spec import schema as S

WARMUP_HTML = "<html><body><article><p>warm up</p></article></body></html>"


def decode_html(data: bytes) -> str:
    """Bytes of an HTML page -> str: the page's own `<meta charset>` if it has a readable
    one, else uchardet's guess, mapped to WHATWG names (as browsers decode web pages);
    undecodable bytes are dropped rather than failing the document."""
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    return bytes_to_str(data, detect_encoding(data, from_html_meta=True))


class ResiliparseExtractor(BaseExtractor):
    """`resiliparse.extract.html2text.extract_plain_text` on the page parsed with
    `HTMLTree.parse`, with the options of a `ResiliparseStep`. Accepts `str` (what
    datatrove's WarcReader yields) or raw `bytes` (decoded with `decode_html`)."""

    name = "⛏ Resiliparse"
    _requires_dependencies = ["resiliparse"]

    def __init__(self, step: S.ResiliparseStep | None = None):
        step = step or S.ResiliparseStep()
        super().__init__(timeout=step.timeout_s)
        # plain values, not the pydantic model: the block is pickled to worker processes
        self.options = {
            "main_content": step.main_content,
            "preserve_formatting": step.preserve_formatting,
            "list_bullets": step.list_bullets,
            "alt_texts": step.alt_texts,
            "links": step.links,
            "comments": step.comments,
        }

    def extract(self, text: str | bytes) -> str:
        """Plain text of one HTML page (stripped; empty when nothing is extracted)."""
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        if isinstance(text, (bytes, bytearray)):
            text = decode_html(bytes(text))
        tree = HTMLTree.parse(text)
        return extract_plain_text(tree, **self.options).strip()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        # Import and exercise resiliparse before datatrove's sandbox forks its child: the
        # sandbox waits only `timeout` seconds for the child to become ready, and a child
        # that still had to import would, on a busy machine, lose the task's first document
        # to a "timeout" in some runs only (same reason as steps.WarmTrafilatura).
        self.extract(WARMUP_HTML)
        yield from super().run(data, rank, world_size)
