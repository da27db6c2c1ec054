"""Two per-checkpoint costs of lm-eval's `simple_evaluate` that change no score, removed.

Profiled on the quickstart's evaluate stage (4 checkpoints x 4 local tasks, 40 s of work on
2 AMD EPYC cores): 5.0 s went to `add_env_info` and ~6 s to the sqlite response cache's
bookkeeping, against 31.7 s inside `simple_evaluate`.

* `add_env_info`: lm-eval appends torch's `collect_env` report to every result dict, which
  runs ~11 subprocesses (pip list, conda, nvidia-smi, lsb_release...): 1.24 s per checkpoint.
  We keep only the lm-eval and transformers versions it adds (repro.eval.results writes
  them; the stage's env.json records the machine once), so `without_lm_eval_overheads`
  adds those two and skips the report.
* The response cache (`use_cache`): lm-eval's CachingLM opens `SqliteDict(autocommit=True)`
  and writes every response twice (once as it is computed, through the cache hook, and
  again when the batch returns), each write its own committed transaction on sqlitedict's
  worker thread, which the writer waits for; and sqlitedict captures the caller's stack
  (`traceback.extract_stack`) on every statement, for its error messages. 3.5k writes and
  5.3k reads per checkpoint set: 3.7 s of stack captures and 2.5 s of commits.
  `BatchedCachingLM` is lm-eval's CachingLM over a dict that captures no stacks and commits
  at most once per COMMIT_EVERY_S seconds, and when the evaluation ends. What a killed
  evaluation keeps is the responses committed before the kill: at most COMMIT_EVERY_S
  seconds of responses are computed again, which is what the cache is for (resuming a long
  evaluation of a large model, where one response takes far longer than a commit).

Both are swapped in for the duration of one `simple_evaluate` call and restored after, so
nothing else that imports lm-eval in the process sees a change.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COMMIT_EVERY_S = 2.0
"""Longest time between two commits of the response cache (see the module docstring)."""


def _open_response_db(path: str) -> Any:
    from sqlitedict import SqliteDict

    class _TimedCommitDict(SqliteDict):
        """SqliteDict committing on a timer: a write lands in the open transaction and is
        committed with those of the next COMMIT_EVERY_S seconds (or at close)."""

        def __init__(self, filename: str) -> None:
            # outer_stack=False: no traceback.extract_stack() per statement
            super().__init__(filename, autocommit=False, outer_stack=False)
            self._last_commit = time.monotonic()

        def __setitem__(self, key: str, value: Any) -> None:
            super().__setitem__(key, value)
            now = time.monotonic()
            if now - self._last_commit >= COMMIT_EVERY_S:
                self.commit()
                self._last_commit = now

    return _TimedCommitDict(path)


def batched_caching_lm_class() -> type:
    """lm-eval's CachingLM with the response database of `_open_response_db` (a class made
    on first use: importing lm-eval takes seconds, and only evaluate stages need it)."""
    from lm_eval.api.model import CachingLM

    class BatchedCachingLM(CachingLM):
        def __init__(self, lm: Any, cache_db: str) -> None:
            # CachingLM.__init__ (lm-eval 0.4.x) but for the dict it opens; not called, as
            # opening and closing its own dict would capture stacks again
            self.lm = lm
            self.cache_db = cache_db
            Path(cache_db).parent.mkdir(parents=True, exist_ok=True)
            self.dbdict = _open_response_db(cache_db)
            lm.set_cache_hook(self.get_cache_hook())
            OPEN_CACHES.append(self)

    return BatchedCachingLM


OPEN_CACHES: list[Any] = []
"""The BatchedCachingLM objects of the running `simple_evaluate` call, committed and closed
when it returns (or raises: what was computed before an error is kept)."""


def _versions_only(storage: dict[str, Any]) -> None:
    """lm-eval's add_env_info without its costly parts: the same `lm_eval_version` and
    `transformers_version` (repro.eval.results writes both into results.json), no
    `pretty_env_info` (torch's collect_env report) and no `upper_git_hash` (a git call on the
    parent folder), which nothing of ours reads."""
    from importlib.metadata import version

    import transformers  # loaded already by the evaluation this runs in

    storage.update({"lm_eval_version": version("lm_eval"),
                    "transformers_version": transformers.__version__})


@contextlib.contextmanager
def without_lm_eval_overheads() -> Iterator[None]:
    """Run one `lm_eval.simple_evaluate` call inside: no environment report (the versions
    only), and the
    response cache (if asked for) committed on a timer. Scores are the same bytes."""
    import lm_eval.api.model
    import lm_eval.evaluator

    saved = lm_eval.evaluator.add_env_info, lm_eval.api.model.CachingLM
    lm_eval.evaluator.add_env_info = _versions_only
    # simple_evaluate reads `lm_eval.api.model.CachingLM` when it wraps the model
    lm_eval.api.model.CachingLM = batched_caching_lm_class()
    try:
        yield
    finally:
        lm_eval.evaluator.add_env_info, lm_eval.api.model.CachingLM = saved
        while OPEN_CACHES:
            db = OPEN_CACHES.pop().dbdict
            db.commit()  # SqliteDict.close() commits only in autocommit mode
            db.close()
