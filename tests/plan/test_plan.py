"""`repro plan`: training FLOPs against the published sizes (FACTS), sums that add up, the
table and the JSON telling the same numbers, and bad input handled like every other verb."""

from __future__ import annotations

import os

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import main
from repro.plan.build import plan_spec
from repro.plan.measured import STEP_COSTS
from repro.plan.quantity import INF, Q
from repro.plan.render import num, q, render
from repro.spec.load import load_spec
from repro.spec.schema import ExperimentSpec

REPO = Path(__file__).resolve().parents[2]
FINEWEB = "specs/reference/fineweb-ablation.yaml"
SMOLLM3 = "specs/reference/smollm3-3b.yaml"
TINY = "specs/ci/tiny.yaml"


def _plan(rel: str, spec: ExperimentSpec | None = None, **kw):
    return plan_spec(spec or load_spec(REPO / rel), rel, root=REPO, **kw)


def _q(d: dict) -> Q:
    return Q(d["low"], INF if d["high"] is None else d["high"], d["approx"])


# ------------------------------------------------------------------ training vs FACTS


def test_fineweb_ablation_flops_match_published_size_and_tokens():
    plan = _plan(FINEWEB)
    t = plan.training
    # FACTS 4.1: 1.71B params with (tied) embeddings; model cards' 1.82B ≈ the untied count
    assert t.params_total == pytest.approx(1.71e9, rel=0.01)
    assert t.params_total + 50257 * 2048 == pytest.approx(1.82e9, rel=0.01)
    # tied: N of 6ND (the matmul parameters) is every parameter but the norm gains
    assert t.params_6nd == pytest.approx(t.params_total, rel=1e-4)
    (phase,) = t.phases
    assert phase.tokens == 13_351 * 2_097_152 and phase.tokens == pytest.approx(28e9, rel=1e-4)
    # 6·N·D (FACTS 4.2: ~28B tokens); 1% against 1.71B, the brief's 10% against 1.82B
    assert phase.dense == pytest.approx(6 * 1.71e9 * 28e9, rel=0.01)
    assert phase.dense == pytest.approx(6 * 1.82e9 * 28e9, rel=0.10)
    # causal attention stated separately: 6·L·H·Q·T per token, H·Q = d = 2048, T = 2048
    assert phase.attention == 6 * 24 * 2048 * 2048 * phase.tokens
    assert t.flops == phase.dense + phase.attention and t.runs == 1


def test_fineweb_ablation_350b_budget():
    spec = load_spec(REPO / FINEWEB)
    raw = spec.model_dump()
    raw["training"]["stages"][0]["tokens"] = 350_000_000_000  # FACTS 4.2: dedup checks
    plan = _plan(FINEWEB, ExperimentSpec.model_validate(raw))
    assert plan.training.phases[0].dense == pytest.approx(6 * 1.71e9 * 350e9, rel=0.01)


def test_smollm3_flops_per_phase_and_gpu_hours():
    t = _plan(SMOLLM3).training
    assert t.params_total == pytest.approx(3.08e9, rel=2e-3)  # FACTS 3.1
    main_phases = t.phases[:3]
    # FACTS 3.5: 4,720,000 steps x 2,359,296 tokens ≈ 11.14T
    assert sum(s.tokens for s in main_phases) == 4_720_000 * 2_359_296
    assert sum(s.dense for s in main_phases) == pytest.approx(6 * 3.08e9 * 11.14e12, rel=0.01)
    assert sum(s.dense for s in main_phases) == pytest.approx(2.06e23, rel=0.01)
    # long-context phases (FACTS 3.10): 20,000 and 22,000 steps, attention at their length
    lc32, lc64 = t.phases[3:]
    assert (lc32.steps, lc64.steps) == (20_000, 22_000)
    assert lc64.attention == 6 * 36 * 16 * 128 * 65536 * lc64.tokens
    assert lc64.attention > lc64.dense  # at 64k attention outweighs 6N
    assert t.flops == pytest.approx(sum(s.dense + s.attention for s in t.phases))
    # 384 H100 x 24 days (FACTS 3.11) at PERF.md's ~29% nanotron MFU
    at_29 = _plan(SMOLLM3, mfu=0.29).training
    assert at_29.gpu_hours == pytest.approx(384 * 24 * 24, rel=0.10)


# --------------------------------------------------------------- tiny: sums add up


def test_tiny_numbers_add_up():
    plan = _plan(TINY)
    t = plan.training
    assert t.runs == 1  # no replica
    assert t.flops_per_run == sum(s.dense + s.attention + s.extra for s in t.phases)
    assert t.flops == t.flops_per_run
    assert t.tokens_per_run == 4096 + 2048
    for c in plan.curation:
        assert c.steps and all(s.seconds_per_doc for s in c.steps)
        assert c.cpu_hours.low == pytest.approx(sum(s.cpu_hours.low for s in c.steps))
        assert c.cpu_hours.high == pytest.approx(sum(s.cpu_hours.high for s in c.steps))
        assert c.docs_in.high == c.steps[0].docs.high  # max_docs caps every step
    assert plan.curation_cpu_hours.high == pytest.approx(sum(c.cpu_hours.high for c in plan.curation))
    disk = plan.disk
    assert disk.total.low == pytest.approx(sum(p.low for p in disk.parts.values()))
    assert disk.total.high == pytest.approx(sum(p.high for p in disk.parts.values()))
    assert math.isfinite(disk.total.high)  # every part bounded for builtin corpora
    # one run: a snapshot after step 2 + both stage ends, as the compiler creates them
    e = plan.evaluation
    assert e.checkpoints == 3
    assert e.flops.high == pytest.approx(3 * e.flops_per_checkpoint.high)
    assert disk.parts["snapshots"].value == t.params_total * 4
    assert disk.parts["checkpoints"].value == 2 * t.params_total * 4 * 3  # AdamW: 2 states


def test_json_and_table_agree(monkeypatch):
    monkeypatch.chdir(REPO)
    runner = CliRunner()
    table = runner.invoke(main, ["plan", TINY])
    raw = runner.invoke(main, ["plan", TINY, "--json"])
    assert table.exit_code == 0 and raw.exit_code == 0, table.output + raw.output
    data = json.loads(raw.output)
    (p,) = data["plans"]
    text = table.output
    tr = p["training"]
    assert f"{num(tr['flops'])} FLOPs = {num(tr['gpu_hours'])} GPU-hours" in text
    for s in tr["stages"]:
        assert f"{num(s['dense'])}   {num(s['attention'])}" in text and num(s["total"]) in text
    assert q(_q(p["curation"]["cpu_hours"])) in text
    for d in p["curation"]["datasets"]:
        for s in d["steps"]:
            assert f"{s['label']}" in text and q(_q(s["cpu_hours"])) in text
    from repro.plan.render import size

    assert q(_q(p["disk"]["total"]), size) in text
    for name, part in p["disk"]["parts"].items():
        assert any(name in line and q(_q(part), size) in line for line in text.splitlines())
    assert q(_q(p["evaluation"]["flops"])) in text
    assert f"EVALUATION ({p['evaluation']['checkpoints']} checkpoints)" in text
    assert data["mfu"] == 0.4 and data["peak_tflops"] == 989.0


def test_replicas_multiply_the_training_cost():
    t = _plan("specs/qs-nope.yaml").training
    assert t.runs == 2  # the main run and one replica
    assert t.flops == 2 * t.flops_per_run and t.flops_per_run > 0


# ------------------------------------------------------------ unknowns stay unknown


def test_remote_source_counts_are_unknown_with_per_million_costs():
    plan = _plan(FINEWEB)
    (web,) = plan.curation
    assert web.docs_in.high == INF and web.docs_in.low == 0  # no number invented
    assert all(s.per_million_docs_hours and s.per_million_docs_hours > 0 for s in web.steps)
    assert web.cpu_hours.high == INF
    text = render(plan)
    assert "unknown" in text and "per-million-document costs" in text
    # what training draws bounds the shards from below (token ledger: ÷ max_epochs)
    assert plan.disk.token_counts["web"].low == pytest.approx(13_351 * 2_097_152 / 4)


def test_local_files_are_counted(tmp_path):
    from repro.plan.curation import plan_dataset
    from repro.plan.measured import BuiltinRuns, step_costs
    from repro.spec import schema as S

    for i in range(3):
        (tmp_path / "pages" / f"{i}.html").parent.mkdir(exist_ok=True)
        (tmp_path / "pages" / f"{i}.html").write_text("<p>x</p>")
    (tmp_path / "pages" / "notes.txt").write_text("not matched")
    ds = S.DatasetSpec(source=S.FilesSource(path="pages", glob="*.html", format="html"),
                       steps=[S.TrafilaturaStep(), S.GopherQualityStep()])
    plan = plan_dataset("web", ds, None, "", BuiltinRuns(), step_costs(REPO), root=tmp_path)
    assert plan.docs_in.value == 3 and not plan.docs_in.approx
    assert plan.steps[0].docs.value == 3 and plan.steps[1].docs.high == 3  # filters only remove
    spd = plan.steps[0].seconds_per_doc
    assert plan.steps[0].cpu_hours.low >= 3 * spd / 3600


def test_missing_measurements_say_so(tmp_path):
    plan = plan_spec(load_spec(REPO / TINY), TINY, root=tmp_path)
    assert any("bench.curation_steps" in n for n in plan.notes)
    assert all(c.cpu_hours.high == INF for c in plan.curation)
    assert plan.training.cpu_core_hours is None


def test_measurement_file_records_machine_and_covers_every_step_kind():
    from typing import get_args

    from repro.spec import schema as S

    costs = json.loads((REPO / STEP_COSTS).read_text())
    assert costs["machine"]["cpu_model"] and costs["machine"]["cpu_count"]
    assert costs["generated_by"].startswith("python -m bench.curation_steps")
    kinds = {m.model_fields["kind"].default for m in get_args(get_args(S.CurationStep)[0])}
    measured = {k for corpus in costs["corpora"].values() for k in corpus}
    assert kinds <= measured, kinds - measured
    assert costs["cpu_fp32_peak_flops_per_core"] > 0


# ------------------------------------------------------------------------ bad input


def test_bad_spec_path_exits_2_without_traceback(monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["plan", "specs/nope/missing.yaml"])
    assert result.exit_code == 2
    assert "specs/nope/missing.yaml" in result.output and "fix:" in result.output
    assert "Traceback" not in result.output


def test_invalid_spec_is_located(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    bad = tmp_path / "bad.yaml"
    # extends is relative to the spec's folder (absolute paths are refused by the loader)
    bad.write_text(f"extends: {os.path.relpath(REPO / TINY, tmp_path)}\nmodel:\n  num_layerz: 3\n")
    result = CliRunner().invoke(main, ["plan", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3" in result.output and "num_layerz" in result.output
    assert "Traceback" not in result.output


def test_a_quantity_of_an_int_beyond_floats_is_infinite_not_a_crash():
    from repro.plan.quantity import Q

    assert Q.exact(10**400).value == float("inf") and Q.at_most(-(10**400)).high == float("-inf")
    assert Q.exact(3).value == 3.0


def test_a_slurm_checkpoint_interval_is_estimated_against_the_time_limit():
    """The FineWeb reference runs on 64 GPUs with a checkpoint every 250 steps (a few
    minutes at 40% MFU); a 10-minute job with a checkpoint every 5,000 steps would be
    requeued before its first checkpoint, and the plan says so with the fix."""
    (note,) = [n for n in _plan(FINEWEB).notes if n.startswith("Slurm:")]
    assert "250 steps" in note and "64 GPU(s)" in note and "start over" not in note
    raw = load_spec(REPO / FINEWEB).model_dump()
    raw["training"]["checkpoint_every_steps"] = 5000
    raw["training"]["launcher"]["slurm"]["time"] = "00:10:00"
    raw["training"]["launcher"]["slurm"]["signal_grace_s"] = 120
    (note,) = [n for n in _plan(FINEWEB, ExperimentSpec.model_validate(raw)).notes
               if n.startswith("Slurm:")]
    assert "8.0 min before Slurm signals it" in note
    assert "lower training.checkpoint_every_steps or raise training.launcher.slurm.time" in note
