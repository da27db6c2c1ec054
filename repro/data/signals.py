"""Per-document size measures and quality signals, written into each kept document's metadata
so that a user of the curated dataset can filter or weight documents again without
recomputing them.

Size (`metadata` keys):
  n_chars   characters of the text (what the curate funnel counts)
  n_bytes   UTF-8 bytes of the text
  n_words   words as datatrove's English word tokenizer splits the text (spaCy's rule-based
            tokenizer, the one the Gopher filters and MinHash use; punctuation tokens count)
There is no token count: curation runs before, and independently of, any tokenizer (one
curated dataset serves every tokenizer an experiment trains). Exact token counts per
tokenizer are in the funnel stage's metrics (repro.data.token_funnel).

Quality signals (`metadata.quality_signals`): the per-document statistics datatrove's summary
stats blocks compute (`DocStats`, `WordStats`, `LineStats`: the signals FineWeb compared
between datasets to choose its filters, Penedo et al. 2024, arXiv 2406.17557), on the final
text. They are datatrove's own definitions, called through the blocks' `extract_stats`, so the
values mean what datatrove's docs say; they are not the pass/fail decisions of the filter
steps, which datatrove's filters do not record (their removal reasons are in the funnel).
Floats are rounded to 4 decimals, so the files are the same on every platform.

Code (a dataset curated with the `code_quality` step) gets DocStats and LineStats only, and no
n_words: WordStats are English prose statistics (stop words, word lengths, capitalisation) that
say nothing about source code, and spaCy's tokenizer over the quickstart's 5.4M characters of
code cost 25 s of its ten minutes (curate-code 16 s -> 41 s); code's own quality signals are
the `code_quality` step's.
"""

from __future__ import annotations

from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

ROUND = 4
SIZE_KEYS = ("n_chars", "n_bytes", "n_words")
SIGNALS_KEY = "quality_signals"


class QualitySignals(PipelineStep):
    """Adds SIZE_KEYS and SIGNALS_KEY to each document's metadata (see the module docstring).
    `scratch`: the stats blocks' output folder, which they need to exist but which nothing
    here writes to (only their per-document `extract_stats` is used)."""

    type = "📊 - STATS"
    name = "quality signals"

    def __init__(self, scratch: Path, words: bool = True):
        from datatrove.pipeline.stats import DocStats, LineStats, WordStats

        super().__init__()
        self.words = words
        self.extractors = (DocStats(str(scratch)), LineStats(str(scratch))) + (
            (WordStats(str(scratch)),) if words else ())

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                stats: dict[str, float] = {}
                for extractor in self.extractors:
                    stats.update(extractor.extract_stats(doc))
                sizes = {"n_chars": len(doc.text), "n_bytes": len(doc.text.encode("utf-8"))}
                if self.words:
                    sizes["n_words"] = int(stats.pop("n_words"))
                stats.pop("length")  # DocStats' length is n_chars
                doc.metadata.update({**sizes,
                                     SIGNALS_KEY: {k: _plain(v) for k, v in sorted(stats.items())}})
            yield doc


def _plain(value: float | int) -> float | int:
    return value if isinstance(value, int) else round(float(value), ROUND)
