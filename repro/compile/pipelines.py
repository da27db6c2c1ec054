"""The pipelines of a workspace, compiled together.

The default pipeline is the specs directly under the specs folder (specs/*.yaml), written
to dvc.yaml and params.yaml at the workspace root. Each folder specs/examples/<name>/ is an
example pipeline, written to examples/<name>/dvc.yaml and params.yaml (DVC writes its
dvc.lock there too). An example's specs are compiled TOGETHER with the default ones: the
data, tokenizer and training stages they share get the same content ids (repro.compile.graph),
and a report may compare a default experiment. Its dvc.yaml holds only the stages the
default pipeline lacks, reading the default's outputs by path: DVC builds one graph over
every dvc.yaml in the repository, so `dvc repro examples/<name>/dvc.yaml` first builds the
default stages it needs (once: a stage, and so each output, is declared by one dvc.yaml
only, which DVC requires), and a plain `dvc repro` at the root builds the default alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from repro import paths
from repro.compile.errors import GraphError
from repro.compile.graph import StageGraph, check_outputs, name_stages
from repro.compile.render import GENERATED, Placement, params_sections, render_dvc_yaml, render_params
from repro.compile.specs import compile_checked, locate, spec_names
from repro.errors import ReproError
from repro.spec.load import SpecError, experiment_files

EXAMPLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
"""An example's folder name, which names examples/<name>/ and its `make example-<name>`."""


@dataclass(frozen=True)
class Pipeline:
    """One dvc.yaml and its specs."""

    specs: Path
    """The specs folder (its top-level spec files are the pipeline's experiments)."""
    name: str | None = None
    """The example's name; None for the default pipeline."""

    @property
    def folder(self) -> PurePosixPath:
        """Where its dvc.yaml, params.yaml and dvc.lock lie, relative to the workspace."""
        return PurePosixPath(".") if self.name is None else paths.EXAMPLES_DIR / self.name

    @property
    def dvc_yaml(self) -> PurePosixPath:
        return self.folder / paths.DVC_YAML

    @property
    def params_yaml(self) -> PurePosixPath:
        return self.folder / paths.PARAMS_YAML

    @property
    def dvc_lock(self) -> PurePosixPath:
        return self.folder / paths.DVC_LOCK

    @property
    def label(self) -> str:
        return "the default pipeline" if self.name is None else f"example {self.name!r}"

    def target(self, stage_id: str) -> str:
        """The stage as a `dvc repro` / `dvc exp run` target: a bare name means a stage of
        ./dvc.yaml, so an example's stage is named with its dvc.yaml."""
        return stage_id if self.name is None else f"{self.dvc_yaml}:{stage_id}"

    def files(self) -> list[Path]:
        return experiment_files(self.specs) if self.specs.is_dir() else []


def example_pipelines(specs_dir: Path) -> list[Pipeline]:
    """The example folders of a specs folder that hold specs, by name; a folder whose name
    cannot name examples/<name>/ is refused."""
    folder = specs_dir / str(paths.EXAMPLE_SPECS)
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not experiment_files(sub):
            continue
        if not EXAMPLE_NAME.match(sub.name):
            raise SpecError([ReproError(
                f"example folder name {sub.name!r} cannot name a pipeline",
                fix="rename it to lowercase letters, digits, `-` and `_` (it becomes "
                    "examples/<name>/ and `make example-<name>`)", file=str(sub))])
        found.append(Pipeline(sub, sub.name))
    return found


def pipeline_of(spec: Path) -> Pipeline:
    """The pipeline a spec file is compiled into: an example's when it lies in
    `<specs>/examples/<name>/`, else the default pipeline of its own folder (as
    `repro compile --specs <its folder>`)."""
    folder = spec.parent
    if folder.parent.name == paths.EXAMPLE_SPECS.name and EXAMPLE_NAME.match(folder.name):
        return Pipeline(folder, folder.name)
    return Pipeline(folder)


def specs_root(pipeline: Pipeline) -> Path:
    """The specs folder whose top-level specs are the default pipeline."""
    return pipeline.specs if pipeline.name is None else pipeline.specs.parent.parent


@dataclass(frozen=True)
class Compiled:
    """A pipeline's stages within the graph it was compiled in."""

    pipeline: Pipeline
    graph: StageGraph
    """Every stage it was compiled with: for an example, the default's too."""
    placement: Placement

    @property
    def stage_ids(self) -> list[str]:
        return [s for s in self.graph.stages if self.placement.stages is None
                or s in self.placement.stages]

    @property
    def stage_names(self) -> list[str]:
        """Its stages as its dvc.yaml (and dvc.lock) name them."""
        return [self.graph.name(s) for s in self.stage_ids]

    def texts(self) -> dict[PurePosixPath, str]:
        """Its dvc.yaml and params files, relative to the workspace."""
        return {self.pipeline.dvc_yaml: render_dvc_yaml(self.graph, self.placement),
                **render_params(self.graph, self.placement)}


def compile_default(specs_dir: Path, root: Path = Path(".")) -> Compiled:
    pipeline = Pipeline(specs_dir)
    files = pipeline.files()
    if not files:
        raise SpecError([ReproError("no experiment specs (*.yaml, *.yml) found",
                                    fix="add a spec or pass --specs", file=str(specs_dir))])
    return Compiled(pipeline, compile_checked(files, specs_dir, root), Placement())


def compile_example(example: Pipeline, default: Compiled, root: Path = Path(".")) -> Compiled:
    """The example's specs with the default's; its dvc.yaml gets the stages the default
    lacks. Ladder predictions stay relative to the default's specs folder."""
    assert example.name is not None
    files = default.pipeline.files() + example.files()
    graph = compile_checked(files, default.pipeline.specs, root, where=example.specs)
    own = frozenset(s for s in graph.stages if s not in default.graph.stages)
    # the default's stages keep their names; the example's own take none of them
    graph.names = name_stages(graph, fixed=default.graph.names)
    source = f"{_shown(example.specs, root)}/*.yaml with {_shown(default.pipeline.specs, root)}/*.yaml"
    return Compiled(example, graph, Placement(example.folder, own, source))


def _shown(folder: Path, root: Path) -> str:
    """A specs folder as the header names it: relative to the workspace, as on every machine."""
    try:
        return folder.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return folder.as_posix()


def compile_pipeline(pipeline: Pipeline, root: Path = Path(".")) -> tuple[Compiled, Compiled]:
    """(the default pipeline, `pipeline`) compiled: the same object twice for the default."""
    default = compile_default(specs_root(pipeline), root)
    return default, (default if pipeline.name is None else compile_example(pipeline, default, root))


def compile_all(specs_dir: Path, root: Path = Path(".")) -> list[Compiled]:
    """The default pipeline, then every example; SpecError when any does not compile or two
    examples would declare the same output (DVC allows each output in one dvc.yaml)."""
    default = compile_default(specs_dir, root)
    compiled = [default] + [compile_example(e, default, root) for e in example_pipelines(specs_dir)]
    check_disjoint(compiled)
    return compiled


def check_disjoint(compiled: list[Compiled]) -> None:
    """Refuse a stage compiled into two examples (each would declare its outputs) and
    outputs of different examples that overlap; the default's stages are in no example by
    construction."""
    owner: dict[str, Pipeline] = {}
    merged = StageGraph()
    for c in compiled:
        for sid in c.stage_ids:
            stage = c.graph.stages[sid]
            if sid in owner:
                experiment = str(getattr(stage.config, "experiment", "") or "")
                raise SpecError([ReproError(
                    f"stage {c.graph.name(sid)}{f' (experiment {experiment!r})' if experiment else ''} is "
                    f"compiled into both {owner[sid].label} and {c.pipeline.label}; DVC "
                    "allows an output in one dvc.yaml only",
                    fix="move the experiment both need into specs/ (the default pipeline), "
                        "or keep it in one example", file=str(c.pipeline.specs))])
            owner[sid] = c.pipeline
            merged.stages[sid] = stage
            merged.names[sid] = c.graph.name(sid)
            if sid in c.graph.origin:
                merged.origin[sid] = c.graph.origin[sid]
        merged.spec_of.update(c.graph.spec_of)
    try:
        check_outputs(merged)
    except GraphError as e:
        locate(e, spec_names([f for c in compiled for f in c.pipeline.files()]))
        raise SpecError([e if e.file else e.located(str(compiled[0].pipeline.specs))]) from None


def _generated(path: Path) -> bool:
    """Whether `path` is a file `repro compile` wrote (its header says so)."""
    try:
        return path.is_file() and path.read_text(encoding="utf-8").startswith(GENERATED)
    except (OSError, UnicodeDecodeError):
        return False


def orphans(compiled: list[Compiled], root: Path) -> dict[PurePosixPath, str]:
    """Generated files no pipeline writes any more, with why they must go: an example's
    dvc.yaml and params files once its specs are gone (DVC would still read that dvc.yaml and
    build its stages), and a params file none of a pipeline's stages reads now (DVC would
    not read it, but `dvc exp run -S <file>:...` would edit it to no effect)."""
    found: dict[PurePosixPath, str] = {}
    for c in compiled:
        written = params_sections(c.graph, c.placement)  # the files, without rendering them
        for name in paths.PARAMS_FILES:
            rel = c.pipeline.folder / name
            if rel not in written and _generated(root / str(rel)):
                found[rel] = f"no stage of {c.pipeline.label} reads it any more"
    folder = root / str(paths.EXAMPLES_DIR)
    if not folder.is_dir():
        return found
    wanted = {c.pipeline.name for c in compiled}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in wanted):
        for name in (paths.DVC_YAML, *paths.PARAMS_FILES):
            if _generated(sub / str(name)):
                found[paths.EXAMPLES_DIR / sub.name / name] = \
                    "its example has no specs any more"
    return found
