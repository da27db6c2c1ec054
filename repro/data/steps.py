"""Curation step specs (repro.spec.schema) -> datatrove pipeline steps.

Per-document steps map one to one onto a datatrove block (or one of ours where datatrove has
none that works offline). The two global steps, `exact_dedup` and `minhash`, need several
passes over the whole dataset; repro.data.pipeline runs them, with the settings built here.
Thresholds are passed through unchanged: their defaults and citations live in the schema.
"""

from __future__ import annotations

import re
import unicodedata

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import URLFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from repro.spec import schema as S
from repro.data.code_filters import CodeQualityFilter
from repro.data.extractors import ResiliparseExtractor
from repro.data.language import LinguaLanguageFilter
from repro.data.pdf import PdfExtractor

GLOBAL_KINDS = frozenset({"exact_dedup", "minhash"})
"""Steps that need the whole dataset (all tasks) before deciding on a document."""

FILTER_KINDS = frozenset({
    "url_filter", "pdf_extract", "language", "gopher_repetition", "gopher_quality", "c4_quality",
    "fineweb_quality", "code_quality", "exact_dedup", "minhash",
})
"""Steps that remove documents and accept an exclusion writer (removed/ output)."""

DEFAULT_REASON = {
    "trafilatura": "empty_extraction",
    "resiliparse": "empty_extraction",
    "exact_dedup": "duplicate",
    "minhash": "near_duplicate",
}
"""Removal reason for documents a step drops without naming why."""


class OfflineURLFilter(URLFilter):
    """datatrove's URLFilter with tldextract kept offline: by default tldextract first tries
    to download the public suffix list (about 5 s timeout here, shared OFFLINE.md) before
    falling back to the snapshot bundled with it; we go straight to the snapshot."""

    def __init__(self, *args, **kwargs):
        from tldextract import TLDExtract

        super().__init__(*args, **kwargs)
        self.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)


class WarmTrafilatura(Trafilatura):
    """datatrove's Trafilatura with trafilatura imported before the extractor's sandbox
    process forks. The sandbox waits `timeout` seconds for its child to start; a child that
    still has to import trafilatura can miss that on a busy machine, and the first document
    of the task would then be dropped as a "timeout" in one run but not the next."""

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.extract("<html><body><p>warm up</p></body></html>")
        yield from super().run(data, rank, world_size)


class DropMetadata(PipelineStep):
    """Remove metadata keys that would make outputs depend on where inputs live (readers
    add the absolute `file_path` of the input file)."""

    type = "🧹 - CLEAN"
    name = "drop metadata"

    def __init__(self, keys: tuple[str, ...] = ("file_path",)):
        super().__init__()
        self.keys = tuple(keys)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            for key in self.keys:
                doc.metadata.pop(key, None)
            yield doc


_WS = re.compile(r"\s+")


def normalised_text(doc: Document) -> str:
    """Text compared by `exact_dedup`: NFKC, case-folded, whitespace runs collapsed, so
    copies differing only in layout or case count as the same document."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", doc.text).casefold()).strip()


def per_document_step(step: S.CurationStep, exclusion_writer: DiskWriter | None) -> PipelineStep:
    """The datatrove block of a per-document step."""
    ex = exclusion_writer
    if isinstance(step, S.UrlFilterStep):
        return OfflineURLFilter(soft_word_threshold=step.soft_word_threshold, exclusion_writer=ex)
    if isinstance(step, S.TrafilaturaStep):
        return WarmTrafilatura(favour_precision=step.favour_precision,
                               deduplicate=step.deduplicate, timeout=step.timeout_s)
    if isinstance(step, S.ResiliparseStep):
        return ResiliparseExtractor(step)
    if isinstance(step, S.PdfExtractStep):
        return PdfExtractor(step, exclusion_writer=ex)
    if isinstance(step, S.LanguageStep):
        return LinguaLanguageFilter(languages=step.languages, candidates=step.candidates,
                                    thresholds={lang: step.thresholds.get(lang, step.default_threshold) for lang in step.languages},
                                    max_chars=step.max_chars, high_accuracy=step.high_accuracy,
                                    exclusion_writer=ex)
    if isinstance(step, S.GopherRepetitionStep):
        from datatrove.pipeline.filters import GopherRepetitionFilter

        return GopherRepetitionFilter(
            dup_line_frac=step.dup_line_frac, dup_para_frac=step.dup_para_frac,
            dup_line_char_frac=step.dup_line_char_frac, dup_para_char_frac=step.dup_para_char_frac,
            top_n_grams=tuple(map(tuple, step.top_n_grams)),
            dup_n_grams=tuple(map(tuple, step.dup_n_grams)), exclusion_writer=ex)
    if isinstance(step, S.GopherQualityStep):
        from datatrove.pipeline.filters import GopherQualityFilter

        return GopherQualityFilter(
            min_doc_words=step.min_doc_words, max_doc_words=step.max_doc_words,
            min_avg_word_length=step.min_avg_word_length,
            max_avg_word_length=step.max_avg_word_length,
            max_symbol_word_ratio=step.max_symbol_word_ratio,
            max_bullet_lines_ratio=step.max_bullet_lines_ratio,
            max_ellipsis_lines_ratio=step.max_ellipsis_lines_ratio,
            max_non_alpha_words_ratio=step.max_non_alpha_words_ratio,
            min_stop_words=step.min_stop_words, exclusion_writer=ex)
    if isinstance(step, S.C4QualityStep):
        from datatrove.pipeline.filters import C4QualityFilter

        return C4QualityFilter(
            filter_no_terminal_punct=step.filter_no_terminal_punct,
            min_num_sentences=step.min_num_sentences, min_words_per_line=step.min_words_per_line,
            max_word_length=step.max_word_length, filter_lorem_ipsum=step.filter_lorem_ipsum,
            filter_javascript=step.filter_javascript, filter_curly_bracket=step.filter_curly_bracket,
            filter_policy=step.filter_policy, exclusion_writer=ex)
    if isinstance(step, S.FineWebQualityStep):
        from datatrove.pipeline.filters import FineWebQualityFilter

        return FineWebQualityFilter(
            line_punct_thr=step.line_punct_thr, short_line_thr=step.short_line_thr,
            short_line_length=step.short_line_length,
            char_duplicates_ratio=step.char_duplicates_ratio,
            new_line_ratio=step.new_line_ratio, exclusion_writer=ex)
    if isinstance(step, S.CodeQualityStep):
        return CodeQualityFilter(
            max_line_length=step.max_line_length, max_avg_line_length=step.max_avg_line_length,
            min_alnum_fraction=step.min_alnum_fraction,
            drop_autogenerated=step.drop_autogenerated, exclusion_writer=ex)
    if isinstance(step, S.PIIStep):
        from datatrove.pipeline.formatters import PIIFormatter

        return PIIFormatter(remove_emails=step.remove_emails, remove_ips=step.remove_ips,
                            only_remove_public_ips=step.only_remove_public_ips)
    raise ValueError(f"{step.kind} is not a per-document step")


def minhash_config(step: S.MinhashStep):
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig

    return MinhashConfig(
        n_grams=step.n_grams, num_buckets=step.num_buckets,
        hashes_per_bucket=step.hashes_per_bucket, seed=step.seed,
        hash_config=HashConfig(precision=64 if step.use_64bit_hashes else 32),
    )


def pdf_bytes_key(doc: Document) -> str:
    """Key compared by `exact_dedup` with `content: pdf_bytes`: the SHA-256 of the original PDF
    file, recorded by the PDF extractor (FinePDFs dedups PDFs on their bytes; FACTS 2.3)."""
    return doc.metadata["pdf_sha256"]


def exact_dedup_config(step: S.ExactDedupStep):
    from datatrove.pipeline.dedup.exact_dedup import ExactDedupConfig

    getter = pdf_bytes_key if step.content == "pdf_bytes" else normalised_text
    return ExactDedupConfig(content_getter=getter)
