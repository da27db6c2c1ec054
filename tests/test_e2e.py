"""End to end: the smallest shipped spec (specs/ci/tiny.yaml) through `dvc repro` in a
scratch copy of the repository, then `dvc exp run -S` on an evaluation setting."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro.paths import is_machine_record
from repro.verify.certificate import FAIL, verify_stage
from repro.verify.lockfile import declared_stage_id, parse_lock
from repro.verify.tolerance import Tolerance

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(args, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _stage_id(repo: Path, name: str) -> str:
    """The id (settings hash) a stage's command passes as `--id`: what its output paths are
    named by (its name, the dvc.yaml key, carries no hash)."""
    return declared_stage_id(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"][name])


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, tiny_workspace) -> Path:
    """This module's copy of the tiny pipeline's workspace, built once per test run by
    `dvc repro` and committed (tests/conftest.py `tiny_workspace`)."""
    return tiny_workspace.copy(tmp_path_factory.mktemp("repo") / "ws")


def _eval_metrics(repo: Path) -> list[Path]:
    """The evaluate stages' metrics files, one per checkpoint (not their env records)."""
    return sorted(p for p in (repo / "metrics").glob("evaluate-*/*.json") if not is_machine_record(p))


def test_tiny_spec_runs_end_to_end(tiny_repo: Path, tiny_workspace):
    """`dvc repro` (the shared build) ran every stage; in this copy of its workspace a
    second `dvc repro` runs nothing (DVC re-hashes the copied outputs and finds them as
    dvc.lock records them) and git has nothing to commit."""
    stages = yaml.safe_load((tiny_repo / "dvc.yaml").read_text())["stages"]
    assert _ran_stages(tiny_workspace.repro_stdout) == set(stages)
    report = tiny_repo / "reports/ci-tiny"
    assert (report / "report.md").is_file() and (report / "report.html").is_file()
    eval_metrics = _eval_metrics(tiny_repo)[0]
    tasks = yaml.safe_load(eval_metrics.read_text())["tasks"]
    assert tasks["repro_bpb_web"]["bits_per_byte"] > 0
    assert 0.0 <= tasks["repro_cloze_web"]["acc"] <= 1.0
    # evaluation over training: a snapshot inside the first stage, and both stage ends
    evaluated = {yaml.safe_load(p.read_text())["checkpoint"]
                 for p in _eval_metrics(tiny_repo)}
    assert evaluated == {"stable-step2", "stable", "decay"}
    assert len(_eval_metrics(tiny_repo)) == 3
    scores = (tiny_repo / "plots/reports/ci-tiny/ci-tiny.csv").read_text().splitlines()
    assert scores[0].startswith("tokens,") and len(scores) == 4  # header + 3 checkpoints
    # Nothing changed: a second `dvc repro` runs nothing.
    again = _run(["dvc", "repro"], tiny_repo)
    assert _ran_stages(again.stdout) == set()
    assert _run(["git", "status", "--porcelain"], tiny_repo).stdout == ""


def test_exp_run_eval_setting_reruns_only_evaluate_and_report(tiny_repo: Path):
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    evaluate = next(k for k in params if k.startswith("evaluate-"))
    out = _run(["dvc", "exp", "run", "-S", f"{evaluate}.evaluation.limit=3"], tiny_repo)
    ran = _ran_stages(out.stdout)
    assert {s.split("-")[0] for s in ran} == {"evaluate", "report"}, out.stdout
    show = _run(["dvc", "exp", "show", "--json"], tiny_repo).stdout
    assert f"{evaluate}.evaluation.limit" in show or '"limit": 3' in show
    # the experiment compares with the committed run through DVC's own diff commands
    exp = _run(["dvc", "exp", "list", "--name-only"], tiny_repo).stdout.split()[-1]
    metrics = json.loads(_run(["dvc", "metrics", "diff", "--json", "HEAD", exp], tiny_repo).stdout)
    # measured timings (*.perf.json) are records, not metrics: DVC never lists them
    assert not [p for p in metrics if p.endswith((".perf.json", ".env.json", ".ledger.json"))]
    changed = {path for path, diffs in metrics.items() if diffs}
    assert any(p.startswith(f"metrics/{_stage_id(tiny_repo, evaluate)}/") for p in changed), metrics
    # the evaluation's scores, and the report's headline file of its experiment
    assert any(p.startswith("metrics/reports/ci-tiny/") for p in changed), changed
    assert all(p.startswith(("metrics/evaluate-", "metrics/reports/ci-tiny/")) for p in changed), changed
    shown = json.loads(_run(["dvc", "plots", "diff", "--json", "HEAD", exp], tiny_repo).stdout)
    curves = {k: v for k, v in shown["data"].items() if "vs tokens" in k}
    assert curves, sorted(shown["data"])
    assert not [e for e in shown.get("errors", []) if "vs tokens" in str(e.get("name"))], shown["errors"]
    for name, [plot] in curves.items():
        # both revisions draw the score-vs-tokens curve from the report's scores CSV
        assert {"HEAD", exp} <= set(plot["revisions"]), (name, plot["revisions"])
        assert plot["content"]["data"]["values"], name


def _stale_stages(repo: Path) -> set[str]:
    """Stages `dvc status` reports as changed (nothing is run)."""
    proc = subprocess.run(["dvc", "status", "--json"], cwd=repo, text=True, capture_output=True,
                          env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
    assert proc.returncode == 0, proc.stderr
    return set(yaml.safe_load(proc.stdout or "{}"))


def test_threshold_change_reruns_curation_and_downstream_only(tiny_repo: Path):
    """A curation threshold edited in params.data.yaml (as `dvc exp run -S
    params.data.yaml:...` would) makes the curate stage stale and nothing upstream (DVC then
    reruns what reads its changed output: the compiler tests check that set); an executor
    change (execution only) makes nothing stale."""
    params_path = tiny_repo / "params.data.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    curate = next(k for k in params if k.startswith("curate-") and any(
        s["kind"] == "gopher_quality" for s in params[k]["steps"]))
    try:
        assert _stale_stages(tiny_repo) == set()
        step = next(s for s in params[curate]["steps"] if s["kind"] == "gopher_quality")
        step["min_doc_words"] += 1
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        assert _stale_stages(tiny_repo) == {curate}

        params = yaml.safe_load(original)
        params[curate]["executor"] = {**params[curate]["executor"], "tasks": 5, "workers": 2}
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        assert _stale_stages(tiny_repo) == set()
    finally:
        params_path.write_text(original)


def _repro_cli(args: list[str], repo: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-m", "repro.cli", *args], cwd=repo, env=env, text=True,
                          capture_output=True, timeout=900)


VERIFIED_PREFIXES = ("source-pydoc-web", "curate-web", "split-web", "decontaminate-web",
                     "tokenize-web", "funnel-web", "curate-pdf", "tokenizer-", "evaltasks-",
                     "train-", "evaluate-", "report-")
"""Every stage kind of the tiny pipeline, the web chain whole, and the PDF curation (the one
curation on more than one worker): 14 of its 24 stages."""


def test_verify_rebuilds_every_stage_kind_bit_for_bit(tiny_repo: Path, tmp_path: Path):
    """`repro verify STAGES` rebuilds each named stage in a scratch copy (`dvc repro --force
    --single-item`, no cache; the inputs of the others copied from the workspace): every
    stage's outputs equal dvc.lock's hashes on this machine, the certificate says `exact`
    for each; only timings (perf.json) are left out. The stages cover every stage kind, so
    each kind's determinism is checked on every run of the suite; rebuilding the other ten
    (the PDF and code chains' remaining stages, ~50 s) would repeat kinds already covered.
    The no-argument path (the whole pipeline) differs only in what it seeds the scratch copy
    with: tests/verify/test_scratch.py."""
    stages = yaml.safe_load((tiny_repo / "dvc.yaml").read_text())["stages"]
    named = [s for s in stages if s.startswith(VERIFIED_PREFIXES)]
    kinds = {s.split("-", 1)[0] for s in stages}
    assert {s.split("-", 1)[0] for s in named} == kinds and len(named) == 14
    proc = _repro_cli(["verify", *named, "--out", str(tmp_path)], tiny_repo)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    cert = json.loads((tmp_path / "certificate.json").read_text())
    assert cert["passed"] and cert["counts"] == {"exact": len(named), "within tolerance": 0, "FAIL": 0}
    assert {s["stage"] for s in cert["stages"]} == set(named)
    assert cert["environment"]["numerics"]["torch"]["num_threads"] >= 1
    assert "Reproducibility certificate: PASS" in (tmp_path / "certificate.md").read_text()


def test_verify_named_stage_and_a_tampered_record(tiny_repo: Path, tmp_path: Path):
    """One stage alone, its inputs copied from the workspace, against a lock record as
    another machine would leave it (other kernels, loss off by 1e-7): judged within
    tolerance, naming the environment change, and only the changed file differs (every
    other output of the rebuild is exact: the rebuild above checks them all); off by 1e-2
    it fails. The second record is judged against the same rebuild (kept with `--keep`),
    in process: a rebuild does not depend on the record it is compared with. The CLI's
    exit code 1 on a failure: tests/verify/test_scratch.py."""
    lock_path = tiny_repo / "dvc.lock"
    original_lock = lock_path.read_text()
    lock = yaml.safe_load(original_lock)
    train = next(k for k in lock["stages"] if k.startswith("train-"))
    scratch = tmp_path / "scratch"

    train_id = _stage_id(tiny_repo, train)
    metrics_rel, env_rel = f"metrics/{train_id}.json", f"metrics/{train_id}.env.json"
    saved = {rel: (tiny_repo / rel).read_text() for rel in (metrics_rel, env_rel)}

    def tamper(offset: float) -> None:
        metrics = json.loads(saved[metrics_rel])
        metrics["final_loss"] += offset * max(1.0, abs(metrics["final_loss"]))
        (tiny_repo / metrics_rel).write_text(json.dumps(metrics))
        env = json.loads(saved[env_rel])
        env["numerics"]["torch"]["cpu_capability"] = "AVX512"
        (tiny_repo / env_rel).write_text(json.dumps(env))
        for out in lock["stages"][train]["outs"]:
            if out["path"] == metrics_rel:
                out["md5"] = hashlib.md5((tiny_repo / metrics_rel).read_bytes()).hexdigest()
        lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))

    try:
        tamper(1e-7)
        proc = _repro_cli(["verify", train, "--out", str(tmp_path), "--scratch", str(scratch),
                           "--keep"], tiny_repo)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        [verdict] = json.loads((tmp_path / "certificate.json").read_text())["stages"]
        assert verdict["verdict"] == "within tolerance", verdict
        assert verdict["environment_changes"]["torch.cpu_capability"] == ["AVX512", "AVX2"]
        assert [f["path"] for f in verdict["files"]] == [metrics_rel]

        tamper(1e-2)
        rebuilt = parse_lock((scratch / "dvc.lock").read_text())[train]
        judged = verify_stage(train, parse_lock(lock_path.read_text())[train], rebuilt,
                              tiny_repo, scratch, Tolerance())
        assert judged.verdict == FAIL, judged
        assert judged.environment_changes["torch.cpu_capability"] == ["AVX512", "AVX2"]
        assert [f.path for f in judged.files] == [metrics_rel]
    finally:
        lock_path.write_text(original_lock)
        for rel, text in saved.items():
            (tiny_repo / rel).write_text(text)


def test_explain_names_old_and_new_values(tiny_repo: Path):
    """A changed learning rate and an edited training module: `repro explain` gives the old
    and new value, the file, and the evaluations that follow only because training reruns."""
    params_path, code_path = tiny_repo / "params.yaml", tiny_repo / "repro/train/loop.py"
    params_text, code_text = params_path.read_text(), code_path.read_text()
    params = yaml.safe_load(params_text)
    train = next(k for k in params if k.startswith("train-") and "seed1" not in k
                 and params[k]["step_start"] == 0)
    old_lr = params[train]["optimizer"]["lr"]
    try:
        params[train]["optimizer"]["lr"] = old_lr * 2
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        code_path.write_text(code_text + "\n# an edit\n")
        proc = _repro_cli(["explain", "--json"], tiny_repo)
        assert proc.returncode == 0, proc.stderr
        runs = {r["stage"]: r for r in json.loads(proc.stdout)}
        # named from the top of the stage's own section (the stage is named above it)
        assert f"setting optimizer.lr: {old_lr} → {old_lr * 2}" in runs[train]["reasons"]
        assert any(r.startswith("code repro/train/loop.py modified") for r in runs[train]["reasons"])
        evaluations = [s for s, r in runs.items() if s.startswith("evaluate-") and train in r["upstream"]]
        assert evaluations and all(not runs[s]["reasons"] for s in evaluations)
        assert not any(s.startswith(("curate-", "tokenize-")) for s in runs)
        text = _repro_cli(["explain"], tiny_repo).stdout
        assert f"{old_lr} → {old_lr * 2}" in text and "only downstream" in text
    finally:
        params_path.write_text(params_text)
        code_path.write_text(code_text)
    assert "would run nothing" in _repro_cli(["explain"], tiny_repo).stdout


def _lr_column(repo: Path, stage: str) -> list[float]:
    rows = (repo / "plots" / _stage_id(repo, stage) / "loss.csv").read_text().splitlines()
    column = rows[0].split(",").index("lr")
    return [float(r.split(",")[column]) for r in rows[1:]]


def test_exp_run_optimizer_lr_changes_the_lr_curve(tiny_repo: Path):
    """The headline use of params.yaml (issue 18): `dvc exp run -S <train>.optimizer.lr=...`
    trains with the new LR. The LR is stored once (the schedule is a shape multiplying it),
    so every logged LR scales by exactly the same factor."""
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    train = next(k for k, v in params.items() if k.startswith("train-") and v["step_start"] == 0)
    before = _lr_column(tiny_repo, train)
    lr = params[train]["optimizer"]["lr"]
    try:
        out = _run(["dvc", "exp", "run", "-S", f"{train}.optimizer.lr={lr * 2}", train], tiny_repo)
        assert train in _ran_stages(out.stdout), out.stdout
        after = _lr_column(tiny_repo, train)
        assert len(after) == len(before) and any(b > 0 for b in before)
        assert after == pytest.approx([2 * b for b in before], rel=1e-5)  # 6 digits, (before, after)
    finally:  # leave the committed run in the workspace for any later test
        _run(["git", "checkout", "--", "."], tiny_repo)
        _run(["dvc", "checkout", "--force"], tiny_repo)
