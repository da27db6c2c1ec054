"""What a stage kind declares: its config model, its outputs, its execution-only settings and
its runner. Each stage module ends with one `KIND = StageKind(...)`; the registry
(repro.stages.kinds) finds them, and the compiler, the renderer and `repro stage` read
nothing else, so adding a stage kind is adding one module.

Outputs are declared by role (what DVC does with them) and by how their path is built (from
the stage's content id, or from a name in the spec for outputs a person looks for by name,
such as reports/<report>).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Mapping

from repro import paths
from repro.spec.schema import LauncherSpec, Model

if TYPE_CHECKING:  # the runner's signature only
    from repro.stages.base import StageIO


class Role(enum.Enum):
    """How dvc.yaml lists an output."""

    DATA = "data"
    """A DVC-cached output (`outs`): data, checkpoints, results; shared through the cache."""
    RECORD = "record"
    """An uncached output committed to git (`outs` with `cache: false`): reports, score
    CSVs, and the machine records (environment, timings, token ledger), which describe how
    a stage ran rather than what it scored and would bury the scores in `dvc metrics show`
    (issue 22: 373 columns)."""
    METRICS = "metrics"
    """A DVC metrics file (`metrics`, uncached): `dvc metrics show/diff` and `dvc exp show`
    list it."""
    PLOT = "plot"
    """A CSV drawn by DVC: an uncached output (`outs`, `cache: false`) drawn by top-level
    `plots:` entries the compiler writes with human titles, one per experiment
    (repro.compile.render), not by its path: a stage-level plot is titled with its hashed
    path, one per stage."""


@dataclass(frozen=True)
class Output:
    """One output of a stage kind."""

    role: Role
    path: Callable[[str, Any], PurePosixPath]
    """(stage id, config) -> path relative to the repository root."""
    named_by: str = ""
    """The spec field whose value names the path (`report.name`), for outputs placed by a
    name rather than by the stage's content id; empty for id-named outputs. Two stages
    naming the same path is then a spec error about that field (repro.compile.graph)."""
    plot_x: str = ""
    plot_y: str = ""
    """The column drawn against `plot_x`; empty for a long-format CSV (`plot_series`)."""
    plot_title: str = ""
    """What the plot shows, for its title (`<experiment>: <plot_title>`)."""
    plot_series: tuple[str, ...] = ()
    """For a long-format CSV (columns `metric`, `layer`, `value`, ...): the values of its
    `metric` column, each drawn as a plot of its own with one line per `layer`
    (the template BY_LAYER_TEMPLATE)."""
    plot_files: tuple[tuple[str, str, str], ...] = ()
    """For a folder of CSV/TSV files (a DVCLive folder): (file inside it, column drawn against
    `plot_x`, what it shows), each a titled plot of its own per experiment; the folder's other
    files stay out of `dvc plots show` (a per-layer curve each would bury the rest)."""
    plot_if: Callable[[Any], bool] | None = None
    """(config) -> whether the stage's file holds data worth a plot (a train stage without
    a monitor writes a header-only monitor.csv); None: always."""

    def dvc_properties(self) -> dict[str, Any]:
        """The output's options in dvc.yaml (beyond its path)."""
        if self.role is Role.DATA:
            return {}
        # a plot's x and y live on the top-level plot that draws it (repro.compile.render)
        return {"cache": False}


def data(root: str) -> Output:
    """The kind's main cached output, a folder `<root>/<stage id>`."""
    return Output(Role.DATA, lambda stage_id, cfg: PurePosixPath(root) / stage_id)


METRICS = Output(Role.METRICS, lambda stage_id, cfg: paths.stage_metrics(stage_id))
"""The stage's metrics file (metrics/<id>.json)."""
PERF = Output(Role.RECORD, lambda stage_id, cfg: paths.stage_perf(stage_id))
"""Timings of the run (metrics/<id>.perf.json): measured, so they differ between runs; a
record of the machine, not a metric of the result (kept out of `dvc metrics show`)."""
ENV = Output(Role.RECORD, lambda stage_id, cfg: paths.stage_env(stage_id))
"""The environment the stage ran in and its wall seconds (metrics/<id>.env.json), written by
`repro stage` after the runner succeeds; every kind declares it."""
DATA_PARAMS = paths.DATA_PARAMS_YAML
"""`params_file` of the data stages, whose sections live apart from the experiments'."""


SNAPSHOT = "snapshot"
"""Prefix of a training stage's output keys `snapshot:<global step>`, one per
`TrainConfig.snapshot_steps` entry (evaluate stages read them by that key)."""


def per_checkpoint(kind: str, label: str) -> str:
    """Output (and input) key `<kind>:<label>` of one checkpoint's part of an evaluate
    stage: `results:<label>`, `metrics:<label>` and the input `checkpoint:<label>`
    (repro.stages.evaluate); consumers (reports, fits, sweeps) read them by this key."""
    return f"{kind}:{label}"


def plot(name: str, x: str, title: str, y: str = "", series: tuple[str, ...] = (),
         when: Callable[[Any], bool] | None = None) -> Output:
    """A CSV of the stage plotted by DVC (plots/<id>/<name>): `y` against `x`, or, for a
    long-format CSV, one plot per `series` value (see Output)."""
    if bool(y) == bool(series):
        raise ValueError(f"plot {name!r}: give either y (a column) or series (metric values)")
    return Output(Role.PLOT, lambda stage_id, cfg: paths.stage_plot(stage_id, name),
                  plot_x=x, plot_y=y, plot_title=title, plot_series=series, plot_if=when)


@dataclass(frozen=True)
class StageKind:
    """Everything the pipeline knows about one kind of stage."""

    config: type[Model]
    """The model validating the stage's section of params.yaml (repro.stages.configs)."""
    outputs: Mapping[str, Output]
    """Output key (`--out KEY=PATH`) -> declaration, in dvc.yaml order."""
    run: Callable[[Any, StageIO], None]
    """`run(cfg, io)`: makes every output but `env`, atomically."""
    execution_only: frozenset[str] = frozenset()
    """Config fields (dotted for a field of a sub-model: `evaluation.cache_requests`) that
    change how the stage runs, not what it makes: left out of its identity and of its
    params.yaml dependencies (so changing them reruns nothing)."""
    params_file: PurePosixPath = paths.PARAMS_YAML
    """The params file of the pipeline's folder that holds the stage's section: params.yaml,
    or params.data.yaml for the data stages (`DATA_PARAMS`; why: repro.paths)."""
    extra_outputs: Callable[[Any], Mapping[str, Output]] | None = None
    """Outputs that depend on the config (a training stage's `snapshot:<step>` folders)."""
    effects: Callable[[Any], Any] | None = None
    """What the stage builds from a config before it touches data (a training stage's model
    config, optimizer groups and LR at every step, ...), as comparable values: the test of
    live settings (tests/compile/test_params_live.py) checks that changing any key outside
    `execution_only` changes them. Built by the same functions `run` uses."""

    def __post_init__(self) -> None:
        # where a stage runs never changes what it makes: a launcher field is execution-only
        # wherever a config has one, without each kind having to say so
        launcher = launcher_field(self.config)
        if launcher is not None:
            object.__setattr__(self, "execution_only", self.execution_only | {launcher})
        for dotted in self.execution_only:  # a typo would silently put it back in the identity
            model: Any = self.config
            for part in dotted.split("."):
                field_info = getattr(model, "model_fields", {}).get(part)
                if field_info is None:
                    raise ValueError(f"execution_only names {dotted!r}, which "
                                     f"{self.config.__name__} does not have")
                model = field_info.annotation

    def identity_exclude(self) -> dict[str, Any]:
        """`execution_only` as pydantic's `model_dump(exclude=...)` takes it."""
        exclude: dict[str, Any] = {}
        for dotted in sorted(self.execution_only):
            node = exclude
            *parents, last = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = True
        return exclude

    def tracked_params(self, section: Mapping[str, Any]) -> list[str] | None:
        """The keys of a params.yaml `section` DVC tracks for a stage of this kind, relative
        to the section (`evaluation.batch_size`), or None for the whole section: every key
        but the execution-only ones, named at the shallowest level that leaves them out."""
        if not self.execution_only:
            return None
        exclude = self.identity_exclude()

        def keys(node: Mapping[str, Any], skip: Mapping[str, Any], prefix: str) -> list[str]:
            out = []
            for name, value in node.items():
                if skip.get(name) is True:
                    continue
                if isinstance(skip.get(name), dict) and isinstance(value, Mapping):
                    out += keys(value, skip[name], f"{prefix}{name}.")
                else:
                    out.append(f"{prefix}{name}")
            return out

        return keys(section, exclude, "")

    def launcher(self, cfg: Any) -> LauncherSpec | None:
        """The stage's launcher setting (repro.launch), or None for a kind without one."""
        dotted = launcher_field(self.config)
        if dotted is None:
            return None
        for part in dotted.split("."):
            cfg = getattr(cfg, part)
        return cfg

    def outputs_for(self, cfg: Any) -> dict[str, Output]:
        """Every output of a stage of this kind with config `cfg`."""
        out = dict(self.outputs)
        if self.extra_outputs is not None:
            out.update(self.extra_outputs(cfg))
        return out


def launcher_field(config: type[Model]) -> str | None:
    """The dotted name of the LauncherSpec field of a stage config (`launcher` of a train
    stage, `evaluation.launcher` of an evaluate stage), looked up one level deep; None if it
    has none."""
    for name, info in config.model_fields.items():
        if info.annotation is LauncherSpec:
            return name
    for name, info in config.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, Model):
            for inner, inner_info in sub.model_fields.items():
                if inner_info.annotation is LauncherSpec:
                    return f"{name}.{inner}"
    return None
