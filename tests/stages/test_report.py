"""The report stage end to end on fake inputs: 2 experiments x 2 training stages."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from repro.report.collect import ReportInputError
from repro.stages.base import StageIO, write_json
from repro.stages.configs import ReportConfig
from repro.stages.report import run

# experiment -> (final train loss, bits_per_byte, acc, acc_norm); stderr 0.05 on acc metrics.
SCORES = {"base": (3.0, 1.5, 0.40, 0.45), "new": (2.5, 1.2, 0.50, 0.75)}
# Stage names sort opposite to training order, so ordering must come from step_end.
STAGES = (("stable", 10), ("anneal", 20))
BATCH_TOKENS = 100


def _eval_metrics(exp: str, stage: str, scale: float = 1.0) -> dict:
    _, bpb, acc, acc_norm = SCORES[exp]
    return {
        "experiment": exp, "checkpoint": stage, "tokens_seen": 2000,
        "tasks": {
            "repro_bpb_web": {"bits_per_byte": bpb * scale, "bits_per_byte_stderr": None,
                              "byte_perplexity": 2 ** (bpb * scale), "word_perplexity": 99.0},
            "repro_cloze_web": {"acc": acc * scale, "acc_stderr": 0.05,
                                "acc_norm": acc_norm * scale, "acc_norm_stderr": 0.05},
        },
        "random_baseline": {"repro_cloze_web": {"acc": 0.25, "acc_norm": 0.25}},
    }


def make_inputs(root: Path, every_stage: bool = True) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    for exp, (final_loss, *_rest) in SCORES.items():
        step_start = 0
        for i, (stage, step_end) in enumerate(STAGES):
            label = f"{exp}:{stage}"
            train = root / "metrics" / f"train-{exp}-{stage}.json"
            write_json(train, {
                "experiment": exp, "stage": stage, "steps": step_end - step_start,
                "step_end": step_end, "tokens": (step_end - step_start) * BATCH_TOKENS,
                "tokens_total": step_end * BATCH_TOKENS,
                "final_loss": final_loss + (1.0 if i == 0 else 0.0),
            })
            loss = root / "plots" / f"train-{exp}-{stage}" / "loss.csv"
            loss.parent.mkdir(parents=True)
            rows = [f"{s},{s * BATCH_TOKENS},{final_loss + 5.0 / s:.6f},{1e-3 * min(1, s / 5):.6g}"
                    for s in range(step_start + 1, step_end + 1)]
            loss.write_text("step,tokens,loss,lr\n" + "\n".join(rows) + "\n")
            inputs[f"train:{label}"], inputs[f"loss:{label}"] = train, loss
            if every_stage or i == len(STAGES) - 1:
                ev = root / "metrics" / f"evaluate-{exp}-{stage}.json"
                # Earlier checkpoints score worse, so using the wrong one shows in the values.
                write_json(ev, _eval_metrics(exp, stage, 1.0 if i == len(STAGES) - 1 else 0.5))
                inputs[f"eval:{label}"] = ev
            step_start = step_end
    return inputs


CFG = ReportConfig(name="quick", baseline="base", experiments=["new", "base"])


@pytest.fixture
def report(tmp_path) -> Path:
    out = tmp_path / "reports" / "quick"
    run(CFG, StageIO("report-quick", make_inputs(tmp_path / "in"), {"report": out}))
    return out


def test_writes_all_files(report):
    assert sorted(p.name for p in report.iterdir()) == [
        "loss.png", "report.html", "report.md", "summary.csv", "summary.json"]
    assert not list(report.parent.glob(".*"))  # no temporary folder left behind


def test_table_values_deltas_and_noise_flags(report):
    summary = json.loads((report / "summary.json").read_text())
    assert summary["experiments"] == ["new", "base"]  # display order, not alphabetical
    new, base = summary["rows"]
    assert (new["experiment"], base["experiment"]) == ("new", "base")
    assert base["is_baseline"] and not new["is_baseline"]
    assert new["final_stage"] == "anneal" and new["step_end"] == 20
    assert new["tokens"] == 2000
    assert new["final_train_loss"] == 2.5
    assert new["final_train_loss_delta"] == pytest.approx(-0.5)
    assert new["repro_bpb_web.bits_per_byte"] == 1.2  # final checkpoint, not the earlier one
    assert new["repro_bpb_web.bits_per_byte_delta"] == pytest.approx(-0.3)
    assert "repro_bpb_web.bits_per_byte_within_noise_2se" not in new  # no stderr, no flag
    # acc: delta 0.10 < 2*sqrt(0.05^2 + 0.05^2) = 0.1414 -> within noise
    assert new["repro_cloze_web.acc_delta"] == pytest.approx(0.10)
    assert new["repro_cloze_web.acc_within_noise_2se"] is True
    # acc_norm: delta 0.30 > 0.1414 -> beyond noise
    assert new["repro_cloze_web.acc_norm_delta"] == pytest.approx(0.30)
    assert new["repro_cloze_web.acc_norm_within_noise_2se"] is False
    assert base["repro_cloze_web.acc_within_noise_2se"] is None
    assert base["repro_cloze_web.acc_delta"] == 0.0
    # above random: (0.5 - 0.25) / (1 - 0.25)
    assert new["repro_cloze_web.acc_above_random"] == pytest.approx(1 / 3)
    assert base["repro_cloze_web.acc_norm_above_random"] == pytest.approx(0.2 / 0.75)
    better = {m["column"]: m["better"] for m in summary["metrics"]}
    assert better["repro_bpb_web.bits_per_byte"] == "lower"
    assert better["repro_cloze_web.acc_norm"] == "higher"
    assert better["final_train_loss"] == "lower"
    assert [s["stage"] for s in summary["stages"]["new"]] == ["stable", "anneal"]
    assert set(summary["evaluations"]["base"]) == {"stable", "anneal"}
    assert all(v is None or math.isfinite(v) for row in summary["rows"]
               for v in row.values() if isinstance(v, float))


def test_csv_matches_table(report):
    import polars as pl

    df = pl.read_csv(report / "summary.csv")
    assert df["experiment"].to_list() == ["new", "base"]
    assert df.columns[:7] == ["experiment", "is_baseline", "final_stage", "step_end", "tokens",
                              "final_train_loss", "final_train_loss_delta"]
    assert "repro_bpb_web.byte_perplexity" not in df.columns  # redundant with bits_per_byte
    assert df["repro_cloze_web.acc_norm_within_noise_2se"].to_list() == [False, None]


def test_markdown(report):
    md = (report / "report.md").read_text()
    assert md.startswith("# Report: quick\n")
    assert "](loss.png)" in md
    assert "base (baseline)" in md
    assert "lower is better" in md and "higher is better" in md
    assert "within noise" in md and "beyond noise" in md
    assert "| new | 2,000 | 2.5000 |" in md
    assert "-0.3000 (better)" in md  # bits_per_byte fell: better, since lower is better
    assert "+0.3000 (better, beyond noise)" in md


def test_html_is_self_contained(report):
    html = (report / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert 'src="data:image/png;base64,' in html
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    assert html.count("src=") == html.count('src="data:')


def test_rerun_is_byte_identical_across_processes(tmp_path, report):
    inputs = make_inputs(tmp_path / "in2")
    out = tmp_path / "again"
    # A fresh interpreter: nothing cached in matplotlib or polars carries over.
    code = (
        "import sys, json; from pathlib import Path\n"
        "from repro.stages.base import StageIO\n"
        "from repro.stages.configs import ReportConfig\n"
        "from repro.stages.report import run\n"
        "ins = {k: Path(v) for k, v in json.loads(sys.argv[1]).items()}\n"
        "run(ReportConfig(name='quick', baseline='base', experiments=['new', 'base']),\n"
        "    StageIO('report-quick', ins, {'report': Path(sys.argv[2])}))\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps({k: str(v) for k, v in inputs.items()}),
                    str(out)], check=True, cwd=Path(__file__).resolve().parents[2])
    for name in ["loss.png", "report.html", "report.md", "summary.csv", "summary.json"]:
        assert (out / name).read_bytes() == (report / name).read_bytes(), name


def test_only_final_checkpoint_evaluated(tmp_path):
    out = tmp_path / "r"
    run(CFG, StageIO("r", make_inputs(tmp_path / "in", every_stage=False), {"report": out}))
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert rows[0]["repro_bpb_web.bits_per_byte"] == 1.2


def test_missing_baseline_is_a_clear_error(tmp_path):
    inputs = {k: v for k, v in make_inputs(tmp_path / "in").items() if ":base:" not in k}
    with pytest.raises(ReportInputError, match=r"baseline experiment 'base' has no inputs"):
        run(CFG, StageIO("r", inputs, {"report": tmp_path / "r"}))
    assert not (tmp_path / "r").exists()


def test_baseline_not_listed_is_a_clear_error(tmp_path):
    cfg = ReportConfig(name="quick", baseline="other", experiments=["new", "base"])
    with pytest.raises(ReportInputError, match="baseline 'other' is not among"):
        run(cfg, StageIO("r", make_inputs(tmp_path / "in"), {"report": tmp_path / "r"}))


def test_final_stage_without_eval_is_a_clear_error(tmp_path):
    inputs = {k: v for k, v in make_inputs(tmp_path / "in").items() if k != "eval:new:anneal"}
    with pytest.raises(ReportInputError, match=r"final stage 'anneal'.*no eval:new:anneal"):
        run(CFG, StageIO("r", inputs, {"report": tmp_path / "r"}))
