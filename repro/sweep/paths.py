"""Where a sweep keeps its state and its report.

These belong with the other pipeline paths in repro.paths; they are built from its roots
here so that moving them there is a two-line change.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from repro import paths

SWEEPS_STATE_DIR = PurePosixPath(".repro/sweeps")
"""Resumable sweep state (not a DVC output, not committed): the optuna journal."""


def state_dir(sweep: str) -> PurePosixPath:
    """Resumable state of one sweep (the optuna study's journal)."""
    return SWEEPS_STATE_DIR / sweep


def report_dir(sweep: str) -> PurePosixPath:
    """The sweep's report: report.md, results.json, one PNG per parameter (committed)."""
    return paths.REPORTS_DIR / "sweeps" / sweep
