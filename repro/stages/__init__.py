"""Stage kinds: one module each, ending with `KIND = StageKind(...)` (repro.stages.kind). This
registry finds them by module name, so adding a stage kind is adding its module.

A stage process imports only its own kind's module (`kind`), so it pays only for its own
imports; the compiler asks for every kind (`kinds`).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from repro.stages.kind import StageKind


class UnknownStageKind(ValueError):
    """A name that is not a stage kind (a hand-written `repro stage` call, an old dvc.yaml)."""


@functools.cache
def _module_names() -> tuple[str, ...]:
    """Modules of this package, listed without importing any."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.ispkg))


def _unknown(name: str) -> UnknownStageKind:
    return UnknownStageKind(f"unknown stage kind {name!r}; one of {sorted(kinds())}")


@functools.cache
def kind(name: str) -> StageKind:
    """The declaration of stage kind `name`. Only a module of this package that declares a
    `KIND` is one: the name comes from a command line, so it is checked against the
    package's file list before anything is imported."""
    if name not in _module_names():
        raise _unknown(name)
    declared = getattr(importlib.import_module(f"{__name__}.{name}"), "KIND", None)
    if not isinstance(declared, StageKind):
        raise _unknown(name)
    return declared


@functools.cache
def kinds() -> dict[str, StageKind]:
    """Every stage kind, by name (imports every stage module)."""
    found = {}
    for name in _module_names():
        declared = getattr(importlib.import_module(f"{__name__}.{name}"), "KIND", None)
        if isinstance(declared, StageKind):
            found[name] = kind(name)
    return found
