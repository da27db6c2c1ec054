"""Fixtures shared by test_publish.py and test_browser.py (which load this file by path:
tests are not a package): reports written by the real report stage, and a parser for the
HTML pages. Kept out of conftest.py so the report library's own fixtures stay separate."""

from __future__ import annotations

import importlib.util
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_test_module(relative: str) -> ModuleType:
    """A module under tests/ by path (importlib import mode puts no test folder on sys.path)."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem + "_by_path", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def stage_reports(tmp_path_factory) -> Path:
    """A reports/ folder written by the report stage the way tests/stages/test_report.py runs
    it (its `make_inputs` and `_run`): `quick` (that module's config) and `flipped` (its
    first two experiments in reverse order, the first as baseline). Shared by the session:
    copy before editing."""
    stage = load_test_module("tests/stages/test_report.py")
    root = tmp_path_factory.mktemp("stage-reports")
    inputs = stage.make_inputs(root / "in")
    first, second = stage.CFG.experiments[:2]
    flipped = stage.CFG.model_copy(update={"name": "flipped", "baseline": first,
                                           "experiments": [second, first]})
    reports = root / "reports"
    reports.mkdir()
    for cfg in (stage.CFG, flipped):
        stage._run(root / "runs" / cfg.name, inputs, cfg).rename(reports / cfg.name)
    return reports


class PageParser(HTMLParser):
    """What the tests check in a page: tables (rows of cell texts, header row first), keyed
    by the h1/h2 heading above them (tables under one heading are merged) and in page order,
    link targets, image sources and the tags used."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.tables_in_order: list[list[list[str]]] = []
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tags: set[str] = set()
        self._heading: str | None = None
        self._section = ""
        self._cell: list[str] | None = None
        self._table: list[list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "a" and a.get("href") is not None:
            self.hrefs.append(a["href"])
        if a.get("src") is not None:
            self.srcs.append(a["src"])
        if tag in ("h1", "h2"):
            self._heading = ""
        elif tag == "table":
            self._table = self.tables.setdefault(self._section, [])
            self.tables_in_order.append([])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
            self.tables_in_order[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2") and self._heading is not None:
            self._section, self._heading = self._heading, None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell))
            self.tables_in_order[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading += data
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="session")
def parse_page():
    """`parse_page(path) -> PageParser` of an HTML file."""
    def parse(path: Path) -> PageParser:
        parser = PageParser()
        parser.feed(path.read_text(encoding="utf-8"))
        return parser
    return parse
