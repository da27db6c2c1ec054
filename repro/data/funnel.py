"""The curation funnel: documents and characters in and out of every step, and why
documents were removed.

Counts come from datatrove's own per-step stats (merged over tasks by the executor), plus a
`Tally` block after every step, because datatrove's blocks do not all record the same things
(a formatter counts no characters, MinHash's filter none at all). Only counts are kept:
timings would make the metrics differ between two identical runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import Stats

EXTRACTOR_FAILURES = ("timeout", "broken_process", "clean_error")
"""Stats datatrove's extractors record for documents they could not process."""


class Tally(PipelineStep):
    """Pass-through block counting the documents and characters that reach it."""

    type = "📊 - TALLY"
    name = "tally"

    def __init__(self, label: str):
        self.label = label  # before super().__init__(), which calls __repr__
        super().__init__()

    def __repr__(self) -> str:
        return f"{self.type}: {self.name} {self.label}"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update("docs")
            self.stat_update("chars", value=len(doc.text))
            yield doc


def tally_counts(stats: Stats) -> tuple[int, int]:
    """(documents, characters) seen by a Tally block."""
    d = stats.stats
    return int(d["docs"].total) if "docs" in d else 0, int(d["chars"].total) if "chars" in d else 0


def removal_reasons(stats: Stats, removed: int, default_reason: str) -> dict[str, int]:
    """Reasons a step removed documents, from its datatrove stats (`dropped_<reason>` for
    filters; timeout/errors for extractors); whatever is left unexplained is counted under
    `default_reason`, so the reasons always add up to `removed`."""
    reasons: dict[str, int] = {}
    for key, metric in stats.stats.items():
        if key.startswith("dropped_"):
            reasons[key.removeprefix("dropped_")] = int(metric.total)
        elif key in EXTRACTOR_FAILURES:
            reasons[key] = int(metric.total)
    rest = removed - sum(reasons.values())
    if rest > 0:
        reasons[default_reason] = reasons.get(default_reason, 0) + rest
    return {k: v for k, v in sorted(reasons.items()) if v}


@dataclass
class StepCounts:
    docs_in: int
    docs_out: int
    chars_out: int
    removed: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"docs_in": self.docs_in, "docs_out": self.docs_out,
                "chars_out": self.chars_out, "removed": dict(self.removed)}


@dataclass
class Funnel:
    """Accumulates step counts in pipeline order."""

    dataset: str
    docs_in: int = 0
    chars_in: int = 0
    steps: dict[str, StepCounts] = field(default_factory=dict)
    read_skips: dict[str, int] = field(default_factory=dict)
    """Inputs the reader could not turn into documents, by reason (corrupt gzip, ...)."""

    def add(self, label: str, counts: StepCounts) -> None:
        self.steps[label] = counts

    @property
    def docs_out(self) -> int:
        return list(self.steps.values())[-1].docs_out if self.steps else self.docs_in

    @property
    def chars_out(self) -> int:
        return list(self.steps.values())[-1].chars_out if self.steps else self.chars_in

    def as_metrics(self) -> dict:
        return {
            "dataset": self.dataset,
            "read_skipped": dict(self.read_skips),
            "docs_in": self.docs_in,
            "docs_out": self.docs_out,
            "chars_in": self.chars_in,
            "chars_out": self.chars_out,
            "steps": {k: v.as_dict() for k, v in self.steps.items()},
        }
