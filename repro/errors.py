"""Errors a user can act on. The CLI prints their message (which names the file, field or
source and the fix) and exits with status 2, without a traceback."""

from __future__ import annotations


class ReproError(Exception):
    """Base of errors whose message tells the user what to change."""
