"""The one error type of repro: a problem a user can act on, as data.

Every user-facing error (a spec issue, a compiler or ladder problem, a bad sweep, a stage
that cannot run) is a ReproError carrying `message` (what is wrong), `field` (the spec or
params field it concerns), `fix` (what to change) and, where known, `file` and `line`. The
CLI renders them in one place (repro.cli.render_error: `file:line: field: message` and a
`fix:` line, exit 2); nothing parses the text back apart. A problem that is found together
with others (the spec loader lists every issue of a spec) is a ReproErrors: one error whose
`issues` are ReproErrors.
"""

from __future__ import annotations

import copy


class ReproError(Exception):
    """A problem the user can fix: `message`, and where known `field`, `fix`, `file`, `line`.

    `experiment` names the experiment whose spec holds `field` when the error is raised
    before its file is known (the compiler works on validated specs;
    repro.compile.specs.locate turns it into the spec's file and line)."""

    exit_status = 2
    """The CLI's exit status for this error (2: the user's input; see repro.cli)."""

    def __init__(self, message: str = "", *, field: str = "", fix: str = "",
                 file: str | None = None, line: int | None = None, experiment: str = "") -> None:
        super().__init__(message)
        self.message, self.field, self.fix = message, field, fix
        self.file, self.line, self.experiment = file, line, experiment

    @property
    def issues(self) -> list[ReproError]:
        """The problems this error reports: itself (ReproErrors: several)."""
        return [self]

    def located(self, file: str | None, line: int | None = None) -> ReproError:
        """A copy of this error placed at `file` (and `line`), same class and data."""
        out = copy.copy(self)
        out.file, out.line = file, line
        return out

    def __str__(self) -> str:
        """One line for logs and tracebacks, the message first: `message (at file:line
        field; fix: fix)`. The CLI renders the data itself (repro.cli.render_error)."""
        place = f"{self.file}:{self.line}" if self.file and self.line else self.file or ""
        where = " ".join(p for p in (place, self.field) if p)
        notes = [f"at {where}"] * bool(where) + [f"fix: {self.fix}"] * bool(self.fix)
        return f"{self.message} ({'; '.join(notes)})" if notes else self.message

    def __repr__(self) -> str:
        data = {k: v for k, v in (("message", self.message), ("field", self.field),
                                  ("fix", self.fix), ("file", self.file), ("line", self.line),
                                  ("experiment", self.experiment)) if v}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in data.items())})"


class ReproErrors(ReproError):
    """Several problems found together (every issue of a spec, every bad sweep key), so the
    user fixes them in one round. Raised only with at least one issue."""

    outcome = "nothing was run"
    """What the CLI says after listing the problems."""

    def __init__(self, issues: list[ReproError]) -> None:
        first = issues[0] if issues else ReproError("no problem given")
        super().__init__(first.message, field=first.field, fix=first.fix, file=first.file,
                         line=first.line, experiment=first.experiment)
        self._issues = list(issues)

    @property
    def issues(self) -> list[ReproError]:
        return self._issues

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self._issues)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._issues!r})"
