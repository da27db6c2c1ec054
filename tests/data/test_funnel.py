"""Funnel bookkeeping: removal reasons always add up to the documents removed."""

from __future__ import annotations

from datatrove.utils.stats import Stats

from repro.data.funnel import Funnel, StepCounts, removal_reasons
from repro.data.steps import normalised_text


def stats(**counts):
    s = Stats("x")
    for k, v in counts.items():
        s[k].update(v)
    return s


def test_filter_reasons_and_rest():
    s = stats(total=10, dropped=4, dropped_short=3)
    assert removal_reasons(s, 4, "filtered") == {"short": 3, "filtered": 1}


def test_extractor_failures_and_empty():
    s = stats(total=10, timeout=1, dropped=2)
    assert removal_reasons(s, 3, "empty_extraction") == {"empty_extraction": 2, "timeout": 1}


def test_nothing_removed():
    assert removal_reasons(stats(total=3), 0, "filtered") == {}


def test_funnel_metrics():
    f = Funnel("d", docs_in=10, chars_in=100)
    f.add("01_a", StepCounts(10, 8, 80, {"x": 2}))
    f.add("02_b", StepCounts(8, 8, 81))
    m = f.as_metrics()
    assert (m["docs_out"], m["chars_out"]) == (8, 81)
    assert m["steps"]["01_a"] == {"docs_in": 10, "docs_out": 8, "chars_out": 80, "removed": {"x": 2}}


def test_exact_dedup_normalisation():
    from datatrove.data import Document

    a = Document(text="Hello   World\n\tagain ", id="a")
    b = Document(text="hello world again", id="b")
    c = Document(text="hello world, again", id="c")
    assert normalised_text(a) == normalised_text(b) != normalised_text(c)
