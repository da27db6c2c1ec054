"""Errors a user can act on. The CLI prints their message (which names the file, field or
source and the fix) and exits with status 2, without a traceback."""

from __future__ import annotations


class ReproError(Exception):
    """Base of errors whose message tells the user what to change.

    Most subclasses write the fix into the message; `field` and `fix` may also be given
    apart (the message then ends with `Fix: <fix>`), so a caller can show or test them
    without parsing the text."""

    def __init__(self, message: str = "", *, field: str = "", fix: str = ""):
        self.problem, self.field, self.fix = message, field, fix
        text = f"{field}: {message}" if field else message
        super().__init__(f"{text.rstrip('.')}. Fix: {fix}" if fix else text)
