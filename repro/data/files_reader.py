"""A folder of files (local or any fsspec URL) as documents, one document per file.

`FilesReader` is a datatrove `BaseDiskReader`, so listing, globbing, sharding by file across
tasks and `limit` behave as in datatrove's own readers. Each file becomes one document whose
id and `url` are its path relative to the folder (no absolute path or bucket name, so the
same files give the same documents wherever they live). The format is chosen by extension
(`auto`) or forced by the spec:

- html, text, code: the bytes decoded as UTF-8 (a leading BOM dropped); code documents get
  `metadata["language"]` from `CODE_EXTENSIONS`, in The Stack's naming;
- pdf: `repro.data.pdf_sources.pdf_document`, a text-less document carrying the PDF bytes
  for the `pdf_extract` step (the document contract of issue 3).

Files that cannot be documents are skipped and counted (`skipped_<reason>`): `empty_file`,
`binary_file` (NUL bytes under a text, HTML or code name), `invalid_utf8`,
`unreadable_file`.
"""

from __future__ import annotations

import posixpath
from typing import Literal

from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike
from datatrove.pipeline.readers.base import BaseDiskReader

from repro.data.pdf_sources import pdf_document
from repro.data.skips import SkipCounting, error_reason

Format = Literal["auto", "html", "pdf", "text", "code"]

HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
PDF_EXTENSIONS = frozenset({".pdf"})

CODE_EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyx": "cython",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hh": "cpp", ".hpp": "cpp",
    ".hxx": "cpp",
    ".cs": "csharp", ".java": "java", ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript",
    ".go": "go", ".rs": "rust", ".swift": "swift", ".dart": "dart", ".zig": "zig",
    ".rb": "ruby", ".php": "php", ".pl": "perl", ".pm": "perl", ".lua": "lua",
    ".r": "r", ".jl": "julia", ".hs": "haskell", ".ml": "ocaml", ".mli": "ocaml",
    ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".clj": "clojure",
    ".f90": "fortran", ".f95": "fortran", ".f": "fortran",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ps1": "powershell",
    ".sql": "sql", ".css": "css", ".scss": "scss",
    ".m": "objective-c", ".mm": "objective-cpp", ".cu": "cuda", ".cuh": "cuda",
    ".asm": "assembly", ".s": "assembly", ".vue": "vue", ".svelte": "svelte",
    ".cmake": "cmake", ".mk": "makefile", ".tex": "tex", ".proto": "protobuf",
}
"""Source-code extensions -> language name (lower case, as in The Stack's `lang` field).
Configuration and prose formats (.json, .yaml, .md, .txt) are read as text."""

CODE_FILENAMES: dict[str, str] = {"makefile": "makefile", "dockerfile": "dockerfile",
                                  "cmakelists.txt": "cmake"}
"""Source files recognised by their whole name."""


def _extension(path: str) -> str:
    return posixpath.splitext(path)[1].lower()


def code_language(path: str) -> str | None:
    """Language of a source file from its name, or None when it is not known as code."""
    name = posixpath.basename(path).lower()
    return CODE_FILENAMES.get(name) or CODE_EXTENSIONS.get(_extension(path))


def file_format(path: str, fmt: Format = "auto") -> str:
    """How a file is read: the spec's format, or by extension when `auto`."""
    if fmt != "auto":
        return fmt
    ext = _extension(path)
    if ext in HTML_EXTENSIONS:
        return "html"
    if ext in PDF_EXTENSIONS:
        return "pdf"
    if code_language(path) is not None:
        return "code"
    return "text"


class FilesReader(SkipCounting, BaseDiskReader):
    """One document per file under `data_folder` matching `glob_pattern`.

    Args:
        data_folder: local folder or fsspec URL (s3://bucket/prefix, hf://datasets/...).
        glob_pattern: files to read, relative to the folder (`**/*`: all, recursively).
        fmt: `auto` (by extension) or one format for every file.
        limit: documents per task (-1: all).
    """

    name = "📁 Files"

    def __init__(
        self,
        data_folder: DataFolderLike,
        glob_pattern: str | None = "**/*",
        fmt: Format = "auto",
        limit: int = -1,
        skip: int = 0,
        doc_progress: bool = False,
        file_progress: bool = False,
        recursive: bool = True,
        paths_file=None,
    ):
        super().__init__(data_folder, paths_file=paths_file, limit=limit, skip=skip,
                         file_progress=file_progress, doc_progress=doc_progress,
                         recursive=recursive, glob_pattern=glob_pattern, add_file_path=False)
        self.fmt = fmt

    def read_file(self, filepath: str) -> DocumentsPipeline:
        with self.track_time():
            doc = self._document(filepath)
        if doc is not None:
            yield doc

    def _document(self, filepath: str) -> Document | None:
        try:
            with self.data_folder.open(filepath, "rb") as f:
                data = f.read()
        except Exception as e:  # noqa: BLE001 - permission, vanished file, network
            self.count_skip(error_reason(e) if not isinstance(e, UnicodeDecodeError)
                      else "unreadable_file", filepath, e)
            return None
        if not data:
            self.count_skip("empty_file", filepath, "0 bytes")
            return None
        fmt = file_format(filepath, self.fmt)
        if fmt == "pdf":
            return pdf_document(data, filepath, filepath)
        if b"\x00" in data:
            self.count_skip("binary_file", filepath, f"NUL bytes in a {fmt} file")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            self.count_skip("invalid_utf8", filepath, e)
            return None
        text = text.removeprefix("\ufeff")
        if not text.strip():
            self.count_skip("empty_file", filepath, "only whitespace")
            return None
        metadata: dict = {"url": filepath, "format": fmt}
        if fmt == "code":
            metadata["language"] = code_language(filepath) or "unknown"
        return Document(text=text, id=filepath, metadata=metadata)
