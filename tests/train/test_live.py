"""The live record of a train stage (repro.train.live): what each record holds, the history a
resumed stage logs again, DVCLive's files flushed record by record, the sinks' errors."""

from __future__ import annotations

import csv
import json
import math

import pytest

from repro.train import live
from repro.train.loop import LogRow, loss_csv
from repro.train.monitor import MonitorRow, monitor_csv
from repro.train.stability import StabilityEvent

ROWS = [LogRow(2, 512, 5.123456789, 1.234567891e-3, 0.98765432, (("ce", 5.0), ("z_loss", 1e-7))),
        LogRow(4, 1024, 4.5, 2e-3, 1.5, (("ce", 4.4), ("z_loss", 2e-7)))]
MONITOR = [(3, 768, "update_rms_ratio", "0", 0.012345678), (3, 768, "update_rms_ratio", "embed", 1e-5),
           (3, 768, "effective_rank", "1", 7.25)]


def test_a_curve_point_holds_the_values_loss_csv_prints():
    m = live.curve_metrics(ROWS[0])
    # loss.csv's cells, read back as numbers: the two records agree value for value
    cells = next(csv.DictReader(loss_csv(ROWS[:1]).splitlines()))
    assert m == {"train/loss": float(cells["loss"]), "train/lr": float(cells["lr"]),
                 "train/grad_norm": float(cells["grad_norm"]), "train/tokens": 512,
                 "train/ce": float(cells["ce"]), "train/z_loss": float(cells["z_loss"])}
    assert live.curve_metrics(LogRow(1, 1, math.nan, 1e-3, math.inf))["train/loss"] != 0  # nan kept


def test_monitor_metrics_are_monitor_csv_values():
    m = live.monitor_metrics(MONITOR)
    text = monitor_csv([MonitorRow(*r) for r in MONITOR])
    for row in csv.DictReader(text.splitlines()):
        assert m[f"monitor/{row['metric']}/{row['layer']}"] == float(row["value"])
    assert len(m) == 3


def test_history_is_what_the_run_logged_by_step():
    events = [StabilityEvent(1, "nonfinite", "skip", math.nan, 1.0, None),
              StabilityEvent(4, "spike", "skip", 9.0, 1.0, 5.0)]
    h = dict(live.history(ROWS, MONITOR, events))
    assert sorted(h) == [1, 2, 3, 4]
    assert h[1] == {live.EVENTS: 1}  # an event between points: the count at its step
    assert h[2][live.EVENTS] == 1 and h[4][live.EVENTS] == 2
    assert h[2]["train/loss"] == 5.123457 and live.TOKENS_PER_S not in h[2]  # not measured again
    assert set(h[3]) == set(live.monitor_metrics(MONITOR))


def test_alert_lines_say_what_happened_and_what_was_done():
    spike = live.alert_line(StabilityEvent(40, "spike", "rollback", 9.5, 2.0, 6.25))
    assert spike.startswith("ALERT step 40: loss spike (loss 9.5, 6.2 standard deviations")
    assert spike.endswith("rolling back (training.stability)")
    nan = live.alert_line(StabilityEvent(7, "nonfinite", "skip", math.nan, math.inf, None))
    assert "non-finite loss or gradient (loss nan, gradient norm inf): update skipped" in nan


def _tsv(path):
    return list(csv.reader(path.open(), delimiter="\t"))


def test_dvclive_files_are_flushed_at_every_record(tmp_path, monkeypatch):
    """Each record is on disk when `record` returns (what `dvc plots show` reads while the
    stage trains): a row per metric in its TSV, no timestamp, and the summary's step."""
    monkeypatch.chdir(tmp_path)  # no git or DVC repository: DVCLive must not need one
    folder = tmp_path / "live" / "train-x"
    log = live.LiveLog(folder / "metrics.json", folder / "plots" / "metrics", "train-x", "exp")
    for i, row in enumerate(ROWS):
        log.record(row.step, {**live.curve_metrics(row), live.TOKENS_PER_S: 100.0 + i})
        assert json.loads((folder / "metrics.json").read_text())["step"] == row.step
        loss = _tsv(folder / "plots" / "metrics" / "train" / "loss.tsv")
        assert loss[0] == ["step", "loss"] and len(loss) == i + 2
        assert loss[-1] == [str(row.step), str(live.curve_metrics(row)["train/loss"])]
    log.record(3, live.monitor_metrics(MONITOR))
    summary = json.loads((folder / "metrics.json").read_text())
    assert summary["step"] == 3 and summary["train"]["loss"] == 4.5
    # the summary (a column each in `dvc exp show`) leaves the per-layer monitor and the
    # measured tokens/s to their TSVs
    assert set(summary) == {"step", "train"}
    assert _tsv(folder / "plots" / "metrics" / "monitor" / "update_rms_ratio" / "embed.tsv")[-1] == ["3", "1e-05"]
    assert _tsv(folder / "plots" / "metrics" / "perf" / "tokens_per_s.tsv")[-1] == [str(ROWS[-1].step), "101.0"]
    assert (folder / "plots" / "metrics" / "monitor" / "effective_rank" / "1.tsv").is_file()
    log.close()
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", "plots"]  # no dvc.yaml, report
    assert not (tmp_path / "dvc.yaml").exists()
    # a new LiveLog (a rerun, a resumed stage) starts the folder over
    live.LiveLog(folder / "metrics.json", folder / "plots" / "metrics", "train-x", "exp")
    assert not (folder / "metrics.json").exists() and not (folder / "plots" / "metrics" / "train").exists()


def test_live_outputs_must_be_one_dvclive_folder(tmp_path):
    with pytest.raises(ValueError, match="DVCLive's layout"):
        live.LiveLog(tmp_path / "a" / "metrics.json", tmp_path / "b" / "plots" / "metrics", "s", "e")


@pytest.mark.parametrize("sink,package", [("wandb", "wandb"), ("trackio", "trackio"),
                                          ("tensorboard", "tensorboard")])
def test_a_selected_sink_without_its_package_is_an_error_with_the_fix(sink, package, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(live.LiveSinkMissing) as err:
        live.check_sinks([sink])
    assert err.value.field == "training.live_sinks"
    assert err.value.fix.startswith(f"pip install {package}")
    live.check_sinks([])  # none selected: nothing to check


def test_tensorboard_sink_gets_every_record_when_installed(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "live" / "s"
    log = live.LiveLog(folder / "metrics.json", folder / "plots" / "metrics", "s", "e",
                       sinks=["tensorboard"], sink_dirs={"tensorboard": tmp_path / "tb"})
    log.record(2, live.curve_metrics(ROWS[0]))
    log.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
