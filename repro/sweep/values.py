"""Check trial values before anything is queued, with the stages' own config models.

A trial sets params.yaml keys; the stage reading them validates its section with
the stage kind's config (`repro.stages.kind`) when it starts (`repro stage`). Doing the same here, on
a copy of params.yaml with the trial's overrides applied, turns "trial 7 crashed an hour
in" into an error before the first trial runs. The overrides are also the text of
`dvc exp run -S key=value`, which DVC parses with Hydra's override grammar: this module
writes values so that the grammar reads them back as the same type and value.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from repro.errors import ReproError
from repro.spec.load import validation_issues
from repro.spec.search import Scalar
from repro.stages import kinds

Point = Mapping[str, Scalar]
"""A trial's configuration: parameter name -> value."""


class ValueProblem(ReproError, ValueError):
    """A value a stage config refuses: which key and value, and the config's own message
    and fix (the sweep planner words the issue for the spec's parameter)."""

    def __init__(self, key: str, value: Scalar, message: str, fix: str = "") -> None:
        super().__init__(message, field=key, fix=fix)
        self.key, self.value = key, value


def stage_kind(stage_id: str) -> str:
    """`train-qs-lr-stable` -> `train` (names are `<kind>-<label>`)."""
    return stage_id.split("-", 1)[0]


def set_path(params: dict[str, Any], key: str, value: Scalar) -> None:
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value


def overrides(point: Point, keys: Mapping[str, tuple[str, ...]]) -> dict[str, Scalar]:
    """params.yaml key -> value for one trial (each parameter sets all of its keys)."""
    return {key: point[name] for name, ks in keys.items() for key in ks}


def validate_overrides(params: Mapping[str, Any], sets: Mapping[str, Scalar],
                       workspace: Path) -> None:
    """Raise ValueProblem for the first touched stage section its config model refuses."""
    patched = copy.deepcopy(dict(params))
    for key, value in sets.items():
        set_path(patched, key, value)
    for stage_id in dict.fromkeys(k.split(".", 1)[0] for k in sets):
        kind = stage_kind(stage_id)
        declared = kinds().get(kind)
        if declared is None:
            continue  # not a repro stage: nothing of ours reads it
        model = declared.config
        try:
            model.model_validate(patched[stage_id], context={"workspace": workspace})
        except ValidationError as e:
            err = e.errors()[0]
            mine = [k for k in sets if k.startswith(stage_id + ".")]
            key = next((k for k in mine if _within(k, err["loc"])), mine[0])
            # the config's own message and fix, as the `repro stage` command would show them
            issue = validation_issues(e, patched[stage_id], {}, stage_id, model)[0]
            raise ValueProblem(key, sets[key], f"{issue.field or stage_id}: {issue.message}",
                               issue.fix) from None


def _within(key: str, loc: tuple[Any, ...]) -> bool:
    """Whether an error location is at `key`'s field; pydantic inserts the tag of a
    discriminated union (`optimizer.adamw.lr` for the key `optimizer.lr`)."""
    want = key.split(".")[1:]
    it = iter(str(p) for p in loc)
    return all(part in it for part in want)  # `want` is a subsequence of `loc`


def check_passable(value: Scalar) -> None:
    """Refuse values `dvc exp run -S` cannot carry faithfully."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if isinstance(value, str) and ("'" in value or "\\" in value):
        raise ValueError(f"{value!r} holds a quote or backslash, which `dvc exp run -S` "
                         "(Hydra's override grammar) would reinterpret")


def override_text(key: str, value: Scalar) -> str:
    """`key=value` as Hydra's grammar reads back exactly: floats keep a decimal point or
    exponent (a bare `0` would become the int 0), strings are quoted (a comma would
    otherwise make DVC queue a sweep of its own, `true` would become a bool)."""
    check_passable(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)  # shortest round-tripping form: 0.002, 1e-05, 3.0
    else:
        text = f"'{value}'"
    return f"{key}={text}"
