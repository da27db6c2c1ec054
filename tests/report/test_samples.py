"""repro.report.samples.read_items: per-item rows as lm-eval's samples files hold them."""

from __future__ import annotations

import json
import math

from repro.report.samples import read_items


def _write(folder, task: str, rows: list[dict], tail: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"samples_{task}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")


def test_rows_become_sorted_items(tmp_path):
    _write(tmp_path, "bpb", [{"doc_id": 1, "loglikelihood": -2.0, "bytes": 4},
                             {"doc_id": 0, "loglikelihood": -1.0, "bytes": 2}])
    _write(tmp_path, "mc", [{"doc_id": 0, "acc": 1, "acc_norm": 0}, {"doc_id": 1, "acc": 0}])
    tasks, problems = read_items(tmp_path)
    bpb = tasks["bpb"]["bits_per_byte"]
    assert bpb.doc_ids.tolist() == [0, 1] and bpb.den.tolist() == [2, 4]
    assert bpb.num.tolist() == [1 / math.log(2), 2 / math.log(2)]
    # a metric missing from a row leaves the metric out: it is not read as a missing score
    assert set(tasks["mc"]) == {"acc"} and problems == []


def test_a_non_finite_score_is_a_problem_not_a_crash(tmp_path):
    _write(tmp_path, "bpb", [{"doc_id": 0, "loglikelihood": float("nan"), "bytes": 2}])
    tasks, problems = read_items(tmp_path)
    assert tasks == {} and problems == [
        "samples_bpb.jsonl: bits_per_byte: 1 item(s) with a missing or non-finite score"]


def test_a_bad_line_names_the_file_and_line_but_no_path(tmp_path):
    _write(tmp_path / "r", "mc", [{"doc_id": 0, "acc": 1}], tail="\n{oops\n")
    _write(tmp_path / "r", "ok", [{"doc_id": 0, "acc": 1}])
    tasks, problems = read_items(tmp_path / "r")
    assert list(tasks) == ["ok"]
    assert problems == ["samples_mc.jsonl: unreadable (line 3: not JSON (Expecting property "
                        "name enclosed in double quotes at column 2))"]
    assert str(tmp_path) not in problems[0]
