"""Extraction of the deterministic subset of an lm-eval result (no model needed)."""

from __future__ import annotations

import math
import random

import pytest

from repro.eval.extract import (
    bits_per_byte_stderr,
    clean_config,
    metric_key,
    sample_rows,
    task_metrics,
)


def test_metric_keys_drop_the_none_filter():
    assert metric_key("acc,none") == "acc"
    assert metric_key("acc_stderr,none") == "acc_stderr"
    assert metric_key("exact_match,strict-match") == "exact_match@strict-match"
    assert metric_key("exact_match_stderr,strict-match") == "exact_match@strict-match_stderr"
    assert metric_key("alias") is None


def test_task_metrics_keeps_numbers_only():
    entry = {"name": "t", "alias": "t", "sample_len": 10, "acc,none": 0.5,
             "acc_stderr,none": 0.1, "bits_per_byte,none": 2.0,
             "bits_per_byte_stderr,none": "N/A"}
    assert task_metrics(entry) == {"acc": 0.5, "acc_stderr": 0.1, "bits_per_byte": 2.0}


def test_sample_rows_rolling_and_multiple_choice():
    rolling = [{"doc_id": 1, "doc": {"id": "b", "text": "x y"}, "filtered_resps": [-3.0],
                "filter": "none", "word_perplexity": (-3.0, 2), "byte_perplexity": (-3.0, 3),
                "bits_per_byte": (-3.0, 3)},
               {"doc_id": 0, "doc": {"id": "a", "text": "z"}, "filtered_resps": [-1.5],
                "filter": "none", "word_perplexity": (-1.5, 1), "byte_perplexity": (-1.5, 1),
                "bits_per_byte": (-1.5, 1)}]
    assert sample_rows(rolling, "loglikelihood_rolling") == [
        {"doc_id": 0, "id": "a", "loglikelihood": -1.5, "bytes": 1, "words": 1},
        {"doc_id": 1, "id": "b", "loglikelihood": -3.0, "bytes": 3, "words": 2}]
    mc = [{"doc_id": 0, "doc": {"id": "q"}, "target": 1, "filter": "none",
           "filtered_resps": [(-2.0, False), (-1.0, True)], "acc": 1.0, "acc_norm": 0.0}]
    assert sample_rows(mc, "multiple_choice") == [
        {"doc_id": 0, "id": "q", "target": 1, "loglikelihoods": [-2.0, -1.0],
         "is_greedy": [False, True], "acc": 1.0, "acc_norm": 0.0}]


def test_bits_per_byte_stderr_matches_a_bootstrap():
    rng = random.Random(0)
    rows = []
    for i in range(200):
        b = rng.randint(100, 5000)
        rows.append({"loglikelihood": -b * math.log(2) * rng.uniform(1.5, 3.5), "bytes": b})
    se = bits_per_byte_stderr(rows)

    def bpb(rs):
        return sum(-r["loglikelihood"] for r in rs) / math.log(2) / sum(r["bytes"] for r in rs)

    boots = [bpb([rows[rng.randrange(len(rows))] for _ in rows]) for _ in range(400)]
    mean = sum(boots) / len(boots)
    boot_se = math.sqrt(sum((x - mean) ** 2 for x in boots) / (len(boots) - 1))
    assert se == pytest.approx(boot_se, rel=0.2)
    assert bits_per_byte_stderr(rows[:1]) is None


def test_clean_config_removes_paths_and_addresses():
    cfg = {"task": "t", "metadata": {"version": 1, "config_source": "/tmp/x/t.yaml"},
           "model_args": "pretrained=/abs/ckpt,dtype=float32",
           "process_results": "<function f at 0x7f00deadbeef>", "n": 3}
    out = clean_config(cfg, {"/abs/ckpt": "<checkpoint>"})
    assert out == {"metadata": {"version": 1}, "model_args": "pretrained=<checkpoint>,dtype=float32",
                   "n": 3, "process_results": "<function f>", "task": "t"}
