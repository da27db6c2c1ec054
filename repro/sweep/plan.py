"""Spec + compiled workspace -> a SweepPlan, or every problem with the sweep at once.

Everything that can be wrong with a sweep's input is found here, before anything is
queued: no sweep block, a stale workspace, a key pattern that names nothing (with the
closest keys that exist), a value a stage would refuse, an objective task the experiment
does not evaluate. Problems come back as ReproErrors located in the spec file (the line of
the offending entry, through `extends`), like the spec loader's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.compile.specs import field_loc
from repro.spec import safety
from repro.errors import ReproError
from repro.spec.load import Loc, SpecError, load_raw, load_spec
from repro.spec.schema import ExperimentSpec
from repro.spec.search import Scalar, SweepSpec
from repro.sweep.errors import SweepInputError
from repro.sweep.keys import KeyResolutionError, get_path, resolve_pattern
from repro.sweep.objective import Objective, ObjectiveError, find_objective
from repro.sweep.strategies import domain_probes, grid_points, random_points
from repro.sweep.values import ValueProblem, check_passable, overrides, validate_overrides
from repro.sweep.workspace import Workspace, compile_workspace, uncached_outputs, upstream


@dataclass(frozen=True)
class SweepPlan:
    """A checked sweep: what to set, what to read."""

    sweep: SweepSpec
    spec_file: str
    """The spec as the user named it (for messages)."""
    experiment: str
    keys: dict[str, tuple[str, ...]]
    """Parameter name -> the params.yaml keys it sets, in params.yaml order."""
    objective: Objective
    baseline_point: dict[str, Scalar]
    """Each parameter's value in the workspace's params.yaml (the baseline run's)."""
    copy_paths: tuple[str, ...] = ()
    """Uncached outputs of the stages trials do not rerun, copied into every trial
    (repro.sweep.workspace.uncached_outputs), and an example pipeline's dvc.lock."""
    target: str = ""
    """The objective's stage as a `dvc repro` / `dvc exp run` target (an example's stage is
    named with its dvc.yaml: examples/<name>/dvc.yaml:<stage>); empty: the stage name, a
    stage of ./dvc.yaml."""
    params_files: Mapping[str, str] = field(default_factory=dict)
    """Stage name -> its params file, for the stages not in ./params.yaml (the data stages',
    an example's)."""

    def __post_init__(self) -> None:
        if not self.target:
            object.__setattr__(self, "target", self.objective.stage_id)

    def dvc_sets(self, point: Mapping[str, Scalar]) -> dict[str, Scalar]:
        """A trial's `dvc exp run -S` overrides: `<key>` in ./params.yaml, `<file>:<key>` in
        another (params.data.yaml, an example's; DVC 3.67 reads `-S <file>:<key>=<value>` as an override
        of that file: dvc/utils/cli_parse.py, to_path_overrides)."""
        out: dict[str, Scalar] = {}
        for key, value in overrides(point, self.keys).items():
            file = self.params_files.get(key.split(".", 1)[0])
            out[f"{file}:{key}" if file else key] = value
        return out


class _Locator:
    """Spec file and line of a spec field, through the `extends` chain."""

    def __init__(self, path: Path, display: str) -> None:
        self.display = display
        try:
            self.origin: Mapping[Loc, tuple[str, int]] = load_raw(path).origin
        except SpecError:
            self.origin = {}

    def issue(self, loc: Loc, message: str, fix: str) -> ReproError:
        file, line = self.origin.get(loc, (self.display, None))
        return ReproError(message, field=".".join(map(str, loc)), fix=fix, file=file, line=line)


def load_sweep_spec(path: Path) -> ExperimentSpec:
    """The spec, which must have a `sweep` block."""
    try:
        spec = load_spec(path)
    except SpecError as e:
        raise SweepInputError(e.issues) from None
    if spec.sweep is None:
        raise SweepInputError([ReproError("the spec has no `sweep` block", field="sweep",
                                          fix="add one (see specs/examples/lr-sweep/qs-lr.yaml)", file=str(path))])
    return spec


def resolve_keys(sweep: SweepSpec, params: Mapping[str, Any], usable: set[str] | None,
                 where: _Locator) -> dict[str, tuple[str, ...]]:
    """Every parameter's concrete keys; SweepInputError listing every bad pattern."""
    issues, keys, owner = [], {}, {}
    for name, p in sweep.parameters.items():
        found: list[str] = []
        for i, pattern in enumerate(p.keys):
            loc = ("sweep", "parameters", name, "keys", i)
            try:
                matched = resolve_pattern(pattern, params, usable)
            except KeyResolutionError as e:
                issues.append(where.issue(loc, e.message, e.fix))
                continue
            for key in matched:
                if key in owner and owner[key] != name:
                    issues.append(where.issue(loc, f"`{key}` is also set by parameter "
                                              f"{owner[key]!r}", "give each key to one parameter"))
                owner[key] = name
            found += [k for k in matched if k not in found]
        keys[name] = tuple(found)
    if issues:
        raise SweepInputError(issues)
    return keys


def points_to_check(sweep: SweepSpec) -> list[dict[str, Scalar]]:
    """grid/random: every planned point; optuna: points covering each domain's extremes
    (its trials are not known yet)."""
    if sweep.strategy == "grid":
        return grid_points(sweep)
    if sweep.strategy == "random":
        return random_points(sweep)
    return domain_probes(sweep)


def check_values(sweep: SweepSpec, keys: Mapping[str, tuple[str, ...]],
                 params: Mapping[str, Any], root: Path, where: _Locator) -> None:
    """Validate every touched stage section of every point with its config model;
    SweepInputError naming each refused (parameter, value) once."""
    issues: dict[tuple[str, str], ReproError] = {}
    owner = {k: name for name, ks in keys.items() for k in ks}
    for point in points_to_check(sweep):
        for name, value in point.items():
            try:
                check_passable(value)
            except ValueError as e:
                issues.setdefault((name, repr(value)), where.issue(
                    _value_loc(sweep, name), str(e), "write the value without it"))
        try:
            validate_overrides(params, overrides(point, keys), root)
        except ValueProblem as e:
            name = owner[e.key]
            stage = e.key.split(".", 1)[0]
            issues.setdefault((name, repr(e.value)), where.issue(
                _value_loc(sweep, name),
                f"value {e.value!r} for `{e.key}` is refused by stage {stage}: "
                f"{e.message}",
                f"change sweep.parameters.{name} to values the field accepts"))
    if issues:
        raise SweepInputError(list(issues.values()))


def _value_loc(sweep: SweepSpec, name: str) -> Loc:
    return ("sweep", "parameters", name, "values" if sweep.parameters[name].values is not None
            else "low")


def build_plan(spec_path: Path, root: Path, require_current: bool = True
               ) -> tuple[SweepPlan, Workspace]:
    """Load, compile and check; raise SweepInputError with every problem found. The specs
    compiled are the top-level ones of the spec's folder, as `repro compile --specs`; root
    is the workspace their paths are confined to (repro.spec.safety)."""
    with safety.workspace(root):
        return _build_plan(spec_path, root, require_current)


def _build_plan(spec_path: Path, root: Path, require_current: bool) -> tuple[SweepPlan, Workspace]:
    spec = load_sweep_spec(spec_path)
    assert spec.sweep is not None
    workspace = compile_workspace(spec_path, root, require_current)
    try:  # as the report names it: relative to the workspace, the same on every machine
        display = spec_path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        display = str(spec_path)
    where = _Locator(spec_path, display)
    try:
        objective = find_objective(spec, workspace.graph)
    except ObjectiveError as e:
        raise SweepInputError([where.issue(field_loc(e.field), e.message, e.fix)]) from None
    # graph stages are keyed by id; params.yaml sections and dvc.yaml stages by name
    graph = workspace.graph
    id_of = graph.by_name()
    usable = {graph.name(s) for s in upstream(graph, id_of[objective.stage_id])}
    keys = resolve_keys(spec.sweep, workspace.params, usable, where)
    check_values(spec.sweep, keys, workspace.params, root, where)
    baseline = {n: get_path(workspace.params, ks[0]) for n, ks in keys.items()}
    touched = {k.split(".", 1)[0] for ks in keys.values() for k in ks}
    rerun = touched.union(*({graph.name(d) for d in graph.descendants(id_of[s])} for s in touched))
    copy = uncached_outputs(workspace.dvc_yaml, sorted(usable - rerun))
    pipeline = workspace.pipeline
    if pipeline.name is not None:  # its stages' lock entries, as DvcBackend.queue does for ./dvc.lock
        copy = [str(pipeline.dvc_lock), *copy]
    return SweepPlan(spec.sweep, display, spec.name, keys, objective, baseline,
                     tuple(copy), pipeline.target(objective.stage_id),
                     workspace.params_files), workspace
