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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

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


def prune(lock: Path, live: Iterable[str]) -> list[str]:
    """Remove the dead entries from `lock` in place, written as DVC writes it (its own
    round-trip YAML helpers, so the live entries keep their bytes); returns what went."""
    dead = dead_entries(lock, live)
    if not dead:
        return []
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
            for name in dead:
                del data["stages"][name]
            atomic_write_text(lock, dumps_yaml(data))
    except LockError:
        raise ReproError("a DVC command holds the repository's lock, so the entries of stages "
                         "no longer declared were left in place", file=str(lock),
                         fix="run `repro compile` again once that command ends") from None
    finally:
        if repo is not None:
            repo.close()
    return dead
