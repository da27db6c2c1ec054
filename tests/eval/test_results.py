"""assemble(): chance levels of standard multiple-choice tasks, provenance and failed tasks,
on a hand-made lm-eval result (no model)."""

from __future__ import annotations

import pytest

from repro.eval.results import RunInfo, assemble


def mc_sample(doc_id: int, n_choices: int, acc: float) -> dict:
    return {"doc_id": doc_id, "doc": {"q": doc_id}, "target": 0, "filter": "none",
            "filtered_resps": [(-1.0 - i, i == 0) for i in range(n_choices)],
            "acc": acc, "acc_norm": acc}


def fake_raw() -> dict:
    return {
        "results": {"piqa": {"alias": "piqa", "acc,none": 0.5, "acc_stderr,none": 0.1,
                             "acc_norm,none": 0.5, "acc_norm_stderr,none": 0.1}},
        "configs": {"piqa": {"output_type": "multiple_choice", "dataset_path": "baber/piqa"}},
        "samples": {"piqa": [mc_sample(0, 2, 1.0), mc_sample(1, 4, 0.0)]},
        "n-samples": {"piqa": {"original": 1838, "effective": 2}},
        "n-shot": {"piqa": 0}, "versions": {"piqa": 1.0},
        "higher_is_better": {"piqa": {"acc": True}},
        "lm_eval_version": "0.4.13", "transformers_version": "5",
    }


def info(**extra) -> RunInfo:
    return RunInfo(experiment="exp", checkpoint="decay", checkpoint_sha256="ab" * 32,
                   tokens_seen=100, tokens_seen_key="tokens_seen",
                   settings={"num_fewshot": 0, "limit": None}, path_placeholders={}, **extra)


def test_standard_multiple_choice_task_gets_a_chance_level():
    results, samples, metrics = assemble(fake_raw(), info(), {})
    task = results["tasks"]["piqa"]
    # items with 2 and 4 choices: mean(1/2, 1/4)
    assert task["random_baseline"] == {"acc": pytest.approx(0.375), "acc_norm": pytest.approx(0.375)}
    assert "1/num_choices" in task["random_baseline_definition"]
    assert metrics["random_baseline"]["piqa"]["acc"] == pytest.approx(0.375)
    assert [len(r["loglikelihoods"]) for r in samples["piqa"]] == [2, 4]


def test_provenance_presets_limits_and_failed_tasks():
    failed = {"hellaswag": "lm-eval task 'hellaswag' could not load ... HF_DATASETS_CACHE"}
    presets = {"fineweb_early_signal": {"tasks": ["piqa", "hellaswag"], "max_samples": 1000,
                                        "source": "FACTS 4.3"}}
    results, _, metrics = assemble(fake_raw(), info(
        presets=presets, standard_tasks=["piqa", "hellaswag"], task_limits={"piqa": 1000},
        failed_tasks=failed), {})
    assert results["failed_tasks"] == failed == metrics["failed_tasks"]
    assert results["presets"] == presets
    assert results["standard_tasks"] == ["piqa", "hellaswag"]
    task = results["tasks"]["piqa"]
    assert (task["limit"], task["n_shot"], task["version"]) == (1000, 0, 1.0)
    assert task["source"] == {"kind": "lm_eval", "dataset_path": "baber/piqa",
                              "dataset_name": None}
    assert results["lm_eval"]["version"] == "0.4.13"
    assert results["checkpoint"]["model_sha256"] == "ab" * 32
    assert results["checkpoint"]["tokens_seen"] == 100 == metrics["tokens_seen"]
    # nothing failed: the key is still there (the report reads it)
    assert assemble(fake_raw(), info(), {})[2]["failed_tasks"] == {}
