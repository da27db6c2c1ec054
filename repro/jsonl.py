"""Reading the JSONL files repro writes (split, decontamination, local tasks, eval samples).

One reader for every such file, so that a bad line fails the same way everywhere: a
`JsonlError` (a ReproError, so `repro stage` renders it like any user error) naming the file
and the line (1-based, blank lines counted, as an editor shows them). Lines are split on `\\n` only, the JSONL rule: our writers (`json.dumps(...,
ensure_ascii=False)`) leave U+2028, U+0085 and friends raw inside strings, where
`str.splitlines()` would cut a document in two. Blank lines are skipped.

Why not a library reader here:
- polars (`pl.read_ndjson`/`scan_ndjson`) makes a table, not the rows: a key missing from a
  row comes back as null (so "is the key there" checks change meaning), nested objects are
  unified into one struct, `NaN` (which `json.dumps` writes for a non-finite score) is a
  parse error, errors name a byte offset, not a line, and the whole file is loaded where
  callers read only the first few documents.
- datatrove's `JsonlReader` (used for curation's own inputs: repro.data.readers) makes
  `Document`s: it drops documents with empty text, folds unknown keys into `metadata` and is
  a pipeline step (stats, progress, logging); the callers here want the rows as written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from repro.errors import ReproError

JSONL_GLOB = "*.jsonl"


class JsonlError(ReproError, ValueError):
    """A JSONL line that cannot be read, as data: `file`, `line` and the problem as
    `message`, kept apart so a caller can name only the file (outputs must not carry
    absolute paths). Its text is `<path>:<line>: <problem>`, as compilers and editors write a
    place. A ValueError too: a malformed file is a bad value, and callers catch it as one."""

    def __init__(self, path: Path | str, line: int, problem: str):
        super().__init__(problem, file=str(path), line=line)

    @property
    def path(self) -> Path:
        """The file, as a path."""
        return Path(self.file or "")

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class JsonlLine:
    """One non-blank line of a JSONL file: where it is, its text and its parsed value."""

    path: Path
    number: int
    """1-based, counting blank lines."""
    text: str
    """The line as in the file, ending in `\\n` (added to a last line without one)."""
    value: Any

    def error(self, problem: str) -> JsonlError:
        """An error located at this line (for rows that parse but do not fit)."""
        return JsonlError(self.path, self.number, problem)


def iter_lines(path: Path | str) -> Iterator[JsonlLine]:
    """The non-blank lines of `path`, in file order, parsed; streams (a file of any size)."""
    path = Path(path)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise JsonlError(path, number, f"not UTF-8 ({e.reason} at byte {e.start})") from e
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise JsonlError(path, number, f"not JSON ({e.msg} at column {e.colno})") from e
            yield JsonlLine(path, number, text if text.endswith("\n") else text + "\n", value)


def iter_rows(path: Path | str) -> Iterator[Any]:
    """The parsed values of the non-blank lines of `path`, in file order; streams."""
    for line in iter_lines(path):
        yield line.value


def folder_files(folder: Path | str) -> list[Path]:
    """The `*.jsonl` files directly in `folder`, sorted by name (the order rows are read in);
    none when the folder does not exist."""
    folder = Path(folder)
    return sorted(folder.glob(JSONL_GLOB)) if folder.is_dir() else []


def iter_folder_rows(folder: Path | str) -> Iterator[Any]:
    """The rows of every `*.jsonl` file directly in `folder`, file by file in sorted order."""
    for path in folder_files(folder):
        yield from iter_rows(path)
