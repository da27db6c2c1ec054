"""Spec files -> stage graph: load, resolve what a ladder predicts (other spec files), compile.
The one path from files to a graph, shared by `repro compile` and the tests."""

from __future__ import annotations

import re
from pathlib import Path

from repro.compile.graph import GraphError, StageGraph, compile_graph
from repro.compile.ladder import LadderError, prediction_targets
from repro.spec.load import SpecError, _display, load_raw, load_specs
from repro.spec.safety import workspace


def compile_files(files: list[Path], specs_dir: Path, root: Path = Path(".")) -> StageGraph:
    """Compile the experiment spec files (raises SpecError, or GraphError located in the spec
    file, and line, of the field it concerns: `error.issue(...)`). `root` is the workspace
    their paths are confined to: its stages run there (repro.spec.safety)."""
    with workspace(root):
        specs = load_specs(files)
        file_of = {spec.name: Path(f) for spec, f in zip(specs, files)}
        try:
            predictions = {}
            for spec in (s for s in specs if s.ladder):
                try:
                    predictions[spec.name] = prediction_targets(spec, specs_dir, root)
                except LadderError as e:
                    raise GraphError(str(e), e.field, e.fix, spec.name) from e
            return compile_graph(specs, predictions, root)
        except GraphError as e:
            locate(e, file_of)
            raise


def field_loc(field: str) -> tuple[str | int, ...]:
    """`ladder.sizes[1].name` -> ("ladder", "sizes", 1, "name")."""
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", field))


def locate(error: GraphError, file_of: dict[str, Path]) -> None:
    """Set `error.file` and `error.line` to where its experiment's spec sets its field (a
    base spec's file when the value comes through `extends:`), or to the spec file alone
    when the field is not written (a default); leaves them unset for no known experiment."""
    path = file_of.get(error.experiment)
    if path is None:
        return
    error.file = _display(path)
    try:
        origin = load_raw(path).origin
    except (SpecError, OSError):  # it loaded a moment ago; keep the file alone
        return
    loc = field_loc(error.field)
    for n in range(len(loc), 0, -1):  # the field, else the nearest written parent
        if loc[:n] in origin:
            error.file, error.line = origin[loc[:n]]
            return
