"""Spec files -> stage graph: load, resolve what a ladder predicts (other spec files), compile.
The one path from files to a graph, shared by `repro compile` and the tests."""

from __future__ import annotations

from pathlib import Path

from repro.compile.graph import GraphError, StageGraph, compile_graph
from repro.compile.ladder import LadderError, prediction_targets
from repro.spec.load import load_specs


def compile_files(files: list[Path], specs_dir: Path, root: Path = Path(".")) -> StageGraph:
    """Compile the experiment spec files (raises SpecError or GraphError)."""
    specs = load_specs(files)
    try:
        predictions = {s.name: prediction_targets(s, specs_dir, root) for s in specs if s.ladder}
    except LadderError as e:
        raise GraphError(str(e), e.field, e.fix) from e
    return compile_graph(specs, predictions, root)
