"""The `fineweb_early_signal` preset end to end: the evaluate stage loads each of its lm-eval
tasks through `datasets`' real hub download path (dataset card, revision, tree listing,
parquet downloads) from the loopback stand-in hub, and scores a tiny checkpoint on them."""

from __future__ import annotations

import json
import math

import pytest

from repro.eval.presets import PRESETS

from conftest import ROWS  # noqa: E402  (tests/hub/conftest.py, on sys.path)
from standard_task_data import mmlu_subjects  # noqa: E402


@pytest.mark.slow
def test_early_signal_preset_scores_every_task(online_early_signal, hub):
    metrics = json.loads((online_early_signal / "metrics.json").read_text())
    results = json.loads((online_early_signal / "results" / "results.json").read_text())
    preset = PRESETS["fineweb_early_signal"]
    subjects = [f"mmlu_{s}_continuation" for s in mmlu_subjects()]
    assert len(subjects) == 57
    # every task of the preset, and every mmlu subject of its cloze group, scored
    leaves = [t for t in preset.tasks if t != "mmlu_continuation"] + subjects
    for task in leaves:
        scores = metrics["tasks"][task]
        assert 0.0 <= scores["acc"] <= 1.0 and math.isfinite(scores["acc"]), (task, scores)
        # n samples as served: all rows of the split the task evaluates on
        assert results["tasks"][task]["n_samples"]["effective"] == ROWS, task
    assert 0.0 <= metrics["tasks"]["mmlu_continuation"]["acc"] <= 1.0
    assert results.get("failed_tasks", {}) == {}
    # lm-eval read the data through the hub's API, not from anything local
    assert any(r.startswith("GET /api/datasets/cais/mmlu/tree/") for r in hub.requests)
    assert any(r.endswith("/ARC-Challenge/test-00000-of-00001.parquet") for r in hub.requests)
