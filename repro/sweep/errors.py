"""Errors of `repro sweep`, split by what the user must do about them."""

from __future__ import annotations

from repro.errors import ReproError
from repro.spec.load import SpecError


class SweepInputError(SpecError):
    """Bad input (spec, keys, values, stale workspace): nothing was queued. Its `issues` are
    located ReproErrors (file, line, field, fix), rendered like the spec loader's; exit 2."""

    outcome = "nothing was queued"


class SweepRunError(ReproError):
    """DVC refused or failed a command the sweep needs (not a failed trial: those are
    recorded as results). The message names the command and DVC's own words; the CLI exits
    1 (the input was fine, running it failed)."""

    exit_status = 1
