"""Spec steps -> datatrove blocks: thresholds passed through, URL filter kept offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from datatrove.data import Document

from repro.data.steps import OfflineURLFilter, minhash_config, per_document_step
from repro.spec import schema as S


def test_thresholds_pass_through():
    f = per_document_step(S.FineWebQualityStep(char_duplicates_ratio=0.05), None)
    assert f.char_duplicates_ratio == 0.05 and f.line_punct_thr == 0.12
    g = per_document_step(S.GopherQualityStep(max_non_alpha_words_ratio=0.6), None)
    assert g.max_non_alpha_words_ratio == 0.6 and g.min_doc_words == 50
    c = per_document_step(S.C4QualityStep(filter_curly_bracket=False), None)
    assert c.filter_curly_bracket is False and c.filter_no_terminal_punct is False
    t = per_document_step(S.TrafilaturaStep(timeout_s=2.0), None)
    assert t.timeout == 2.0 and t.favour_precision is True


def test_minhash_config():
    cfg = minhash_config(S.MinhashStep())
    assert (cfg.n_grams, cfg.num_buckets, cfg.hashes_per_bucket, cfg.seed) == (5, 14, 8, 1)
    assert cfg.hash_config.precision == 64
    assert minhash_config(S.MinhashStep(use_64bit_hashes=False)).hash_config.precision == 32


@pytest.mark.slow
def test_url_filter_offline():
    """tldextract gets no URL to fetch the suffix list from; the bundled lists still work.
    The banned words are read from datatrove's asset file, so none is written here."""
    from datatrove.utils._import_utils import ASSETS_PATH

    f = OfflineURLFilter(soft_word_threshold=2)
    assert not f.tldextractor.suffix_list_urls
    words = [w.strip() for w in open(Path(ASSETS_PATH) / "soft_banned_words.txt")
             if w.strip() and not w.startswith("#")]
    bad = Document(text="x", id="b", metadata={"url": f"https://example.org/{words[0]}-{words[1]}"})
    good = Document(text="x", id="g", metadata={"url": "https://docs.python.invalid/library/json.html"})
    assert f.filter(good) is True
    assert f.filter(bad) == (False, "soft_blacklisted")
