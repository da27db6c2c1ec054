"""What dvc.yaml declares and dvc.lock says each stage made, read into plain records
(pure: data in, data out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


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


def parse_lock(text: str) -> dict[str, LockedStage]:
    """Stages of a dvc.lock (schema 2.0), by name; an empty or missing lock gives {}."""
    data = yaml.safe_load(text) or {}
    stages: dict[str, LockedStage] = {}
    for name, entry in (data.get("stages") or {}).items():
        params: dict[str, Any] = {}
        for _file_name, values in (entry.get("params") or {}).items():
            params.update(values or {})
        stages[name] = LockedStage(
            name=name,
            cmd=entry.get("cmd", ""),
            deps={d["path"]: _file(d) for d in entry.get("deps") or []},
            outs={o["path"]: _file(o) for o in entry.get("outs") or []},
            params=params,
        )
    return stages
