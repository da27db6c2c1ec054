"""Counting the inputs a reader skips, shared by every reader of ours.

A reader that meets unreadable input (a corrupt gzip, a truncated record, a bad JSON line, a
binary file) skips it and counts it as the datatrove stat `skipped_<reason>`; the curation
funnel reads those counts back with `reader_skips`. The reasons are listed in
repro.data.readers (and repro.data.files_reader for one-document-per-file reading). This
module sits below both, which import it: it imports no reader.
"""

from __future__ import annotations

import gzip
import zlib

from datatrove.utils.logging import logger
from datatrove.utils.stats import Stats

SKIP_PREFIX = "skipped_"
"""Reader stats with this prefix count inputs that could not be read, by reason."""

MAX_WARNINGS_PER_REASON = 5
"""Log the first few skips of each reason per task; later ones are only counted."""


def reader_skips(stats: Stats) -> dict[str, int]:
    """`{reason: count}` of the inputs a reader block skipped, from its (merged) datatrove
    stats; empty when nothing was skipped. Sorted by reason, so metrics are stable."""
    return {key.removeprefix(SKIP_PREFIX): int(metric.total)
            for key, metric in sorted(stats.stats.items())
            if key.startswith(SKIP_PREFIX) and int(metric.total) > 0}


def error_reason(exc: BaseException) -> str:
    """Skip reason for an exception raised while reading a file."""
    if isinstance(exc, EOFError):
        return "truncated_gzip"  # gzip/zstd stream ended before its end marker
    if isinstance(exc, (gzip.BadGzipFile, zlib.error)):
        return "corrupt_gzip"
    if isinstance(exc, UnicodeDecodeError):
        return "invalid_utf8"
    try:
        import pyarrow

        if isinstance(exc, pyarrow.ArrowException):
            return "corrupt_parquet"
    except ImportError:  # pragma: no cover - pyarrow comes with datatrove[processing]
        pass
    try:
        from warcio.exceptions import ArchiveLoadFailed

        if isinstance(exc, ArchiveLoadFailed):
            return "invalid_warc"
    except ImportError:  # pragma: no cover
        pass
    return "unreadable_file"


class SkipCounting:
    """Mixin for readers: `count_skip(reason, where, detail)` counts `skipped_<reason>` and logs
    the first few of each reason; documents with no text are counted as `empty_text`."""

    def count_skip(self, reason: str, where: str, detail: object = "") -> None:
        self.stat_update(f"{SKIP_PREFIX}{reason}")
        logged = self.__dict__.setdefault("_skip_logged", {})
        logged[reason] = logged.get(reason, 0) + 1
        if logged[reason] <= MAX_WARNINGS_PER_REASON:
            logger.warning(f"skipped ({reason}) {where}: {detail}")

    def get_document_from_dict(self, data: dict, source_file: str, id_in_file: int | str):
        document = super().get_document_from_dict(data, source_file, id_in_file)
        if document is None:
            self.count_skip("empty_text", f"{source_file}#{id_in_file}", "no text")
        return document
