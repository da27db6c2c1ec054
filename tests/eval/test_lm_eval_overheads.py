"""lm-eval's environment report and per-write response-cache commits, removed for one call.

That the scores stay the same bytes is tested end to end in tests/stages/test_evaluate.py
(uncached, cold-cache and warm-cache runs write the same outputs; the warm run reads every
response from what the cold run committed)."""

from __future__ import annotations

import sqlite3
import traceback

import lm_eval.api.model
import lm_eval.evaluator
import pytest

from repro.eval import lm_eval_overheads
from repro.eval.lm_eval_overheads import without_lm_eval_overheads


class _FakeLM:
    """What CachingLM needs of a model: somewhere to put the cache hook."""

    def set_cache_hook(self, hook) -> None:
        self.hook = hook


def _rows_seen_by_another_reader(db_path) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute('SELECT COUNT(*) FROM "unnamed"').fetchone()[0]


def test_the_swap_lasts_one_call_even_when_it_raises():
    originals = lm_eval.evaluator.add_env_info, lm_eval.api.model.CachingLM
    with pytest.raises(RuntimeError, match="inside"):
        with without_lm_eval_overheads():
            assert lm_eval.evaluator.add_env_info is not originals[0]
            assert issubclass(lm_eval.api.model.CachingLM, originals[1])
            raise RuntimeError("inside")
    assert (lm_eval.evaluator.add_env_info, lm_eval.api.model.CachingLM) == originals


def test_the_versions_are_added_and_the_environment_report_is_not():
    """What lm-eval's own add_env_info gives for the two versions results.json records, and
    none of its costly report."""
    from lm_eval.loggers.utils import add_env_info

    ours: dict = {}
    with without_lm_eval_overheads():
        lm_eval.evaluator.add_env_info(ours)
    theirs: dict = {}
    add_env_info(theirs)
    assert ours == {k: theirs[k] for k in ("lm_eval_version", "transformers_version")}
    assert "pretty_env_info" in theirs and "pretty_env_info" not in ours


def test_responses_are_committed_on_the_timer_and_at_the_end(tmp_path, monkeypatch):
    db_path = tmp_path / "cache" / "responses_rank0.db"
    monkeypatch.setattr(lm_eval_overheads, "COMMIT_EVERY_S", 3600.0)
    with without_lm_eval_overheads():
        lm = _FakeLM()
        cached = lm_eval.api.model.CachingLM(lm, str(db_path))
        for i in range(50):
            lm.hook.add_partial("loglikelihood", (f"context {i}", " x"), (-1.0 * i, True))
        assert _rows_seen_by_another_reader(db_path) == 0  # pending, in one transaction
        assert len(cached.dbdict) == 50  # the writer reads its own writes
    assert _rows_seen_by_another_reader(db_path) == 50  # committed when the call ended

    # a short timer commits as it goes: a killed evaluation keeps what it computed
    monkeypatch.setattr(lm_eval_overheads, "COMMIT_EVERY_S", 0.0)
    with without_lm_eval_overheads():
        lm = _FakeLM()
        lm_eval.api.model.CachingLM(lm, str(db_path))
        lm.hook.add_partial("loglikelihood", ("another", " y"), (-0.5, False))
        assert _rows_seen_by_another_reader(db_path) == 51


def test_cache_writes_capture_no_stack(tmp_path, monkeypatch):
    """sqlitedict's default captures the caller's stack on every statement (3.7 s of a
    quickstart evaluate stage); the cache lm-eval gets here captures none."""
    captured = []
    real = traceback.extract_stack
    monkeypatch.setattr(traceback, "extract_stack", lambda *a, **k: captured.append(1) or real(*a, **k))
    with without_lm_eval_overheads():
        lm = _FakeLM()
        cached = lm_eval.api.model.CachingLM(lm, str(tmp_path / "r.db"))
        for i in range(20):
            lm.hook.add_partial("loglikelihood_rolling", (f"doc {i}",), -2.0)
        assert sum(1 for _ in cached.dbdict.keys()) == 20
    assert captured == []
