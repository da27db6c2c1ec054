"""The standard library's own `.py` files as a code corpus (JSONL, one file per line)."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path
from typing import Iterator

SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "test", "tests",
                       "idle_test", "lib-dynload"})
"""Installed third-party packages, bytecode and the test suites are not the library."""


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path | None = None) -> list[str]:
    """Relative POSIX paths of the library's `.py` files, sorted."""
    root = root or stdlib_dir()
    out = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
            continue
        if path.is_file():
            out.append(rel.as_posix())
    return sorted(out)


def iter_documents(max_docs: int | None = None, root: Path | None = None) -> Iterator[dict]:
    """Documents `{"id", "text", "metadata": {"path", "language"}}` in sorted path order.
    Files that are not valid UTF-8 (a few test fixtures) are skipped."""
    root = root or stdlib_dir()
    count = 0
    for rel in source_files(root):
        if max_docs is not None and count >= max_docs:
            return
        try:
            text = (root / rel).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not text.strip():
            continue  # empty __init__.py files carry no code
        count += 1
        yield {"id": rel, "text": text, "metadata": {"path": rel, "language": "python"}}


def write_jsonl(docs: Iterator[dict], path: Path) -> int:
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count
