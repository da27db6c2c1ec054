"""Certificate verdicts from recorded vs rebuilt lock records (no DVC run: the records and
files are made here, as a rebuild on this or another machine would leave them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from repro.verify.certificate import (
    BITWISE_KEY,
    EXACT,
    FAIL,
    REASON_KEY,
    TOLERANCE,
    Certificate,
    render_text,
    verify_stage,
)
from repro.verify.lockfile import LockedFile, LockedStage, parse_lock
from repro.verify.tolerance import Tolerance

TOL = Tolerance()
METRICS, ENV = "metrics/s.json", "metrics/s.env.json"
ENV_A = {"numerics": {"torch": {"cpu_capability": "AVX2", "num_threads": 2}}, "info": {"kernel": "6.1"}}
ENV_B = {"numerics": {"torch": {"cpu_capability": "AVX512", "num_threads": 2}}, "info": {"kernel": "6.9"}}


def _write(root: Path, rel: str, obj) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return hashlib.md5(path.read_bytes()).hexdigest()


def _record(root: Path, loss: float, env: dict, params=None, extra=None) -> LockedStage:
    outs = {METRICS: LockedFile(METRICS, _write(root, METRICS, {"loss": loss, **(extra or {})})),
            ENV: LockedFile(ENV, _write(root, ENV, env))}
    return LockedStage("s", "cmd", {"in": LockedFile("in", "abc")}, outs, params or {"s": {"lr": 1}})


def test_identical_outputs_are_exact(tmp_path):
    old, new = _record(tmp_path / "ws", 2.5, ENV_A), _record(tmp_path / "scratch", 2.5, ENV_B)
    verdict = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    assert verdict.verdict == EXACT and verdict.outputs_checked == 1
    # the fingerprint difference is still reported, though it did not matter here
    assert verdict.environment_changes == {"torch.cpu_capability": ["AVX2", "AVX512"]}


def test_difference_on_an_identical_environment_is_a_failure(tmp_path):
    old, new = _record(tmp_path / "ws", 2.5, ENV_A), _record(tmp_path / "scratch", 2.5000001, ENV_A)
    verdict = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    assert verdict.verdict == FAIL and "not deterministic" in verdict.reason
    assert verdict.files[0].path == METRICS and "bitwise" in verdict.files[0].detail


def test_difference_on_another_cpu_is_judged_within_tolerance(tmp_path):
    old, new = _record(tmp_path / "ws", 2.5, ENV_A), _record(tmp_path / "scratch", 2.5000001, ENV_B)
    verdict = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    assert verdict.verdict == TOLERANCE, verdict
    assert "torch.cpu_capability" in verdict.environment_changes
    text = render_text(Certificate(str(TOL), {"numerics": {}}, [verdict]))
    assert "within tolerance" in text and "AVX2 → AVX512" in text and "max deviation" in text


def test_difference_beyond_tolerance_fails_and_names_the_value(tmp_path):
    old, new = _record(tmp_path / "ws", 2.5, ENV_A), _record(tmp_path / "scratch", 2.6, ENV_B)
    verdict = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    assert verdict.verdict == FAIL and "beyond" in verdict.reason
    assert "loss" in verdict.files[0].detail and "2.6" in verdict.files[0].detail


NOT_BITWISE = {BITWISE_KEY: False, REASON_KEY: "training.deterministic is false: the fastest CUDA kernels ran"}


def test_a_stage_whose_reruns_are_not_bitwise_is_judged_within_tolerance_with_its_reason(tmp_path):
    # a GPU train stage run with training.deterministic: false, rerun on the same machine
    old = _record(tmp_path / "ws", 2.5, ENV_A, extra=NOT_BITWISE)
    new = _record(tmp_path / "scratch", 2.5000001, ENV_A, extra=NOT_BITWISE)
    verdict = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    assert verdict.verdict == TOLERANCE, verdict
    assert verdict.reason.startswith("reruns are not bitwise: training.deterministic is false")
    assert "environment differs" not in verdict.reason and verdict.environment_changes == {}
    assert "max deviation" in verdict.files[0].detail
    text = render_text(Certificate(str(TOL), {"numerics": {}}, [verdict]))
    assert "| s | within tolerance | 1 | reruns are not bitwise: training.deterministic is false" in text


def test_a_not_bitwise_stage_beyond_tolerance_fails_with_the_reason_and_the_fix(tmp_path):
    old = _record(tmp_path / "ws", 2.5, ENV_A, extra=NOT_BITWISE)
    new = _record(tmp_path / "scratch", 2.6, ENV_B, extra=NOT_BITWISE)
    verdict = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    assert verdict.verdict == FAIL
    assert "environment differs in 1 field(s); reruns are not bitwise: training.deterministic" in verdict.reason
    assert "--rtol/--atol" in verdict.reason and "training.deterministic: true" in verdict.reason


def test_reruns_bitwise_true_or_absent_keeps_the_bitwise_verdict(tmp_path):
    for extra in ({BITWISE_KEY: True}, {}):
        old = _record(tmp_path / "ws", 2.5, ENV_A, extra=extra)
        new = _record(tmp_path / "scratch", 2.5000001, ENV_A, extra=extra)
        verdict = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
        assert verdict.verdict == FAIL and "not deterministic" in verdict.reason


def test_the_recorded_metrics_alone_saying_not_bitwise_is_enough(tmp_path):
    # the rebuild's metrics file is the differing output; the lock's own copy carries the key
    old = _record(tmp_path / "ws", 2.5, ENV_A, extra=NOT_BITWISE)
    new = _record(tmp_path / "scratch", 2.5000001, ENV_A, extra={BITWISE_KEY: False})
    verdict = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    assert "training.deterministic is false" in verdict.reason
    # the key differs between the two files (reason missing in one): structure is compared exactly
    assert verdict.verdict == FAIL and "keys differ" in verdict.files[0].detail


def test_changed_settings_inputs_and_missing_rebuilds_fail_with_a_reason(tmp_path):
    old = _record(tmp_path / "ws", 2.5, ENV_A)
    new = _record(tmp_path / "scratch", 2.5, ENV_A, params={"s": {"lr": 2}})
    assert "settings" in verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL).reason
    moved = LockedStage("s", "cmd", {"in": LockedFile("in", "xyz")}, new.outs, old.params)
    assert "inputs differ" in verify_stage("s", old, moved, tmp_path / "ws", tmp_path / "scratch", TOL).reason
    assert verify_stage("s", old, None, tmp_path / "ws", tmp_path / "scratch", TOL).verdict == FAIL
    assert "no record" in verify_stage("s", None, new, tmp_path / "ws", tmp_path / "scratch", TOL).reason


def test_certificate_passes_only_without_failures(tmp_path):
    old, new = _record(tmp_path / "ws", 2.5, ENV_A), _record(tmp_path / "scratch", 2.5, ENV_A)
    ok = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    bad = verify_stage("t", None, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    assert Certificate("", {}, [ok]).passed and not Certificate("", {}, [ok, bad]).passed
    assert Certificate("", {}, [ok, bad]).as_json()["counts"] == {EXACT: 1, TOLERANCE: 0, FAIL: 1}


def test_parse_lock_reads_outs_deps_and_params():
    text = """schema: '2.0'
stages:
  s:
    cmd: repro stage x s
    deps:
    - {path: repro/x.py, hash: md5, md5: aa, size: 3}
    params:
      params.yaml:
        s: {lr: 1}
    outs:
    - {path: data/s, hash: md5, md5: bb.dir, size: 9, nfiles: 2}
"""
    stage = parse_lock(text)["s"]
    assert stage.deps["repro/x.py"].md5 == "aa" and stage.outs["data/s"].nfiles == 2
    assert stage.params == {"s": {"lr": 1}} and parse_lock("") == {}


def test_a_train_stages_live_record_is_not_compared(tmp_path):
    """Issue 22: the DVCLive folder live/<stage>/ holds measured tokens/s, so a rebuild's
    differs; like perf.json it describes the run, and the stage is still exact."""
    live = "live/s/metrics.json"
    old, new = _record(tmp_path / "ws", 2.5, ENV_A), _record(tmp_path / "scratch", 2.5, ENV_A)
    old.outs[live] = LockedFile(live, _write(tmp_path / "ws", live, {"perf": {"tokens_per_s": 100.0}}))
    new.outs[live] = LockedFile(live, _write(tmp_path / "scratch", live, {"perf": {"tokens_per_s": 120.0}}))
    verdict = verify_stage("s", old, new, tmp_path / "ws", tmp_path / "scratch", TOL)
    assert verdict.verdict == EXACT and verdict.outputs_checked == 1
