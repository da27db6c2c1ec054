"""FilesReader: one document per file, format by extension, bad files skipped and counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.data.files_reader import FilesReader, code_language, file_format
from repro.data.readers import reader_skips, source_reader
from repro.spec import schema as S


def read(reader, rank: int = 0, world_size: int = 1) -> dict:
    return {d.id: d for d in reader.run(None, rank, world_size)}


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.mark.parametrize("name, fmt, language", [
    ("site/index.html", "html", None), ("a/b.HTM", "html", None), ("x.xhtml", "html", None),
    ("paper.pdf", "pdf", None), ("pkg/mod.py", "code", "python"), ("lib.rs", "code", "rust"),
    ("main.cpp", "code", "cpp"), ("util.h", "code", "c"), ("App.java", "code", "java"),
    ("ui.tsx", "code", "typescript"), ("app.js", "code", "javascript"), ("run.sh", "code", "shell"),
    ("srv.go", "code", "go"), ("Makefile", "code", "makefile"), ("README.md", "text", None),
    ("data.json", "text", None), ("notes", "text", None),
])
def test_format_and_language_by_name(name, fmt, language):
    assert file_format(name) == fmt
    assert code_language(name) == language
    assert file_format(name, "text") == "text"


def test_auto_format_documents(tmp_path, make_pdf):
    pdf = make_pdf("A scanned manual.")
    root = tree(tmp_path / "files", {
        "index.html": b"<html><body><p>Hello</p></body></html>",
        "src/pkg/mod.py": b"def f():\n    return 1\n",
        "src/lib.rs": "fn main() { println!(\"héllo\"); }\n".encode(),
        "docs/guide.txt": b"\xef\xbb\xbfPlain text guide.\n",
        "docs/manual.pdf": pdf,
    })
    reader = source_reader(S.FilesSource(path=str(root)), None, progress=False)
    docs = read(reader)
    assert sorted(docs) == ["docs/guide.txt", "docs/manual.pdf", "index.html", "src/lib.rs",
                            "src/pkg/mod.py"]
    assert docs["index.html"].text.startswith("<html>")
    assert docs["index.html"].metadata == {"url": "index.html", "format": "html"}
    assert docs["src/pkg/mod.py"].metadata == {"url": "src/pkg/mod.py", "format": "code",
                                               "language": "python"}
    assert docs["src/lib.rs"].metadata["language"] == "rust" and "héllo" in docs["src/lib.rs"].text
    assert docs["docs/guide.txt"].text == "Plain text guide.\n"  # BOM dropped
    manual = docs["docs/manual.pdf"]
    assert manual.text == "" and manual.media[0].media_bytes == pdf
    assert manual.metadata["url"] == "docs/manual.pdf"
    assert reader_skips(reader.stats) == {}


def test_forced_format_and_glob(tmp_path):
    root = tree(tmp_path / "files", {"a.txt": b"print('a')\n", "b.txt": b"print('b')\n",
                                     "c.md": b"# title\n", "sub/d.txt": b"x = 1\n"})
    docs = read(FilesReader(str(root), glob_pattern="*.txt", fmt="code"))
    assert sorted(docs) == ["a.txt", "b.txt"]
    assert docs["a.txt"].metadata == {"url": "a.txt", "format": "code", "language": "unknown"}
    assert sorted(read(FilesReader(str(root), glob_pattern="**/*.txt"))) == ["a.txt", "b.txt",
                                                                             "sub/d.txt"]


def test_bad_files_are_skipped_with_reasons(tmp_path):
    root = tree(tmp_path / "files", {
        "good.py": b"x = 1\n",
        "empty.py": b"",
        "blank.txt": b"  \n\n",
        "binary.py": b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)),
        "latin1.txt": "caf\xe9".encode("latin-1"),
        "page.html": b"<html>\x00</html>",
    })
    reader = FilesReader(str(root))
    assert list(read(reader)) == ["good.py"]
    assert reader_skips(reader.stats) == {"binary_file": 2, "empty_file": 2, "invalid_utf8": 1}


def test_files_are_sharded_across_tasks_and_limited(tmp_path):
    root = tree(tmp_path / "files", {f"f{i}.txt": f"file {i}\n".encode() for i in range(5)})
    shards = [read(FilesReader(str(root)), rank, 2) for rank in range(2)]
    assert sorted(shards[0]) == ["f0.txt", "f2.txt", "f4.txt"]
    assert sorted(shards[1]) == ["f1.txt", "f3.txt"]
    limited = read(source_reader(S.FilesSource(path=str(root), limit=2), None, progress=False))
    assert sorted(limited) == ["f0.txt", "f1.txt"]


def test_files_reader_sits_below_readers():
    """No import cycle: readers imports files_reader; both import the skip counting from
    repro.data.skips, which imports neither."""
    from repro.compile import code_deps

    assert "repro/data/files_reader.py" in code_deps.module_closure("repro.data.readers")
    assert "repro/data/readers.py" not in code_deps.module_closure("repro.data.files_reader")
    assert not {"repro/data/readers.py", "repro/data/files_reader.py"} & set(
        code_deps.module_closure("repro.data.skips"))
