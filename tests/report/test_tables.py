"""The comparison table: columns, deltas, the two-sigma noise flag, above-random scores."""

from __future__ import annotations

import math

import pytest

from repro.report.tables import column_order, direction, metric_columns, summary_table


def test_directions():
    assert direction("bits_per_byte") == "lower"
    assert direction("loss") == "lower"
    assert direction("acc_norm") == "higher"
    assert direction("something_new") is None


def test_columns_order_and_skips(make_run):
    runs = [make_run("a", {"t_cloze": {"acc_norm": 0.5, "acc_norm_stderr": 0.1, "acc": 0.4,
                                       "acc_stderr": 0.1},
                           "t_bpb": {"bits_per_byte": 1.0, "byte_perplexity": 2.0,
                                     "word_perplexity": 9.0}},
                     {"t_cloze": {"acc": 0.25, "acc_norm": 0.25}})]
    cols = metric_columns(runs)
    assert [c.key for c in cols] == ["t_bpb.bits_per_byte", "t_cloze.acc", "t_cloze.acc_norm"]
    bpb, acc, _ = cols
    assert not bpb.has_stderr and not bpb.has_random
    assert acc.has_stderr and acc.has_random
    assert "t_bpb.bits_per_byte_within_noise_2se" not in column_order(cols)
    assert "t_cloze.acc_within_noise_2se" in column_order(cols)


def test_noise_flag_boundary_and_identical_scores(make_run):
    tasks = lambda acc, se: {"t": {"acc": acc, "acc_stderr": se}}  # noqa: E731
    runs = [make_run("base", tasks(0.5, 0.0)),
            make_run("same", tasks(0.5, 0.0)),          # identical, zero stderr -> within
            make_run("close", tasks(0.5 + 0.27, 0.1)),  # 2*sqrt(.01) = 0.2 < 0.27 -> beyond
            make_run("near", tasks(0.5 - 0.19, 0.1)),   # 0.19 < 0.2 -> within
            make_run("nose", tasks(0.6, None))]         # no stderr -> unknown
    df = summary_table(runs, "base")
    flags = dict(zip(df["experiment"], df["t.acc_within_noise_2se"]))
    assert flags == {"base": None, "same": True, "close": False, "near": True, "nose": None}
    deltas = dict(zip(df["experiment"], df["t.acc_delta"]))
    assert deltas["close"] == pytest.approx(0.27) and deltas["near"] == pytest.approx(-0.19)


def test_missing_metric_and_bad_numbers_give_nulls(make_run):
    runs = [make_run("base", {"t": {"acc": 0.5}}, loss=float("nan")),
            make_run("other", {"u": {"acc": 0.7}})]
    df = summary_table(runs, "base")
    row = df.row(1, named=True)
    assert row["t.acc"] is None and row["t.acc_delta"] is None
    assert row["u.acc"] == 0.7 and row["u.acc_delta"] is None  # baseline lacks u
    assert row["final_train_loss_delta"] is None  # baseline loss NaN -> null


def test_above_random(make_run):
    runs = [make_run("base", {"t": {"acc": 0.25, "acc_norm": 0.625}},
                     {"t": {"acc": 0.25, "acc_norm": 0.25}})]
    row = summary_table(runs, "base").row(0, named=True)
    assert row["t.acc_above_random"] == 0.0
    assert math.isclose(row["t.acc_norm_above_random"], 0.5)
