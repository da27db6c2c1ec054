"""Resolve a sweep parameter's key patterns to params.yaml keys.

A pattern is `<stage name>.<field>[.<field>...]`. Wildcards (fnmatch: `*`, `?`, `[...]`)
are allowed in the stage-name part only (`train-qs-lr-*`: every phase of an experiment),
while field paths are fixed by the stage configs. A pattern must name at least one value (a leaf: anything that is not a
mapping; a list is one value, as `dvc exp run -S key=[...]` sets it whole).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from repro.errors import ReproError

SUGGESTIONS = 3


class KeyResolutionError(ReproError, ValueError):
    """A pattern that names no usable key; `fix` says what to write instead (the sweep
    planner places it at the pattern's line in the spec)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message, fix=fix)


def leaf_paths(section: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf under a mapping, in file order."""
    if not isinstance(section, Mapping):
        return [prefix] if prefix else []
    out: list[str] = []
    for key, value in section.items():
        out += leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def get_path(params: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key; KeyError when it is absent."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _closest(word: str, candidates: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(word, list(dict.fromkeys(candidates)), n=SUGGESTIONS,
                                     cutoff=0.5)


def _did_you_mean(options: list[str]) -> str:
    return "closest existing: " + ", ".join(f"`{o}`" for o in options) if options else ""


def resolve_pattern(pattern: str, params: Mapping[str, Any],
                    usable_stages: set[str] | None = None) -> tuple[str, ...]:
    """Concrete keys a pattern names, in params.yaml order.

    `usable_stages`: the stages a trial runs (the objective stage and its upstream); keys
    of other stages are dropped, since setting them would change nothing the sweep
    measures (a `train-<exp>-*` pattern also matches the experiment's replicas)."""
    stage_part, dot, field = pattern.partition(".")
    sections = [s for s, v in params.items() if isinstance(v, Mapping)]
    if not dot or not field:
        raise KeyResolutionError(
            f"`{pattern}` names no field; a key is `<stage name>.<field>`",
            "add the field path, e.g. `train-<experiment>-*.optimizer.lr`")
    stages = [s for s in sections if fnmatchcase(s, stage_part)]
    if not stages:
        hint = _did_you_mean([f"{s}.{field}" for s in _closest(stage_part, sections)])
        raise KeyResolutionError(
            f"no params.yaml section matches `{stage_part}`",
            (hint + "; " if hint else "") + "sections are stage names `<kind>-<label>`, "
            "e.g. `train-<experiment>-<phase>` (see params.yaml); `*` matches any part")
    found = [f"{s}.{field}" for s in stages if field in leaf_paths(params[s])]
    if not found:
        inner = [p for s in stages for p in leaf_paths(params[s]) if p.startswith(field + ".")]
        if inner:
            raise KeyResolutionError(
                f"`{pattern}` is a section, not a value",
                "name the values under it, " + _did_you_mean(
                    [f"{stage_part}.{p}" for p in dict.fromkeys(inner)][:SUGGESTIONS]))
        fields = [p for s in stages for p in leaf_paths(params[s])]
        hint = _did_you_mean([f"{stage_part}.{p}" for p in _closest(field, fields)])
        raise KeyResolutionError(
            f"`{pattern}` matches {len(stages)} section(s) but none has the field `{field}`",
            hint or f"check the field path against the section `{stages[0]}` in params.yaml")
    if usable_stages is not None:
        kept = [k for k in found if k.split(".", 1)[0] in usable_stages]
        if not kept:
            hint = _did_you_mean([f"{s}.{field}" for s in _closest(stage_part, sorted(usable_stages))])
            raise KeyResolutionError(
                f"`{pattern}` matches only stages the objective does not depend on "
                f"({', '.join(k.split('.', 1)[0] for k in found[:SUGGESTIONS])}): a trial "
                "would not change them",
                (hint + "; " if hint else "") + "name a stage of this experiment's main run")
        found = kept
    return tuple(found)
