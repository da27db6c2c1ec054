"""The compiler's error, below every compiler module that raises it.

GraphError is raised by the stage graph (repro.compile.graph), the size limits it checks
first (repro.compile.limits, which graph.py calls) and the renderer; it lives here, not in
graph.py, so that limits.py can raise it without importing graph.py, which imports limits.py
(an import cycle, tests/test_layering.py).
"""

from __future__ import annotations

from repro.errors import ReproError


class GraphError(ReproError, ValueError):
    """A problem that spans specs (e.g. a report naming an unknown experiment), with the
    spec field it concerns, how to fix it, and the experiment whose spec holds that field
    (repro.compile.specs.locate turns it into the spec's file and line)."""

    def __init__(self, message: str, field: str = "", fix: str = "", experiment: str = "") -> None:
        super().__init__(message, field=field, fix=fix, experiment=experiment)
