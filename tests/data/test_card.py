"""The dataset card (repro.data.card) on small folders made here: shards whose documents
disagree on which metadata keys they have, or have them null, load with `datasets` through
the card's declared features (without them `datasets` fails on such shards); a key typed
differently leaves the features to the user, and says so; a card of an empty dataset; the
Hub's size categories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from repro.data import card
from repro.spec import schema as S

FUNNEL = {"dataset": "web", "read_skipped": {}, "docs_in": 3, "chars_in": 30, "docs_out": 2,
          "chars_out": 2, "steps": {"01_exact_dedup": {"docs_in": 3, "docs_out": 2,
                                                       "chars_out": 2,
                                                       "removed": {"duplicate": 1}}}}


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _meta(**kw) -> dict:
    return {"n_chars": 1, "n_bytes": 1, "n_words": 1, **kw}


def _card(root: Path) -> str:
    text = card.render("web", "cc-by-4.0", S.JsonlSource(path="x"), [S.ExactDedupStep()],
                       ["01_exact_dedup"], FUNNEL, root)
    (root / "README.md").write_text(text)
    return text


def test_shards_with_different_metadata_load_through_the_card(tmp_path, monkeypatch):
    from datasets import load_dataset

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # shard 0 has a key shard 1 lacks; shard 1's date is null where shard 0 has none
    _write(tmp_path / "data" / "00000.jsonl",
           [{"text": "a", "id": "a", "metadata": _meta(url="u", duplicate_count=2)}])
    _write(tmp_path / "data" / "00001.jsonl",
           [{"text": "b", "id": "b", "metadata": _meta(url="v", date=None)},
            {"text": "c", "id": "c", "metadata": _meta(url="w", date="2020-01-01T00:00:00")}])
    _write(tmp_path / "removed" / "01_exact_dedup" / "00000.jsonl",
           [{"text": "a", "id": "a2", "metadata": {"url": "u2"}}])
    meta = yaml.safe_load(_card(tmp_path).split("---\n", 2)[1])
    features = meta["dataset_info"]["features"]
    assert [f["name"] for f in features] == ["text", "id", "metadata"]
    assert {f["name"] for f in features[2]["struct"]} == {
        "n_chars", "n_bytes", "n_words", "url", "duplicate_count", "date"}
    assert meta["license"] == "cc-by-4.0" and meta["curation"]["kept"]["docs"] == 3
    assert meta["curation"]["removed"] == {"01_exact_dedup": "removed/01_exact_dedup/"}
    ds = load_dataset(str(tmp_path), split="train", cache_dir=str(tmp_path / "cache"))
    rows = {r["id"]: r["metadata"] for r in ds}
    assert sorted(rows) == ["a", "b", "c"]
    assert rows["a"]["duplicate_count"] == 2 and rows["b"]["duplicate_count"] is None
    assert rows["b"]["date"] is None and rows["c"]["date"].year == 2020


def test_a_key_typed_differently_leaves_features_to_the_user(tmp_path):
    _write(tmp_path / "data" / "00000.jsonl",
           [{"text": "a", "id": "a", "metadata": _meta(score=1.5)}])
    _write(tmp_path / "data" / "00001.jsonl",
           [{"text": "b", "id": "b", "metadata": _meta(score="high")}])
    text = _card(tmp_path)
    assert "dataset_info" not in yaml.safe_load(text.split("---\n", 2)[1])
    assert "give `load_dataset` the `features=` you want" in text


def test_card_of_an_empty_dataset(tmp_path):
    (tmp_path / "data").mkdir()
    meta = yaml.safe_load(_card(tmp_path).split("---\n", 2)[1])
    assert "dataset_info" not in meta and meta["size_categories"] == ["n<1K"]
    assert meta["curation"]["kept"]["docs"] == 0 and meta["curation"]["removed"] == {}


@pytest.mark.parametrize("docs,category", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"),
                                           (2_500_000, "1M<n<10M"), (10**13, "n>1T")])
def test_size_category(docs, category):
    assert card.size_category(docs) == category


def test_code_gets_document_and_line_signals_without_english_word_statistics(tmp_path):
    """repro.data.signals: prose gets datatrove's WordStats and n_words; code (words=False)
    only DocStats and LineStats, and the card's totals then count no words."""
    from datatrove.data import Document

    from repro.data.signals import SIGNALS_KEY, QualitySignals

    text = "def f(x):\n    return x + 1\n\nclass A:\n    pass\n"
    prose, code = (next(QualitySignals(tmp_path / "s", words=w).run(iter([Document(text, "d")])))
                   for w in (True, False))
    assert prose.metadata["n_words"] > 0 and "stop_word_ratio" in prose.metadata[SIGNALS_KEY]
    assert "n_words" not in code.metadata and "stop_word_ratio" not in code.metadata[SIGNALS_KEY]
    assert code.metadata["n_chars"] == len(text) and code.metadata["n_bytes"] == len(text.encode())
    assert set(code.metadata[SIGNALS_KEY]) < set(prose.metadata[SIGNALS_KEY])  # fewer, same
    assert "avg_line_length" in code.metadata[SIGNALS_KEY]  # LineStats for both

    from repro.data.card import kept_totals

    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "00000.jsonl").write_text(
        json.dumps({"id": "d", "text": text, "metadata": code.metadata}) + "\n")
    assert kept_totals(tmp_path / "kept") == {"docs": 1, "n_chars": len(text),
                                              "n_bytes": len(text.encode()), "n_words": None}
