"""Fidelity to FineWeb: our web chain with the schema defaults keeps exactly the documents
(same ids, same texts) that FineWeb's chain keeps when assembled directly from datatrove's
own classes as in its examples/fineweb.py (FACTS 1.1), language step aside (datatrove's
fastText model needs the network); and the schema defaults are FACTS.md's numbers.

The fixture is built here: pydoc pages plus synthetic pages each made to trip one step.
WARC records are written in order of their record id (the document id), so that the first
copy of a near-duplicate pair is the same one whichever way a chain orders documents.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
from pathlib import Path

import pytest
import trafilatura  # noqa: F401  imported before datatrove's sandbox forks (see WarmTrafilatura)

from repro.data.pydoc_web import Page, iter_pages
from repro.data.warc import record_id, write_warc
from repro.spec import schema as S

SITE = "https://site.invalid"

SENTENCES = [
    "The old harbour town has changed a great deal over the last twenty years.",
    "Most of the fishing boats that used to fill the quay have been sold to other ports.",
    "In their place there are now small ferries that take visitors to the islands.",
    "The market still opens every Saturday morning, and the bakery on the square is busy.",
    "Many of the people who live here work in the shops and cafes along the front.",
    "In winter the streets are quiet and most of the hotels close until the spring.",
    "The council has a plan to repair the sea wall before the next storm season.",
    "Children from the villages around the bay come to the school on the hill by bus.",
    "A new library was opened last year in the building that was once the post office.",
    "Local historians say that the harbour was first built more than four hundred years ago.",
    "Walkers can follow the coastal path to the lighthouse and back in about three hours.",
    "The museum has a collection of maps, tools and photographs from the old shipyards.",
]

GARDEN = [
    "The community garden behind the station was planted by volunteers in the spring.",
    "Each family looks after a small plot and grows beans, onions and potatoes.",
    "A retired teacher runs a workshop on composting every second Sunday of the month.",
    "Rain water is collected from the roof of the shed and stored in large barrels.",
    "In the summer the children pick strawberries and sell them at the school fair.",
    "The council gave the group a grant to build raised beds for older gardeners.",
    "Bees from two hives at the far end help to pollinate the fruit trees.",
    "There is a waiting list of people who would like to rent a plot next year.",
    "Seeds are swapped at a table near the gate so that nothing goes to waste.",
    "The gardeners meet in the evening to share tea and plan the autumn work.",
]
RAILWAY = [
    "The branch railway to the valley was closed to passengers more than fifty years ago.",
    "A group of enthusiasts bought the line and spent a decade restoring the track.",
    "Their first steam engine came from a scrapyard and needed a new boiler.",
    "Trains now run on weekends from Easter until the end of October.",
    "The old signal box has been turned into a small museum about railway work.",
    "Volunteers sell tickets, clean the carriages and serve food in the station buffet.",
    "Visitors can ride in the cab with the driver if they book a place in advance.",
    "The railway also carries timber from the forest, as it did a century ago.",
    "Next year the group hopes to open a new halt near the village of the river mill.",
    "Every December there are special trains with music and lights for families.",
]


def article(seed: int, sentences: int = 12, extra: str = "", pool: list[str] = SENTENCES) -> str:
    """Several prose paragraphs (passes every FineWeb filter), rotated by `seed`."""
    picked = [pool[(seed + i) % len(pool)] for i in range(sentences)]
    pars = [" ".join(picked[i:i + 3]) for i in range(0, len(picked), 3)]
    body = "".join(f"<p>{p}</p>" for p in pars) + extra
    return f"<html><head><title>Page {seed}</title></head><body><article><h1>Harbour notes {seed}</h1>{body}</article></body></html>"


def synthetic_pages() -> dict[str, Page]:
    """name -> page; the name says which step should remove it (or `kept_*`)."""
    no_stop_words = " ".join([  # distinct sentences, none of Gopher's stop words
        "Granite quarries supply builders.", "Marble statues decorate plazas.",
        "Basalt columns rise near coasts.", "Slate roofs shed rain quickly.",
        "Pumice floats on water.", "Obsidian blades cut cleanly.", "Quartz crystals grow slowly.",
        "Limestone caves hide rivers.", "Sandstone cliffs erode yearly.", "Chalk hills shine white.",
        "Gneiss bands show pressure.", "Schist sparkles under sunlight.", "Flint sparks fires.",
        "Jasper polishes beautifully.", "Mica flakes peel apart.", "Feldspar weathers into clay.",
        "Gypsum crumbles easily.", "Talc feels soft.", "Dolomite forms mountains.",
        "Serpentine looks green.", "Tuff comes from ash.", "Shale splits thinly.",
    ])
    unpunctuated = "".join(f"<p>{line}</p>" for line in [  # lines without end punctuation
        "Morning tide tables for the northern pier", "Prices of fresh mackerel at the market stall",
        "Opening hours of the maritime museum in July", "Names of the ferries sailing to the islands",
        "Weather warnings issued by the coast guard office", "Parking rules near the lighthouse road",
        "Bus routes between the villages around the bay", "Repairs planned for the sea wall this year",
        "Events at the town hall during the autumn fair", "Books added to the library catalogue recently",
        "Rowing club meetings held on Thursday evenings", "Walking groups leaving from the old chapel",
        "Menu of the cafe beside the harbour steps", "Tickets for the summer concert on the quay",
        "Photographs donated by families of shipwrights", "Volunteers needed for the beach cleaning day",
        "Timetable changes for the winter ferry service", "Fishing licences sold at the harbour office",
        "Results of the regatta held last weekend", "Notes from the council meeting about tourism",
    ])
    pages = {
        "kept_pii": article(1, extra="<p>Write to the harbour master at jane.doe@example.org or "
                                     "reach the ferry booking server at 8.8.4.4 for timetables.</p>"),
        "kept_plain": article(0, sentences=10, pool=GARDEN),
        "url_filter": article(2),
        "trafilatura": "<html><head><title>Nothing</title></head><body></body></html>",
        "gopher_repetition": article(3, extra="".join(f"<p>{SENTENCES[0]}</p>" for _ in range(12))),
        "gopher_quality": f"<html><body><article><h1>Stones</h1><p>{no_stop_words}</p></article></body></html>",
        "c4_quality": article(4, extra="<p>Lorem ipsum dolor sit amet, the harbour text is not finished yet.</p>"),
        "fineweb_quality": article(6, sentences=6, extra=unpunctuated),
        "minhash_first": article(0, sentences=10, pool=RAILWAY),
        "minhash_second": article(0, sentences=10, pool=RAILWAY).replace("weekends", "Sundays"),
    }
    urls = {name: f"{SITE}/{name}.html" for name in pages}
    urls["url_filter"] = f"{SITE}/bollocks/harbour.html"  # a hard-banned word in the URL
    # the near-duplicate pair: name the URLs so that the first has the smaller record id
    a, b = sorted([f"{SITE}/story-{i}.html" for i in range(2)], key=record_id)
    urls["minhash_first"], urls["minhash_second"] = a, b
    return {name: Page(url=urls[name], title=name, html=html) for name, html in pages.items()}


@pytest.fixture(scope="module")
def fixture_warc(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """folder with one WARC of ~60 pydoc pages + the synthetic pages; name -> doc id."""
    folder = tmp_path_factory.mktemp("warc")
    synthetic = synthetic_pages()
    pages = list(iter_pages(max_docs=60)) + list(synthetic.values())
    pages.sort(key=lambda p: record_id(p.url))
    write_warc(pages, folder / "fixture.warc", progress=False)
    return folder, {name: record_id(p.url) for name, p in synthetic.items()}


FINEWEB_STEPS = [S.UrlFilterStep(), S.TrafilaturaStep(), S.GopherRepetitionStep(),
                 S.GopherQualityStep(), S.C4QualityStep(), S.FineWebQualityStep(),
                 S.MinhashStep(), S.PIIStep()]
"""FineWeb's chain from the schema defaults, language aside (FACTS 1.1)."""


def read_jsonl(folder: Path) -> dict[str, str]:
    docs = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            assert doc["id"] not in docs, f"{doc['id']} written twice"
            docs[doc["id"]] = doc["text"]
    return docs


def run_ours(warc: Path, root: Path) -> Path:
    from repro.data.pipeline import Curation

    out = root / "out"
    Curation("web", source=S.WarcSource(path=str(warc)), steps=FINEWEB_STEPS,
             executor=S.ExecutorSpec(), raw=None, out=out, work=root / "work").run()
    return out


def run_reference(warc: Path, root: Path) -> Path:
    """datatrove/examples/fineweb.py, language filter left out, on the local executor."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from tldextract import TLDExtract

    url_filter = URLFilter()
    # offline: tldextract would first try to download the public suffix list
    url_filter.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
    config = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14,
                           hashes_per_bucket=8, n_grams=5)  # FACTS 1.10
    base, final, mh = root / "base", root / "final", root / "minhash"

    def run(pipeline, tasks=1):
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, skip_completed=False,
                              logging_dir=str(root / "logs" / str(run.n))).run()
        run.n += 1
    run.n = 0

    run([WarcReader(str(warc), glob_pattern="*.warc"), url_filter,
         Trafilatura(favour_precision=True, timeout=1), GopherRepetitionFilter(),
         GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
         FineWebQualityFilter(), JsonlWriter(str(base), compression=None)])
    run([JsonlReader(str(base), compression=None),
         MinhashDedupSignature(output_folder=str(mh / "signatures"), config=config)])
    run([MinhashDedupBuckets(input_folder=str(mh / "signatures"), output_folder=str(mh / "buckets"),
                             config=config)], tasks=config.num_buckets)
    run([MinhashDedupCluster(input_folder=str(mh / "buckets"), output_folder=str(mh / "remove"),
                             config=config)])
    run([JsonlReader(str(base), compression=None), MinhashDedupFilter(input_folder=str(mh / "remove")),
         PIIFormatter(), JsonlWriter(str(final), compression=None)])
    return final


@pytest.fixture(scope="module")
def both(fixture_warc, tmp_path_factory):
    warc, ids = fixture_warc
    root = tmp_path_factory.mktemp("chains")
    with contextlib.redirect_stdout(io.StringIO()):  # datatrove prints its stats tables
        ours = run_ours(warc, root / "ours")
        reference = run_reference(warc, root / "reference")
    return ours, reference, ids


@pytest.mark.slow
def test_web_chain_keeps_what_datatrove_keeps(both):
    ours, reference, ids = both
    kept, expected = read_jsonl(ours / "data"), read_jsonl(reference)
    assert len(expected) >= 8, "fixture too weak: the reference kept almost nothing"
    assert sorted(kept) == sorted(expected)
    for doc_id in sorted(expected):
        assert kept[doc_id] == expected[doc_id], f"text of {doc_id} differs"
    assert ids["kept_pii"] in kept and ids["kept_plain"] in kept


@pytest.mark.slow
def test_each_synthetic_page_is_removed_by_its_step(both):
    """The fixture exercises every filter of the chain (else the comparison proves little)."""
    ours, _, ids = both
    kept = read_jsonl(ours / "data")
    removed_by = {}
    for folder in sorted((ours / "removed").iterdir()):
        kind = folder.name.split("_", 1)[1]
        for doc_id in read_jsonl(folder):
            removed_by[doc_id] = kind
    for name, doc_id in ids.items():
        if name.startswith("kept_") or name == "minhash_first":
            assert doc_id in kept, name
        elif name == "trafilatura":  # extraction failures are counted, not written
            assert doc_id not in kept and doc_id not in removed_by
        else:
            expected = name.replace("minhash_second", "minhash")
            assert removed_by.get(doc_id) == expected, (name, removed_by.get(doc_id))


@pytest.mark.slow
def test_pii_replaced_in_both(both):
    ours, reference, ids = both
    for folder in (ours / "data", reference):
        text = read_jsonl(folder)[ids["kept_pii"]]
        assert "jane.doe@example.org" not in text and "8.8.4.4" not in text
        assert "@example" in text  # replaced by datatrove's dummy address


# --------------------------------------------------------------- defaults vs FACTS.md


def test_schema_defaults_are_fineweb_numbers():
    """FACTS.md section 1, number by number."""
    assert S.UrlFilterStep().soft_word_threshold == 2  # 1.2
    t = S.TrafilaturaStep()  # 1.3
    assert (t.favour_precision, t.deduplicate, t.timeout_s) == (True, True, 1.0)
    r = S.GopherRepetitionStep()  # 1.5
    assert (r.dup_line_frac, r.dup_para_frac, r.dup_line_char_frac, r.dup_para_char_frac) == \
        (0.3, 0.3, 0.2, 0.2)
    assert [tuple(x) for x in r.top_n_grams] == [(2, 0.20), (3, 0.18), (4, 0.16)]
    assert [tuple(x) for x in r.dup_n_grams] == [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12),
                                                 (9, 0.11), (10, 0.10)]
    q = S.GopherQualityStep()  # 1.6
    assert (q.min_doc_words, q.max_doc_words) == (50, 100_000)
    assert (q.min_avg_word_length, q.max_avg_word_length) == (3, 10)
    assert (q.max_symbol_word_ratio, q.max_bullet_lines_ratio, q.max_ellipsis_lines_ratio) == \
        (0.1, 0.9, 0.3)
    assert (q.max_non_alpha_words_ratio, q.min_stop_words) == (0.8, 2)
    c = S.C4QualityStep()  # 1.7
    assert c.filter_no_terminal_punct is False
    assert (c.min_num_sentences, c.min_words_per_line, c.max_word_length) == (5, 3, 1000)
    assert c.filter_lorem_ipsum and c.filter_javascript and c.filter_curly_bracket and c.filter_policy
    f = S.FineWebQualityStep()  # 1.8, 1.9
    assert (f.line_punct_thr, f.short_line_thr, f.short_line_length) == (0.12, 0.67, 30)
    assert (f.char_duplicates_ratio, f.new_line_ratio) == (0.01, 0.3)
    m = S.MinhashStep()  # 1.10
    assert (m.n_grams, m.num_buckets, m.hashes_per_bucket, m.use_64bit_hashes) == (5, 14, 8, True)
    assert S.PIIStep().only_remove_public_ips is True  # 1.12
    lang = S.LanguageStep()  # 1.4: English only
    assert lang.languages == ["en"] and lang.default_threshold == 0.65


def _defaults(cls) -> dict:
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_schema_defaults_are_datatrove_defaults_where_fineweb_uses_them():
    """FineWeb uses datatrove's Gopher and FineWeb-quality defaults as they are (FACTS 1.5,
    1.6, 1.8) and C4's except filter_no_terminal_punct (1.7)."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    pairs = [(S.GopherRepetitionStep(), GopherRepetitionFilter), (S.GopherQualityStep(), GopherQualityFilter),
             (S.FineWebQualityStep(), FineWebQualityFilter), (S.C4QualityStep(), C4QualityFilter)]
    for step, cls in pairs:
        theirs = _defaults(cls)
        ours = step.model_dump(exclude={"kind"})
        assert set(ours) <= set(theirs), (cls.__name__, set(ours) - set(theirs))
        for key, value in ours.items():
            if (cls is C4QualityFilter and key == "filter_no_terminal_punct"):
                assert theirs[key] is True and value is False
                continue
            got = [tuple(x) for x in value] if isinstance(value, list) else value
            want = [tuple(x) for x in theirs[key]] if isinstance(theirs[key], (list, tuple)) else theirs[key]
            assert got == want, (cls.__name__, key, got, want)
