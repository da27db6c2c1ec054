"""`repro explain`: why `dvc repro` would run each stage, in plain words.

DVC's own `dvc status` names *what* changed (a dependency is "modified", a params section
is "modified"); this module turns that into *how*: the old and new value of every changed
setting (from dvc.lock vs params.yaml), the files that changed inside a code folder (by
rebuilding DVC's folder listing from the commit that last wrote dvc.lock), which upstream
stage makes a changed input, and which stages run only because an upstream one does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec
from repro import paths, yamlio
from repro.verify.lockfile import LockedStage, declared_outputs, parse_lock


@dataclass
class StageExplanation:
    stage: str
    reasons: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)  # stages whose rerun may rerun this one

    @property
    def direct(self) -> bool:
        return bool(self.reasons)


def _fmt(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


_YAML12_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+)(?:[eE][-+]?[0-9]+)?"
                           r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
"""A float in YAML 1.2's core schema. DVC writes dvc.lock (and rewrites params.yaml after
`dvc exp run -S`) with ruamel, YAML 1.2: `1e-08`, which YAML 1.1 (PyYAML, how repro reads
both) takes for a string; as the number it is, it equals params.yaml's `1.0e-08`."""


def _as_number(value: Any) -> Any:
    """`value` with every string that YAML 1.2 reads as a float turned into that float."""
    if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value):
        text = value.lower().replace(".inf", "inf").replace(".nan", "nan")
        return float(text)
    if isinstance(value, list):
        return [_as_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_number(v) for k, v in value.items()}
    return value


def param_changes(old: Any, new: Any, prefix: str) -> list[str]:
    """Leaf-level `key: old → new` lines of two params values, compared as DVC reads them
    (numbers as numbers: `1e-08` is `1.0e-08`). `prefix`: the dotted key of `old`/`new`
    (empty: a whole section, whose fields are named from its top). Lists of one length are
    compared item by item, named by index as `dvc exp run -S` sets them (a curation
    threshold: `curate-web.steps.3.min_doc_words: 50 → 60`, not the whole list of steps);
    a list that grew or shrank is shown whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += param_changes(old.get(key, _MISSING), new.get(key, _MISSING),
                                 f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and old:
        return [line for i, (a, b) in enumerate(zip(old, new))
                for line in param_changes(a, b, f"{prefix}.{i}" if prefix else str(i))]
    old, new = _as_number(old), _as_number(new)
    if old == new:
        return []
    prefix = prefix or "(its whole section)"
    if old is _MISSING:
        return [f"setting {prefix} added: {_fmt(new)}"]
    if new is _MISSING:
        return [f"setting {prefix} removed (was {_fmt(old)})"]
    return [f"setting {prefix}: {_fmt(old)} → {_fmt(new)}"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True)


def _ignore(root: Path) -> pathspec.PathSpec:
    lines = (root / ".dvcignore").read_text().splitlines() if (root / ".dvcignore").is_file() else []
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _dir_listing_now(root: Path, rel: str, ignore: pathspec.PathSpec) -> dict[str, str]:
    base = root / rel
    return {p.relative_to(base).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(base.rglob("*"))
            if p.is_file() and not ignore.match_file(p.relative_to(root).as_posix())}


def _dir_listing_at(root: Path, commit: str, rel: str, ignore: pathspec.PathSpec) -> dict[str, str] | None:
    proc = _git(root, "ls-tree", "-r", "--name-only", commit, "--", rel)
    if proc.returncode != 0:
        return None
    listing = {}
    for name in proc.stdout.decode().splitlines():
        if ignore.match_file(name):
            continue
        blob = _git(root, "show", f"{commit}:{name}")
        if blob.returncode != 0:
            return None
        listing[Path(name).relative_to(rel).as_posix()] = hashlib.md5(blob.stdout).hexdigest()
    return listing


def dir_md5(listing: dict[str, str]) -> str:
    """DVC's hash of a folder: md5 of the JSON list of {md5, relpath}, sorted by path."""
    items = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(listing.items())]
    return hashlib.md5(json.dumps(items, sort_keys=True).encode()).hexdigest() + ".dir"


def _lock_commits(root: Path) -> list[str]:
    """Commits whose tree may be what dvc.lock describes: the one that last wrote it, HEAD."""
    out = []
    for args in (("log", "-1", "--format=%H", "--", str(paths.DVC_LOCK)), ("rev-parse", "HEAD")):
        proc = _git(root, *args)
        sha = proc.stdout.decode().strip()
        if proc.returncode == 0 and sha and sha not in out:
            out.append(sha)
    return out


def code_changes(root: Path, rel: str, locked_md5: str | None) -> str:
    """What changed in a code dependency since dvc.lock recorded it."""
    path = root / rel
    if not path.exists():
        return f"code {rel} was deleted"
    ignore = _ignore(root)
    if path.is_dir():
        now = _dir_listing_now(root, rel, ignore)
        for commit in _lock_commits(root):
            then = _dir_listing_at(root, commit, rel, ignore)
            if then is not None and dir_md5(then) == locked_md5:
                parts = [f"{f} modified" for f in sorted(set(now) & set(then)) if now[f] != then[f]]
                parts += [f"{f} added" for f in sorted(set(now) - set(then))]
                parts += [f"{f} removed" for f in sorted(set(then) - set(now))]
                return f"code {rel}/ changed: {', '.join(parts)} (since commit {commit[:8]})"
        return (f"code {rel}/ changed (folder hash {locked_md5} → {dir_md5(now)}; the version "
                "dvc.lock recorded is not in git history, so the files cannot be named)")
    for commit in _lock_commits(root):
        blob = _git(root, "show", f"{commit}:{rel}")
        if blob.returncode == 0 and hashlib.md5(blob.stdout).hexdigest() == locked_md5:
            stat = _git(root, "diff", "--numstat", commit, "--", rel).stdout.decode().split()
            lines = f" (+{stat[0]} −{stat[1]} lines since commit {commit[:8]})" if len(stat) >= 2 else ""
            return f"code {rel} modified{lines}"
    return f"{rel} modified (md5 {locked_md5} → {hashlib.md5(path.read_bytes()).hexdigest()})"


def dvc_status(root: Path) -> dict[str, list]:
    """`dvc status --json`: stages whose own dependencies, settings or outputs changed."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", "--json"], cwd=root,
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc status failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout or "{}")


_ARGUMENT_WORDS = {"--in": "input", "--out": "output", "--id": "stage id (its settings hash)",
                   "--params": "params file"}


def _arguments(cmd: str) -> tuple[dict[str, str], list[str]]:
    """A `repro stage` command as {what: value} for its flagged arguments (`input tokens:web`,
    `output checkpoint`, `stage id`...) and the other words in order."""
    flagged: dict[str, str] = {}
    words: list[str] = []
    parts = iter(shlex.split(cmd))
    for part in parts:
        if part in _ARGUMENT_WORDS:
            value = next(parts, "")
            key, eq, path = value.partition("=")
            if part in ("--in", "--out") and eq:
                flagged[f"{_ARGUMENT_WORDS[part]} {key}"] = path
            else:
                flagged[_ARGUMENT_WORDS[part]] = value
        else:
            words.append(part)
    return flagged, words


def command_changes(old: str, new: str) -> list[str]:
    """How the command dvc.yaml declares differs from the one dvc.lock recorded: per input,
    output or option, `old → new` (a changed setting changes the stage's id, and so the
    paths of its outputs and of its descendants' inputs)."""
    try:
        (old_args, old_words), (new_args, new_words) = _arguments(old), _arguments(new)
    except ValueError:  # not shell words: say it whole
        return [f"its command changed: {_fmt(old)} → {_fmt(new)}"]
    out = []
    old_id, new_id = old_args.get(_ARGUMENT_WORDS["--id"]), new_args.get(_ARGUMENT_WORDS["--id"])
    followed = 0  # output paths that differ only by the stage id they hold: said once
    for what in sorted(set(old_args) | set(new_args)):
        a, b = old_args.get(what), new_args.get(what)
        if a == b:
            continue
        if (what.startswith("output ") and a and b and old_id and new_id
                and a.replace(old_id, new_id) == b):
            followed += 1
            continue
        out.append(f"command: {what} added: {b}" if a is None else
                   f"command: {what} removed (was {a})" if b is None else
                   f"command: {what}: {a} → {b}")
    if followed:
        what = _ARGUMENT_WORDS["--id"]
        out = [f"command: {line[len('command: '):]}, so its {followed} output path(s) move with it"
               if line.startswith(f"command: {what}: ") else line for line in out]
    if old_words != new_words:
        out.append(f"command: {_fmt(shlex.join(old_words))} → {_fmt(shlex.join(new_words))}")
    return out or [f"its command changed: {_fmt(old)} → {_fmt(new)}"]


def explain(root: Path, status: dict[str, list] | None = None) -> list[StageExplanation]:
    """Every stage `dvc repro` would run, in pipeline order, with its reasons."""
    dvc_stages = (yamlio.safe_load((root / str(paths.DVC_YAML)).read_text(encoding="utf-8")) or {}).get("stages", {})
    lock_file = root / str(paths.DVC_LOCK)
    locked = parse_lock(lock_file.read_text(encoding="utf-8")) if lock_file.is_file() else {}
    params = yamlio.load_params(root)
    status = dvc_status(root) if status is None else status
    producer = {out: name for name, entry in dvc_stages.items() for out in declared_outputs(entry)}
    result: dict[str, StageExplanation] = {}
    for name, entry in dvc_stages.items():
        ex = StageExplanation(name)
        lock = locked.get(name)
        if lock is None:
            ex.reasons.append("never run: dvc.lock has no record of it")
        else:
            ex.reasons += _reasons(root, name, status.get(name, []), lock, params, producer,
                                   str(entry.get("cmd", "")))
        ex.upstream = sorted({producer[d] for d in entry.get("deps", [])
                              if d in producer and producer[d] in result})
        result[name] = ex
    runs: list[StageExplanation] = []
    running: set[str] = set()
    for name, ex in result.items():  # dvc.yaml lists stages in topological order
        ex.upstream = [u for u in ex.upstream if u in running]
        if ex.reasons or ex.upstream:
            running.add(name)
            runs.append(ex)
    return runs


def _field(name: str, key: str) -> str:
    """A params key without its section when the section is the stage's own (the stage is
    named above its reasons): `model.rope_theta`, not `train-x.model.rope_theta`."""
    return "" if key == name else key[len(name) + 1:] if key.startswith(name + ".") else key


def _reasons(root: Path, name: str, items: list, lock: LockedStage, params: dict,
             producer: dict[str, str], cmd: str = "") -> list[str]:
    reasons: list[str] = []
    for item in items:
        if isinstance(item, str):
            if item == "changed command":
                reasons += command_changes(lock.cmd, cmd)
            elif item == "always changed":
                reasons.append("it is marked always_changed")
            else:
                reasons.append(item)
            continue
        for what, changes in item.items():
            for path, state in changes.items():
                if what == "changed deps" and isinstance(state, dict):
                    for key in sorted(state):
                        reasons += param_changes(lock.params.get(key, _MISSING), _lookup(params, key),
                                                 _field(name, key)) or [f"setting {key} {state[key]}"]
                elif what == "changed deps" and state == "deleted" and path not in lock.deps:
                    continue  # a new input path (its maker's id changed): the command's line says it
                elif what == "changed deps":
                    if path in producer:
                        reasons.append(f"input {path} (made by {producer[path]}) {state} since the last run")
                    elif state == "modified" and path in lock.deps:
                        reasons.append(code_changes(root, path, lock.deps[path].md5))
                    else:
                        reasons.append(f"dependency {path} {state}")
                elif what == "changed outs" and state == "deleted" and path not in lock.outs:
                    continue  # a new output path (the stage id moved): the command's line says it
                elif what == "changed outs":
                    reasons.append(f"output {path} {state} since the last run (DVC restores it from "
                                   "its run cache if it holds this result, else reruns the stage)")
                else:
                    reasons.append(f"{what}: {path} {state}")
    return reasons


def render(runs: list[StageExplanation]) -> str:
    if not runs:
        return "Everything is up to date: `dvc repro` would run nothing.\n"
    direct = sum(1 for r in runs if r.direct)
    lines = [f"`dvc repro` would run {len(runs)} stage(s): {direct} changed themselves, "
             f"{len(runs) - direct} only downstream of those.", ""]
    for r in runs:
        lines.append(r.stage)
        for reason in r.reasons:
            lines.append(f"  - {reason}")
        if r.upstream:
            lines.append(f"  - {'also ' if r.reasons else ''}downstream of {', '.join(r.upstream)}, "
                         "which run(s) first (DVC reruns it only if their outputs change)")
    return "\n".join(lines) + "\n"
