"""Load spec YAML files: safe parsing with line numbers, `extends:` inheritance, and errors
a user can act on (file, line, field path, the fix).

`extends: <relative path>` deep-merges the current file over the base: mappings merge key
by key, anything else (lists included) is replaced. So an ablation is a three-line file.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from repro.spec.schema import SCHEMA_VERSION, ExperimentSpec

Loc = tuple[Any, ...]


@dataclass(frozen=True)
class SpecIssue:
    """One problem in one spec, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str
    fix: str = ""

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.field or '<spec>'}: {self.message}"
        return f"{text}\n    fix: {self.fix}" if self.fix else text


class SpecError(Exception):
    """Raised for any invalid spec; carries every issue found."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(i.render() for i in issues))


@dataclass
class RawSpec:
    """A parsed YAML mapping plus where each value came from."""

    data: dict[str, Any]
    origin: dict[Loc, tuple[str, int]] = field(default_factory=dict)


# ------------------------------------------------------------------------------ parsing


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader (no tags that build objects) that rejects duplicate keys."""


def _parse(path: Path, display: str) -> RawSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue(display, None, "", "file not found", "check the path")])
    except UnicodeDecodeError as e:
        raise SpecError([SpecIssue(display, None, "", f"not UTF-8 text: {e}", "save as UTF-8")])
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise SpecError(
            [SpecIssue(display, line, "", f"YAML syntax error: {problem}", "fix the YAML syntax")]
        )
    except yaml.YAMLError as e:
        raise SpecError([SpecIssue(display, None, "", f"YAML error: {e}", "fix the YAML")])
    if node is None:
        raise SpecError([SpecIssue(display, 1, "", "the file is empty", "write a spec mapping")])
    origin: dict[Loc, tuple[str, int]] = {}
    data = _construct(node, (), display, origin)
    if not isinstance(data, dict):
        raise SpecError(
            [SpecIssue(display, node.start_mark.line + 1, "", "a spec must be a mapping",
                       "start the file with `schema_version: 1`")]
        )
    return RawSpec(data, origin)


_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in
               ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")}


def _construct(node: yaml.Node, loc: Loc, display: str, origin: dict) -> Any:
    origin[loc] = (display, node.start_mark.line + 1)
    if node.tag not in _PLAIN_TAGS:
        raise SpecError(
            [SpecIssue(display, node.start_mark.line + 1, _dotted(loc),
                       f"YAML tag {node.tag!r} is not allowed",
                       "remove the tag; specs are plain data (no objects, no code)")]
        )
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _UniqueKeyLoader(" ").construct_object(key_node) if not isinstance(
                key_node, yaml.ScalarNode
            ) else _scalar(key_node)
            if key in out:
                raise SpecError(
                    [SpecIssue(display, key_node.start_mark.line + 1, _dotted(loc + (key,)),
                               "duplicate key", "keep one of the two entries")]
                )
            out[key] = _construct(value_node, loc + (key,), display, origin)
            origin[loc + (key,)] = (display, key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, loc + (i,), display, origin) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    return yaml.SafeLoader(" ").construct_object(node)


# ------------------------------------------------------------------------------ extends


def _merge(base: RawSpec, child: RawSpec) -> RawSpec:
    """Deep-merge `child` over `base`; mappings merge, everything else is replaced."""

    def merge(b: Any, c: Any) -> Any:
        if isinstance(b, dict) and isinstance(c, dict):
            out = dict(b)
            for k, v in c.items():
                out[k] = merge(b[k], v) if k in b else v
            return out
        return c

    data = merge(base.data, child.data)
    origin = dict(base.origin)
    # Drop base origins under anything the child replaced wholesale (non-mapping values).
    for loc in child.origin:
        if not isinstance(_get(child.data, loc), dict):
            for other in [o for o in origin if o[: len(loc)] == loc and len(o) > len(loc)]:
                del origin[other]
    origin.update(child.origin)
    return RawSpec(data, origin)


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_raw(path: Path, _stack: tuple[Path, ...] = ()) -> RawSpec:
    """Parse `path` and resolve its `extends:` chain into one merged mapping."""
    path = Path(path)
    resolved = path.resolve()
    display = _display(path)
    if resolved in _stack:
        chain = " -> ".join(_display(p) for p in (*_stack, resolved))
        raise SpecError([SpecIssue(display, None, "extends", f"extends cycle: {chain}",
                                   "remove one `extends:` so the chain ends")])
    raw = _parse(path, display)
    parent = raw.data.pop("extends", None)
    if parent is None:
        return raw
    line = raw.origin.pop(("extends",), (display, None))[1]
    if not isinstance(parent, str):
        raise SpecError([SpecIssue(display, line, "extends", "must be a relative file path",
                                   "write `extends: base.yaml`")])
    base_path = path.parent / parent
    if not base_path.is_file():
        raise SpecError([SpecIssue(display, line, "extends", f"base spec {parent!r} not found",
                                   f"check the path; it is resolved relative to {display}")])
    base = load_raw(base_path, (*_stack, resolved))
    return _merge(base, raw)


# --------------------------------------------------------------------------- validation


def load_spec(path: Path | str) -> ExperimentSpec:
    """Load and validate one experiment spec, raising SpecError with located issues."""
    path = Path(path)
    raw = load_raw(path)
    display = _display(path)
    version = raw.data.get("schema_version")
    if version != SCHEMA_VERSION:
        line = raw.origin.get(("schema_version",), (display, 1))
        found = "missing" if version is None else f"{version!r}"
        raise SpecError([SpecIssue(line[0], line[1], "schema_version",
                                   f"schema_version is {found}; this repro reads version {SCHEMA_VERSION}",
                                   f"add `schema_version: {SCHEMA_VERSION}` at the top")])
    try:
        return ExperimentSpec.model_validate(raw.data)
    except ValidationError as e:
        raise SpecError([_issue(err, raw, display) for err in e.errors()]) from None


def validation_issues(err: ValidationError, data: dict, origin: dict, display: str,
                      model: type[BaseModel] = ExperimentSpec) -> list[SpecIssue]:
    """Turn a pydantic ValidationError on `data` into located issues (also used for
    params.yaml sections, where `origin` may be empty)."""
    raw = RawSpec(data, origin)
    return [_issue(e, raw, display, model) for e in err.errors()]


def _data_loc(data: Any, loc: Loc) -> Loc:
    """Map a pydantic error location onto the data, dropping union/discriminator tags."""
    out: list[Any] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and (cur.get("kind") == part or part in ("function-after",)):
            continue  # discriminator tag inserted by pydantic
        else:
            if isinstance(cur, dict):
                out.append(part)  # e.g. a missing or unknown key: point at its parent line
            break
    return tuple(out)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _issue(err: dict, raw: RawSpec, display: str,
           model: type[BaseModel] = ExperimentSpec) -> SpecIssue:
    loc = _data_loc(raw.data, tuple(err["loc"]))
    file, line = display, None
    for n in range(len(loc), -1, -1):
        if loc[:n] in raw.origin:
            file, line = raw.origin[loc[:n]]
            break
    kind = err["type"]
    message = err["msg"]
    fix = ""
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        allowed = _allowed_keys(model, loc[:-1], raw.data)
        close = difflib.get_close_matches(str(key), allowed, n=1)
        message = f"unknown key {key!r}"
        fix = (f"did you mean {close[0]!r}? " if close else "remove it; ") + (
            f"allowed keys: {', '.join(allowed)}" if allowed else "")
    elif kind == "missing":
        fix = f"add `{loc[-1]}:`" if loc else "add the field"
    elif kind.startswith("value_error") or kind == "assertion_error":
        message = message.removeprefix("Value error, ")
        if "; " in message:
            message, fix = message.split("; ", 1)
    elif kind in ("literal_error", "enum", "union_tag_invalid"):
        fix = "use one of the values listed"
    elif "type" in kind or kind.endswith("_parsing"):
        got = err.get("input")
        fix = f"got {type(got).__name__} {got!r:.60}; change the value's type"
    elif kind.startswith(("greater_than", "less_than", "too_short", "too_long", "string_pattern")):
        fix = "change the value to satisfy the constraint"
    return SpecIssue(file, line, _dotted(loc), message, fix)


def _allowed_keys(model: type[BaseModel], loc: Loc, data: Any) -> list[str]:
    """Field names of the model found at `loc` (walking through containers and unions)."""
    target: Any = model
    cur = data
    for part in loc:
        target = _field_type(target, part, cur)
        cur = cur[part] if isinstance(cur, (dict, list)) else None
        if target is None:
            return []
        target = _resolve(target, cur)
    return sorted(target.model_fields) if isinstance(target, type) and issubclass(
        target, BaseModel) else []


def _field_type(target: Any, part: Any, cur: Any) -> Any:
    if isinstance(target, type) and issubclass(target, BaseModel):
        info = target.model_fields.get(part)
        return info.annotation if info else None
    origin = typing.get_origin(target)
    args = typing.get_args(target)
    if origin in (list, tuple) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _resolve(tp: Any, value: Any) -> Any:
    """Unwrap Annotated/Optional/Union to the member matching `value` (by `kind`)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            kind = value.get("kind") if isinstance(value, dict) else None
            pick = [m for m in models if kind is not None and
                    m.model_fields.get("kind") is not None and m.model_fields["kind"].default == kind]
            tp = (pick or models or members)[0]
            continue
        return tp


def load_specs(paths: list[Path]) -> list[ExperimentSpec]:
    """Load several specs, collecting every issue before raising; names must be unique."""
    specs: list[ExperimentSpec] = []
    issues: list[SpecIssue] = []
    seen: dict[str, str] = {}
    for path in map(Path, paths):
        try:
            spec = load_spec(path)
        except SpecError as e:
            issues.extend(e.issues)
            continue
        if spec.name in seen:
            issues.append(SpecIssue(_display(path), None, "experiment.name",
                                    f"experiment name {spec.name!r} is also used by {seen[spec.name]}",
                                    "give each experiment a unique name"))
            continue
        seen[spec.name] = _display(path)
        specs.append(spec)
    if issues:
        raise SpecError(issues)
    return specs
