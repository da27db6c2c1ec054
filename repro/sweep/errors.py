"""Errors of `repro sweep`, split by what the user must do about them."""

from __future__ import annotations

from repro.errors import ReproError
from repro.spec.load import SpecIssue


class SweepInputError(ReproError):
    """Bad input (spec, keys, values, stale workspace): nothing was queued. Carries located
    issues (file, line, field, fix) rendered like the spec loader's; the CLI exits 2."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(i.render() for i in issues))


class SweepRunError(ReproError):
    """DVC refused or failed a command the sweep needs (not a failed trial: those are
    recorded as results). The message names the command and DVC's own words."""
