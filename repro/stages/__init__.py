"""Stage kinds: one module each, `run(cfg, io)`; this registry maps a kind to its module
and config model (imported lazily: a stage process only pays for its own imports)."""

from __future__ import annotations

import importlib
from typing import Callable

from repro.stages import configs

STAGE_CONFIGS: dict[str, type[configs.Model]] = {
    "source": configs.SourceConfig,
    "curate": configs.CurateConfig,
    "split": configs.SplitConfig,
    "decontaminate": configs.DecontaminateConfig,
    "tokenizer": configs.TokenizerConfig,
    "tokenize": configs.TokenizeConfig,
    "funnel": configs.FunnelConfig,
    "ledger": configs.LedgerConfig,
    "train": configs.TrainConfig,
    "teacherlogits": configs.TeacherLogitsConfig,
    "evaltasks": configs.EvalTasksConfig,
    "evaluate": configs.EvaluateConfig,
    "report": configs.ReportConfig,
    "fit": configs.FitConfig,
}


def stage_runner(kind: str) -> Callable:
    """The `run(cfg, io)` function of a stage kind (only the kinds of `STAGE_CONFIGS`)."""
    if kind not in STAGE_CONFIGS:
        raise ValueError(f"unknown stage kind {kind!r}; one of {sorted(STAGE_CONFIGS)}")
    return importlib.import_module(f"repro.stages.{kind}").run
