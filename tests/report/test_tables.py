"""Comparison numbers and tables: columns, normalisation, aggregate, lm-eval fallback."""

from __future__ import annotations

import io
import math

import polars as pl
import pytest

from repro.report.compare import (AGGREGATE, NORMAL, Settings, columns, compare, direction,
                                  normalise)
from repro.report.tables import deltas_table, mean_scores, score_bands, scores_over_tokens, \
    summary_record, summary_table

SETTINGS = Settings(iterations=500)


def test_directions_and_normalise():
    assert direction("bits_per_byte") == "lower" and direction("acc_norm") == "higher"
    assert direction("something_new") is None
    assert normalise(0.25, 0.25, "acc") == 0 and normalise(0.625, 0.25, "acc_norm") == 0.5
    assert normalise(2.0, 8.0, "bits_per_byte") == 0.75 and normalise(8.0, 8.0, "bits_per_byte") == 0


def test_columns_order_and_skips(make_run):
    runs = [make_run("a", {"t_cloze": {"acc_norm": 0.5, "acc_norm_stderr": 0.1, "acc": 0.4},
                           "t_bpb": {"bits_per_byte": 1.0, "byte_perplexity": 2.0,
                                     "word_perplexity": 9.0}})]
    assert [c.key for c in columns(runs)] == ["t_bpb.bits_per_byte", "t_cloze.acc",
                                               "t_cloze.acc_norm"]


def test_without_samples_normal_interval_from_lm_eval_stderr(make_run, collected):
    tasks = lambda acc, se: {"t": {"acc": acc, "acc_stderr": se}}  # noqa: E731
    runs = [make_run("base", tasks(0.5, 0.05)), make_run("close", tasks(0.6, 0.05)),
            make_run("far", tasks(0.8, 0.05)), make_run("nose", tasks(0.6, None))]
    col = collected(runs, "base")
    cmp = compare(col, SETTINGS)
    df = summary_table(col, cmp)
    sig = dict(zip(df["experiment"], df["t.acc_significant"]))
    # 1.96 * sqrt(2) * 0.05 = 0.139: 0.1 is inside, 0.3 is not; no stderr -> no interval
    assert sig == {"base": None, "close": False, "far": True, "nose": None}
    assert cmp.deltas["close"]["t.acc"].method == NORMAL
    assert dict(zip(df["experiment"], df["t.acc_delta"]))["far"] == pytest.approx(0.3)
    assert any("no paired bootstrap" in p.message for p in col.problems)


def test_replicas_averaged_and_aggregate(make_run, collected):
    rnd = {"c": {"acc": 0.25}, "b": {"bits_per_byte": 8.0}}
    runs = [make_run("base", {"c": {"acc": 0.25, "acc_stderr": 0.1},
                              "b": {"bits_per_byte": 4.0, "bits_per_byte_stderr": 0.1}}, rnd,
                     replicas=2),
            make_run("new", {"c": {"acc": 0.625, "acc_stderr": 0.1},
                             "b": {"bits_per_byte": 2.0, "bits_per_byte_stderr": 0.1}}, rnd)]
    col = collected(runs, "base")
    cmp = compare(col, SETTINGS)
    rows = {r["experiment"]: r for r in summary_table(col, cmp).to_dicts()}
    assert rows["base"]["replicas"] == 2 and rows["new"]["replicas"] == 1
    assert rows["new"]["c.acc_above_random"] == pytest.approx(0.5)
    assert rows["new"]["b.bits_per_byte_above_random"] == pytest.approx(0.75)
    assert rows["new"][AGGREGATE] == pytest.approx(0.625)
    assert rows["base"][AGGREGATE] == pytest.approx(0.25)
    assert rows["new"]["aggregate_delta"] == pytest.approx(0.375)
    assert rows["new"]["aggregate_significant"] is True
    deltas = deltas_table(col, cmp)
    assert deltas["column"].to_list() == ["b.bits_per_byte", "c.acc", AGGREGATE]


def test_aggregate_task_set_and_unnormalisable_tasks(make_run, collected):
    runs = [make_run("a", {"c": {"acc": 0.5}, "x": {"exact_match": 0.1}, "d": {"acc": 0.3}},
                     {"c": {"acc": 0.25}})]
    col = collected(runs, "a")
    cmp = compare(col, Settings(iterations=200, aggregate_tasks=("c", "x", "d")))
    assert cmp.aggregate_tasks == ["c"]
    text = " ".join(p.message for p in col.problems)
    assert "task x has no acc, acc_norm or bits_per_byte" in text
    assert "task d has no random baseline" in text
    assert cmp.scores["a"][AGGREGATE].value == pytest.approx(1 / 3)


def test_missing_metric_and_bad_numbers_give_nulls(make_run, collected):
    runs = [make_run("base", {"t": {"acc": 0.5}}, loss=float("nan")),
            make_run("other", {"u": {"acc": 0.7}})]
    col = collected(runs, "base")
    row = summary_table(col, compare(col, SETTINGS)).row(1, named=True)
    assert row["t.acc"] is None and row["t.acc_delta"] is None
    assert row["u.acc"] == 0.7 and row["u.acc_delta"] is None  # baseline lacks u
    assert row["final_train_loss_delta"] is None  # baseline loss NaN -> null


def test_scores_over_tokens_means_per_checkpoint(make_run):
    import dataclasses

    run = make_run("a", {"t": {"acc": 0.5, "acc_stderr": 0.1}}, replicas=2)
    other = run.replicas[1]
    cp = dataclasses.replace(other.checkpoints[0], metrics={"tasks": {"t": {"acc": 0.7}}})
    run = dataclasses.replace(run, replicas=(run.replicas[0],
                                             dataclasses.replace(other, checkpoints=(cp,))))
    long = scores_over_tokens([run])
    assert long.height == 2 and long["stderr"].to_list() == [0.1, None]
    bands = score_bands(long)
    assert bands.row(0, named=True) | {} == {"experiment": "a", "checkpoint": "s2", "task": "t",
                                             "metric": "acc", "tokens": 80,
                                             "mean": pytest.approx(0.6), "min": 0.5, "max": 0.7,
                                             "replicas": 2}
    wide = mean_scores(bands, "a")
    assert wide.columns == ["tokens", "t:acc"] and wide["t:acc"][0] == pytest.approx(0.6)
    assert mean_scores(bands, "missing").columns == ["tokens"]


def _acc(*values: float) -> list[dict]:
    return [{"t": {"acc": v, "acc_stderr": 0.01}} for v in values]


def test_machine_readable_outputs_carry_the_claim_and_seed_spread(make_run, collected):
    runs = [make_run("base", _acc(0.50, 0.60)), make_run("solo", _acc(0.80)),
            make_run("near", _acc(0.56, 0.58))]
    col = collected(runs, "base")
    cmp = compare(col, SETTINGS)
    table, deltas = summary_table(col, cmp), deltas_table(col, cmp)
    by = {r["experiment"]: r for r in deltas.filter(pl.col("column") == "t.acc").to_dicts()}
    # one seed against two: a checkpoint claim, whatever its interval says
    assert by["solo"]["claim"] == "checkpoint" and by["solo"]["significant"] is True
    assert (by["solo"]["replicas"], by["solo"]["baseline_replicas"]) == (1, 2)
    assert by["solo"]["seed_spread"] == pytest.approx(math.sqrt(0.005), abs=1e-15)
    assert by["solo"]["within_seed_noise"] is False
    # two against two, Δ = 0.02 inside sqrt((0.0025·2 + 0.0001·2) / 2) = 0.0510
    assert by["near"]["claim"] == "method" and by["near"]["within_seed_noise"] is True
    assert by["near"]["seed_spread"] == pytest.approx(math.sqrt(0.0026), abs=1e-15)
    # full precision in the CSV, the same field in summary.json
    again = pl.read_csv(io.StringIO(deltas.write_csv()))
    assert again.filter(pl.col("experiment") == "near")["seed_spread"][0] == \
        cmp.deltas["near"]["t.acc"].seed_spread
    record = summary_record("r", "base", col, cmp, table, deltas)
    solo = next(d for d in record["deltas"] if d["experiment"] == "solo" and d["column"] == "t.acc")
    assert solo["claim"] == "checkpoint" and record["claims"]["min_replicas_for_method"] == 2
    rows = {r["experiment"]: r for r in table.to_dicts()}
    assert rows["solo"]["t.acc_claim"] == "checkpoint" and rows["near"]["t.acc_claim"] == "method"
    assert rows["near"]["t.acc_within_seed_noise"] is True
    assert rows["base"]["t.acc_claim"] is None  # the baseline is not compared with itself
    assert rows["solo"]["final_train_loss_claim"] == "checkpoint"
