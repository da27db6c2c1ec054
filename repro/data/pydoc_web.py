"""Article-like HTML pages built from the standard library's own documentation.

Why not plain `pydoc.HTMLDoc().docmodule()` pages: they are tables of names and signatures,
"listy" text that FineWeb's Gopher and FineWeb quality filters remove almost entirely
(short lines, few stop words, no sentences). Real web articles are headings followed by
paragraphs, so each page here is one subject written as prose:

- one page per standard-library module (its docstring, then a section per public function
  and a one-paragraph summary per public class),
- one page per public class with a substantial docstring (class docstring, then a section
  per documented public method),
- one page per topic of the language reference shipped in `pydoc_data.topics`.

The HTML is made with pydoc's own `HTMLDoc.markup` (escaping, PEP/RFC/URL links) and
`HTMLDoc.page`. Everything run-dependent is left out or normalised (default values are
shown only when they are plain literals; memory addresses are replaced) so that two runs on
the same Python installation give byte-identical pages.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import pkgutil
import re
import sys
import textwrap
import warnings
from dataclasses import dataclass
from typing import Iterator

HOST = "https://docs.python.invalid"
"""Pages live under a reserved TLD (RFC 2606): clearly synthetic, never resolvable."""

SKIP_MODULES = frozenset({
    # side effects on import (opens a browser, prints the Zen of Python)
    "antigravity", "this",
    # GUI toolkits and demos: need a display or Tk, and document widgets, not prose
    "idlelib", "tkinter", "turtle", "turtledemo",
    # the test suite is code, not documentation
    "test", "unittest.test", "lib2to3.tests", "ctypes.test", "tkinter.test",
    # codec tables: ~120 near-identical stubs
    "encodings",
})
"""Modules (and their submodules) left out of the corpus."""

MIN_CLASS_DOC_CHARS = 400
"""A class gets a page of its own only with this much documentation (class + methods):
shorter ones are a line or two, not an article."""

_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
_UNDERLINE = re.compile(r"^([*=\-~^\"'`#+])\1{2,}$")


@dataclass(frozen=True)
class Page:
    """One HTML page of the corpus."""

    url: str
    title: str
    html: str


# ------------------------------------------------------------------------- modules


def _skipped(name: str) -> bool:
    parts = name.split(".")
    if any(p.startswith("_") or p in ("test", "tests", "idle_test") for p in parts):
        return True
    return any(name == s or name.startswith(s + ".") for s in SKIP_MODULES)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Importing some modules warns (deprecations) or prints; neither belongs in our logs."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _import(name: str):
    try:
        with _quiet():
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - platform-specific modules raise anything on import
        return None


def module_names() -> list[str]:
    """Public standard-library modules and their public submodules (packages walked
    recursively), sorted. Modules that fail to import are left out."""
    names: set[str] = set()
    for top in sorted(sys.stdlib_module_names):
        if _skipped(top):
            continue
        mod = _import(top)
        if mod is None:
            continue
        names.add(top)
        path = getattr(mod, "__path__", None)
        if not path:
            continue
        for info in pkgutil.walk_packages(path, prefix=top + ".", onerror=lambda _: None):
            if _skipped(info.name):
                continue
            if _import(info.name) is not None:
                names.add(info.name)
    return sorted(names)


# ------------------------------------------------------------------- text to html

@functools.lru_cache(maxsize=None)
def _htmldoc():
    import pydoc

    return pydoc.HTMLDoc()


def _install_paths() -> list[tuple[str, str]]:
    """Paths of this particular checkout/venv that leak into docs through default values
    (e.g. `platform.architecture(executable=sys.executable)`), longest first."""
    import os
    import sys

    found = {sys.executable: "/usr/bin/python3", sys.prefix: "/usr",
             sys.exec_prefix: "/usr", os.getcwd(): "/home/user"}
    return sorted(((k, v) for k, v in found.items() if k and k != "/"),
                  key=lambda kv: -len(kv[0]))


def _normalise(text: str) -> str:
    """Make a page independent of the run: memory addresses and install paths."""
    for path, stand_in in _install_paths():
        text = text.replace(path, stand_in)
    return _ADDRESS.sub("0x0", text)


def _paragraphs(doc: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n\s*\n", doc) if p.strip()]


def _is_code(par: str) -> bool:
    lines = par.splitlines()
    return lines[0].lstrip().startswith(">>>") or all(line.startswith((" ", "\t")) for line in lines)


def _doc_html(doc: str, first_only: bool = False) -> str:
    """Docstring -> <p> and <pre> blocks, marked up by pydoc."""
    pars = _paragraphs(doc)
    if first_only:
        pars = pars[:1]
    out = []
    for par in pars:
        if _is_code(par):
            out.append(f"<pre>{_htmldoc().escape(textwrap.dedent(par))}</pre>")
        else:
            text = " ".join(line.strip() for line in par.splitlines())
            out.append(f"<p>{_htmldoc().markup(text)}</p>")
    return "\n".join(out)


def _literal(value: object) -> str | None:
    """repr of a default value if it is a plain literal (reprs of other objects can carry
    memory addresses or depend on the process, e.g. sys.stdout under pytest)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        text = repr(value)
        return text if len(text) <= 40 else None
    return None


def _signature(obj: object) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parts = []
    for p in sig.parameters.values():
        name = p.name
        if p.kind is p.VAR_POSITIONAL:
            name = "*" + name
        elif p.kind is p.VAR_KEYWORD:
            name = "**" + name
        if p.default is not p.empty:
            lit = _literal(p.default)
            name += f"={lit}" if lit is not None else "=..."
        parts.append(name)
    return "(" + ", ".join(parts) + ")"


def _getdoc(obj: object) -> str:
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
    return inspect.cleandoc(doc) if doc else ""


def _public_members(mod) -> list[tuple[str, object]]:
    """Public functions and classes defined in `mod` itself (not re-exported)."""
    names = getattr(mod, "__all__", None)
    if not isinstance(names, (list, tuple)):
        names = [n for n in vars(mod) if not n.startswith("_")]
    out = []
    for name in sorted(set(n for n in names if isinstance(n, str) and not n.startswith("_"))):
        obj = getattr(mod, name, None)
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and \
                getattr(obj, "__module__", None) == mod.__name__:
            out.append((name, obj))
    return out


def _class_methods(cls: type) -> list[tuple[str, object, str]]:
    out = []
    for name, obj in sorted(vars(cls).items()):
        if name.startswith("_") and name != "__init__":
            continue
        func = obj.__func__ if isinstance(obj, (classmethod, staticmethod)) else obj
        if isinstance(func, property):
            doc = _getdoc(func)
        elif inspect.isroutine(func):
            doc = _getdoc(func)
        else:
            continue
        if doc:
            out.append((name, func, doc))
    return out


def _page(url: str, title: str, body: str) -> Page:
    html = _htmldoc().page(_htmldoc().escape(title), f"<article>\n{body}\n</article>")
    return Page(url=url, title=title, html=_normalise(html))


def module_page(name: str, mod) -> Page | None:
    """Module docstring plus a section per public function and class."""
    esc = _htmldoc().escape
    sections = []
    doc = _getdoc(mod)
    if doc:
        sections.append(_doc_html(doc))
    for member, obj in _public_members(mod):
        mdoc = _getdoc(obj)
        if not mdoc:
            continue
        if inspect.isclass(obj):
            heading = f"class {member}"
            sections.append(f"<h2>{esc(heading)}</h2>\n{_doc_html(mdoc, first_only=True)}")
        else:
            heading = f"{member}{_signature(obj)}"
            sections.append(f"<h2>{esc(heading)}</h2>\n{_doc_html(mdoc)}")
    if not sections:
        return None
    body = f"<h1>{esc(name)}</h1>\n" + "\n".join(sections)
    return _page(f"{HOST}/library/{name}.html", f"{name} module", body)


def class_page(module: str, cname: str, cls: type) -> Page | None:
    """Class docstring plus a section per documented public method."""
    esc = _htmldoc().escape
    doc = _getdoc(cls)
    methods = _class_methods(cls)
    if len(doc) + sum(len(d) for _, _, d in methods) < MIN_CLASS_DOC_CHARS:
        return None
    sections = [_doc_html(doc)] if doc else []
    for mname, func, mdoc in methods:
        heading = mname if isinstance(func, property) else f"{mname}{_signature(func)}"
        sections.append(f"<h2>{esc(heading)}</h2>\n{_doc_html(mdoc)}")
    qual = f"{module}.{cname}"
    body = f"<h1>class {esc(qual)}</h1>\n" + "\n".join(sections)
    return _page(f"{HOST}/library/{qual}.html", f"{qual} class", body)


# -------------------------------------------------------------------------- topics


def topic_page(topic: str, text: str) -> Page:
    """A language-reference topic: underlined lines become headings, indented blocks code."""
    esc = _htmldoc().escape
    blocks = _paragraphs(text)
    out = []
    for block in blocks:
        lines = block.splitlines()
        if len(lines) >= 2 and _UNDERLINE.match(lines[1].strip()):
            tag = "h1" if not out else "h2"
            out.append(f"<{tag}>{esc(lines[0].strip())}</{tag}>")
            rest = "\n".join(lines[2:]).strip("\n")
            if rest:
                out.append(_doc_html(rest))
            continue
        out.append(_doc_html(block))
    return _page(f"{HOST}/reference/{topic}.html", f"{topic} (language reference)",
                 "\n".join(out))


# ---------------------------------------------------------------------------- all


def iter_pages(max_docs: int | None = None) -> Iterator[Page]:
    """All pages in a fixed order: per module (sorted) its page then its class pages
    (sorted), then the language-reference topics (sorted). Stops after `max_docs`."""
    count = 0

    def room() -> bool:
        return max_docs is None or count < max_docs

    for name in module_names():
        if not room():
            return
        mod = _import(name)
        if mod is None:
            continue
        with _quiet():
            pages = [module_page(name, mod)]
            pages += [class_page(name, cname, obj)
                      for cname, obj in _public_members(mod) if inspect.isclass(obj)]
        for page in pages:
            if page is not None and room():
                count += 1
                yield page
    from pydoc_data.topics import topics

    for topic in sorted(topics):
        if not room():
            return
        count += 1
        yield topic_page(topic, topics[topic])
