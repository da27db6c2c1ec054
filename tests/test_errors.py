"""One error type (issue 18 item 5): every user-facing exception defined under repro/ is a
ReproError carrying message, field, fix (and file, line) as data; the CLI renders that data
in one place; nothing under repro/ parses a fix or a field back out of a message."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import repro
from repro.cli import render_error
from repro.errors import ReproError, ReproErrors

REPO = Path(__file__).resolve().parents[1]

# Exceptions that are not errors a user acts on, each with the reason. A new exception
# class under repro/ must derive from ReproError or be added here after review.
NOT_USER_FACING = {
    "repro.spec.load._LimitCrossed": "control flow of the YAML composer; load.py raises a "
                                     "located SpecError at the event it carries",
    "repro.spec.load._TooDeep": "a _LimitCrossed (nesting)",
    "repro.spec.load._TooMany": "a _LimitCrossed (value count)",
    "repro.data.pdf.EncryptedPdf": "a per-document skip signal inside PDF extraction, "
                                   "counted in the step's stats, never raised to the user",
    "repro.verify.tolerance._Mismatch": "control flow of the tolerance comparison; verify "
                                        "reports the mismatch in its certificate",
    "repro.sweep.strategies.SearchChanged": "raised by the optuna journal check; the sweep "
                                            "driver turns it into a SweepInputError with the fix",
    "repro.stages.UnknownStageKind": "a usage error: `repro stage` turns it into "
                                     "click.BadParameter (click prints the usage)",
    "repro.train.checkpoint.ExportParityError": "a bug in the export (its logits differ from "
                                                "the trained model's), not the user's input: "
                                                "it keeps its traceback",
    "repro.relaunch.RelaunchError": "a relaunched process failed: each rank renders its own "
                                    "error; this reports the launcher's exit status",
}


def _exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for info in pkgutil.walk_packages(repro.__path__, "repro."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_user_facing_exception_is_a_repro_error():
    classes = _exception_classes()
    assert "repro.compile.errors.GraphError" in classes and len(classes) > 20  # the walk works
    stray = sorted(name for name, cls in classes.items()
                   if not issubclass(cls, ReproError) and name not in NOT_USER_FACING)
    assert not stray, f"derive these from repro.errors.ReproError or list them (with why): {stray}"
    stale = sorted(set(NOT_USER_FACING) - set(classes))
    assert not stale, f"allowlisted classes that no longer exist: {stale}"
    wrongly = sorted(n for n in NOT_USER_FACING if n in classes and issubclass(classes[n], ReproError))
    assert not wrongly, f"now ReproErrors, drop them from NOT_USER_FACING: {wrongly}"


_SEPARATORS = ("split", "rsplit", "partition", "rpartition", "index", "find", "removeprefix",
               "removesuffix")


def _parsing_sites(tree: ast.AST) -> list[int]:
    """Lines that take text apart at a fix or a "; " separator, or look for "Fix:" in it."""
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in _SEPARATORS and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            sep = node.args[0].value
            if "fix" in sep.lower() or sep == "; " or sep.startswith(("Value error",
                                                                     "Assertion failed")):
                lines.append(node.lineno)
            # an exception's text taken apart (`str(e).split(": ", 1)`)
            receiver = node.func.value
            if (isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name)
                    and receiver.func.id == "str" and receiver.args
                    and isinstance(receiver.args[0], ast.Name)
                    and receiver.args[0].id in ("e", "err", "exc", "error", "ex")):
                lines.append(node.lineno)
        if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
                and isinstance(node.left.value, str) and "fix" in node.left.value.lower()
                and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)):
            lines.append(node.lineno)
        if isinstance(node, ast.FunctionDef) and node.name in ("_split_fix", "_named_loc"):
            lines.append(node.lineno)
    return lines


def test_nothing_parses_a_message():
    found = {}
    for path in sorted((REPO / "repro").rglob("*.py")):
        sites = _parsing_sites(ast.parse(path.read_text(encoding="utf-8")))
        if sites:
            found[str(path.relative_to(REPO))] = sites
    assert not found, f"carry the fix or field as data (ReproError), do not parse text: {found}"


@pytest.mark.parametrize("code", [
    'message.split("; ", 1)', 'str(e).split(": ", 1)[1]', 'text.partition(". Fix: ")',
    '"Fix:" in str(e)', 'msg.removeprefix("Value error, ")',
])
def test_the_parsing_check_catches_what_it_forbids(code):
    assert _parsing_sites(ast.parse(code))


def test_the_data_travels_and_renders_in_one_place():
    err = ReproError("is 3", field="model.num_kv_heads", fix="use 4", file="s.yaml", line=7)
    assert (err.message, err.field, err.fix, err.file, err.line) == (
        "is 3", "model.num_kv_heads", "use 4", "s.yaml", 7)
    assert str(err) == "is 3 (at s.yaml:7 model.num_kv_heads; fix: use 4)"
    assert render_error(err) == "s.yaml:7: model.num_kv_heads: is 3\n    fix: use 4"
    moved = err.located("t.yaml", 2)
    assert (moved.file, moved.line, moved.fix, type(moved)) == ("t.yaml", 2, "use 4", ReproError)
    assert (err.file, err.line) == ("s.yaml", 7)  # a copy: the original is unchanged
    plain = ReproError("dvc status failed", fix="check dvc")
    assert render_error(plain, context="stage x") == (
        "error: stage x: dvc status failed\n    fix: check dvc")
    several = ReproErrors([err, ReproError("no field", file="s.yaml")])
    assert render_error(several).splitlines()[-2:] == [
        "s.yaml: <spec>: no field", "2 problem(s); nothing was run."]
    assert several.issues[0] is err and str(several) == f"{err}\ns.yaml: no field".replace(
        "s.yaml: no field", "no field (at s.yaml)")


def test_field_errors_carry_the_field_they_concern(tmp_path):
    """A cross-field check points at the field it is about through data (`at`), not by
    a field path at the start of its message."""
    from repro.spec.base import FieldError

    err = FieldError("num_kv_heads 3 does not divide num_heads 4", "use 4",
                     at=("num_kv_heads",))
    assert isinstance(err, ValueError) and isinstance(err, ReproError)  # pydantic needs ValueError
    assert (err.message, err.fix, err.at, err.field) == (
        "num_kv_heads 3 does not divide num_heads 4", "use 4", ("num_kv_heads",), "num_kv_heads")
