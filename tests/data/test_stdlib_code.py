"""Builtin code corpus: sorted paths, skipped folders and undecodable files, `max_docs`."""

from __future__ import annotations

from repro.data.stdlib_code import iter_documents, source_files


def make_tree(root):
    files = {
        "b.py": "print('b')\n",
        "a.py": "x = 1\n",
        "pkg/__init__.py": "",
        "pkg/mod.py": "def f():\n    return 2\n",
        "site-packages/third.py": "import x\n",
        "test/test_a.py": "assert True\n",
        "pkg/__pycache__/mod.py": "cached\n",
        "notes.txt": "not python\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "latin.py").write_bytes(b"s = '\xe9'\n")


def test_source_files_sorted_and_filtered(tmp_path):
    make_tree(tmp_path)
    assert source_files(tmp_path) == ["a.py", "b.py", "latin.py", "pkg/__init__.py", "pkg/mod.py"]


def test_documents_skip_empty_and_undecodable(tmp_path):
    make_tree(tmp_path)
    docs = list(iter_documents(root=tmp_path))
    assert [d["id"] for d in docs] == ["a.py", "b.py", "pkg/mod.py"]
    assert docs[2] == {"id": "pkg/mod.py", "text": "def f():\n    return 2\n",
                       "metadata": {"path": "pkg/mod.py", "language": "python"}}
    assert [d["id"] for d in iter_documents(max_docs=2, root=tmp_path)] == ["a.py", "b.py"]


def test_real_stdlib_has_code():
    docs = list(iter_documents(max_docs=5))
    assert len(docs) == 5
    assert all(d["text"].strip() and d["id"].endswith(".py") for d in docs)
