"""The package's import graph: layers import downward only, no cycles, no import after
`if __name__ == "__main__"`, and every function-local import says why it is local.

The graph is the one the compiler reads for each stage's code dependencies
(repro.compile.code_deps.file_imports: static, nothing imported; a string literal naming
one of our modules, as in `python -m repro.stages.worker`, is an edge; importing a
submodule runs its package's `__init__.py`, so that is an edge too, which makes a package
`__init__.py` that imports its own submodules a cycle).

Layers, lowest first (issue 18, item 4): the top-level helpers (repro.atomic, jsonio,
relaunch, errors, numerics...), then spec/, model/, data/, train/, eval/, report/, which
never import stages/ (the DVC stages), compile/ (the spec -> dvc.yaml compiler) or the CLI.

Function-local imports (rule (d)): a function-local import of one of our modules carries a
comment on its statement saying why it is not at module level, e.g.
`from repro.train.flops import param_counts  # imports torch: only ladders need it`. The
legitimate reason is keeping a heavy optional dependency (torch, transformers, lm-eval,
datatrove, matplotlib...) out of a process that does not need it (`repro --help`, `repro
compile`); anything else belongs at the top of the module, where the graph is visible.
Third-party imports are not checked: a local `import torch` names its own reason.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable, Mapping
from functools import cache

from repro.compile.code_deps import ROOT, file_imports

LOWER = ("spec", "model", "data", "train", "eval", "report")
"""Layers that must not import UPPER (with the top-level modules: the lowest layer)."""
UPPER = ("stages", "compile", "cli")


def _files() -> list[str]:
    return sorted(str(p.relative_to(ROOT).as_posix()) for p in (ROOT / "repro").rglob("*.py"))


FOUNDATION = ("atomic", "jsonio", "jsonl", "relaunch", "errors", "numerics", "yamlio")
"""Top-level helper modules: the lowest layer, under LOWER."""


def _layer(path: str) -> str:
    """`train` for repro/train/loop.py, `cli` for repro/cli.py."""
    return path.split("/")[1].removesuffix(".py")


@cache
def _graph() -> dict[str, frozenset[str]]:
    return {f: file_imports(f) - {f} for f in _files()}


def _cycles(graph: Mapping[str, Iterable[str]] | None = None) -> list[frozenset[str]]:
    """Strongly connected components of more than one file (Tarjan, iterative) of `graph`
    (default: the package's)."""
    graph = _graph() if graph is None else graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _tree(path: str) -> ast.Module:
    return ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)


def test_lower_layers_do_not_import_stages_compiler_or_cli():
    upward = [f"{a} -> {b}" for a, targets in _graph().items() for b in sorted(targets)
              if _layer(a) in LOWER + FOUNDATION and _layer(b) in UPPER]
    assert not upward, ("imports from a lower layer into stages/, compile/ or the CLI (move "
                        "the shared piece down):\n  " + "\n  ".join(upward))


def test_no_import_cycles():
    cycles = [sorted(c) for c in _cycles()]
    assert not cycles, ("import cycles (move what both sides need into a module below them; "
                        "a package __init__.py that re-exports its submodules closes one):\n  "
                        + "\n  ".join(" <-> ".join(c) for c in cycles))


def test_no_import_after_main_guard():
    late = []
    for path in _files():
        seen_main = False
        for node in _tree(path).body:
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                seen_main = True
            elif seen_main and isinstance(node, (ast.Import, ast.ImportFrom)):
                late.append(f"{path}:{node.lineno}")
    assert not late, ("imports after `if __name__ == \"__main__\"` (they run only after the "
                      "module's code, and hide an import cycle):\n  " + "\n  ".join(late))


def _comments(source: str) -> dict[int, str]:
    """Line -> comment text, for every comment in `source`."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string
    return out


_DIRECTIVES = re.compile(r"noqa(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?|type:\s*ignore(\[[^\]]*\])?")


def _is_reason(comment: str) -> bool:
    """A comment that says something beyond linter directives (`# noqa: E402`)."""
    return re.search(r"[A-Za-z]{3}", _DIRECTIVES.sub("", comment)) is not None


def _needs_reason(node: ast.Import | ast.ImportFrom) -> bool:
    """Whether a function-local import must say why: those of our own modules."""
    if isinstance(node, ast.ImportFrom):
        names = [("repro." if node.level else "") + (node.module or "")]
    else:
        names = [alias.name for alias in node.names]
    return any(n == "repro" or n.startswith("repro.") for n in names)


def _unexplained_local_imports(path: str) -> list[str]:
    source = (ROOT / path).read_text(encoding="utf-8")
    comments = _comments(source)
    out = []
    for fn in ast.walk(ast.parse(source, filename=path)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or not _needs_reason(node):
                continue
            lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            if not any(_is_reason(comments.get(n, "")) for n in lines):
                out.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return sorted(set(out))


def test_function_local_imports_say_why():
    bad = [line for path in _files() for line in _unexplained_local_imports(path)]
    assert not bad, ("function-local imports of our modules or heavy dependencies without a "
                     "reason comment: move each to the top of its module, or say on its line "
                     "why it must stay local (a heavy dependency a process may not need):\n  "
                     + "\n  ".join(bad))


def test_the_checks_see_what_they_check(tmp_path):
    """The rules catch what they are for, on made-up sources (so a passing test means
    something): a reasonless local import, a noqa-only comment, a reason."""
    source = ("def f():\n"
              "    from . import paths\n"
              "    from repro.spec import schema  # noqa: F401\n"
              "    from repro.train import loop  # imports torch: only training needs it\n"
              "    import torch\n")
    comments = _comments(source)
    tree = ast.parse(source)
    flagged = [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
               and _needs_reason(n) and not _is_reason(comments.get(n.lineno, ""))]
    assert flagged == [2, 3]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert frozenset({"repro/stages/train.py", "repro/train/loop.py"}) not in set(_cycles())
