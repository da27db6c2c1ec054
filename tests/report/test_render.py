"""Markdown and HTML rendering: escaping, tables, inlined images."""

from __future__ import annotations

import pytest

from repro.report.render import (Bullets, Heading, Image, Link, Paragraph, Table, md_escape, to_html,
                                 to_html_body, to_markdown)

BLOCKS = [
    Heading(1, "R <b>&amp; co"),
    Paragraph("a*b* [x](y) <script>alert(1)</script> snake_case _edge_"),
    Bullets(("one | two", "x < 3")),
    Table(("name", "v|al"), (("a|b", "1.0"),), ("left", "right")),
    Image("loss.png", 'alt "quoted" <img>'),
]


def test_markdown_escapes_and_links_image():
    md = to_markdown(BLOCKS)
    assert md.startswith("# R \\<b>\\&amp; co\n")
    assert "a\\*b\\* \\[x\\](y) \\<script>" in md
    assert "snake_case \\_edge\\_" in md  # intraword underscores stay readable
    assert "- one | two\n- x < 3" in md  # '|' only matters in tables, '< 3' opens no tag
    assert "| name | v\\|al |\n| :--- | ---: |\n| a\\|b | 1.0 |" in md
    assert "](loss.png)" in md
    assert md.endswith("\n") and not md.endswith("\n\n")


def test_md_escape_newlines():
    assert md_escape("a\nb") == "a b"


def test_html_escapes_and_inlines_image():
    html = to_html(BLOCKS, "T <x>", {"loss.png": b"\x89PNG fake"})
    assert "<title>T &lt;x&gt;</title>" in html
    assert "<h1>R &lt;b&gt;&amp;amp; co</h1>" in html
    assert "&lt;script&gt;" in html and "<script" not in html
    assert '<td class="left">a|b</td><td class="right">1.0</td>' in html
    assert ('alt="alt &quot;quoted&quot; &lt;img&gt;" '
            'src="data:image/png;base64,iVBORyBmYWtl"') in html
    assert "http://" not in html and "https://" not in html


LINKED = [
    Paragraph((Link("../index.html", "all <reports>"), " · ", "a_b")),
    Bullets((Link("a b/(x).html", "x [1]"), ("see ", Link("https://e.org/?q=1&r=2", "e")))),
    Table(("name",), ((Link("r|1.html", "r|1"),), ("plain",)), ("left",)),
]


def test_links_in_html_are_escaped_inline():
    body = to_html_body(LINKED, {})
    assert '<p><a href="../index.html">all &lt;reports&gt;</a> · a_b</p>' in body
    assert '<li>see <a href="https://e.org/?q=1&amp;r=2">e</a></li>' in body
    assert '<td class="left"><a href="r|1.html">r|1</a></td>' in body
    assert to_html(LINKED, "t", {}).count(body) == 1  # the page embeds the same fragment


def test_links_in_markdown_keep_destinations_intact():
    md = to_markdown(LINKED)
    assert "[all \\<reports>](../index.html) · a_b" in md
    assert "- [x \\[1\\]](a%20b/%28x%29.html)" in md  # spaces/parentheses would end the link
    assert "| [r\\|1](r%7C1.html) |" in md  # a bare '|' would split the table cell


@pytest.mark.parametrize("href", ["javascript:alert(1)", " JavaScript:alert(1)",
                                  "java\tscript:alert(1)", "data:text/html,<b>", "file:///etc"])
def test_link_refuses_executable_or_local_schemes(href):
    with pytest.raises(ValueError, match="not allowed"):
        Link(href, "x")


@pytest.mark.parametrize("href", ["report.html", "../a/b.html#x", "https://hf.co", "mailto:a@b.c"])
def test_link_accepts_relative_and_web_urls(href):
    assert Link(href, "x").href == href
