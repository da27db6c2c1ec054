"""decontaminate stage: training documents sharing a word n-gram with an evaluation task item
are removed (and said why), the rest pass untouched in order; the spec's n-gram settings
apply; standard lm-eval tasks are read through lm-eval and fail offline with the fix."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from repro.data.decont import DocumentNGramsIndexer, EvalItem, build_index, standard_task_items
from repro.eval.lm_eval_runner import TaskUnavailableError
from repro.eval.local_tasks import jsonl_bytes
from repro.spec.schema import DecontaminationSpec
from repro.stages.base import StageIO
from repro.stages.configs import DecontaminateConfig
from repro.stages.decontaminate import run

# A held-out document scored whole by a bpb task.
BPB_DOC = ("the quick brown fox jumps over the lazy dog while seven wise owls quietly watch "
           "from the old oak tree near the river bank")
# A cloze item: the context is the prompt, the true next sentence the answer.
CONTEXT = "Granite forms when magma cools slowly deep under the surface of the earth."
ANSWER = "Its large crystals show how long the cooling took."

TRAIN = [
    ("clean-1", "Completely unrelated prose about baking bread with flour water salt and yeast."),
    # 13 consecutive words of the bpb document, inside other text: removed by the bpb task
    ("bpb-copy", "Notes. The quick brown fox jumps over the lazy dog while seven wise owls "
                 "quietly watch, they said."),
    # spans the end of the cloze context and the start of its answer: an overlap n-gram
    ("cloze-overlap", "cools slowly deep under the surface of the earth. Its large crystals "
                      "are pretty."),
    # 12 words of the cloze context only: matched only with find_query_ngrams
    ("cloze-query", "granite forms when magma cools slowly deep under the surface of the"),
    ("clean-2", "Another clean document, about trains and timetables in small towns."),
    # 10 shared words: below a 12-gram, above an 8-gram
    ("near-miss", "x y the quick brown fox jumps over the lazy dog while z"),
]


def _task(folder: Path, name: str, kind: str, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    data = jsonl_bytes(rows)
    (folder / "data.jsonl").write_bytes(data)
    (folder / "task.json").write_text(json.dumps({
        "name": name, "kind": kind, "data_file": "data.jsonl",
        "data_sha256": hashlib.sha256(data).hexdigest()}))
    return folder


def make_inputs(tmp: Path) -> dict[str, Path]:
    split = tmp / "split"
    split.mkdir(parents=True)
    (split / "train.jsonl").write_text("".join(
        json.dumps({"id": i, "text": t}) + "\n" for i, t in TRAIN))
    bpb = _task(tmp / "bpb", "repro_bpb_web", "bpb", [{"id": "h1", "text": BPB_DOC}])
    cloze = _task(tmp / "cloze", "repro_cloze_web", "cloze", [{
        "id": "h2#1", "context": CONTEXT, "label": 1,
        "choices": ["A distractor sentence from elsewhere.", ANSWER, "Another distractor."]}])
    return {"split": split, "task:repro_bpb_web": bpb, "task:repro_cloze_web": cloze}


def decont(tmp: Path, out: str = "out", **spec) -> tuple[Path, dict]:
    cfg = DecontaminateConfig(dataset="web", decontamination=DecontaminationSpec(**spec),
                              local_tasks=["repro_bpb_web", "repro_cloze_web"], tasks=[])
    inputs = make_inputs(tmp / f"in-{out}")
    metrics = tmp / f"{out}.json"
    run(cfg, StageIO("decontaminate-web", inputs, {"docs": tmp / out, "metrics": metrics}))
    return tmp / out, json.loads(metrics.read_text())


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_removes_overlaps_and_keeps_the_rest_in_order(tmp_path):
    out, m = decont(tmp_path)
    kept = _rows(out / "train.jsonl")
    assert [r["id"] for r in kept] == ["clean-1", "cloze-query", "clean-2", "near-miss"]
    assert kept[0] == {"id": "clean-1", "text": TRAIN[0][1]}  # same layout as a split
    removed = {r["id"]: r for r in _rows(out / "removed.jsonl")}
    assert set(removed) == {"bpb-copy", "cloze-overlap"}
    assert removed["bpb-copy"]["task"] == "repro_bpb_web"
    assert removed["bpb-copy"]["ngram"] in "the quick brown fox jumps over the lazy dog while seven wise owls"
    assert removed["cloze-overlap"]["task"] == "repro_cloze_web"
    assert "its large" in removed["cloze-overlap"]["ngram"]  # spans prompt and answer
    assert removed["cloze-overlap"]["text"] == TRAIN[2][1]
    assert (m["docs_in"], m["docs_out"]) == (6, 4)
    assert m["removed"] == {"repro_bpb_web": 1, "repro_cloze_web": 1}
    assert m["removed_chars"] == {"repro_bpb_web": len(TRAIN[1][1]),
                                  "repro_cloze_web": len(TRAIN[2][1])}
    assert m["chars_in"] == sum(len(t) for _, t in TRAIN)
    assert m["chars_in"] - m["chars_out"] == sum(m["removed_chars"].values())
    assert m["index"]["repro_bpb_web"]["items"] == 1 and m["index"]["repro_bpb_web"]["ngrams"] > 0


def test_query_ngrams_and_ngram_length_follow_the_spec(tmp_path):
    _, with_query = decont(tmp_path, "q", find_query_ngrams=True)
    assert with_query["removed"] == {"repro_bpb_web": 1, "repro_cloze_web": 2}
    _, no_overlap = decont(tmp_path, "o", find_overlap_ngrams=False)
    assert no_overlap["removed"] == {"repro_bpb_web": 1}
    out, short = decont(tmp_path, "n8", n_grams=8)
    assert "near-miss" in {r["id"] for r in _rows(out / "removed.jsonl")}
    assert short["removed"]["repro_bpb_web"] == 2


def test_outputs_are_byte_identical_across_runs(tmp_path):
    a, _ = decont(tmp_path, "a")
    b, _ = decont(tmp_path, "b")
    for name in ("train.jsonl", "removed.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_local_task_inputs_must_match_the_config(tmp_path):
    cfg = DecontaminateConfig(dataset="web", decontamination=DecontaminationSpec(),
                              local_tasks=["repro_bpb_web"], tasks=[])
    with pytest.raises(ValueError, match="do not match"):
        run(cfg, StageIO("d", make_inputs(tmp_path), {"docs": tmp_path / "o",
                                                      "metrics": tmp_path / "m.json"}))
    assert not (tmp_path / "o").exists()


def test_indexer_needs_no_lighteval(tmp_path):
    """datatrove's indexer demands lighteval even for input documents; ours does not, and
    builds the same hashes datatrove's compute_hashes makes."""
    if importlib.util.find_spec("lighteval") is None:
        from datatrove.pipeline.decont.n_grams import NGramsDecontIndexer

        with pytest.raises(ImportError, match="lighteval"):
            NGramsDecontIndexer(str(tmp_path / "x"))
    counts = build_index([EvalItem("t", "", BPB_DOC)], DecontaminationSpec(n_grams=5),
                         tmp_path / "idx", tasks=["t", "empty"])
    words = len(BPB_DOC.split())
    assert counts == {"empty": {"items": 0, "ngrams": 0, "ngrams_ignored": 0},
                      "t": {"items": 1, "ngrams": words - 4, "ngrams_ignored": 0}}
    assert (tmp_path / "idx" / "t.index.hashes").stat().st_size == 8 * (words - 4)
    assert isinstance(DocumentNGramsIndexer(str(tmp_path / "y")), DocumentNGramsIndexer)


def _lm_eval_task(folder: Path, yaml_text: str, rows: list[dict]):
    from lm_eval.tasks import TaskManager

    folder.mkdir()
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "t.yaml").write_text(yaml_text.format(data=folder / "data.jsonl",
                                                    cache=folder / "cache"))
    return TaskManager(include_path=str(folder), include_defaults=False)


def test_standard_task_items_by_output_type(tmp_path):
    """lm-eval's own doc_to_text/doc_to_target/doc_to_choice decide prompt and gold."""
    tm = _lm_eval_task(tmp_path / "mc", """
task: toy_mc
dataset_path: json
dataset_kwargs: {{data_files: {{test: "{data}"}}, cache_dir: "{cache}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{q}}}}"
doc_to_choice: choices
doc_to_target: gold
""", [{"q": "two plus two", "choices": ["three", "four"], "gold": 1},
      {"q": "sky colour", "choices": ["blue", "green"], "gold": 0}])
    items = list(standard_task_items(["toy_mc"], tm))
    assert items == [EvalItem("toy_mc", "Question: two plus two", "four"),
                     EvalItem("toy_mc", "Question: sky colour", "blue")]


@pytest.mark.slow
def test_standard_task_offline_names_the_task_and_the_fix(tmp_path, monkeypatch):
    """The real path: lm-eval's registry, a hub dataset, no network and an empty cache."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    cfg = DecontaminateConfig(dataset="web", decontamination=DecontaminationSpec(),
                              local_tasks=["repro_bpb_web", "repro_cloze_web"], tasks=["arc_easy"])
    with pytest.raises(TaskUnavailableError) as err:
        run(cfg, StageIO("d", make_inputs(tmp_path), {"docs": tmp_path / "o",
                                                      "metrics": tmp_path / "m.json"}))
    message = str(err.value)
    assert "decontamination" in message and "'arc_easy'" in message
    assert "HF_DATASETS_OFFLINE" in message and "HF_DATASETS_CACHE" in message
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.json").exists()


BOILERPLATE = "data descriptors defined here dict dictionary for instance variables if defined"


def test_boilerplate_ngrams_shared_by_items_can_be_ignored(tmp_path):
    """An n-gram in several items of one task is boilerplate: with max_items_per_ngram=1 a
    training document sharing only it is kept; one sharing an item's own words is not."""
    items = [EvalItem("t", "", f"{BOILERPLATE} {words}") for words in (
        "alpha beta gamma delta epsilon zeta eta theta iota kappa",
        "one two three four five six seven eight nine ten")]
    train = [{"id": "boiler", "text": f"Intro. {BOILERPLATE}. Outro."},
             {"id": "content", "text": "x one two three four five six seven eight nine ten y"}]
    from repro.data.decont import find_contaminated

    def removed(limit):
        folder = tmp_path / f"idx-{limit}"
        counts = build_index(items, DecontaminationSpec(n_grams=6, max_items_per_ngram=limit), folder)
        found = find_contaminated(train, folder, DecontaminationSpec(n_grams=6))
        return counts["t"], {row["id"] for row, match in found if match is not None}

    counts, hit = removed(None)
    assert hit == {"boiler", "content"} and counts["ngrams_ignored"] == 0
    counts, hit = removed(1)
    assert hit == {"content"} and counts["ngrams_ignored"] == len(BOILERPLATE.split()) - 5


def test_code_cloze_items_are_context_plus_true_line(tmp_path):
    from repro.data.decont import local_task_items

    task = _task(tmp_path / "code", "repro_code_cloze_code", "code_cloze", [{
        "id": "f.py#3", "context": "def area(r):\n    import math", "label": 0,
        "choices": ["    return math.pi * r * r", "    print(value)"]}])
    [item] = list(local_task_items(task))
    assert item == EvalItem("repro_code_cloze_code", "def area(r):\n    import math",
                            "    return math.pi * r * r")
