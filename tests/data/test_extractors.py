"""Resiliparse extractor: options reach resiliparse, bytes are decoded, and in a pipeline
empty pages are dropped and slow pages time out (counted, as datatrove's Trafilatura)."""

from __future__ import annotations

import pickle
import time

from datatrove.data import Document

from repro.data.extractors import ResiliparseExtractor, decode_html
from repro.data.steps import per_document_step
from repro.spec import schema as S

ARTICLE = (
    "<p>The committee met on Tuesday to discuss the new library, and most members agreed "
    "that it should open early next year after the building work is finished.</p>"
    "<p>A second paragraph explains the budget, the staff needed and the opening hours "
    "that the town council proposed for the first months.</p>"
)
PAGE = f"""<html><head><title>Library</title></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li></ul></nav>
<main><article><h1>New library</h1>{ARTICLE}
<img src="plan.png" alt="floor plan of the building">
<ul><li>opening in spring</li><li>three floors</li></ul></article></main>
<footer>Copyright 2024 Town Council</footer></body></html>"""


def test_main_content_only_by_default():
    text = ResiliparseExtractor(S.ResiliparseStep()).extract(PAGE)
    assert "The committee met on Tuesday" in text
    assert "budget" in text
    assert "Home" not in text and "Copyright" not in text
    assert "floor plan" not in text  # alt_texts off by default


def test_formatting_keeps_paragraphs_on_their_own_lines():
    text = ResiliparseExtractor(S.ResiliparseStep()).extract(PAGE)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0] == "New library"
    assert lines[1].startswith("The committee met") and lines[2].startswith("A second paragraph")
    flat = ResiliparseExtractor(S.ResiliparseStep(preserve_formatting=False)).extract(PAGE)
    assert "\n" not in flat


def test_options_reach_resiliparse():
    full = S.ResiliparseStep(main_content=False, alt_texts=True, list_bullets=True)
    text = ResiliparseExtractor(full).extract(PAGE)
    assert "Home" in text and "Copyright 2024" in text
    assert "floor plan of the building" in text
    assert "• opening in spring" in text
    no_bullets = ResiliparseExtractor(full.model_copy(update={"list_bullets": False}))
    assert "•" not in no_bullets.extract(PAGE)
    links = ResiliparseExtractor(full.model_copy(update={"links": True})).extract(PAGE)
    assert "/news" in links and "/news" not in text


def test_bytes_are_decoded_with_the_page_charset():
    page = ('<html><head><meta charset="iso-8859-1"></head><body><article><p>'
            "Le café crème de la boulangerie était déjà prêt à côté de l'école, "
            "et la brioche aussi, très tôt le matin comme chaque jour de la semaine."
            "</p></article></body></html>")
    raw = page.encode("latin-1")
    assert decode_html(raw) == page
    text = ResiliparseExtractor(S.ResiliparseStep()).extract(raw)
    assert "café crème" in text and "déjà prêt à côté" in text


def test_bytes_without_charset_are_detected():
    sentence = ("Les élèves étaient très fâchés contre le maître, à cause de la dictée "
                "trop longue qu'il avait donnée à la fin de la journée d'été. ") * 3
    raw = f"<html><body><p>{sentence}</p></body></html>".encode("cp1252")
    assert "élèves étaient très fâchés" in decode_html(raw)


def test_empty_page_is_empty():
    assert ResiliparseExtractor().extract("<html><body></body></html>") == ""


def _run(block, docs):
    return list(block.run(iter(docs), rank=0, world_size=1))


def test_pipeline_drops_empty_pages_and_counts_them():
    block = per_document_step(S.ResiliparseStep(), exclusion_writer=None)
    assert isinstance(block, ResiliparseExtractor)
    docs = [Document(text=PAGE, id="a"), Document(text="<html><body></body></html>", id="b"),
            Document(text=PAGE.replace("Tuesday", "Friday"), id="c")]
    out = _run(block, docs)
    assert [d.id for d in out] == ["a", "c"]
    assert "Friday" in out[1].text
    stats = block.stats.to_dict()["stats"]
    assert stats["extracted"] == 3
    assert stats["dropped"] == 1


class SlowOnMarker(ResiliparseExtractor):
    """Sleeps past the timeout on pages containing SLOW (runs in the sandbox process)."""

    def extract(self, text):
        if "SLOW" in text:
            time.sleep(5)
        return super().extract(text)


def test_timeout_drops_the_document_and_goes_on():
    block = SlowOnMarker(S.ResiliparseStep(timeout_s=0.5))
    docs = [Document(text=PAGE, id="a"), Document(text=PAGE + "<!-- SLOW -->", id="slow"),
            Document(text=PAGE, id="c")]
    start = time.monotonic()
    out = _run(block, docs)
    assert [d.id for d in out] == ["a", "c"]
    assert block.stats.to_dict()["stats"]["timeout"] == 1
    assert time.monotonic() - start < 4  # the slow page was abandoned, not waited for


def test_picklable_with_plain_options():
    block = ResiliparseExtractor(S.ResiliparseStep(links=True, timeout_s=2.0))
    clone = pickle.loads(pickle.dumps(block))
    assert clone.timeout == 2.0
    assert clone.options["links"] is True
    assert clone.extract(PAGE) == block.extract(PAGE)
