"""Stage code dependencies come from the import graph (repro.compile.code_deps), checked
against what Python really loads: a stage's dvc.yaml `deps` must hold every file of ours its
process runs, or DVC keeps stale outputs "up to date" after an edit."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import PurePosixPath

import pytest

from repro.compile import code_deps
from repro.stages import kinds

KINDS = sorted(kinds())

_PROBE = textwrap.dedent("""
    import importlib, json, sys
    stage, declared = sys.argv[1], json.loads(sys.argv[2])
    importlib.import_module(stage)
    loaded = sorted(m for m in sys.modules if m == "repro" or m.startswith("repro."))
    for module in declared:  # each declared file must import cleanly (lazy ones included)
        importlib.import_module(module)
    print(json.dumps(loaded))
""")


def _module_name(path: PurePosixPath) -> str:
    return ".".join(path.with_suffix("").parts).removesuffix(".__init__")


def _reached_through_not_code(loaded: list[str]) -> set[str]:
    """Files the NOT_CODE modules among `loaded` import, transitively (exclusions ignored):
    a stage process may load them without depending on them."""
    todo = [f for f in map(code_deps.module_file, loaded) if f and code_deps._excluded(f)]
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(code_deps._file_imports(path))
    return seen


@pytest.mark.parametrize("kind", KINDS)
def test_declared_deps_cover_what_the_stage_loads(kind):
    """static >= dynamic: every file of ours that importing the stage runs is declared, NOT_CODE,
    or loaded only by NOT_CODE; and every declared file imports cleanly."""
    declared = [str(p) for p in code_deps.stage_code(kind)]
    assert f"repro/stages/{kind}.py" in declared
    modules = [_module_name(PurePosixPath(p)) for p in declared]
    out = subprocess.run([sys.executable, "-c", _PROBE, f"repro.stages.{kind}", json.dumps(modules)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    files = [code_deps.module_file(m) for m in loaded]
    assert None not in files, dict(zip(loaded, files))
    allowed = set(declared) | _reached_through_not_code(loaded)
    missing = sorted(f for f in files if f not in allowed)
    assert not missing, f"{kind} loads {missing} but does not depend on them"


@pytest.mark.parametrize("kind, needs", [
    ("decontaminate", ["repro/data/decont.py", "repro/eval/local_tasks.py"]),
    ("teacherlogits", ["repro/train/positions.py", "repro/train/determinism.py", "repro/train/distill.py"]),
    ("funnel", ["repro/data/layout.py", "repro/data/token_funnel.py", "repro/jsonl.py"]),
    ("train", ["repro/train/loop.py", "repro/stages/worker.py", "repro/stages/base.py"]),
    ("evaluate", ["repro/stages/worker.py", "repro/eval/launch.py"]),
])
def test_known_edges(kind, needs):
    """Function-local imports, imports of other stages and `python -m` relaunches count."""
    declared = {str(p) for p in code_deps.stage_code(kind)}
    assert set(needs) <= declared


def test_teacher_targets_do_not_depend_on_the_training_loop():
    """teacherlogits shares torch's set-up with training (repro.train.determinism), not the
    train stage: editing the loop or the optimizer does not recompute cached teacher targets."""
    declared = {str(p) for p in code_deps.stage_code("teacherlogits")}
    assert not declared & {"repro/stages/train.py", "repro/train/loop.py", "repro/train/optim.py"}


def test_edits_rerun_only_importers():
    """Editing repro/data/decont.py reruns decontaminate, not source or curate; nothing
    depends on the CLI, the compiler or the spec."""
    importers = {k for k in KINDS if PurePosixPath("repro/data/decont.py") in code_deps.stage_code(k)}
    assert importers == {"decontaminate"}
    for kind in KINDS:
        for p in map(str, code_deps.stage_code(kind)):
            assert not (p == "repro/cli.py" or p.startswith(("repro/compile/", "repro/spec/"))), (kind, p)
            assert p.endswith(".py") and (code_deps.ROOT / p).is_file()
    assert [str(p) for p in code_deps.stage_code("tokenizer")] == [
        "repro/__init__.py", "repro/atomic.py", "repro/jsonio.py", "repro/jsonl.py",
        "repro/stages/base.py", "repro/stages/tokenizer.py"]


def test_scanner_edges(tmp_path, monkeypatch):
    """Relative, submodule, TYPE_CHECKING and string-literal edges, on a package of its own."""
    pkg = tmp_path / "repro"
    (pkg / "a").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/x.py": "from . import y\nfrom .z import f\n",
        "a/y.py": "def g():\n    from repro.a import w\n",
        "a/z.py": "f = 1\n",
        "a/w.py": "import importlib\nimportlib.import_module('repro.a.v')\n",
        "a/v.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import repro.a.t\nelse:\n    import repro.a.u\n",
        "a/t.py": "", "a/u.py": "",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    monkeypatch.setattr(code_deps, "ROOT", tmp_path)
    code_deps._file_imports.cache_clear()
    code_deps.module_closure.cache_clear()
    try:
        got = code_deps.module_closure("repro.a.x")
    finally:
        code_deps._file_imports.cache_clear()
        code_deps.module_closure.cache_clear()
    assert got == tuple(sorted(f"repro/{n}" for n in files if n != "a/t.py"))


def test_spec_runtime_methods_are_listed():
    """repro/spec is not a dependency (NOT_CODE says why); its public methods that stages may
    call are listed in SPEC_RUNTIME_METHODS, so a new one is a decision, not an accident."""
    tree = ast.parse((code_deps.ROOT / "repro/spec/schema.py").read_text())
    public = {f"{cls.name}.{fn.name}" for cls in tree.body if isinstance(cls, ast.ClassDef)
              for fn in cls.body if isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_")}
    assert public == set(code_deps.SPEC_RUNTIME_METHODS)
