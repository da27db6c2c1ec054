"""Load spec YAML files: safe parsing with line numbers, `extends:` inheritance, and errors
a user can act on (file, line, field path, the fix).

`extends: <relative path>` deep-merges the current file over the base: mappings merge key
by key, anything else (lists included) is replaced. So an ablation is a three-line file.
A base is a file in the workspace (no URL, nothing outside), in a chain of at most
MAX_EXTENDS files.

A spec is plain data: parsing refuses YAML tags (`!!python/...`, `!function`, custom ones),
merge keys, non-scalar keys, duplicate keys and aliases that recurse or expand without
bound. Loading is bounded whatever the input: only regular files of at most MAX_SPEC_BYTES
are read, at most MAX_DEPTH levels and MAX_VALUES values are composed, at most MAX_ISSUES
problems are listed and each part of a message is cut to MAX_SHOWN_CHARS. Whatever a file
holds, loading it returns a spec or raises SpecError (tests/spec/test_fuzz.py), and every
issue carries a fix (tests/spec/test_bad_specs.py); keys and values YAML reads as other
types than text (`on:`, `no`) are shown as the user wrote them.
"""

from __future__ import annotations

import datetime
import difflib
import os
import re
import stat
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from repro.errors import ReproError, ReproErrors
from repro.spec.base import FieldError
from repro.spec.safety import current_workspace, redact_text, redact_url
from repro.spec.schema import NAME_PATTERN, SCHEMA_VERSION, ExperimentSpec

Loc = tuple[Any, ...]

_NAME_FIX = ("a name uses lowercase letters, digits, `_` and `-`, starts with a letter or "
             "digit and has at most 64 characters")


class SpecError(ReproErrors):
    """Raised for any invalid spec; its `issues` are every problem found, each a ReproError
    with the spec file, line, field path, message and fix."""


@dataclass
class RawSpec:
    """A parsed YAML mapping plus where each value came from, and the source text of keys
    and values that YAML read as something other than text (`on:` is the key True, `1:`
    the key 1, `no` the value False): messages show them as the user wrote them."""

    data: dict[str, Any]
    origin: dict[Loc, tuple[str, int]] = field(default_factory=dict)
    key_text: dict[Loc, str] = field(default_factory=dict)
    value_text: dict[Loc, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------ parsing


MAX_DEPTH = 64
"""Deepest nesting a spec may have (the schema needs about 6 levels). Deeper input is
refused while it is composed, before anything recurses over it."""
MAX_VALUES = 100_000
"""Most values a spec may hold once aliases are expanded: a few aliases of aliases
("billion laughs") would otherwise expand to billions of values."""
MAX_SPEC_BYTES = 10_000_000
"""Largest spec file read (10 MB): a spec holds settings, so even a long description or
many comments stay far below it (a 5 MB one validates in under a second), while
anything bigger is refused before it is read into memory."""

_FILE_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _file_kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def read_spec_bytes(path: Path, display: str) -> bytes:
    """The bytes of a spec file, refusing before reading what is not a regular file (a FIFO
    would block forever, /dev/zero never ends) or is over MAX_SPEC_BYTES; at most
    MAX_SPEC_BYTES + 1 bytes are read, so a file that grows meanwhile is bounded too."""

    def refuse(message: str, fix: str) -> typing.NoReturn:
        raise SpecError([ReproError(message, fix=fix, file=display)])

    def refuse_kind(mode: int) -> typing.NoReturn:
        real = os.path.realpath(path)
        via = f" (the symlink leads to {real!r})" if real != os.path.abspath(path) else ""
        refuse(f"is {_file_kind(mode)}, not a regular file{via}; reading it could block or "
               "never end", "name a spec file (a regular .yaml file)")

    def refuse_size(size: int, grew: bool = False) -> typing.NoReturn:
        refuse(f"{'grew past' if grew else 'is'} {size / 1e6:.1f} MB; a spec file may be at most "
               f"{MAX_SPEC_BYTES / 1e6:g} MB ({MAX_SPEC_BYTES} bytes)",
               "a spec holds settings, not data: keep large text and data in files under "
               "the workspace (e.g. data/external/) and point at them from the spec")

    try:
        st = os.stat(path)  # follows symlinks: a link to /dev/zero is a character device
    except FileNotFoundError:
        broken = os.path.islink(path)
        refuse("is a symlink to a missing file" if broken else "file not found",
               "check the path")
    except OSError as e:  # a symlink loop, a name too long, no permission on a folder
        refuse(f"cannot read the file: {e.strerror or e}", "check the path and its permissions")
    if stat.S_ISDIR(st.st_mode):
        refuse("is a folder, not a spec file",
               "name a .yaml file (`repro validate` also takes folders)")
    if not stat.S_ISREG(st.st_mode):
        refuse_kind(st.st_mode)
    if st.st_size > MAX_SPEC_BYTES:
        refuse_size(st.st_size)
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, opening it does not
        # wait for a writer; fstat below then refuses it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        refuse(f"cannot read the file: {e.strerror or e}", "check the path and its permissions")
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            refuse_kind(mode)
        try:
            data = f.read(MAX_SPEC_BYTES + 1)
        except OSError as e:
            refuse(f"cannot read the file: {e.strerror or e}",
                   "check the path and its permissions")
    if len(data) > MAX_SPEC_BYTES:
        refuse_size(MAX_SPEC_BYTES, grew=True)
    return data


class _LimitCrossed(Exception):
    def __init__(self, mark: yaml.Mark):
        self.mark = mark  # where: the event at which the limit was crossed


class _TooDeep(_LimitCrossed):
    pass


class _TooMany(_LimitCrossed):
    pass


class _DepthLimit:
    """Composes nodes as PyYAML does, but stops at MAX_DEPTH levels or MAX_VALUES nodes
    with the line where the limit is crossed: PyYAML's composer recurses per level (500
    nested `[` would end in a RecursionError without a location), and composing the
    millions of values 10 MB can hold would take a minute and gigabytes."""

    depth = 0
    nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        self.nodes += 1
        try:
            if self.depth > MAX_DEPTH + 1:  # the root node is level 0 of MAX_DEPTH
                raise _TooDeep(self.peek_event().start_mark)
            if self.nodes > MAX_VALUES:
                raise _TooMany(self.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self.depth -= 1


class _DepthLimitedLoader(_DepthLimit, yaml.SafeLoader):
    """SafeLoader's pure-Python reader, scanner and parser: the messages of syntax errors."""


try:  # libyaml's scanner and parser (a loop, no recursion), PyYAML's composer and resolver
    from yaml._yaml import CParser as _CParser

    class _FastDepthLimitedLoader(_DepthLimit, yaml.composer.Composer, _CParser,
                                  yaml.resolver.Resolver):
        """The same nodes as _DepthLimitedLoader about 100 times faster: scanning 5 MB of
        comments in pure Python takes seconds. Its syntax errors are worded differently,
        so on an error _compose parses the input again with _DepthLimitedLoader (up to
        _REPARSE_CHARS) for PyYAML's message."""

        def __init__(self, stream: str):
            _CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.resolver.Resolver.__init__(self)
except ImportError:  # PyYAML built without libyaml
    _FastDepthLimitedLoader = None  # type: ignore[assignment,misc]


_REPARSE_CHARS = 1_000_000
"""Largest text PyYAML's parser reads again after libyaml refused it (under a second)."""


def _compose(text: str) -> yaml.Node | None:
    if _FastDepthLimitedLoader is not None:
        try:
            return _FastDepthLimitedLoader(text).get_single_node()
        except yaml.YAMLError as e:
            # PyYAML parses it again, decides and words the error (it accepts a few inputs
            # libyaml refuses, such as "\ud800", which _Constructor words better); a huge
            # text keeps libyaml's verdict: scanning it in pure Python takes 10 s or more.
            # A ReaderError (a character YAML refuses) is cheap: PyYAML checks them first.
            if len(text) > _REPARSE_CHARS and not isinstance(e, yaml.reader.ReaderError):
                raise
    loader = _DepthLimitedLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _char_at(text: str, mark: yaml.Mark | None) -> str:
    """The character at `mark` (line and column), or "" if there is none."""
    if mark is None:
        return ""
    start = 0
    for _ in range(mark.line):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    return text[start + mark.column: start + mark.column + 1]


def _parse(path: Path, display: str) -> RawSpec:
    data = read_spec_bytes(path, display)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SpecError([ReproError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} cannot be decoded; is it a binary "
            "file or saved in another encoding?)", fix="save the spec as UTF-8 text",
            file=display, line=line)])
    deep = ReproError(f"the spec nests more than {MAX_DEPTH} levels deep",
                      fix="flatten it; the schema needs only a few levels", file=display)
    try:
        node = _compose(text)  # nodes only; _Constructor builds values
    except _TooMany as e:
        raise SpecError([ReproError(
            f"the spec holds more than {MAX_VALUES} values", fix="a spec holds settings, not "
            "data: keep long lists in files under the workspace (e.g. data/external/) and "
            "point at them from the spec", file=display, line=e.mark.line + 1)])
    except _TooDeep as e:
        raise SpecError([deep.located(display, e.mark.line + 1)])
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        tab = "'\\t'" in problem or " tab " in problem or _char_at(text, mark) == "\t"
        fix = ("indent with spaces: YAML does not allow tabs in indentation" if tab
               else "fix the YAML syntax")
        raise SpecError([ReproError(f"YAML syntax error: {problem}", fix=fix, file=display,
                                    line=line)])
    except yaml.reader.ReaderError as e:  # a character YAML refuses (NUL, other controls)
        line = text[: e.position].count("\n") + 1
        raise SpecError([ReproError(f"character U+{e.character:04X} is not allowed in YAML",
                                    fix="remove it; if the file is binary, it is not a spec",
                                    file=display, line=line)])
    except yaml.YAMLError as e:
        raise SpecError([ReproError(f"YAML error: {e}", fix="fix the YAML", file=display)])
    except RecursionError:  # a backstop: the composer stops at MAX_DEPTH first
        raise SpecError([deep])
    if node is None:
        raise SpecError([ReproError("the file is empty", fix="write a spec mapping", file=display,
                                    line=1)])
    origin: dict[Loc, tuple[str, int]] = {}
    constructor = _Constructor(display, origin)
    data = constructor.value(node, ())
    if not isinstance(data, dict):
        raise SpecError(
            [ReproError("a spec must be a mapping", fix="start the file with `schema_version: 1`",
                        file=display, line=node.start_mark.line + 1)]
        )
    return RawSpec(data, origin, constructor.key_text, constructor.value_text)


_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_NODE_TAGS = {yaml.MappingNode: {_YAML + "map"}, yaml.SequenceNode: {_YAML + "seq"},
              yaml.ScalarNode: _SCALAR_TAGS}
_SPECIAL_TAGS = {
    _YAML + "merge": ("YAML merge keys (`<<`) are not supported",
                      "write the keys out, or share settings with `extends: base.yaml`; "
                      "quote it ('<<') if you mean the text"),
    _YAML + "value": ("a bare `=` is a special YAML key", "quote it: '='"),
}


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


class _Constructor:
    """Builds plain data from a composed YAML node, recording each value's line; refuses
    tags that are not plain data, tags that do not fit their node, non-scalar keys,
    duplicate keys, recursive aliases and input that nests or expands too far."""

    def __init__(self, display: str, origin: dict[Loc, tuple[str, int]]):
        self.display = display
        self.origin = origin
        self.count = 0
        self.active: set[int] = set()  # nodes being built: an alias to one is recursive
        self.loader = yaml.SafeLoader("")  # constructs scalars only
        self.key_text: dict[Loc, str] = {}  # keys that are not text, as written
        self.value_text: dict[Loc, str] = {}  # scalar values that are not text, as written

    def fail(self, node: yaml.Node, loc: Loc, message: str, fix: str) -> typing.NoReturn:
        raise SpecError([ReproError(message, field=_dotted(loc, self.key_text), fix=fix,
                                    file=self.display, line=node.start_mark.line + 1)])

    def check_tag(self, node: yaml.Node, loc: Loc) -> None:
        if node.tag in _SPECIAL_TAGS:
            self.fail(node, loc, *_SPECIAL_TAGS[node.tag])
        if node.tag not in _SCALAR_TAGS | {_YAML + "map", _YAML + "seq"}:
            self.fail(node, loc, f"YAML tag {_short_tag(node.tag)!r} is not allowed",
                      "remove the tag; specs are plain data (no objects, no code)")
        if node.tag not in _NODE_TAGS[type(node)]:
            shape = {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}.get(
                type(node), "a single value")
            self.fail(node, loc, f"YAML tag {_short_tag(node.tag)!r} does not fit {shape}",
                      "remove the tag")

    def value(self, node: yaml.Node, loc: Loc) -> Any:
        self.origin[loc] = (self.display, node.start_mark.line + 1)
        self.check_tag(node, loc)
        self.count += 1
        if self.count > MAX_VALUES:
            self.fail(node, loc, f"the spec holds more than {MAX_VALUES} values once its "
                      "aliases are expanded", "write the values out instead of nesting aliases")
        if len(loc) > MAX_DEPTH:
            self.fail(node, loc[:2], f"the spec nests more than {MAX_DEPTH} levels deep",
                      "flatten it; the schema needs only a few levels")
        if isinstance(node, yaml.ScalarNode):
            out = self.scalar(node, loc)
            if not isinstance(out, str):
                self.value_text[loc] = node.value
            return out
        if id(node) in self.active:
            self.fail(node, loc, "an alias refers to a value that contains it (recursive anchor)",
                      "replace the alias with the values it should stand for")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.value(v, loc + (i,)) for i, v in enumerate(node.value)]
            out: dict[Any, Any] = {}
            key_nodes: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                key = self.key(key_node, loc)
                if not isinstance(key, str):
                    self.key_text.setdefault(loc + (key,), key_node.value)
                if key in out:
                    self.duplicate(key_nodes[key], key_node, loc + (key,))
                key_nodes[key] = key_node
                out[key] = self.value(value_node, loc + (key,))
                self.origin[loc + (key,)] = (self.display, key_node.start_mark.line + 1)
            return out
        finally:
            self.active.discard(id(node))

    def duplicate(self, first: yaml.Node, again: yaml.Node, loc: Loc) -> typing.NoReturn:
        line = first.start_mark.line + 1
        if first.value == again.value:
            self.fail(again, loc, f"duplicate key (also on line {line})",
                      "keep one of the two entries")
        readings = [_yaml_reading(self.loader.construct_object(n)) for n in (again, first)]
        how = (f"both read by YAML as {readings[0]}" if readings[0] == readings[1] else
               f"read by YAML as {readings[0]} and {readings[1]}, which count as one key")
        self.fail(again, loc, f"duplicate key: {again.value!r} and {first.value!r} (line "
                  f"{line}) are {how}",
                  f"quote them to keep them as text ({_quoted(first.value)}: and "
                  f"{_quoted(again.value)}:), or keep one of the two entries")

    def key(self, node: yaml.Node, loc: Loc) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            what = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            self.fail(node, loc, f"a key is {what}; keys must be plain names",
                      "write the key as a name (`? ` starts a complex key in YAML)")
        self.check_tag(node, loc)
        return self.scalar(node, loc)

    def scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        try:
            out = self.loader.construct_object(node)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError,
                yaml.YAMLError) as e:
            kind = node.tag[len(_YAML):]
            reason = f": {e}" if isinstance(e, ValueError) else ""
            self.fail(node, loc, f"{_clip(node.value)} cannot be read as a YAML {kind}{reason}",
                      f"quote it to keep it as text, or write a valid {kind}")
        if isinstance(out, str):
            try:
                out.encode("utf-8")
            except UnicodeEncodeError:
                self.fail(node, loc, "text holds a lone surrogate escape (such as \\ud800), "
                          "which is not a character", "remove the escape or write the character")
        return out


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
    # Drop what the base says about anything under a value the child replaced wholesale
    # (a non-mapping value): its origins and source texts no longer describe the data.
    replaced = {loc for loc in child.origin if not isinstance(_get(child.data, loc), dict)}

    def keep(base_map: dict[Loc, Any], child_map: dict[Loc, Any]) -> dict[Loc, Any]:
        out = {loc: v for loc, v in base_map.items()
               if not any(loc[:n] in replaced for n in range(len(loc) + 1))}
        out.update(child_map)
        return out

    return RawSpec(data, keep(base.origin, child.origin), keep(base.key_text, child.key_text),
                   keep(base.value_text, child.value_text))


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # outside the cwd, or a symlink loop
        return str(path)


MAX_EXTENDS = 16
"""Most files an `extends:` chain may hold (the spec itself included): real chains are two
or three files deep; a longer one is a mistake or an attack on the loader."""

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _inside(path: str, folder: Path) -> bool:
    return Path(path).is_relative_to(os.path.realpath(folder))


def load_raw(path: Path, _stack: tuple[Path, ...] = (), _top: Path | None = None) -> RawSpec:
    """Parse `path` and resolve its `extends:` chain into one merged mapping.

    A base is a spec file given by a path relative to the extending file's folder; it must
    lie (symlinks followed) in the workspace (the one set with repro.spec.safety.workspace(),
    such as `repro compile --root`), the current directory or the folder of the spec being
    loaded (`_top`), like every other path a spec names; one outside is never read."""
    path = Path(path)
    top = _top if _top is not None else path.parent
    display = _display(path)
    raw = _parse(path, display)
    resolved = path.resolve()  # after reading it: a symlink loop fails there, with a message
    if "extends" not in raw.data:
        return raw
    parent = raw.data.pop("extends")
    line = raw.origin.pop(("extends",), (display, None))[1]

    def fail(message: str, fix: str) -> typing.NoReturn:
        raise SpecError([ReproError(message, field="extends", fix=fix, file=display, line=line)])

    if parent is None or parent == "":
        fail("is empty", "name the base spec file (`extends: base.yaml`) or remove the line")
    if not isinstance(parent, str):
        fail("must be a relative file path", "write `extends: base.yaml`")
    if any(c < " " for c in parent):
        fail(f"{_clip(parent, 200)} holds a control character", "write the base spec's file name")
    if _URL.match(parent):
        fail(f"{_clip(redact_url(parent), 200)} is a URL; URLs are not supported in `extends:`, "
             "only a spec file in the workspace",
             "download the base spec, commit it in the workspace (e.g. next to this spec) "
             "and extend it by its relative path (`extends: base.yaml`); never put a "
             "credential in a spec")
    if os.path.isabs(parent) or parent.startswith("~"):
        fail(f"{_clip(parent, 200)} is an absolute path",
             "write the base spec's path relative to this file's folder, e.g. "
             "`extends: ../base.yaml`, so the spec works in any checkout")
    base_path = path.parent / parent
    places = ({"the workspace": current_workspace(), "the current directory": Path.cwd()}
              if current_workspace() else {"the workspace (the current directory)": Path.cwd()})
    places["the folder of the spec being loaded"] = top
    try:
        real = os.path.realpath(base_path)
        confined = any(_inside(real, folder) for folder in places.values() if folder)
    except (OSError, ValueError) as e:  # e.g. a name too long for the filesystem
        fail(f"base spec path {_clip(parent, 80)} cannot be used: "
             f"{getattr(e, 'strerror', None) or e}", "write the base spec's file name")
    if not confined:
        shown: dict[str, str] = {}  # each folder once, under its first name
        for name, folder in places.items():
            if folder and os.path.realpath(folder) not in shown.values():
                shown[name] = os.path.realpath(folder)
        fail(f"base spec {_clip(parent, 200)} resolves to {real!r}, outside "
             + " and ".join(f"{name} {folder!r}" for name, folder in shown.items()),
             "keep base specs in the workspace (e.g. under specs/), extend them by a "
             "relative path that stays in it, and run repro from the workspace (the current "
             "directory is the workspace)")
    try:
        is_dir, is_file = base_path.is_dir(), base_path.exists()
    except OSError as e:  # e.g. a name too long for the filesystem
        fail(f"base spec path {_clip(parent, 80)} cannot be used: {e.strerror or e}",
             "write the base spec's file name")
    if is_dir:
        fail(f"base spec {parent!r} is a folder", "name a .yaml file in it")
    if not is_file:
        siblings = sorted(p.name for p in base_path.parent.glob("*.y*ml")) if (
            base_path.parent.is_dir()) else []
        close = difflib.get_close_matches(base_path.name, siblings, n=1)
        fail(f"base spec {parent!r} not found",
             (f"did you mean {close[0]!r}? " if close else "check the path; ")
             + f"it is resolved relative to the folder of {display}")
    chain = (*_stack, resolved, base_path.resolve())
    if base_path.resolve() in (*_stack, resolved):
        fail(f"extends cycle: {' -> '.join(_display(p) for p in chain)}",
             "remove one `extends:` so the chain ends")
    if len(chain) > MAX_EXTENDS:
        fail(f"the extends chain is longer than {MAX_EXTENDS} files: "
             f"{' -> '.join(_display(p) for p in chain)}",
             f"extend a base directly instead of through a chain of more than {MAX_EXTENDS} "
             "files (merge intermediate specs into one)")
    base = load_raw(base_path, (*_stack, resolved), top)
    return _merge(base, raw)


# --------------------------------------------------------------------------- validation


def load_spec(path: Path | str) -> ExperimentSpec:
    """Load and validate one experiment spec, raising SpecError with located issues. Its
    paths (`extends:` bases, data sources...) are confined to the workspace: the one set
    with repro.spec.safety.workspace(), else the current directory."""
    path = Path(path)
    raw = load_raw(path)
    display = _display(path)
    version = raw.data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:  # `true == 1` in Python
        line = raw.origin.get(("schema_version",), (display, 1))
        found = "missing" if version is None else f"{version!r}"
        if version is None:
            fix = f"add `schema_version: {SCHEMA_VERSION}` at the top"
        elif type(version) is int and version > SCHEMA_VERSION:
            fix = (f"this spec is for a newer repro: upgrade repro, or write it for version "
                   f"{SCHEMA_VERSION} (`schema_version: {SCHEMA_VERSION}`)")
        else:
            fix = f"write `schema_version: {SCHEMA_VERSION}` (the number, unquoted)"
        raise SpecError([ReproError(f"schema_version is {found}; this repro reads version "
                                     f"{SCHEMA_VERSION}",
                                    field="schema_version", fix=fix, file=line[0], line=line[1])])
    try:
        return ExperimentSpec.model_validate(raw.data)
    except ValidationError as e:
        raise SpecError(_issues(e, raw, display)) from None


MAX_ISSUES = 50
"""Most problems listed for one spec: a list of 100000 wrong values would print 100000."""


def _issues(err: ValidationError, raw: RawSpec, display: str,
            model: type[BaseModel] = ExperimentSpec) -> list[ReproError]:
    errors = err.errors()
    issues = [_issue(e, raw, display, model) for e in errors[:MAX_ISSUES]]
    if len(errors) > MAX_ISSUES:
        issues.append(ReproError(f"{len(errors) - MAX_ISSUES} more "
                                  "problem(s) not listed",
                                 fix="fix the problems above and "
                                  "validate again", file=display))
    return issues


def validation_issues(err: ValidationError, data: dict, origin: dict, display: str,
                      model: type[BaseModel] = ExperimentSpec) -> list[ReproError]:
    """Turn a pydantic ValidationError on `data` into located issues (also used for
    params.yaml sections, where `origin` may be empty)."""
    return _issues(err, RawSpec(data, origin), display, model)


def _data_loc(data: Any, loc: Loc) -> Loc:
    """Map a pydantic error location onto the data, dropping union/discriminator tags."""
    out: list[Any] = []
    cur = data
    for part in loc:
        key = _data_key(cur, part) if isinstance(cur, dict) else _MISSING
        if key is not _MISSING:
            out.append(key)
            cur = cur[key]
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


_MISSING = object()


def _data_key(mapping: dict, part: Any) -> Any:
    """The key of `mapping` that pydantic's location `part` names, or _MISSING: pydantic
    shows a key YAML read as True as 1, the key None as 'None', a date key as its repr."""
    if isinstance(part, str) and part in mapping:
        return part
    return next((k for k in mapping if not isinstance(k, str) and
                 (k == part or str(part) in (str(k), repr(k)))), _MISSING)


def _dotted(loc: Loc, key_text: dict[Loc, str] | None = None, data: Any = None) -> str:
    """`loc` as a field path (`datasets.web.steps[0]`), each key as the user wrote it
    (`key_text`: `on`, not True) and list indices in brackets. An int key that is not in
    `key_text` is a key if `data` shows a mapping there, else a list index."""
    text = ""
    cur = data
    for n, part in enumerate(loc, 1):
        shown = key_text.get(loc[:n]) if key_text else None
        if shown is None and type(part) is int and not isinstance(cur, dict):
            text += f"[{part}]"
        else:
            if shown is None:
                shown = part if isinstance(part, str) else _yaml_scalar(part)
            text += f".{shown}" if text else shown
        try:
            cur = cur[part] if isinstance(cur, (dict, list)) else None
        except (KeyError, IndexError, TypeError):
            cur = None
    return text


def _yaml_scalar(value: Any) -> str:
    """A value as YAML writes it (True -> `true`, None -> `null`)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def _yaml_reading(value: Any) -> str:
    """What YAML read a key or value as, in words: `the boolean true`, `the integer 1`."""
    if isinstance(value, bool):
        return f"the boolean {_yaml_scalar(value)}"
    if value is None:
        return "null (no value)"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, datetime.datetime):
        return f"the timestamp {value.isoformat()}"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    return f"a {type(value).__name__}"


def _clip(value: Any, limit: int = 60) -> str:
    """repr(value) for a message, credentials redacted before it is cut to `limit`
    characters (cut first, a URL could lose the `@` that marks its password as one)."""
    text = redact_text(repr(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _quoted(text: str) -> str:
    """`text` as a quoted YAML scalar that reads back as that text."""
    if "'" not in text:
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_NOT_TEXT = ("quote it: YAML reads unquoted numbers, dates, yes/no/true/false/on/off and ~ "
             "as other types than text")


def _issue(err: dict, raw: RawSpec, display: str,
           model: type[BaseModel] = ExperimentSpec) -> ReproError:
    err_loc = tuple(err["loc"])
    if err_loc[-1:] == ("[key]",):  # a mapping key (e.g. a dataset name) that is invalid
        loc = _data_loc(raw.data, err_loc[:-1])
        file, line = raw.origin.get(loc, (display, None))
        key = loc[-1] if loc else "?"
        where = _dotted(loc, raw.key_text, raw.data)
        if not isinstance(key, str):
            written = raw.key_text.get(loc, _yaml_scalar(key))
            return ReproError(f"key {written!r} is read by YAML as "
                               f"{_yaml_reading(key)}, not as text",
                              field=where, fix=f"quote it: {_quoted(written)}:", file=file,
                              line=line)
        fix = (_NAME_FIX if err.get("ctx", {}).get("pattern") == NAME_PATTERN
               else "change the key to satisfy the constraint")
        return ReproError(f"key {key!r}: {err['msg']}", field=where, fix=fix, file=file, line=line)
    loc = _data_loc(raw.data, err_loc)
    kind = err["type"]
    message = err["msg"]
    fix = ""
    if kind.startswith("value_error") or kind == "assertion_error":
        raised = err.get("ctx", {}).get("error")
        if isinstance(raised, FieldError):  # the problem, the fix and the field, as data
            # a cross-field check names the field it is about (`at`, relative to the model
            # it validates): point at that field's line
            message, fix, loc = raised.message, raised.fix, loc + raised.at
        elif isinstance(raised, BaseException):  # a plain ValueError: no fix of its own
            message = str(raised)
    file, line = display, None
    for n in range(len(loc), -1, -1):
        if loc[:n] in raw.origin:
            file, line = raw.origin[loc[:n]]
            break
    if kind in ("extra_forbidden", "invalid_key"):
        key = loc[-1] if loc else "?"
        allowed = _allowed_keys(model, loc[:-1], raw.data)
        written = key if isinstance(key, str) else raw.key_text.get(loc, _yaml_scalar(key))
        close = difflib.get_close_matches(written, allowed, n=1)
        message = f"unknown key {written!r}" + ("" if isinstance(key, str) else
                                                f" (YAML reads it as {_yaml_reading(key)}, "
                                                "not as text)")
        if not isinstance(key, str) and written in allowed:
            fix = f"quote it: {_quoted(written)}:"
        else:
            fix = (f"did you mean {close[0]!r}? " if close else "remove it; ") + (
                f"allowed keys: {', '.join(allowed)}" if allowed else "")
    elif kind == "missing":
        fix = f"add `{loc[-1]}:`" if loc else "add the field"
    elif kind.startswith("value_error") or kind == "assertion_error":
        pass  # the validator's own message and fix, read above
    elif kind in ("literal_error", "enum", "union_tag_invalid"):
        fix = "use one of the values listed"
    elif kind == "union_tag_not_found":
        kinds = _union_kinds(_annotation_at(model, loc, raw.data)[0])
        message = "no `kind:` says which variant this is"
        fix = f"add `kind:` ({' or '.join(kinds)})" if kinds else "add `kind:`"
    elif kind == "int_from_float":
        fix = "write a whole number"
    elif kind == "string_type" and loc in raw.value_text:
        written = raw.value_text[loc]
        quoted = f" ({_quoted(written)})" if len(written) < 60 else ""
        fix = (f"YAML reads {_clip(written)} as {_yaml_reading(_get(raw.data, loc))}: quote "
               f"it{quoted} to keep it as text")
    elif kind == "string_type" and (err.get("input") is None or isinstance(
            err.get("input"), (bool, int, float, datetime.date))):
        got = err.get("input")
        fix = f"got {type(got).__name__} {_clip(got)}; {_NOT_TEXT}"
    elif "type" in kind or kind.endswith("_parsing"):
        got = err.get("input")
        fix = f"got {type(got).__name__} {_clip(got)}; change the value's type"
    elif kind == "finite_number":
        fix = "write a finite number (not .inf or .nan)"
    elif kind == "string_unicode":
        fix = "write the text as UTF-8 characters"
    elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NAME_PATTERN:
        fix = _NAME_FIX
    elif kind in ("string_too_long", "too_long") and "max_length" in err.get("ctx", {}):
        what = "characters" if kind.startswith("string") else "items"
        fix = f"shorten it to at most {err['ctx']['max_length']} {what}"
    elif kind.startswith(("greater_than", "less_than", "too_short", "too_long", "string_pattern",
                          "string_too")):
        fix = "change the value to satisfy the constraint"
    if not fix:  # every issue says what to do, even for an error kind not listed above
        fix = "see the field's documentation in repro/spec/schema.py"
    return ReproError(message, field=_dotted(loc, raw.key_text, raw.data), fix=fix, file=file,
                      line=line)


def _annotation_at(model: type[BaseModel], loc: Loc, data: Any) -> tuple[Any, Any]:
    """The annotation of the field at `loc` (walking through containers and unions, picking
    union members by the data's `kind`) and the data found there; (None, None) if unknown."""
    target: Any = model
    cur = data
    for part in loc:
        target = _field_type(_resolve(target, cur), part, cur)
        if target is None:
            return None, None
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            cur = None
    return target, cur


def _allowed_keys(model: type[BaseModel], loc: Loc, data: Any) -> list[str]:
    """Field names of the model found at `loc` (walking through containers and unions)."""
    target = _resolve(*_annotation_at(model, loc, data))
    return sorted(target.model_fields) if isinstance(target, type) and issubclass(
        target, BaseModel) else []


def _union_kinds(tp: Any) -> list[str]:
    """The `kind` values of a discriminated union's members."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return [repr(m.model_fields["kind"].default) for m in typing.get_args(tp)
            if isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields]


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


SPEC_SUFFIXES = (".yaml", ".yml")
"""The file names `repro validate` reads as specs, and `repro compile` compiles."""


def experiment_files(specs_dir: Path) -> list[Path]:
    """The experiments a specs folder compiles: its top-level spec files, sorted (subfolders
    hold bases, reference recipes and CI specs, validated but not compiled)."""
    return sorted(p for p in specs_dir.iterdir()
                  if p.name.lower().endswith(SPEC_SUFFIXES) and p.is_file())


def load_specs(paths: list[Path]) -> list[ExperimentSpec]:
    """Load several specs, collecting every issue before raising; names must be unique."""
    specs: list[ExperimentSpec] = []
    issues: list[ReproError] = []
    seen: dict[str, str] = {}
    for path in map(Path, paths):
        try:
            spec = load_spec(path)
        except SpecError as e:
            issues.extend(e.issues)
            continue
        if spec.name in seen:
            issues.append(ReproError(f"experiment name {spec.name!r} is also used by {seen[spec.name]}",
                                     field="experiment.name",
                                     fix="give each experiment a unique name", file=_display(path)))
            continue
        seen[spec.name] = _display(path)
        specs.append(spec)
    if issues:
        raise SpecError(issues)
    return specs
