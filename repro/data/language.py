"""Offline language identification as a datatrove filter, with lingua.

datatrove's `LanguageFilter` downloads fastText's lid.176 model when it first runs, which
fails without network (shared OFFLINE.md); lingua ships its models inside the wheel. The
detector chooses only among `candidates`, so its confidences are relative to that set.
"""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter


class LinguaLanguageFilter(BaseFilter):
    """Keep a document if lingua's top language (among `candidates`) is in `languages`
    with confidence >= that language's threshold, judged on its first `max_chars` characters.
    Records `language` and `language_score` in the metadata of every document."""

    name = "🌍 Lingua language ID"

    def __init__(
        self,
        languages: list[str],
        candidates: list[str],
        thresholds: dict[str, float],
        max_chars: int,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.languages = set(languages)
        self.candidates = sorted(set(candidates) | set(languages))
        missing = sorted(set(languages) - set(thresholds))
        if missing:
            raise ValueError(f"no threshold for kept language(s) {missing}")
        self.thresholds = dict(thresholds)
        self.max_chars = max_chars
        self._detector = None  # built lazily in the worker: it is not picklable

    @property
    def detector(self):
        if self._detector is None:
            from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

            langs = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper()))
                     for c in self.candidates]
            # preloaded models: loading them lazily per document would dominate the run time
            self._detector = (LanguageDetectorBuilder.from_languages(*langs)
                              .with_preloaded_language_models().build())
        return self._detector

    def detect(self, text: str) -> tuple[str | None, float]:
        """(ISO 639-1 code, confidence) of the most likely candidate; (None, 0) if none."""
        values = self.detector.compute_language_confidence_values(text[: self.max_chars])
        if not values or values[0].value <= 0:
            return None, 0.0
        return values[0].language.iso_code_639_1.name.lower(), float(values[0].value)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        lang, score = self.detect(doc.text)
        doc.metadata["language"] = lang
        # rounded so that the metadata written out is stable across platforms' float printing
        doc.metadata["language_score"] = round(score, 4)
        if lang not in self.languages:
            return False, "other_language"
        if score < self.thresholds[lang]:
            return False, "low_confidence"
        return True

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_detector"] = None
        return state
