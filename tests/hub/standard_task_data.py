"""Tiny synthetic datasets shaped like the hub datasets lm-eval's standard tasks load.

For each task of the evaluation presets, the repo (`dataset_path`), config (`dataset_name`),
splits and columns its lm-eval 0.4.13 task YAML reads (lm_eval/tasks/<task>/*.yaml and the
`!function` helpers they name), with rows made up here from a small word list. Scores on
them mean nothing; they exist so that lm-eval builds its real requests from real-shaped
documents.
"""

from __future__ import annotations

import random
from pathlib import Path

from hub_standin import Repo, dataset_repo

WORDS = ("river stone window garden paper lamp engine market winter harbor pencil cloud "
         "bridge kettle ladder forest mirror violin basket candle").split()


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _sentence(rng: random.Random) -> str:
    return _words(rng, 6).capitalize() + "."


def _labelled_choices(rng: random.Random, labels: str) -> dict:
    return {"text": [_words(rng, 3) for _ in labels], "label": list(labels)}


def mmlu_subjects() -> list[str]:
    """The `dataset_name` of each task of lm-eval's mmlu_continuation group (the 57 subject
    configs of cais/mmlu), read from the installed lm-eval's task YAMLs."""
    import lm_eval
    import yaml

    folder = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "continuation"
    return sorted(yaml.safe_load(p.read_text())["dataset_name"]
                  for p in folder.glob("mmlu_*.yaml"))


def standard_task_repos(rows: int = 3, seed: int = 0) -> list[Repo]:
    """The dataset repos of every task in the `fineweb_early_signal` and `smollm3_base`
    presets, `rows` rows per split."""
    import datasets

    rng = random.Random(seed)

    def split_rows(make) -> list[dict]:
        return [make(i) for i in range(rows)]

    def arc(i: int) -> dict:
        return {"id": f"q{i}", "question": _sentence(rng),
                "choices": _labelled_choices(rng, "ABCD"), "answerKey": rng.choice("ABCD")}

    def hellaswag(i: int) -> dict:
        return {"ind": i, "activity_label": _words(rng, 2).title(), "ctx_a": _sentence(rng),
                "ctx_b": _words(rng, 3), "ctx": _sentence(rng),
                "endings": [_words(rng, 5) + "." for _ in range(4)], "source_id": f"s{i}",
                "split": "val", "split_type": "indomain", "label": str(rng.randrange(4))}

    def winogrande(i: int) -> dict:
        return {"sentence": f"The {_words(rng, 2)} met the {_words(rng, 1)} because _ was "
                            f"{_words(rng, 3)}.",
                "option1": _words(rng, 1), "option2": _words(rng, 1),
                "answer": rng.choice("12")}

    def commonsense_qa(i: int) -> dict:
        return {"id": f"c{i}", "question": _sentence(rng), "question_concept": _words(rng, 1),
                "choices": _labelled_choices(rng, "ABCDE"), "answerKey": rng.choice("ABCDE")}

    def openbookqa(i: int) -> dict:
        return {"id": f"o{i}", "question_stem": _sentence(rng),
                "choices": _labelled_choices(rng, "ABCD"), "answerKey": rng.choice("ABCD")}

    def piqa(i: int) -> dict:
        return {"goal": _sentence(rng), "sol1": _sentence(rng), "sol2": _sentence(rng),
                "label": rng.randrange(2)}

    def siqa(i: int) -> dict:
        return {"context": _sentence(rng), "question": _words(rng, 4) + "?",
                "answerA": _words(rng, 2), "answerB": _words(rng, 2), "answerC": _words(rng, 2),
                "label": rng.choice("123")}

    def boolq(i: int) -> dict:
        return {"question": _words(rng, 5), "passage": _sentence(rng) + " " + _sentence(rng),
                "idx": i, "label": rng.randrange(2)}

    def mmlu(subject: str):
        def make(i: int) -> dict:
            return {"question": _sentence(rng), "subject": subject,
                    "choices": [_words(rng, 2) for _ in range(4)], "answer": rng.randrange(4)}
        return make

    three = ("train", "validation", "test")
    mmlu_features = datasets.Features({
        "question": datasets.Value("string"), "subject": datasets.Value("string"),
        "choices": datasets.Sequence(datasets.Value("string")),
        "answer": datasets.ClassLabel(names=["A", "B", "C", "D"])})
    boolq_features = datasets.Features({
        "question": datasets.Value("string"), "passage": datasets.Value("string"),
        "idx": datasets.Value("int32"), "label": datasets.ClassLabel(names=["False", "True"])})
    return [
        dataset_repo("allenai/ai2_arc", {c: {s: split_rows(arc) for s in three}
                                         for c in ("ARC-Easy", "ARC-Challenge")}),
        dataset_repo("Rowan/hellaswag", {"default": {s: split_rows(hellaswag) for s in three}}),
        dataset_repo("allenai/winogrande", {"winogrande_xl": {s: split_rows(winogrande)
                                                              for s in three}}),
        dataset_repo("tau/commonsense_qa", {"default": {s: split_rows(commonsense_qa)
                                                        for s in three}}),
        dataset_repo("allenai/openbookqa", {"main": {s: split_rows(openbookqa) for s in three}}),
        dataset_repo("baber/piqa", {"default": {s: split_rows(piqa) for s in three}}),
        dataset_repo("lighteval/siqa", {"default": {s: split_rows(siqa)
                                                    for s in ("train", "validation")}}),
        dataset_repo("aps/super_glue", {"boolq": {s: split_rows(boolq) for s in three}},
                     features=boolq_features),
        dataset_repo("cais/mmlu", {subject: {s: split_rows(mmlu(subject))
                                             for s in ("test", "validation", "dev")}
                                   for subject in mmlu_subjects()}, features=mmlu_features),
    ]
