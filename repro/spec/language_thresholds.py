"""Per-language confidence thresholds for the lingua language filter.

FineWeb kept English at fastText score >= 0.65 (FACTS 1.4); FineWeb-2 sets a floor per
language (FACTS 1.14). lingua's confidences are relative to the candidate set and are not
fastText scores, so each threshold must be calibrated for lingua itself.
"""

from __future__ import annotations

LINGUA_THRESHOLDS: dict[str, float] = {
    "en": 0.65,
    "fr": 0.65,
    "es": 0.65,
    "de": 0.65,
    "it": 0.65,
    "pt": 0.65,
}
"""ISO 639-1 code -> minimum confidence of the top language."""
