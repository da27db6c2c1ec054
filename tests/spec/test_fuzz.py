"""Fuzzing the spec loader: whatever a spec file holds, `load_spec` returns a spec or
raises SpecError (located issues, each with a fix) and `repro validate` exits 0 or 2,
never with a traceback.

Three sources of input: (a) arbitrary bytes and text, (b) a valid spec with keys deleted,
values replaced by other types and unknown keys inserted at random depths, (c) random YAML
documents built from the schema's own key names. Runs are derandomized (the same examples
on every machine, no example database), so CI is deterministic.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from repro.cli import main
from repro.spec.load import SpecError, load_raw, load_spec
from repro.spec.schema import ExperimentSpec

REPO = Path(__file__).resolve().parents[2]
SECTIONS = {*ExperimentSpec.model_fields, "extends"}

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One folder, the current directory, for every example (a function-scoped tmp_path
    would be shared across examples anyway); it is the workspace local paths are confined
    to, and the examples' spec file is written there."""
    folder = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        yield folder


def _check(workspace: Path, content: str | bytes) -> Any:
    spec = workspace / "spec.yaml"
    if isinstance(content, bytes):
        spec.write_bytes(content)
    else:
        spec.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        loaded = load_spec(spec)
    except SpecError as e:
        section = e.issues[0].field.split(".")[0].split("[")[0]
        event("refused at " + (section if section in SECTIONS else "<file or unknown key>"))
        assert e.issues
        for issue in e.issues:
            assert issue.message and issue.fix, issue
            assert issue.line is None or issue.line >= 1, issue
        str(e)  # every issue renders
    else:
        event("valid")
        assert isinstance(loaded, ExperimentSpec)
    result = CliRunner().invoke(main, ["validate", "spec.yaml"])
    assert result.exit_code in (0, 2), (result.exit_code, repr(result.exception))
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result


# --------------------------------------------------------------- (a) bytes and text

YAMLISH = st.text(alphabet=st.sampled_from(list("ab1-_.:#&*!|>'\"%@`,?[]{}<= \t\n\r\\~") +
                                              ["\x00", "\x85", "\ufeff", "é", "\u2028"]),
                  max_size=200)


YAML_TOKENS = [
    "\n", "\n  ", "\n    ", "- ", "a: ", "b: ", "<<: ", "? ", ": ", "&x ", "*x", "&y ", "*y",
    "{", "}", "[", "]", ", ", "'", '"', "|\n", ">\n", "# c", "---\n", "...\n", "%YAML 1.1\n",
    "!!python/object:os.system ", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!map ",
    "!!seq ", "!!str ", "!!binary ", "!!set ", "!custom ", "!function ", "!<tag:x> ", "=",
    "2024-13-45", "2024-01-01", "1e999", ".nan", "-.inf", "0x1F", "0o17", "1_000", "yes", "no",
    "~", "null", '"\\ud800"', '"\\x00"', "\t", "schema_version: 1\n", "extends: ",
    "spec.yaml", "model: ", "training: ", "stages: ", "mixture: ",
]
yaml_snippets = st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join)


@FUZZ
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300), YAMLISH,
                         yaml_snippets))
def test_any_bytes_or_text(workspace, content):
    _check(workspace, content)


# ----------------------------------------------------- (b) mutations of a valid spec

VALID = load_raw(REPO / "specs/ci/tiny.yaml").data  # tiny's extends chain, merged

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "web", "..", "/etc", "s3://u:p@b/x", "experiment:qs-nope", "auto",
                     "builtin", "jsonl", "adamw", "muon", "2024-13-45", "1e999", "~"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in nested dicts and lists (the root included)."""
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


def _container(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def mutated_specs(draw) -> Any:
    import copy

    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "replace", "insert", "typo"]))
        if not path:  # the root: replace it wholesale now and then
            if op == "replace":
                data = draw(values)
            continue
        parent, last = _container(data, path[:-1]), path[-1]
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(values)
        elif op == "insert" and isinstance(parent[last], dict):
            parent[last][draw(st.text(min_size=1, max_size=12))] = draw(values)
        elif op == "insert" and isinstance(parent[last], list):
            parent[last].insert(draw(st.integers(0, len(parent[last]))), draw(values))
        elif op == "typo" and isinstance(last, str) and len(last) > 1:
            i = draw(st.integers(0, len(last) - 1))
            parent[last[:i] + last[i + 1:]] = parent.pop(last)
    return data


@FUZZ
@given(data=mutated_specs())
def test_mutated_valid_spec(workspace, data):
    _check(workspace, yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def test_mutation_base_is_valid(workspace):
    """The mutations start from a valid spec (else (b) would only test one error)."""
    spec = workspace / "valid.yaml"
    spec.write_text(yaml.safe_dump(VALID, sort_keys=False))
    assert load_spec(spec).name == "ci-tiny"


# ------------------------------------------------- (c) random YAML of schema keys


def _field_names(model: type[BaseModel], seen: set) -> set[str]:
    """Every field name of the schema's models (reached through annotations)."""
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for info in model.model_fields.values():
        stack = [info.annotation]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                names |= _field_names(tp, seen)
            stack += list(typing.get_args(tp))
    return names


KEYS = sorted(_field_names(ExperimentSpec, set()))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers(-3, 3))
documents = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(keys, inner, max_size=6)),
    max_leaves=25)


@FUZZ
@given(body=st.dictionaries(st.sampled_from(sorted(ExperimentSpec.model_fields)), documents,
                            max_size=8),
       version=st.sampled_from([1, 1, 1, 2, "1", None]),
       flow=st.booleans())
def test_random_yaml_of_schema_keys(workspace, body, version, flow):
    body = {"schema_version": version, **{k: v for k, v in body.items() if k != "schema_version"}}
    text = yaml.safe_dump(body, default_flow_style=flow, allow_unicode=True, sort_keys=False)
    _check(workspace, text)


# ------------------------------------- (d) keys YAML reads as other types, extends values

RAW_KEYS = ["on", "off", "yes", "no", "y", "n", "true", "False", "~", "null", "1", "-3",
            "0x1F", "1.5", ".inf", "2024-01-01", "2024-01-01 10:00:00"]
"""Keys YAML 1.1 reads as booleans, null, numbers and dates (y and n stay text)."""


def _dict_paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    return [p for p in _paths(data, prefix) if isinstance(_container(data, p), dict)]


@settings(FUZZ, max_examples=60)
@given(data=st.data(), raw=st.sampled_from(RAW_KEYS), value=scalars)
def test_keys_are_reported_as_written(workspace, data, raw, value):
    """A key YAML reads as a boolean, null, number or date is refused (every key of the
    schema is text) and named as the user wrote it (`on`, never True or [1])."""
    import copy

    spec = copy.deepcopy(VALID)
    where = data.draw(st.sampled_from(_dict_paths(spec)))
    _container(spec, where)["PLACEHOLDER_KEY"] = value
    text = yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)
    result = _check(workspace, text.replace("PLACEHOLDER_KEY", raw, 1))
    if yaml.safe_load(f"{raw}: 1") == {raw: 1}:  # y, n: text after all
        return
    assert result.exit_code == 2, result.output
    assert repr(raw) in result.output or f".{raw}:" in result.output, result.output
    assert "[True]" not in result.output and "[1]:" not in result.output.replace(
        "steps[1]", ""), result.output


extends_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["https://user:s3cr3t@example.com/b.yaml", "s3://AKIA:s3cr3t@bucket/b.yaml",
                     "hf://datasets/x?token=s3cr3t", "file:///etc/passwd",
                     "../" * 12 + "etc/passwd",
                     "/dev/zero", "~/base.yaml", ".", "..", "../", "spec.yaml", "nowhere.yaml",
                     "a" * 300, "base.yaml\x00", "./../../../../../../../../../proc/self/environ"]),
)


@settings(FUZZ, max_examples=60)
@given(parent=extends_values)
def test_any_extends_value(workspace, parent):
    """Whatever `extends:` names, loading refuses it with a located issue or loads it; it
    never reads outside the workspace and never echoes a credential."""
    result = _check(workspace, yaml.safe_dump({"extends": parent, "schema_version": 1}))
    assert result.exit_code == 2, result.output
    assert "s3cr3t" not in result.output


# ------------------------------------------- (e) libyaml's parser and PyYAML's agree


def _tree(node: Any) -> Any:
    """A composed node as comparable data: tag, line and value (children recursively)."""
    if isinstance(node.value, list):
        value = [tuple(map(_tree, v)) if isinstance(v, tuple) else _tree(v) for v in node.value]
    else:
        value = node.value
    # an empty implicit value (`?` alone) has no text to point at: the two parsers place it
    # on the line of its key or the next one, and an error there names the key's line anyway
    empty = isinstance(node, yaml.ScalarNode) and node.value == "" and not node.style
    return (type(node).__name__, node.tag, None if empty else node.start_mark.line, value)


def _compose_with(loader: Any, text: str) -> Any:
    from repro.spec.load import _LimitCrossed

    try:
        node = loader(text).get_single_node()
    except _LimitCrossed as e:
        return type(e).__name__
    except yaml.YAMLError:
        return "error"
    return None if node is None else _tree(node)


@FUZZ
@given(text=st.one_of(st.text(max_size=300), YAMLISH, yaml_snippets))
def test_fast_parser_composes_what_pyyaml_composes(text):
    """Spec files are parsed by libyaml (fast) and composed by PyYAML; PyYAML's own parser
    is used only where libyaml refuses a text (to word the error, or to accept what only
    PyYAML reads, such as a lone surrogate escape). Where both accept a text they compose
    the same nodes (tags, values, lines). Where only libyaml accepts it (PyYAML refuses a
    few tabs YAML allows, as in `0\\t`), libyaml's reading stands."""
    from repro.spec import load

    if load._FastDepthLimitedLoader is None:
        pytest.skip("PyYAML without libyaml")
    fast = _compose_with(load._FastDepthLimitedLoader, text)
    slow = _compose_with(load._DepthLimitedLoader, text)
    if "error" in (fast, slow):
        event(f"libyaml: {'error' if fast == 'error' else 'ok'}, "
              f"PyYAML: {'error' if slow == 'error' else 'ok'}")
    else:
        assert fast == slow
