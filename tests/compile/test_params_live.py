"""Every params key is live or declared execution-only (issue 18).

For every stage of the quickstart pipeline and its examples (specs/*.yaml and
specs/examples/*/*.yaml, compiled together as `repro compile` does) and the CI pipeline
(specs/ci/tiny.yaml), and every leaf key of its params section, the key's value is changed
to another valid one (validated by the stage's own config model, as `dvc exp run -S` would
be) and then:

- a key of the kind's declared `execution_only` fields must leave the stage id unchanged and
  must not be among the params DVC tracks for the stage;
- any other key must change the stage id, must be read by the stage's code (its name occurs as
  an attribute, keyword or string in the files the stage runs: a setting nobody reads is a
  dead setting), and, where the kind declares `effects` (what it builds from its config), must
  change those too: a setting that is read but cancelled out (the old `schedule.peak_lr`,
  divided back out of `optimizer.lr`) changes nothing there.
"""

from __future__ import annotations

import ast
import copy
import functools
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import BaseModel, ValidationError

from repro.compile import code_deps
from repro.compile.graph import Stage, StageGraph
from repro.compile.render import param_keys
from repro.compile.specs import compile_files
from repro.stages import kind as stage_kind

ROOT = code_deps.ROOT
SPECS = ROOT / "specs"

Path_ = tuple[str | int, ...]


@functools.cache
def _graphs() -> dict[str, StageGraph]:
    return {
        "quickstart": compile_files(sorted(SPECS.glob("*.yaml"))
                                    + sorted(SPECS.glob("examples/*/*.yaml")), SPECS, ROOT),
        "ci": compile_files([SPECS / "ci" / "tiny.yaml"], SPECS / "ci", ROOT),
    }


@functools.cache
def _stages() -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    for graph in _graphs().values():
        found.update(graph.stages)
    return found


def _leaves(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path, value


def _set(section: dict, path: Path_, value: Any) -> dict:
    out = copy.deepcopy(section)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _literal_choices(error: ValidationError) -> list[Any]:
    """The values a Literal field accepts, from pydantic's literal_error (test-only)."""
    choices: list[Any] = []
    for err in error.errors():
        expected = (err.get("ctx") or {}).get("expected", "")
        for part in expected.replace(" or ", ", ").split(", "):
            part = part.strip()
            if len(part) > 1 and part[0] == part[-1] == "'":
                choices.append(part[1:-1])
    return choices


def _candidates(value: Any) -> list[Any]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, value * 2, value // 2, 1, 0]
    if isinstance(value, float):
        return [value * 1.5, value * 0.5, value + 0.1, value - 0.1, 0.5, 0.0]
    if isinstance(value, str):
        return [value + "x", value[:-1]] if value else ["x"]
    if value is None:
        return [{}, 1, 0.5, True, "x"]
    if value == [] or value == {}:
        return [[1], ["x"], {"x": 1.0}]
    return []


CANDIDATES: dict[str, Any] = {
    # a snapshot must lie inside the stage (after its first update, before its last)
    "train:snapshot_steps": lambda cfg: [[cfg["step_start"] + 1]],
    "curate:steps.#.languages.#": ["fr", "de"],
    "curate:steps.#.candidates": [["en", "fr"]],
    "evaluate:evaluation.tasks": [["hellaswag"]],
    "evaluate:evaluation.presets": [["fineweb_early_signal"]],
    "report:aggregate_tasks": [["hellaswag"]],
    "train:launcher.slurm": [{"partition": "gpu"}],
    "train:live_sinks": [["tensorboard"]],
    "evaluate:evaluation.launcher.slurm": [{"partition": "gpu"}],
}
"""Values to try first for keys whose valid values the generic candidates miss (a language
code, a task name, a preset name), or a function of the section giving them."""

COMPANIONS: dict[str, dict[Path_, Any]] = {
    "train:distributed.nproc": {("distributed", "kind"): "ddp"},
    "evaluate:evaluation.num_processes": {("evaluation", "backend"): "accelerate"},
    # a Slurm launcher needs its `slurm:` block (which `local` keeps, unused)
    "train:launcher.kind": {("launcher", "slurm"): {"partition": "gpu"}},
    "evaluate:evaluation.launcher.kind": {("evaluation", "launcher", "slurm"): {"partition": "gpu"}},
    "evaluate:evaluation.tensor_parallel_size": {("evaluation", "backend"): "vllm"},
    "evaluate:evaluation.gpu_memory_utilization": {("evaluation", "backend"): "vllm"},
    # max_bytes is a bpb task's budget: another kind is tried without it
    "evaltasks:task.kind": {("task", "max_bytes"): None},
    # set together or not at all: both set, then each changed alone
    "train:mtp.later_loss_weight": {("mtp", "later_from_tokens"): 1000,
                                    ("mtp", "later_loss_weight"): 0.1},
    "train:mtp.later_from_tokens": {("mtp", "later_loss_weight"): 0.1,
                                    ("mtp", "later_from_tokens"): 1000},
}
"""Keys valid to change only together with another (a vllm-only setting needs the vllm
backend): both the stage's config and its mutation get the companion values, so the
comparison isolates the key."""

UNMUTABLE: dict[str, str] = {
    key: "a union's discriminator: another value is another model, whose own keys are "
         "tested where a shipped spec uses it"
    for key in ("source:source.kind", "curate:source.kind", "curate:steps.#.kind",
                "tokenizer:tokenizer.kind", "train:optimizer.kind", "train:optimizer.adamw.kind")
} | {
    "curate:executor.slurm": "only valid with executor.kind slurm, and the executor is "
                             "execution-only (its siblings are tested)",
    "train:distillation": "a whole sub-model that needs a teacher input; its keys are tested "
                          "on the distillation stages of specs/examples/architectures/qs-distill.yaml",
    "train:reset_optimizer": "false is its only valid value on a run's first stage (no state "
                             "to reset); tested on the later stages",
    "train:schedule.start_step": "where a warmup counts from: 0 without one, and at most the "
                                 "stage's step_start (so 0 on a first stage); other values "
                                 "only on a stage restarting the schedule with a warmup",
    "train:schedule.warmup_steps": "0 is its only valid value on a stage the warmup ends "
                                   "before; tested on the first stages",
} | {
    f"train:schedule.{key}": "a decay is four fields set together, none on a stage that ends "
                             "before it; tested one by one on the stages it reaches"
    for key in ("decay_start_step", "decay_end_step", "decay_shape", "min_lr_ratio")
}
"""Keys (`<kind>:<dotted path>`, `#` for list indices) that have no other valid value on
their own, with why."""


def _shape(kind: str, path: Path_) -> str:
    return f"{kind}:" + ".".join("#" if isinstance(p, int) else str(p) for p in path)


def _mutated(stage: Stage, path: Path_, value: Any) -> tuple[Any, Any] | None:
    """(the stage's config with the key's companions set, the same with the key changed to
    another valid value), or None if no other valid value was found."""
    model = type(stage.config)
    context = {"workspace": ROOT}
    section = stage.config.model_dump(mode="json")
    key = _shape(stage.kind, path)
    for companion, companion_value in COMPANIONS.get(key, {}).items():
        section = _set(section, companion, companion_value)
    base = model.model_validate(section, context=context)
    value = dict(_leaves(section))[path]
    extra = CANDIDATES.get(key, [])
    tried = (extra(section) if callable(extra) else extra) + _candidates(value) + [True, False]
    if isinstance(value, str):
        try:
            model.model_validate(_set(section, path, "\x00not-a-choice"), context=context)
        except ValidationError as e:
            tried = _literal_choices(e) + tried
    for candidate in tried:
        if candidate == value:
            continue
        try:
            cfg = model.model_validate(_set(section, path, candidate), context=context)
        except ValidationError:
            continue
        if cfg.model_dump(mode="json") != base.model_dump(mode="json"):
            return base, cfg
    return None


@functools.cache
def _names_read(kind: str) -> frozenset[str]:
    """Attribute names, keyword names and strings in the code a stage kind runs (its code
    dependencies, plus the spec models' methods, which run inside stages: see
    code_deps.SPEC_RUNTIME_METHODS)."""
    files = [str(p) for p in code_deps.stage_code(kind)] + ["repro/spec/schema.py"]
    names: set[str] = set()
    for file in files:
        for node in ast.walk(ast.parse((ROOT / file).read_text())):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    return frozenset(names)


def _field_name(stage: Stage, path: Path_) -> str:
    """The last component of `path` that names a model field (not a list index or a key of a
    mapping such as a mixture's dataset names)."""
    node: Any = stage.config
    last = str(path[0])
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, (list, tuple)) else None
        elif isinstance(node, BaseModel) and part in type(node).model_fields:
            last, node = part, getattr(node, part)
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            break
    return last


def _structure(stage: Stage) -> tuple:
    """A stage's kind and the shape of its section: every key, with the value where it is a
    switch (a bool or a None) and the type elsewhere. Stages of one structure run the same
    code paths on the same fields (a first training stage and a later one differ: one has no
    optimizer state to reset; a stage inside the decay and one before it differ too)."""
    leaves = _leaves(stage.config.model_dump(mode="json"))
    return (stage.kind, *((_shape(stage.kind, p),
                           v if v is None or isinstance(v, bool) else type(v).__name__)
                          for p, v in leaves))


def _cases() -> list[tuple[str, str, Path_]]:
    """Every key of one stage per structure (see `_structure`)."""
    representatives: dict[tuple, Stage] = {}
    for stage in _stages().values():
        representatives.setdefault(_structure(stage), stage)
    return [(stage.id, stage.kind, path) for stage in representatives.values()
            for path, _ in _leaves(stage.config.model_dump(mode="json"))]


CASES = _cases()

KNOWN_DEAD: dict[str, str] = {
    "curate:source.max_docs": "a builtin corpus is cut to max_docs by the source stage and "
                              "reaches curate as its `raw` input, so curate's copy reruns it "
                              "for nothing. Dropping it renames every data stage of the "
                              "quickstart (its committed metrics and dvc.lock are keyed by "
                              "id): left to issue 22's stable stage names, so they move once",
}
"""Dead settings found by this test and not fixed yet: strict xfails, so fixing one fails
the test until it is removed from here."""


def _marks(kind: str, path: Path_) -> list:
    why = KNOWN_DEAD.get(_shape(kind, path))
    return [pytest.mark.xfail(reason=why, strict=True)] if why else []


def _dotted(path: Path_) -> str:
    return ".".join(map(str, path))


@pytest.mark.parametrize("sid,kind,path", [
    pytest.param(sid, kind, path, id=f"{sid}:{_dotted(path)}", marks=_marks(kind, path))
    for sid, kind, path in CASES])
def test_every_params_key_is_live_or_execution_only(sid: str, kind: str, path: Path_):
    stage = _stages()[sid]
    declared = stage_kind(kind)
    value = dict(_leaves(stage.config.model_dump(mode="json")))[path]
    pair = _mutated(stage, path, value)
    if pair is None:
        assert _shape(kind, path) in UNMUTABLE, (
            f"no other valid value found for {sid}.{_dotted(path)} = {value!r}: extend "
            f"_candidates, or list the key in UNMUTABLE with why")
        return
    base, cfg = pair
    stage = Stage(stage.kind, stage.label, base, stage.inputs)
    changed = Stage(stage.kind, stage.label, cfg, stage.inputs)
    sid = stage.id  # any section name: the tracked keys are checked under it
    tracked = param_keys(stage, sid)
    dotted = _dotted(path)
    if any(dotted == e or dotted.startswith(e + ".") for e in declared.execution_only):
        assert changed.id == stage.id, f"{dotted} is execution-only but changes the id"
        assert not any(f"{sid}.{dotted}".startswith(t + ".") or t.startswith(f"{sid}.{dotted}")
                       or t == f"{sid}.{dotted}" for t in tracked), tracked
        return
    assert changed.id != stage.id
    assert any(f"{sid}.{dotted}" == t or f"{sid}.{dotted}".startswith(t + ".")
               for t in tracked), (dotted, tracked)
    name = _field_name(stage, path)
    assert name in _names_read(kind), (
        f"{sid}.{_dotted(path)}: nothing in the code of the {kind} stage reads `{name}`: a dead "
        f"setting. Use it, remove it from the config, or declare it execution-only")
    if declared.effects is not None:
        assert declared.effects(cfg) != declared.effects(stage.config), (
            f"{sid}.{_dotted(path)}: changing it ({value!r} -> {_dotted_value(cfg, path)!r}) "
            f"changes nothing the {kind} stage builds: a setting that does nothing")


def _dotted_value(cfg: Any, path: Path_) -> Any:
    node: Any = cfg.model_dump(mode="json")
    for part in path:
        node = node[part]
    return node


def test_the_cases_cover_both_pipelines_and_every_kind_they_use():
    kinds = {k for _, k, _ in CASES}
    assert {"train", "curate", "evaluate", "report", "tokenize"} <= kinds
    assert len(CASES) > 100
