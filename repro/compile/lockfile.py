"""Keep each pipeline's dvc.lock to the stages its dvc.yaml declares.

DVC updates one dvc.lock entry per stage it runs and never removes the entry of a stage
that left dvc.yaml. Stage names carry their settings hash, so every recompile after a
settings change leaves the old names behind: main's dvc.lock once held 185 entries for 36
live stages (722 KB). DVC re-parses and rewrites the whole file round-trip (ruamel, pure
Python) after every stage it runs: 5.3 s per stage at that size, 1.5 s at the live size,
most of `make quickstart`'s 215 s of per-stage overhead (issue 19; bench/stage_overhead.py).

A dead entry records nothing DVC can use: a stage that comes back under an old name is
restored from DVC's run cache (`.dvc/cache/runs`, keyed by command, dependencies and
params), not from dvc.lock. So `repro compile` drops them, and `repro compile --check`
reports a dvc.lock that still holds any.

Stage names lost their hash (issue 22: `train-qs-muon-stable`, was
`train-qs-muon-stable-2dda1e5d`; the hash is the stage's id and stays in its output paths).
An entry recorded under a live stage's id is that stage's record under its old name: its
outputs and deps are the same paths, so `repro compile` renames it (`rename`) instead of
dropping it, rewriting the two places the name appears inside it, `cmd` (`repro stage
<kind> <name> --id <id>`) and the keys of its `params` block, so `dvc status` finds the stage
as up to date as it was.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from repro import yamlio
from repro.atomic import atomic_write_text
from repro.errors import ReproError


def _entries(lock: Path) -> list[str]:
    """The stage names a dvc.lock records (libyaml's safe loader: a fast read, no round trip)."""
    if not lock.is_file():
        return []
    try:
        data = yamlio.safe_load(lock.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:  # not ours to repair: DVC names the fault when it reads the file
        return []
    stages = data.get("stages") if isinstance(data, dict) else None
    return list(stages) if isinstance(stages, dict) else []


def dead_entries(lock: Path, live: Iterable[str]) -> list[str]:
    """Entries of `lock` for stages not in `live`, in file order."""
    keep = set(live)
    return [name for name in _entries(lock) if name not in keep]


def renames(lock: Path, names: Mapping[str, str]) -> dict[str, str]:
    """Entries of `lock` recorded under a live stage's id (`names`: id -> name) while none
    is recorded under its name: old entry -> new name."""
    entries = set(_entries(lock))
    return {sid: name for sid, name in names.items()
            if sid != name and sid in entries and name not in entries}


def renamed_entry(entry: Any, old: str, new: str) -> Any:
    """A lock entry recorded as stage `old` (its id) rewritten as stage `new`, in place: the
    stage-name argument of its command (`repro stage <kind> <id> ...` becomes
    `repro stage <kind> <new> --id <id> ...`, as repro.compile.render writes it) and its
    params keys (`<id>` or `<id>.<field>` under each params file). Anything else that
    differs from dvc.yaml stays, and `dvc status` reports it as before."""
    cmd = entry.get("cmd")
    if isinstance(cmd, str):
        parts = shlex.split(cmd)
        if parts[:2] == ["repro", "stage"] and len(parts) > 3 and parts[3] == old:
            entry["cmd"] = shlex.join(parts[:3] + [new, "--id", old] + parts[4:])
    params = entry.get("params")
    if isinstance(params, dict):
        for file, section in list(params.items()):
            if not isinstance(section, dict):
                continue
            items = [(new + key[len(old):] if key == old or key.startswith(old + ".") else key, value)
                     for key, value in section.items()]
            section.clear()  # in place: a round-trip mapping keeps its type and layout
            section.update(items)
    return entry


def prune(lock: Path, live: Iterable[str]) -> list[str]:
    """Remove the dead entries from `lock` in place, written as DVC writes it (its own
    round-trip YAML helpers, so the live entries keep their bytes); returns what went."""
    dead = dead_entries(lock, live)
    if not dead:
        return []
    _rewrite(lock, lambda stages: [stages.pop(name) for name in dead])
    return dead


def rename(lock: Path, names: Mapping[str, str]) -> dict[str, str]:
    """Rename the entries recorded under live stages' ids (`renames`) in place, in file
    order, written as DVC writes it; returns old -> new."""
    todo = renames(lock, names)
    if not todo:
        return {}

    def apply(stages: Any) -> None:
        items = [(todo.get(name, name), renamed_entry(entry, name, todo[name]) if name in todo
                  else entry) for name, entry in stages.items()]
        stages.clear()
        stages.update(items)

    _rewrite(lock, apply)
    return todo


def _rewrite(lock: Path, change) -> None:
    """Apply `change` to the `stages` mapping of `lock`, read and written round trip."""
    # DVC's own round-trip reader and writer and its repository lock (imported only when
    # needed): the live entries keep their bytes, the file reads as DVC would have written
    # it, and a `dvc repro` running meanwhile cannot write an entry between our read and
    # our write
    from dvc.exceptions import NotDvcRepoError
    from dvc.lock import LockError
    from dvc.repo import Repo
    from dvc.utils.serialize import dumps_yaml, parse_yaml_for_update

    try:
        repo = Repo(Repo.find_root(str(lock.parent)))
    except NotDvcRepoError:
        repo = None
    try:
        with repo.lock if repo is not None else contextlib.nullcontext():
            data = parse_yaml_for_update(lock.read_text(encoding="utf-8"), str(lock))
            change(data["stages"])
            atomic_write_text(lock, dumps_yaml(data))
    except LockError:
        raise ReproError("a DVC command holds the repository's lock, so its entries were "
                         "left as they were", file=str(lock),
                         fix="run `repro compile` again once that command ends") from None
    finally:
        if repo is not None:
            repo.close()
