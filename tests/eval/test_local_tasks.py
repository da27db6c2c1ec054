"""Local task construction: determinism, bpb selection, cloze questions, manifest."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from repro.eval.local_tasks import (
    Doc,
    build_cloze_rows,
    build_task,
    read_heldout,
    split_units,
    task_rng,
)
from repro.spec.schema import LocalTaskSpec

NOUNS = "parser module socket thread buffer codec archive decoder table queue".split()
VERBS = "returns reads writes closes opens encodes builds parses joins checks".split()


def make_docs(n: int, sentences: int = 8, seed: int = 0) -> list[Doc]:
    rng = random.Random(seed)
    docs = []
    for d in range(n):
        lines = []
        for s in range(sentences):
            lines.append(f"The {rng.choice(NOUNS)} {rng.choice(VERBS)} the "
                         f"{rng.choice(NOUNS)} number {d}-{s} quickly.")
        # two sentences per line, a blank line between paragraphs
        text = "\n".join(" ".join(lines[i:i + 2]) for i in range(0, len(lines), 2))
        docs.append(Doc(f"doc{d:02d}", text))
    return docs


def test_split_units_spans_point_into_the_text():
    text = "First sentence here. Second one follows!\n  Third on a new line? yes lower.\n"
    units = split_units(text)
    assert [u.text for u in units] == ["First sentence here.", "Second one follows!",
                                       "Third on a new line? yes lower."]
    for u in units:
        assert text[u.start:u.end] == u.text


def test_read_heldout_sorts_and_drops_empty(tmp_path):
    p = tmp_path / "heldout.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in
                         [{"id": "b", "text": "B"}, {"id": "a", "text": "A"}, {"id": "c", "text": " "}]))
    assert [d.id for d in read_heldout(p)] == ["a", "b"]
    p.write_text('{"text": "no id"}\n')
    with pytest.raises(ValueError, match="heldout.jsonl:1"):
        read_heldout(p)


def test_bpb_is_seeded_and_deterministic():
    docs = make_docs(30)
    task = LocalTaskSpec(kind="bpb", dataset="web", max_docs=10)
    data1, m1 = build_task(task, docs, seed=0)
    data2, m2 = build_task(task, docs, seed=0)
    data3, _ = build_task(task, docs, seed=1)
    assert data1 == data2 and m1 == m2
    assert data1 != data3
    rows = [json.loads(line) for line in data1.decode().splitlines()]
    assert len(rows) == 10 == m1["num_docs"]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    by_id = {d.id: d.text for d in docs}
    assert all(by_id[r["id"]] == r["text"] for r in rows)
    assert m1["data_sha256"] == hashlib.sha256(data1).hexdigest()
    assert m1["output_type"] == "loglikelihood_rolling"
    assert m1["name"] == "repro_bpb_web" and m1["version"] == 1
    # fewer documents than max_docs: all of them
    _, m = build_task(LocalTaskSpec(kind="bpb", dataset="web", max_docs=100), docs, 0)
    assert m["num_docs"] == 30


def test_cloze_questions_are_well_formed():
    docs = make_docs(6)
    task = LocalTaskSpec(kind="cloze", dataset="web", max_docs=20, num_choices=4)
    rows = build_cloze_rows(docs, 20, 4, task_rng(0, task))
    assert len(rows) == 20
    by_id = {d.id: d for d in docs}
    for r in rows:
        doc = by_id[r["id"].split("#")[0]]
        idx = int(r["id"].split("#")[1])
        units = split_units(doc.text)
        truth = units[idx].text
        assert len(r["choices"]) == 4
        assert len(set(r["choices"])) == 4, "choices must be unique"
        assert r["choices"][r["label"]] == truth
        # the context is the text right before the answer, as it appears in the document
        assert doc.text.index(r["context"]) + len(r["context"]) <= units[idx].start
        assert r["context"].strip() and len(r["context"]) <= 600
        for j, c in enumerate(r["choices"]):
            if j != r["label"]:
                assert c not in doc.text, "distractors come from other documents"
                assert any(c in d.text for d in docs if d.id != doc.id)
    # questions are spread over documents
    assert len({r["id"].split("#")[0] for r in rows}) == 6
    # labels are not all in the same position
    assert len({r["label"] for r in rows}) > 1


def test_cloze_manifest_and_determinism():
    docs = make_docs(5)
    task = LocalTaskSpec(kind="cloze", dataset="web", max_docs=12, num_choices=3)
    data1, m1 = build_task(task, docs, seed=7)
    data2, m2 = build_task(task, docs, seed=7)
    assert data1 == data2 and m1 == m2
    assert m1["random_baseline"] == {"acc": pytest.approx(1 / 3), "acc_norm": pytest.approx(1 / 3)}
    assert m1["output_type"] == "multiple_choice" and m1["num_choices"] == 3
    assert m1["data_sha256"] == hashlib.sha256(data1).hexdigest()
    assert {"context", "choices", "label"} <= set(json.loads(data1.splitlines()[0]))


def test_cloze_needs_other_documents():
    with pytest.raises(ValueError, match="at least 2 held-out documents"):
        build_cloze_rows(make_docs(1), 5, 4, random.Random(0))
    # two documents with too few distinct sentences for 9 distractors
    with pytest.raises(ValueError, match="distractors"):
        build_cloze_rows(make_docs(2, sentences=3), 5, 10, random.Random(0))
