"""The report stage end to end on inputs written here: experiments with replicas, snapshot
checkpoints, per-item samples, and each kind of bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from repro.report.collect import ReportInputError
from repro.spec.schema import ReportSpec
from repro.stages.base import StageIO, write_json
from repro.stages.configs import ReportConfig
from repro.stages.report import run

BPB, CLOZE = "repro_bpb_web", "repro_cloze_web"
BPB_RANDOM = 8.0
# experiment -> replicas, final train loss, nats per byte of the bpb docs, P(correct) in cloze
EXPERIMENTS = {"base": (("seed0", "seed1"), 3.0, 1.2, 0.40),
               "new": (("seed0", "seed1-data1"), 2.5, 0.9, 0.42),
               "solo": (("seed0",), 2.8, 1.1, 0.40)}
# Stage names sort opposite to training order, so ordering must come from step_end.
STAGES = (("stable", 10), ("anneal", 20))
BATCH_TOKENS = 100
N_DOCS, N_ITEMS = 40, 60


def _samples(exp: str, replica: str) -> tuple[list[dict], list[dict]]:
    _, _, nats_per_byte, p = EXPERIMENTS[exp]
    rng = np.random.default_rng([ord(c) for c in f"{exp}/{replica}"])
    docs = np.random.default_rng(7).integers(200, 2000, N_DOCS)  # same documents for all
    bpb = [{"doc_id": i, "loglikelihood": -float(b * nats_per_byte * rng.uniform(0.9, 1.1)),
            "bytes": int(b), "words": int(b // 6)} for i, b in enumerate(docs)]
    correct = rng.random(N_ITEMS) < p
    cloze = [{"doc_id": i, "target": 0, "loglikelihoods": [-1.0, -2.0], "is_greedy": [bool(c), False],
              "acc": float(c), "acc_norm": float(c)} for i, c in enumerate(correct)]
    return bpb, cloze


def _metrics(exp: str, replica: str, checkpoint: str, tokens: int, scale: float,
             failed: dict | None = None) -> dict:
    bpb, cloze = _samples(exp, replica)
    bits = sum(-r["loglikelihood"] for r in bpb) / sum(r["bytes"] for r in bpb) / math.log(2)
    acc = float(np.mean([r["acc"] for r in cloze]))
    out = {"experiment": exp, "checkpoint": checkpoint, "tokens_seen": tokens,
           "tasks": {BPB: {"bits_per_byte": bits * scale, "bits_per_byte_stderr": 0.02,
                           "byte_perplexity": 2 ** bits, "word_perplexity": 99.0},
                     CLOZE: {"acc": acc / scale, "acc_stderr": 0.06,
                             "acc_norm": acc / scale, "acc_norm_stderr": 0.06}},
           "random_baseline": {BPB: {"bits_per_byte": BPB_RANDOM},
                               CLOZE: {"acc": 0.5, "acc_norm": 0.5}}}
    if failed:
        out["failed_tasks"] = failed
    return out


def make_inputs(root: Path, samples: bool = True) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    for exp, (replicas, final_loss, _, _) in EXPERIMENTS.items():
        for rep in replicas:
            step_start = 0
            for i, (stage, step_end) in enumerate(STAGES):
                key = f"{exp}:{rep}:{stage}"
                train = root / "metrics" / f"train-{exp}-{rep}-{stage}.json"
                write_json(train, {"step_end": step_end, "tokens": (step_end - step_start) * 100,
                                   "tokens_total": step_end * BATCH_TOKENS,
                                   "final_loss": final_loss + (1.0 if i == 0 else 0.0)})
                loss = root / "plots" / f"{exp}-{rep}-{stage}.csv"
                loss.parent.mkdir(parents=True, exist_ok=True)
                loss.write_text("step,tokens,loss,lr\n" + "".join(
                    f"{s},{s * BATCH_TOKENS},{final_loss + 5.0 / s:.6f},0.001\n"
                    for s in range(step_start + 1, step_end + 1)))
                inputs[f"train:{key}"], inputs[f"loss:{key}"] = train, loss
                # Earlier checkpoints score worse: using the wrong one shows in the values.
                cps = [(stage, step_end * BATCH_TOKENS, 1.0 if i else 1.5)]
                if i == 0:
                    cps.append((f"{stage}-step5", 5 * BATCH_TOKENS, 2.0))
                for cp, tokens, scale in cps:
                    ev = root / "metrics" / f"eval-{exp}-{rep}-{cp}.json"
                    write_json(ev, _metrics(exp, rep, cp, tokens, scale))
                    inputs[f"eval:{exp}:{rep}:{cp}"] = ev
                if i == len(STAGES) - 1 and samples:
                    folder = root / "results" / f"{exp}-{rep}"
                    folder.mkdir(parents=True)
                    (folder / "results.json").write_text("{}")
                    for task, rows in zip((BPB, CLOZE), _samples(exp, rep)):
                        (folder / f"samples_{task}.jsonl").write_text(
                            "".join(json.dumps(r) + "\n" for r in rows))
                    inputs[f"results:{key}"] = folder
                step_start = step_end
    return inputs


CFG = ReportConfig(name="quick", baseline="base", experiments=["new", "base"],
                   bootstrap_iterations=2000)
"""Two experiments with two replicas each (tests/report/report_site_fixtures.py uses it)."""
CFG_ALL = CFG.model_copy(update={"experiments": ["new", "base", "solo"]})
"""Adds an experiment with a single replica."""


def _outputs(root: Path, cfg: ReportConfig) -> dict[str, Path]:
    """The report's outputs under `root`, laid out as repro.paths places them."""
    return {"report": root / "reports" / "quick", "scores": root / "plots" / "quick",
            **{f"headline:{e}": root / "metrics" / "reports" / "quick" / f"{e}.json"
               for e in cfg.experiments}}


def _run(tmp_path: Path, inputs: dict[str, Path], cfg: ReportConfig = CFG) -> Path:
    run(cfg, StageIO("report-quick", inputs, _outputs(tmp_path, cfg)))
    return tmp_path / "reports" / "quick"


@pytest.fixture
def report(tmp_path) -> Path:
    return _run(tmp_path, make_inputs(tmp_path / "in"), CFG_ALL)


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_report_spec_settings_reach_the_config():
    """The compiler passes ReportSpec's fields to ReportConfig by name."""
    assert set(ReportSpec.model_fields) - {"experiments"} <= set(ReportConfig.model_fields)
    spec = ReportSpec(name="r", experiments=["a"], baseline="a", aggregate_tasks=["t"])
    cfg = ReportConfig(**spec.model_dump(exclude={"experiments"}), experiments=["a"])
    assert cfg.aggregate_tasks == ["t"] and cfg.bootstrap_iterations == 10_000
    with pytest.raises(ValueError, match="lists a task twice"):
        ReportSpec(name="r", experiments=["a"], baseline="a", aggregate_tasks=["t", "t"])
    with pytest.raises(ValueError, match="confidence"):
        ReportConfig(name="r", baseline="a", experiments=["a"], confidence=1.0)


def test_writes_all_files(report, tmp_path):
    assert sorted(p.name for p in report.iterdir()) == [
        "deltas.csv", "loss.csv", "loss.png", "report.html", "report.md", "scores.png",
        "scores_over_tokens.csv", "summary.csv", "summary.json"]
    assert sorted(p.name for p in (tmp_path / "plots" / "quick").iterdir()) == [
        "base.csv", "new.csv", "solo.csv"]
    assert not list(report.parent.glob(".*"))  # no temporary folder left behind


def test_values_are_means_over_replicas_at_the_final_checkpoint(report, tmp_path):
    s = _summary(report)
    assert s["experiments"] == ["new", "base", "solo"]  # display order
    assert s["replicas"] == {"new": ["seed0", "seed1-data1"], "base": ["seed0", "seed1"],
                             "solo": ["seed0"]}
    rows = {r["experiment"]: r for r in s["rows"]}
    new = rows["new"]
    assert new["final_stage"] == "anneal" and new["step_end"] == 20 and new["tokens"] == 2000
    assert new["replicas"] == 2 and new["final_train_loss"] == 2.5
    want = np.mean([_metrics("new", r, "anneal", 2000, 1.0)["tasks"][BPB]["bits_per_byte"]
                    for r in ("seed0", "seed1-data1")])
    assert new[f"{BPB}.bits_per_byte"] == pytest.approx(want)
    assert new[f"{BPB}.bits_per_byte_above_random"] == pytest.approx((8 - want) / 8)
    # The deltas use the paired bootstrap; bpb is clearly better (0.9 vs 1.2 nats/byte).
    assert new[f"{BPB}.bits_per_byte_delta"] < 0 and new[f"{BPB}.bits_per_byte_significant"]
    assert new[f"{BPB}.bits_per_byte_ci_low"] < new[f"{BPB}.bits_per_byte_delta"] \
        < new[f"{BPB}.bits_per_byte_ci_high"] < 0
    assert rows["base"][f"{BPB}.bits_per_byte_delta"] == 0.0
    # Aggregate: mean of the normalised bpb and acc_norm, with its own interval.
    agg = np.mean([new[f"{BPB}.bits_per_byte_above_random"],
                   new[f"{CLOZE}.acc_norm_above_random"]])
    assert new["aggregate"] == pytest.approx(agg)
    assert new["aggregate_ci_low"] is not None and new["aggregate_stderr"] > 0
    assert s["aggregate"]["tasks"] == [BPB, CLOZE]
    assert s["aggregate"]["metrics"] == {BPB: "bits_per_byte", CLOZE: "acc_norm"}
    deltas = pl.read_csv(report / "deltas.csv")
    assert set(deltas["method"]) == {"paired bootstrap"}
    assert set(deltas["items"].drop_nulls()) == {N_DOCS, N_ITEMS}
    assert all(v is None or math.isfinite(v) for row in s["rows"] for v in row.values()
               if isinstance(v, float))
    # publish reads these shapes: stages as a list, evaluations keyed by checkpoint
    assert [x["stage"] for x in s["stages"]["new"]] == ["stable", "anneal"]
    assert set(s["evaluations"]["base"]) == {"stable-step5", "stable", "anneal"}
    assert set(s["evaluations"]["base"]["anneal"]["replicas"]) == {"seed0", "seed1"}


def test_scores_csv_for_dvc_plots(report, tmp_path):
    df = pl.read_csv(tmp_path / "plots" / "quick" / "new.csv")
    # `task:metric`, never `task.metric` (Vega-Lite reads a dot as nested access)
    assert df.columns == ["tokens", f"{BPB}:bits_per_byte", f"{CLOZE}:acc", f"{CLOZE}:acc_norm"]
    assert df["tokens"].to_list() == [500, 1000, 2000]  # snapshot, end of stable, final
    long = pl.read_csv(report / "scores_over_tokens.csv")
    mean = long.filter((pl.col("experiment") == "new") & (pl.col("checkpoint") == "stable-step5")
                       & (pl.col("metric") == "acc"))["value"].mean()
    assert df["repro_cloze_web:acc"][0] == pytest.approx(mean)


def test_headline_metrics_file_per_experiment_holds_the_results_table(report, tmp_path):
    """Issue 22: one small DVC metrics file per experiment: the Results table's row (replicas,
    tokens, final train loss, each task metric ± standard error, the aggregate), nothing
    else (the deltas, intervals and per-checkpoint scores stay in summary.json)."""
    rows = {r["experiment"]: r for r in _summary(report)["rows"]}
    for name in CFG_ALL.experiments:
        head = json.loads((tmp_path / "metrics/reports/quick" / f"{name}.json").read_text())
        row = rows[name]
        assert head == {
            "replicas": row["replicas"], "tokens": row["tokens"],
            "final_train_loss": row["final_train_loss"],
            BPB: {m: row[f"{BPB}.{m}"] for m in ("bits_per_byte", "bits_per_byte_stderr")},
            CLOZE: {m: row[f"{CLOZE}.{m}"] for m in ("acc", "acc_stderr", "acc_norm",
                                                     "acc_norm_stderr")},
            "aggregate": row["aggregate"], "aggregate_stderr": row["aggregate_stderr"]}, name


def test_markdown_and_html(report):
    md = (report / "report.md").read_text()
    assert md.startswith("# Report: quick\n")
    for png in ("loss.png", "scores.png"):
        assert f"]({png})" in md
    assert "base (baseline)" in md and "95% interval" in md
    assert "not significant" in md and "| better |" in md
    # solo has one replica: its verdicts hold for its checkpoint only, new's for the method
    assert "(this checkpoint only) | checkpoint (seeds: 1 vs 2) |" in md
    assert "| method (seeds: 2 vs 2) |" in md
    assert "within noise" not in md and "Missing or incomplete" not in md
    html = (report / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_rerun_is_byte_identical_across_processes(tmp_path, report):
    inputs = make_inputs(tmp_path / "in2")
    out = tmp_path / "again"
    code = (
        "import sys, json; from pathlib import Path\n"
        "from repro.stages.base import StageIO\n"
        "from repro.stages.configs import ReportConfig\n"
        "from repro.stages.report import run\n"
        "ins = {k: Path(v) for k, v in json.loads(sys.argv[1]).items()}\n"
        "outs = {k: Path(v) for k, v in json.loads(sys.argv[2]).items()}\n"
        "run(ReportConfig(name='quick', baseline='base', experiments=['new', 'base', 'solo'],\n"
        "                 bootstrap_iterations=2000), StageIO('report-quick', ins, outs))\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps({k: str(v) for k, v in inputs.items()}),
                    json.dumps({k: str(v) for k, v in _outputs(out, CFG_ALL).items()})],
                   check=True, cwd=Path(__file__).resolve().parents[2])
    for p in report.iterdir():
        assert (out / "reports/quick" / p.name).read_bytes() == p.read_bytes(), p.name
    for rel in ("plots/quick/new.csv", *(f"metrics/reports/quick/{e}.json" for e in CFG_ALL.experiments)):
        assert (out / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_without_samples_falls_back_to_lm_eval_stderr(tmp_path):
    out = _run(tmp_path, make_inputs(tmp_path / "in", samples=False))
    s = _summary(out)
    assert {d["method"] for d in s["deltas"] if d["delta"] is not None} == {
        "normal approximation (lm-eval stderr, unpaired)"}
    assert s["bootstrap"]["used"] is False
    assert any("no paired bootstrap" in p["message"] for p in s["problems"])
    assert "Missing or incomplete" in (out / "report.md").read_text()


def test_bad_inputs_are_reported_not_fatal(tmp_path):
    inputs = make_inputs(tmp_path / "in")
    inputs = {k: v for k, v in inputs.items() if not k.startswith(("eval:solo:", "results:solo:"))}
    # a NaN score and a task that failed to load in one replica of `new`
    ev = _metrics("new", "seed0", "anneal", 2000, 1.0, failed={"hellaswag": "dataset missing"})
    ev["tasks"][CLOZE]["acc"] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(ev))
    inputs["eval:new:seed0:anneal"] = tmp_path / "nan.json"
    inputs["loss:base:seed1:stable"] = tmp_path / "missing.csv"
    cfg = ReportConfig(name="quick", baseline="base", experiments=["new", "base", "solo", "ghost"],
                       bootstrap_iterations=500)
    out = _run(tmp_path, inputs, cfg)
    problems = [p["message"] for p in _summary(out)["problems"]]
    md = (out / "report.md").read_text()
    for needle in ["no inputs", "task hellaswag failed to load (dataset missing)",
                   f"{CLOZE} acc is nan", "loss curve unreadable",
                   "final checkpoint anneal (largest step_end) has no evaluation"]:
        assert any(needle in p for p in problems), needle
        assert needle in md.replace("\\_", "_"), needle
    rows = {r["experiment"]: r for r in _summary(out)["rows"]}
    assert "ghost" not in rows
    # every declared headline file exists (DVC requires its outputs), holding what is known
    headline = tmp_path / "metrics/reports/quick"
    assert json.loads((headline / "ghost.json").read_text()) == {}
    assert json.loads((headline / "solo.json").read_text()) == {
        "replicas": 0, "tokens": 2000, "final_train_loss": 2.8}
    assert rows["solo"]["replicas"] == 0 and rows["solo"][f"{BPB}.bits_per_byte"] is None
    assert rows["solo"]["final_train_loss"] == 2.8  # training still shown
    assert rows["new"][f"{CLOZE}.acc"] is not None  # the other replica's score remains


def test_baseline_not_compared_still_reports(tmp_path):
    cfg = ReportConfig(name="quick", baseline="other", experiments=["new", "base"],
                       bootstrap_iterations=500)
    out = _run(tmp_path, make_inputs(tmp_path / "in"), cfg)
    s = _summary(out)
    assert s["baseline_compared"] is False and s["deltas"] == []
    assert all(r[f"{BPB}.bits_per_byte_delta"] is None for r in s["rows"])
    md = (out / "report.md").read_text()
    assert "the baseline 'other' is not among the report's experiments" in md
    assert "No differences: the baseline other cannot be compared against" in md


def test_nothing_to_report_raises(tmp_path):
    with pytest.raises(ReportInputError, match="nothing to report"):
        _run(tmp_path, {"eval:a:seed0:s": tmp_path / "missing.json"},
             ReportConfig(name="quick", baseline="a", experiments=["a"]))
    assert not (tmp_path / "reports" / "quick").exists()
