"""Spec files -> stage graph: load, resolve what a ladder predicts (other spec files),
compile, check the token ledger (rendering: repro.compile.render). The one path from files
to a graph, shared by `repro compile` (through repro.compile.pipelines), `repro fit`,
sweeps and the tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

from repro import paths
from repro.compile.errors import GraphError
from repro.compile.graph import OutputRef, Stage, StageGraph, compile_graph
from repro.compile.ladder import LadderError, prediction_targets
from repro.errors import ReproError
from repro.spec.load import SpecError, _display, load_raw, load_specs
from repro.spec.safety import workspace
from repro.stages.configs import TrainConfig
from repro.train.ledger import LedgerError, Phase, check_known_counts


def compile_files(files: list[Path], specs_dir: Path, root: Path = Path(".")) -> StageGraph:
    """Compile the experiment spec files (raises SpecError, or GraphError located in the spec
    file, and line, of the field it concerns). `root` is the workspace their paths are
    confined to: its stages run there (repro.spec.safety)."""
    with workspace(root):
        specs = load_specs(files)
        file_of = {spec.name: Path(f) for spec, f in zip(specs, files)}
        try:
            predictions = {}
            for spec in (s for s in specs if s.ladder):
                try:
                    predictions[spec.name] = prediction_targets(spec, specs_dir, root)
                except LadderError as e:
                    raise GraphError(e.message, e.field, e.fix, spec.name) from e
            return compile_graph(specs, predictions, root)
        except GraphError as e:
            locate(e, file_of)
            raise


def field_loc(field: str) -> tuple[str | int, ...]:
    """`ladder.sizes[1].name` -> ("ladder", "sizes", 1, "name")."""
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", field))


def spec_names(files: list[Path]) -> dict[str, Path]:
    """Experiment name -> its spec file, without validating again (they validated)."""
    names = {}
    for f in files:
        written = load_raw(f).data.get("experiment")
        if isinstance(written, dict) and isinstance(written.get("name"), str):
            names[written["name"]] = f
    return names


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


def _measured_tokens(ref: object, root: Path) -> int | None:
    """The token count a committed tokenize metrics file holds for the output `ref`, or None
    (no file, or one that does not hold a whole `tokens` count)."""
    if not isinstance(ref, OutputRef):
        return None
    metrics = root / str(paths.stage_metrics(ref.stage_id))
    if not metrics.is_file():
        return None
    try:
        count = json.loads(metrics.read_text(encoding="utf-8"))["tokens"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return count if type(count) is int and count >= 0 else None


def _training_runs(graph: StageGraph) -> dict[str, list[Stage]]:
    """Per experiment, the train stages of one of its runs, in phase order. One run is
    enough: the round robin has no seed, so every replica draws the same window counts."""
    runs: dict[tuple[str, int, int | None], list[Stage]] = {}
    for stage in graph.stages.values():
        if stage.kind == "train":
            cfg: TrainConfig = stage.config  # type: ignore[assignment]
            runs.setdefault((cfg.experiment, cfg.seed, cfg.data_seed), []).append(stage)
    out: dict[str, list[Stage]] = {}
    for (experiment, _, _), stages in sorted(runs.items(), key=lambda kv: str(kv[0])):
        by_step = sorted(stages, key=lambda s: s.config.step_start)  # type: ignore[attr-defined]
        out.setdefault(experiment, by_step)
    return out


def _ledger_gate(graph: StageGraph, files: list[Path], root: Path) -> None:
    """Refuse a mixture the token counts measured so far (committed tokenize metrics) show
    would repeat a dataset more than its max_epochs: the ledger every train stage checks
    before it trains (repro.train.ledger), through the experiment's last phase, with each
    phase's own steps, mixture, seq_len and limits. Unknown counts are left to the train
    stages. Raises SpecError with one issue per refused experiment, located at the spec's
    `training.stages`."""
    issues: list[ReproError] = []
    for experiment, trains in _training_runs(graph).items():
        configs: list[TrainConfig] = [t.config for t in trains]  # type: ignore[misc]
        tokens: dict[str, int] = {}
        for stage in trains:
            for key, ref in stage.inputs:
                count = _measured_tokens(ref, root) if key.startswith("tokens:") else None
                if count is not None:
                    tokens[key.split(":", 1)[1]] = count
        max_epochs = {n: m for c in configs for n, m in c.max_epochs.items()}
        phases = [Phase(c.phase, c.steps, dict(c.mixture), c.seq_len, c.batch_tokens)
                  for c in configs]
        try:
            check_known_counts(experiment, phases, max_epochs, tokens)
        except LedgerError as e:
            err = GraphError(e.message, e.field, e.fix, graph.spec_of.get(experiment, experiment))
            locate(err, spec_names(files))
            issues.append(err if err.file else err.located(str(files[0])))
    if issues:
        raise SpecError(issues)


def compile_checked(files: list[Path], specs_dir: Path, root: Path = Path("."),
                    where: Path | None = None) -> StageGraph:
    """compile_files, then the token-ledger gate; every error a SpecError, located in its
    spec file and line when it concerns one spec, else in `where` (default specs_dir)."""
    try:
        graph = compile_files(files, specs_dir, root)
        _ledger_gate(graph, files, root)
        return graph
    except GraphError as e:
        raise SpecError([e if e.file else e.located(str(where or specs_dir))]) from None
