"""Reading the YAML files repro and DVC generate (params files, dvc.yaml, dvc.lock).

They are plain data written by `repro compile` or DVC, but a pipeline's params.yaml runs to
megabytes, and every `repro stage` reads it before doing anything: PyYAML's pure-Python
parser reads ~0.1 MB/s, libyaml's (the same safe constructor, in C) about 5x faster. Spec
files go through repro.spec.load instead, which also locates every value and refuses tags.

DVC reads and writes these files with ruamel, YAML 1.2, and params.yaml is written in the
form DVC writes it back (repro.compile.render.render_params_yaml), so they are read here as
YAML 1.2 reads them: PyYAML resolves plain scalars by YAML 1.1, where `1e-08` is a string,
`yes`/`off` are booleans, `0:30` an integer and `010` octal, all of which YAML 1.2 (and so
DVC, and so a value `dvc exp run -S` writes) reads otherwise. The bool, int and float
resolvers are replaced by YAML 1.2's core schema ones (https://yaml.org/spec/1.2.2/ 10.3.2),
with the `_` digit separators ruamel also accepts (ruamel/yaml/resolver.py, its 1.2 rules);
the rest (null, timestamps) read alike.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from repro import paths

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed

_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))


class _Yaml12Loader(_SafeLoader):  # type: ignore[misc,valid-type]
    """The safe loader with YAML 1.2 core-schema booleans and numbers."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    _INT, re.compile(r"^[-+]?(?:[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$"), list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def _int12(loader: Any, node: yaml.ScalarNode) -> int:
    """YAML 1.2's integers: decimal (a leading zero is not octal), `0o` octal, `0x` hex."""
    value = loader.construct_scalar(node).replace("_", "")
    sign, digits = (-1, value[1:]) if value[:1] == "-" else (1, value.lstrip("+"))
    if digits.startswith("0o"):
        return sign * int(digits[2:], 8)
    return sign * (int(digits[2:], 16) if digits.startswith("0x") else int(digits, 10))


def _float12(loader: Any, node: yaml.ScalarNode) -> float:
    value = loader.construct_scalar(node).lower().replace("_", "")
    return float(value.replace(".inf", "inf").replace(".nan", "nan"))


_Yaml12Loader.add_constructor(_INT, _int12)
_Yaml12Loader.add_constructor(_FLOAT, _float12)


def safe_load(text: str) -> Any:
    """`yaml.safe_load(text)` with YAML 1.2's booleans and numbers, as DVC reads the file;
    with libyaml's parser when it is installed."""
    loader = _Yaml12Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_params(folder: Path) -> dict[str, Any]:
    """A pipeline's settings, stage name -> section, from every params file `repro compile`
    writes in `folder` that exists (params.yaml, params.data.yaml: repro.paths.PARAMS_FILES;
    a stage's section lies in one of them). OSError and yaml.YAMLError propagate."""
    merged: dict[str, Any] = {}
    for name in paths.PARAMS_FILES:
        path = folder / str(name)
        if path.is_file():
            merged.update(safe_load(path.read_text(encoding="utf-8")) or {})
    return merged
