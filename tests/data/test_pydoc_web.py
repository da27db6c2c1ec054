"""Builtin web corpus: article-like pydoc pages, deterministic, `max_docs` respected, and
a WARC that datatrove's reader accepts with fixed dates and URL-derived record ids."""

from __future__ import annotations

import hashlib

from repro.data import pydoc_web
from repro.data.pydoc_web import Page, iter_pages, topic_page
from repro.data.warc import WARC_DATE, record_id, write_warc


def test_pages_are_deterministic_and_capped():
    first = list(iter_pages(max_docs=6))
    again = list(iter_pages(max_docs=6))
    assert len(first) == 6
    assert first == again
    assert all(p.url.startswith(pydoc_web.HOST + "/library/") for p in first)
    assert len({p.url for p in first}) == 6


def test_module_page_is_prose_with_sections():
    import json

    page = pydoc_web.module_page("json", json)
    assert page is not None and page.url.endswith("/library/json.html")
    assert "<article>" in page.html and "<h2>dumps(" in page.html
    assert "<p>" in page.html


def test_signature_shows_only_literal_defaults():
    def f(a, b=3, c=None, *args, out=object(), **kw):
        """Doc."""

    assert pydoc_web._signature(f) == "(a, b=3, c=None, *args, out=..., **kw)"


def test_addresses_are_normalised():
    assert "0x7f" not in pydoc_web._normalise("<object at 0x7f3a2b1c0d90>")


def test_skipped_modules():
    for name in ("antigravity", "this", "tkinter.ttk", "idlelib", "test.support", "_io",
                 "encodings.utf_8", "email._parseaddr"):
        assert pydoc_web._skipped(name), name
    assert not pydoc_web._skipped("email.message")


def test_topic_page_headings_and_code():
    text = "The thing\n*********\n\nSome prose here.\n\n   x = 1\n\nA part\n======\n\nMore."
    page = topic_page("thing", text)
    assert "<h1>The thing</h1>" in page.html and "<h2>A part</h2>" in page.html
    assert "<pre>x = 1</pre>" in page.html


def test_warc_is_deterministic_and_readable(tmp_path):
    from warcio.archiveiterator import ArchiveIterator

    pages = [Page(f"https://docs.python.invalid/p{i}.html", f"p{i}",
                  f"<html><body><p>page {i}</p></body></html>") for i in range(3)]
    a, b = tmp_path / "a.warc", tmp_path / "b.warc"
    assert write_warc(pages, a, progress=False) == 3
    write_warc(pages, b, progress=False)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    with open(a, "rb") as f:
        records = list(ArchiveIterator(f))
    assert [r.rec_type for r in records] == ["response"] * 3
    for page, r in zip(pages, records):
        assert r.rec_headers["WARC-Date"] == WARC_DATE
        assert r.rec_headers["WARC-Record-ID"] == record_id(page.url)
        assert r.rec_headers["WARC-Target-URI"] == page.url
        assert r.http_headers["Content-Type"] == "text/html; charset=utf-8"
    assert record_id("u1") != record_id("u2")


def test_install_paths_are_normalised():
    """A clone in another folder (or another venv) must build the same corpus."""
    import os
    import platform
    import sys

    page = pydoc_web.module_page("platform", platform)
    assert page is not None
    assert sys.executable not in page.html and sys.prefix not in page.html
    assert os.getcwd() not in pydoc_web._normalise(f"cwd is {os.getcwd()}/x")
