"""A report as a few plain blocks, rendered to GitHub Markdown or to one self-contained HTML
file (inline CSS, images as base64 data URIs, no scripts, no external resources).

Text in blocks is plain; each renderer escapes it for its format. Wherever a block holds
text (paragraph, bullet item, table cell), it may also hold a `Link` or a tuple of strings and
links, rendered inline in order.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from typing import Literal, Mapping, Union
from urllib.parse import urlsplit


# Schemes a link may use; anything else (javascript:, data:, file:...) is refused, since
# escaping keeps markup out of an href but not an executable or local URL.
LINK_SCHEMES = frozenset({"", "http", "https", "mailto"})


@dataclass(frozen=True)
class Link:
    """An inline hyperlink. `href` is a URL, already percent-encoded where its parts need it
    (publish quotes file names); `text` is plain text."""

    href: str
    text: str

    def __post_init__(self) -> None:
        # urlsplit drops tabs/newlines and leading blanks the way browsers do, so
        # "java\tscript:" is seen as the scheme a browser would run.
        scheme = urlsplit(self.href).scheme.lower()
        if scheme not in LINK_SCHEMES:
            raise ValueError(f"link scheme {scheme!r} not allowed in {self.href!r}; "
                             f"use one of {sorted(s for s in LINK_SCHEMES if s)} or a relative URL")


Inline = Union[str, Link]
Text = Union[Inline, tuple[Inline, ...]]
"""A run of text: a string, a link, or several of them rendered one after the other."""


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: Text


@dataclass(frozen=True)
class Bullets:
    items: tuple[Text, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Text, ...], ...]
    align: tuple[Literal["left", "right"], ...]


@dataclass(frozen=True)
class Image:
    src: str
    """File name next to the report (Markdown links it; HTML inlines its bytes)."""
    alt: str


Block = Union[Heading, Paragraph, Bullets, Table, Image]

# --------------------------------------------------------------------------- Markdown

# Escape only what GitHub Markdown would interpret, so the raw file stays readable:
# emphasis/code/link characters, `#` (headings), `<` that could open a tag, `&` that could
# start an entity, and underscores at word edges (intraword `_` never emphasises).
# `|` is escaped inside table cells only.
_MD_SPECIAL = re.compile(r"([\\`*\[\]#])")
_MD_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
_MD_ENTITY = re.compile(r"&(?=#?\w+;)")
_MD_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_escape(text: str, in_table: bool = False) -> str:
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_TAG_OPEN.sub(r"\\<", text)
    text = _MD_ENTITY.sub(r"\\&", text)
    text = _MD_EDGE_UNDERSCORE.sub(r"\\_", text).replace("\n", " ")
    return text.replace("|", r"\|") if in_table else text


# Characters that would end or split a Markdown link destination (or a table cell).
_MD_HREF_UNSAFE = re.compile(r"[\s()<>|\\]")


def _md_href(href: str) -> str:
    return _MD_HREF_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), href)


def _md_text(text: Text, in_table: bool = False) -> str:
    if isinstance(text, tuple):
        return "".join(_md_text(t, in_table) for t in text)
    if isinstance(text, Link):
        return f"[{md_escape(text.text, in_table)}]({_md_href(text.href)})"
    return md_escape(text, in_table)


def _md_block(b: Block) -> str:
    if isinstance(b, Heading):
        return "#" * b.level + " " + md_escape(b.text)
    if isinstance(b, Paragraph):
        return _md_text(b.text)
    if isinstance(b, Bullets):
        return "\n".join("- " + _md_text(i) for i in b.items)
    if isinstance(b, Table):
        sep = ["---:" if a == "right" else ":---" for a in b.align]
        lines = [[md_escape(h, in_table=True) for h in b.header], sep,
                 *([_md_text(c, in_table=True) for c in row] for row in b.rows)]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    if isinstance(b, Image):
        return f"![{md_escape(b.alt)}]({b.src})"
    raise TypeError(f"unknown block {b!r}")


def to_markdown(blocks: list[Block]) -> str:
    return "\n\n".join(_md_block(b) for b in blocks) + "\n"


# ------------------------------------------------------------------------------- HTML

CSS = """\
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 72em; padding: 0 1em; color: #1f2328; line-height: 1.5; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.6em; }
th { background: #f6f8fa; }
td.right, th.right { text-align: right; font-variant-numeric: tabular-nums; }
td.left, th.left { text-align: left; }
img { max-width: 100%; height: auto; }
"""


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _html_text(text: Text) -> str:
    if isinstance(text, tuple):
        return "".join(_html_text(t) for t in text)
    if isinstance(text, Link):
        return f'<a href="{_esc(text.href)}">{_esc(text.text)}</a>'
    return _esc(text)


def _html_block(b: Block, images: Mapping[str, bytes]) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{_esc(b.text)}</h{b.level}>"
    if isinstance(b, Paragraph):
        return f"<p>{_html_text(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>\n" + "".join(f"<li>{_html_text(i)}</li>\n" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        def row(cells: tuple[Text, ...], tag: str) -> str:
            return "<tr>" + "".join(f'<{tag} class="{a}">{_html_text(c)}</{tag}>'
                                    for c, a in zip(cells, b.align)) + "</tr>\n"
        return ("<table>\n<thead>\n" + row(b.header, "th") + "</thead>\n<tbody>\n"
                + "".join(row(r, "td") for r in b.rows) + "</tbody>\n</table>")
    if isinstance(b, Image):
        if b.src not in images:
            raise KeyError(f"image {b.src!r} has no bytes to inline")
        data = base64.b64encode(images[b.src]).decode("ascii")
        return f'<p><img alt="{_esc(b.alt)}" src="data:image/png;base64,{data}"></p>'
    raise TypeError(f"unknown block {b!r}")


def to_html_body(blocks: list[Block], images: Mapping[str, bytes]) -> str:
    """The blocks as an HTML fragment (what goes inside <body>), for pages that embed them."""
    return "\n".join(_html_block(b, images) for b in blocks)


def html_page(title: str, body: str) -> str:
    """A whole page around an HTML fragment `body` (already safe HTML): inline CSS, nothing
    external."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_esc(title)}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def to_html(blocks: list[Block], title: str, images: Mapping[str, bytes]) -> str:
    return html_page(title, to_html_body(blocks, images))
