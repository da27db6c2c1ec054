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
        candidates: list[str] | str,
        thresholds: dict[str, float],
        max_chars: int,
        exclusion_writer: DiskWriter | None = None,
        high_accuracy: bool = False,
    ):
        super().__init__(exclusion_writer)
        self.languages = set(languages)
        # "all": every language lingua knows (its confidences are relative to the set)
        self.candidates = "all" if candidates == "all" else sorted(set(candidates) | set(languages))
        self.high_accuracy = high_accuracy
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

            if self.candidates == "all":
                builder = LanguageDetectorBuilder.from_all_languages()
            else:
                builder = LanguageDetectorBuilder.from_languages(*[
                    Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper()))
                    for c in self.candidates])
            # preloaded models: loading them lazily per document would dominate the run time
            builder = builder.with_preloaded_language_models()
            if not self.high_accuracy:
                builder = builder.with_low_accuracy_mode()
            self._detector = builder.build()
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


# ----------------------------------------------------------------------- calibration


def precision_recall(scores, labels, threshold: float) -> tuple[float, float]:
    """(precision, recall) of "keep if score >= threshold" against boolean `labels`.
    Precision of an empty selection is 1 (nothing wrongly kept); recall with no positives
    is 0."""
    import numpy as np

    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    kept = s >= threshold
    tp = int(np.sum(kept & y))
    n_kept, n_pos = int(kept.sum()), int(y.sum())
    return (tp / n_kept if n_kept else 1.0), (tp / n_pos if n_pos else 0.0)


def calibrate_threshold(scores, labels, beta: float = 0.1, min_precision: float = 0.9,
                        min_recall: float = 0.0) -> tuple[float, float, float]:
    """Threshold on `scores` maximising F-beta subject to precision >= `min_precision` and
    recall >= `min_recall`; returns (threshold, precision, recall).

    This is how FinePDFs picks its per-language GlotLID thresholds (beta = 0.1, so precision
    weighs far more than recall; precision >= 0.9, recall >= 0.1; FACTS 2.5). A document is
    kept when its score is >= the threshold, so the candidates are the distinct positive
    scores (a score of 0 means "not detected as this language" and is never kept); the
    threshold returned is the score of the least confident document kept. Among equal
    F-beta the lower threshold (more recall) wins. Raises ValueError when no threshold
    meets the constraints, naming the best precision reachable."""
    import numpy as np

    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be 1-D and equally long")
    if not y.any():
        raise ValueError("no positive labels: nothing to calibrate on")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    kept = np.arange(1, len(s) + 1)
    # the cut after position i keeps every score >= s[i]: use the last index of each value
    last = np.r_[s[1:] != s[:-1], True] & (s > 0)
    if not last.any():
        raise ValueError("no positive scores: the language was never detected")
    thr, tp, kept = s[last], tp[last], kept[last]
    precision = tp / kept
    recall = tp / y.sum()
    b2 = beta * beta
    with np.errstate(invalid="ignore", divide="ignore"):
        fbeta = np.where(tp > 0, (1 + b2) * precision * recall / (b2 * precision + recall), 0.0)
    ok = (precision >= min_precision) & (recall >= min_recall)
    if not ok.any():
        raise ValueError(
            f"no threshold reaches precision >= {min_precision} with recall >= {min_recall}; "
            f"best precision reachable is {precision[recall >= min_recall].max(initial=0.0):.3f}")
    best = np.flatnonzero(ok & (fbeta == fbeta[ok].max()))[-1]  # lowest threshold among ties
    return float(thr[best]), float(precision[best]), float(recall[best])
