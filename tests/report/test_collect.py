"""Reading report inputs: loss CSVs and input-name checks."""

from __future__ import annotations

import pytest

from repro.report.collect import ReportInputError, finite, load_runs, read_loss_csv
from repro.stages.base import StageIO


def test_finite():
    assert finite(1) == 1.0 and finite("0.5") == 0.5
    assert finite(float("nan")) is None and finite(float("inf")) is None
    assert finite(None) is None and finite("N/A") is None and finite(True) is None


def test_read_loss_csv(tmp_path):
    p = tmp_path / "loss.csv"
    p.write_text("step,tokens,loss,lr\n1,10,2.5,0.001\n2,20,NaN,0.002\n")
    df = read_loss_csv(p)
    assert df["step"].to_list() == [1, 2]
    assert df["loss"].to_list() == [2.5, None]
    (tmp_path / "header.csv").write_text("step,tokens,loss,lr\n")
    assert read_loss_csv(tmp_path / "header.csv").height == 0


def test_loss_csv_missing_column(tmp_path):
    p = tmp_path / "loss.csv"
    p.write_text("step,loss\n1,2.0\n")
    with pytest.raises(ReportInputError, match=r"lacks column\(s\) \['tokens', 'lr'\]"):
        read_loss_csv(p)


def test_bad_input_name(tmp_path):
    io = StageIO("r", {"train:noexperiment": tmp_path / "x"}, {})
    with pytest.raises(ReportInputError, match="train:<experiment>:<stage>"):
        load_runs(io, ["a"], "a")


def test_loss_curves_compare_cross_entropy_when_the_objective_has_more_terms(tmp_path):
    """MTP and distillation runs log their objective as `loss` and its CE part as `ce`:
    the report plots and tabulates CE so every experiment compares alike."""
    p = tmp_path / "loss.csv"
    p.write_text("step,tokens,loss,lr,grad_norm,ce,mtp_1\n5,40,7.5,0.1,1.0,5.5,6.7\n10,80,7.0,0.1,0.9,5.0,6.6\n")
    df = read_loss_csv(p)
    assert df["loss"].to_list() == [5.5, 5.0]
