"""Each stage kind's code dependencies, read from the import graph.

DVC reruns a stage when one of its `deps` changes, so a stage must depend on every file of
ours whose code runs when it runs, and on no other (a hand-kept list both missed real
imports, e.g. decontaminate -> repro/eval, and reran every source stage on any edit under
repro/data). The graph is read statically (`ast`, nothing imported, so compiling never pays
for torch): from `repro/stages/<kind>.py`, transitively through every `repro.*` module it
imports, at file granularity. An edge is

- an `import` anywhere in the file: at module level or inside a function (both run when the
  stage runs; lazy imports only defer the cost), except under `if TYPE_CHECKING:`;
- `from repro.x import y`: repro/x, and repro/x/y when y is a submodule; relative imports
  resolved against the importing module;
- a string literal that is exactly a module's dotted name (`importlib.import_module(...)`,
  `python -m repro.train.worker` relaunches), as that module runs too;
- every package `__init__.py` on the way, which Python executes on import.

`NOT_CODE` lists what a stage's process imports but whose edits cannot change its outputs;
those files are neither listed nor followed. The test (tests/compile/test_code_deps.py)
imports each stage in a fresh interpreter and checks that every module of ours it loads is
declared here or reached only through `NOT_CODE`.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path, PurePosixPath

PACKAGE = "repro"
ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the `repro` package; paths below are relative to it (the repository
root, where dvc.yaml lives)."""

NOT_CODE: dict[str, str] = {
    "repro/cli.py": "dispatches `repro stage` to the stage's `run`",
    "repro/compile/": "writes dvc.yaml and params.yaml; what it decides reaches a stage "
                      "through them, which DVC tracks",
    "repro/stages/__init__.py": "the kind -> module registry: dispatch only",
    "repro/stages/kind.py": "what a stage kind declares for the compiler (outputs, their "
                            "paths, execution-only keys); it reaches a stage through "
                            "dvc.yaml (`--out`, `params`), which DVC tracks",
    "repro/stages/configs.py": "the stage config models: they validate a params.yaml section, "
                               "and every value (defaults included) is written there",
    "repro/spec/": "the spec models: as for configs.py, params.yaml carries every value, so a "
                   "changed default reruns a stage only once `repro compile` writes it "
                   "(`repro compile --check` fails until then). Known exception, a hidden "
                   "dependency: the methods in SPEC_RUNTIME_METHODS run inside stages",
    "repro/errors.py": "the error base class: an error ends a stage before its atomic "
                       "outputs are written, so its text never reaches an output",
}
"""Files (or folders, ending in /) a stage imports that are not its code dependencies, with
why. Deliberately short: a file belongs here only if no edit to it can change an output."""

SPEC_RUNTIME_METHODS: dict[str, str] = {
    "MTPSpec.weight_at": "the MTP loss weight per step (repro.train.objective)",
    "LocalTaskRef.task_name": "local task names (repro.eval, repro.data.decont)",
    "LocalTaskRef.ref": "called outside stages only (compiler)",
    "EvaluationSettings.standard_tasks": "the lm-eval tasks an evaluation runs (stages/evaluate.py)",
    "EvaluationSettings.task_limits": "per-task example limits (stages/evaluate.py)",
    "TrainingSpec.phase_steps": "called outside stages only (compiler, planner, sweeps)",
    "TrainingSpec.phase_seq_lens": "called outside stages only (compiler, planner, sweeps)",
    "TrainingSpec.phase_rope": "called outside stages only (compiler, planner, sweeps)",
    "TrainingSpec.sequences_per_step": "called outside stages only (compiler, planner, sweeps)",
    "ReplicaSpec.effective_data_seed": "called outside stages only (compiler, planner, sweeps)",
    "ExperimentMeta.runs": "called outside stages only (compiler, planner, sweeps)",
    "ExperimentSpec.snapshots_per_run": "called outside stages only (compiler, planner, sweeps)",
    "ExperimentSpec.name": "called outside stages only (compiler, planner, sweeps)",
}
"""Public methods and properties of repro/spec/schema.py models, which is excluded above. The
first four run inside stages, so editing them does NOT rerun the stages that call them: the
price of not rerunning every stage on every schema edit. Moving them next to their callers
would close the gap. The test fails when a public method is added to the schema, so each new
one is a decision, not an accident."""


def _excluded(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in NOT_CODE)


def module_file(name: str) -> str | None:
    """Repo-relative POSIX path of module `name` (repro.a.b), or None if it is not ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = PurePosixPath(*name.split("."))
    for candidate in (base.with_suffix(".py") if name != PACKAGE else None, base / "__init__.py"):
        if candidate is not None and (ROOT / candidate).is_file():
            return str(candidate)
    return None


def _with_parents(name: str) -> list[str]:
    """`name` and its parent packages, whose __init__.py Python runs first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Every module name a file's code may import when it runs."""

    def __init__(self, module: str, is_package: bool):
        self.package = module if is_package else module.rpartition(".")[0]
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # never runs; the else branch does
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        self.names.add(module)
        # `from pkg import name` imports pkg.name too when it is a submodule.
        self.names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value.startswith(PACKAGE + ".") \
                and node.value.replace(".", "").replace("_", "").isalnum():
            self.names.add(node.value)


@functools.cache
def _file_imports(path: str) -> frozenset[str]:
    """Repo-relative files that running the file at `path` imports directly (ours only)."""
    module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    visitor = _Imports(module, path.endswith("__init__.py"))
    visitor.visit(ast.parse((ROOT / path).read_text(), filename=path))
    found = set()
    for name in visitor.names:
        for part in _with_parents(name):
            file = module_file(part)
            if file is not None:
                found.add(file)
    return frozenset(found)


def file_imports(path: str) -> frozenset[str]:
    """The edges of the import graph out of one file: repo-relative files of ours that
    running `path` (repo-relative, e.g. `repro/train/loop.py`) imports directly, by the
    rules above (tests/test_layering.py checks the layers and cycles with them)."""
    return _file_imports(path)


@functools.cache
def module_closure(module: str) -> tuple[str, ...]:
    """Every file of ours that importing (and running) `module` may execute, sorted; NOT_CODE
    files neither appear nor are followed."""
    start = [f for f in map(module_file, _with_parents(module)) if f is not None]
    seen: set[str] = set()
    todo = [f for f in start if not _excluded(f)]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(f for f in _file_imports(path) if f not in seen and not _excluded(f))
    return tuple(sorted(seen))


def stage_code(kind: str) -> list[PurePosixPath]:
    """Code a stage kind depends on: `repro/stages/<kind>.py` and every file of ours it
    imports, transitively, less NOT_CODE. Changing one reruns the stage."""
    if module_file(f"{PACKAGE}.stages.{kind}") is None:
        raise ValueError(f"no stage module repro/stages/{kind}.py")
    return [PurePosixPath(p) for p in module_closure(f"{PACKAGE}.stages.{kind}")]
