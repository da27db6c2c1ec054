"""Markdown and HTML rendering: escaping, tables, inlined images."""

from __future__ import annotations

from repro.report.render import (Bullets, Heading, Image, Paragraph, Table, md_escape, to_html,
                                 to_markdown)

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
