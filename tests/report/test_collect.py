"""Reading report inputs: loss CSVs, replicas and checkpoints, and tolerance of bad input."""

from __future__ import annotations

import json

import pytest

from repro.report.collect import ReportInputError, finite, load_runs, read_loss_csv
from repro.stages.base import StageIO, write_json


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
    p.write_text("step,loss\n1,2.0\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['tokens', 'lr'\]"):
        read_loss_csv(p)


def test_loss_curves_compare_cross_entropy_when_the_objective_has_more_terms(tmp_path):
    p = tmp_path / "loss.csv"
    p.write_text("step,tokens,loss,lr,ce\n5,40,7.5,0.1,5.5\n10,80,7.0,0.1,5.0\n")
    assert read_loss_csv(p)["loss"].to_list() == [5.5, 5.0]


def _inputs(tmp_path, replicas=("seed0", "seed1")) -> dict:
    ins = {}
    for rep in replicas:
        for stage, end in (("stable", 4), ("decay", 8)):
            t = tmp_path / f"t-{rep}-{stage}.json"
            write_json(t, {"step_end": end, "tokens": 40, "tokens_total": end * 10,
                           "final_loss": 2.0})
            loss = tmp_path / f"l-{rep}-{stage}.csv"
            loss.write_text(f"step,tokens,loss,lr\n{end},{end * 10},2.0,0.1\n")
            ins[f"train:a:{rep}:{stage}"], ins[f"loss:a:{rep}:{stage}"] = t, loss
        for cp, tokens in (("decay", 80), ("stable-step2", 20), ("stable", 40)):
            e = tmp_path / f"e-{rep}-{cp}.json"
            write_json(e, {"tokens_seen": tokens, "tasks": {"t": {"acc": 0.5}}})
            ins[f"eval:a:{rep}:{cp}"] = e
        ins[f"results:a:{rep}:decay"] = tmp_path
    return ins


def test_replicas_checkpoints_and_final(tmp_path):
    col = load_runs(StageIO("r", _inputs(tmp_path), {}), ["a"], "a")
    [run] = col.runs
    assert col.problems == [] and col.baseline == "a"
    assert [r.name for r in run.replicas] == ["seed0", "seed1"]
    rep = run.replicas[0]
    assert [s.name for s in rep.phases] == ["stable", "decay"]  # by step_end, not by name
    assert [c.name for c in rep.checkpoints] == ["stable-step2", "stable", "decay"]
    assert (rep.checkpoints[0].phase, rep.checkpoints[0].step) == ("stable", 2)
    assert rep.final.name == "decay" and rep.results == tmp_path
    assert run.final_phase.name == "decay" and len(run.evaluated) == 2


def test_bad_inputs_become_problems(tmp_path):
    ins = _inputs(tmp_path)
    ins["train:noexperiment"] = tmp_path / "x"                  # malformed name
    ins["loss:a:seed0:decay"] = tmp_path / "absent.csv"          # unreadable loss
    (tmp_path / "bad.json").write_text("{not json")
    ins["eval:a:seed1:decay"] = tmp_path / "bad.json"            # unreadable eval
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps({"tasks": {"t": {"acc": float("nan")}},
                               "failed_tasks": {"u": "no such dataset"}}))
    ins["eval:a:seed0:decay"] = nan
    col = load_runs(StageIO("r", ins, {}), ["a", "b"], "b")
    text = [p.text() for p in col.problems]
    for needle in ["input train:noexperiment is ignored", "a: replica seed0, stage decay: loss "
                   "curve unreadable", "a: replica seed1, checkpoint decay: evaluation",
                   "task u failed to load (no such dataset)", "t acc is nan",
                   "replica seed1: final checkpoint decay (largest step_end) has no evaluation",
                   "b: no inputs", "the baseline 'b' has no evaluated final checkpoint"]:
        assert any(needle in t for t in text), (needle, text)
    [run] = col.runs
    assert col.baseline is None
    assert run.replicas[0].final.tasks["t"]["acc"] is None  # NaN shown as missing
    assert run.replicas[0].phases[-1].loss.height == 0       # curve empty, stage kept


def test_baseline_not_listed(tmp_path):
    col = load_runs(StageIO("r", _inputs(tmp_path), {}), ["a"], "z")
    assert col.baseline is None
    assert "the baseline 'z' is not among the report's experiments ['a']" in col.problems[0].text()


def test_nothing_to_report_raises(tmp_path):
    with pytest.raises(ReportInputError, match="nothing to report.*a: no inputs"):
        load_runs(StageIO("r", {}, {}), ["a"], "a")
