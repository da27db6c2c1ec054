"""What dvc.yaml declares and dvc.lock says each stage made, read into plain records
(pure: data in, data out)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml


from repro import paths, yamlio
from repro.errors import ReproError


@dataclass(frozen=True)
class LockedFile:
    """One dependency or output as DVC recorded it (`md5` ends in `.dir` for folders)."""

    path: str
    md5: str | None
    size: int | None = None
    nfiles: int | None = None


@dataclass(frozen=True)
class LockedStage:
    name: str
    cmd: str
    deps: dict[str, LockedFile] = field(default_factory=dict)
    outs: dict[str, LockedFile] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml key -> value


def _file(entry: dict[str, Any]) -> LockedFile:
    return LockedFile(str(entry["path"]), entry.get("md5") or entry.get("etag") or entry.get("checksum"),
                      entry.get("size"), entry.get("nfiles"))


def declared_outputs(entry: dict[str, Any]) -> list[str]:
    """Output paths of a dvc.yaml stage entry (outs, metrics and plots alike)."""
    paths = []
    for key in ("outs", "metrics", "plots"):
        for item in entry.get(key) or []:
            paths.append(next(iter(item)) if isinstance(item, dict) else item)
    return paths


def declared_stage_id(entry: dict[str, Any]) -> str | None:
    """The stage id (its settings hash) a dvc.yaml stage entry's command passes as `--id`
    (`repro stage <kind> <name> --id <id> ...`, repro.compile.render): what its output paths
    and the state it keeps outside DVC are named by, its name carrying no hash. None for a
    command without one or one that is not shell words."""
    try:
        words = shlex.split(str((entry or {}).get("cmd", "")))
    except ValueError:
        return None
    return words[words.index("--id") + 1] if "--id" in words[:-1] else None


class WorkspaceFileError(ReproError, ValueError):
    """dvc.yaml, dvc.lock or a params file is not what DVC and `repro compile` write."""


_FIXES = {"dvc.lock": "restore it from git (`git checkout dvc.lock`) or rebuild it with `dvc repro`",
          "dvc.yaml": "run `repro compile` to rewrite it",
          "params.yaml": "run `repro compile` to rewrite it",
          "params.data.yaml": "run `repro compile` to rewrite it"}


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _bad(source: str, problem: str) -> WorkspaceFileError:
    return WorkspaceFileError(f"{source}: {problem}",
                              fix=_FIXES.get(PurePosixPath(source).name, "rewrite it"))


def load_mapping(text: str, source: str) -> dict[str, Any]:
    """The YAML mapping in `text` (empty: {}); WorkspaceFileError naming `source` and the
    fix for broken YAML or another kind of value."""
    try:
        data = yamlio.safe_load(text)
    except yaml.YAMLError as e:
        raise _bad(source, f"not valid YAML ({' '.join(str(e).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _bad(source, f"holds {_a(data)}, not a mapping")
    return data


def stage_entries(data: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """`stages:` of a dvc.yaml or dvc.lock mapping, each a mapping (checked)."""
    stages = data.get("stages") or {}
    if not isinstance(stages, dict):
        raise _bad(source, f"`stages` is {_a(stages)}, not a mapping of stage names")
    for name, entry in stages.items():
        if not isinstance(entry, dict):
            raise _bad(source, f"stage {name!r} is {_a(entry)}, not a mapping")
    return stages


def parse_lock(text: str, source: str = "dvc.lock") -> dict[str, LockedStage]:
    """Stages of a dvc.lock (schema 2.0), by name; an empty or missing lock gives {}. A lock
    of another shape is a WorkspaceFileError naming `source` and the fix."""
    stages: dict[str, LockedStage] = {}
    for name, entry in stage_entries(load_mapping(text, source), source).items():
        try:
            params: dict[str, Any] = {}
            for _file_name, values in (entry.get("params") or {}).items():
                params.update(values or {})
            stages[name] = LockedStage(
                name=name,
                cmd=str(entry.get("cmd", "")),
                deps={d["path"]: _file(d) for d in entry.get("deps") or []},
                outs={o["path"]: _file(o) for o in entry.get("outs") or []},
                params=params,
            )
        except (AttributeError, TypeError, KeyError, ValueError) as e:
            raise _bad(source, f"stage {name!r} is not a lock record DVC writes "
                               f"({type(e).__name__}: {e})") from None
    return stages


def check_workspace_files(root: Path) -> None:
    """dvc.yaml (required), dvc.lock and the params files (when present) have the shapes DVC and
    `repro compile` write; WorkspaceFileError naming the file and the fix otherwise, before
    a command reads them field by field."""
    dvc_yaml = root / str(paths.DVC_YAML)
    if not dvc_yaml.is_file():
        raise WorkspaceFileError(f"no {paths.DVC_YAML} in {root}",
                                 fix="run `repro compile` (from the workspace's root)")
    for entry in stage_entries(load_mapping(dvc_yaml.read_text(encoding="utf-8"),
                                            str(paths.DVC_YAML)), str(paths.DVC_YAML)).values():
        for key in ("deps", "outs", "metrics", "plots", "params"):
            if not isinstance(entry.get(key) or [], list):
                raise _bad(str(paths.DVC_YAML), f"`{key}` of a stage is not a list")
    lock = root / str(paths.DVC_LOCK)
    if lock.is_file():
        parse_lock(lock.read_text(encoding="utf-8"), str(paths.DVC_LOCK))
    for name in paths.PARAMS_FILES:
        params = root / str(name)
        if params.is_file():
            load_mapping(params.read_text(encoding="utf-8"), str(name))
