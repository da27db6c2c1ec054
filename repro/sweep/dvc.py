"""The only module of the sweep that runs `dvc`: a thin shell over its CLI (the stable,
documented interface of DVC 3; its Python internals change between releases).

What DVC 3.67 does with a queued experiment (tests/sweep/test_dvc.py and test_e2e.py check
it on a real repository):
  * `dvc exp run --queue` commits the workspace's tracked files, uncommitted changes
    included, with the `-S` overrides applied to params.yaml (rewritten by ruamel: comments
    kept, `null` written as an empty value), under `refs/exps/celery/stash`. Untracked
    files are not in it. A name is unique per baseline commit.
  * `dvc queue start --jobs N` starts up to N detached workers (again: only the missing
    ones); a worker exits once the queue has been empty for about 10 s. Each runs one trial
    at a time in a fresh git checkout under `.dvc/tmp/exps/`, where a stage whose dvc.lock
    entry is current and whose outputs are there is skipped, its cached outputs checked out
    from the cache. Untracked files a skip depends on (a new dvc.lock, new uncached
    metrics) must be copied in with `-C`: see DvcBackend.queue.
  * `dvc exp show --json` lists the baseline's experiments with the queue's state
    (`queued`, `running`, `success`, `failed`). It parses the pipeline files of every
    revision it shows (tens of seconds on the quickstart pipeline), so the driver polls
    `dvc queue status` and calls it only when trials have finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from repro import paths
from repro.spec.search import Scalar
from repro.sweep.errors import SweepRunError
from repro.sweep.values import override_text

State = Literal["success", "failed", "queued", "running"]
_PRIORITY = {"failed": 0, "queued": 1, "running": 2, "success": 3}
"""When a name appears twice (a failed run, then its rerun), the most advanced one counts."""


@dataclass(frozen=True)
class ExpRecord:
    """One experiment as `dvc exp show --json` reports it."""

    name: str
    state: State
    rev: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """params.yaml as the experiment ran it (the queued one for queued/failed runs), merged
    with every other params file DVC reports (an example pipeline's)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Metrics file -> its parsed content, for the files DVC could read."""
    error: str | None = None


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _record(exp: Mapping[str, Any]) -> ExpRecord | None:
    revs = exp.get("revs") or []
    rev = revs[0] if revs and isinstance(revs[0], Mapping) else {}
    name = exp.get("name") or rev.get("name")
    if not isinstance(name, str):
        return None
    data = rev.get("data") or {}
    state = _get(exp, "executor", "state")
    error = _get(rev, "error", "msg")
    if state not in _PRIORITY:  # not from the queue (a plain `dvc exp run`): done or broken
        state = "failed" if error else "success"
    metrics = {path: entry["data"] for path, entry in (data.get("metrics") or {}).items()
               if isinstance(entry, Mapping) and "data" in entry}
    params: dict[str, Any] = {}
    for entry in (data.get("params") or {}).values():  # ./params.yaml and an example's file:
        section = _get(entry, "data")                  # their sections are distinct stage names
        if isinstance(section, Mapping):
            params.update(section)
    return ExpRecord(name=name, state=state, rev=rev.get("rev"), params=params,
                     metrics=metrics, error=error if isinstance(error, str) else None)


def parse_exp_show(doc: Any) -> dict[str, ExpRecord]:
    """Experiments by name from `dvc exp show --json` output: a list of baseline rows
    (`workspace` first, then commits), each with `experiments: [{name, executor: {state},
    revs: [{rev, name, error, data: {params, metrics}}]}]`. Missing or null parts are
    tolerated: a row is kept if it has a name."""
    out: dict[str, ExpRecord] = {}
    for row in doc if isinstance(doc, list) else []:
        for exp in (row.get("experiments") or []) if isinstance(row, Mapping) else []:
            rec = _record(exp) if isinstance(exp, Mapping) else None
            if rec is None:
                continue
            old = out.get(rec.name)
            if old is None or _PRIORITY[rec.state] > _PRIORITY[old.state]:
                out[rec.name] = rec
    return out


def parse_queue_status(text: str) -> dict[str, State]:
    """Queued and running tasks from `dvc queue status`, a table `Task Name Created Status`
    whose Created column is one or more words (`07:09 AM`, `Nov 28, 2026`) and whose Name
    may be empty; trial names are never such words, so the second column is taken as the
    name. A name that is both (a rerun) is running if any of its tasks runs."""
    out: dict[str, State] = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 4 or cols[0] == "Task":
            continue
        state = {"Queued": "queued", "Running": "running"}.get(cols[-1])
        if state is not None and out.get(cols[1]) != "running":
            out[cols[1]] = state  # type: ignore[assignment]
    return out


def copy_roots(wanted: Iterable[str], tracked: set[str]) -> list[str]:
    """What `dvc exp run -C` must copy so that the untracked paths in `wanted` exist in a
    trial's git checkout. DVC copies a file into its parent folder without creating it, and
    copies a folder only where none exists, so an untracked path under a folder git does
    not track (none of its files are tracked) is copied as that folder's topmost untracked
    ancestor."""
    tracked_dirs = {str(parent) for f in tracked for parent in PurePosixPath(f).parents}
    roots: set[str] = set()
    for path in wanted:
        if path in tracked:
            continue  # in the checkout already, uncommitted changes included
        parts = PurePosixPath(path).parts
        roots.add(next("/".join(parts[:i]) for i in range(1, len(parts) + 1)
                       if "/".join(parts[:i]) not in tracked_dirs))
    return sorted(r for r in roots if not any(r.startswith(o + "/") for o in roots))


def queue_args(name: str, sets: Mapping[str, Scalar], target: str,
               copy_paths: Iterable[str] = ()) -> list[str]:
    """`dvc` arguments queueing one trial."""
    args = ["exp", "run", "--queue", "--name", name]
    for path in copy_paths:
        args += ["-C", path]
    for key, value in sets.items():
        args += ["-S", override_text(key, value)]
    return [*args, target]


def tool_path() -> str:
    """PATH with this interpreter's scripts first: the `dvc` of repro's environment, and
    the `repro` that queue workers (which inherit this environment) call in every stage."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


class DvcBackend:
    """Runs the sweep's DVC commands in one repository."""

    def __init__(self, root: Path, echo: bool = True) -> None:
        self.root = root
        self.echo = echo
        self.env = dict(os.environ, PATH=tool_path())

    def _run(self, args: list[str], capture: bool = True) -> str:
        cmd = ["dvc", *args]
        try:
            proc = subprocess.run(cmd, cwd=self.root, env=self.env, text=True,
                                  capture_output=capture)
        except FileNotFoundError:
            raise SweepRunError("`dvc` was not found; install repro's environment "
                                "(`make install`) or put its bin folder on PATH") from None
        if proc.returncode != 0:
            said = ((proc.stderr or "") + (proc.stdout or "")).strip()[-3000:]
            raise SweepRunError(f"`{' '.join(cmd)}` failed (exit {proc.returncode})"
                                + (f":\n{said}" if said else ""))
        return proc.stdout or ""

    def reproduce(self, target: str) -> None:
        """`dvc repro <target>` in the workspace: builds and caches everything upstream of the
        trials once (the trials then check it out), and gives the baseline point."""
        self._run(["repro", target], capture=not self.echo)

    def queue(self, name: str, sets: Mapping[str, Scalar], target: str,
              copy_paths: Iterable[str] = ()) -> None:
        """Queue one trial. dvc.lock and `copy_paths` (uncached outputs of stages the trial
        should not rerun) go with it when git does not track them: the trial's checkout
        has only tracked files, and repro's stages never enter DVC's run cache (an
        uncached `outs` entry, the env record, keeps DVC from saving them there), so a
        stage missing its lock entry or an uncached output would run again."""
        wanted = [p for p in (str(paths.DVC_LOCK), *copy_paths) if (self.root / p).exists()]
        self._run(queue_args(name, sets, target, copy_roots(wanted, self._tracked())))

    def _tracked(self) -> set[str]:
        try:
            out = subprocess.run(["git", "ls-files", "-z"], cwd=self.root, capture_output=True,
                                 text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            raise SweepRunError(f"`git ls-files` failed in {self.root}: {e}") from None
        return set(filter(None, out.split("\0")))

    def start(self, workers: int) -> None:
        self._run(["queue", "start", "--jobs", str(workers)])

    def exp_show(self, hide_queued: bool = True) -> Any:
        """`dvc exp show --json` of the baseline commit, parsed. `--hide-queued` by default:
        DVC parses dvc.yaml and params.yaml of every queued stash commit otherwise (about
        8 s each on the quickstart pipeline), and queued trials are `in_flight` anyway."""
        out = self._run(["exp", "show", "--json", *(["--hide-queued"] if hide_queued else [])])
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise SweepRunError(f"`dvc exp show --json` printed something that is not JSON "
                                f"({e}): {out[:300]!r}") from None

    def experiments(self) -> dict[str, ExpRecord]:
        """Finished and running experiments of the baseline commit, by name."""
        return parse_exp_show(self.exp_show())

    def in_flight(self) -> dict[str, State]:
        """Experiments queued or running, by name: the cheap poll (`dvc queue status` reads
        the queue, not the pipeline)."""
        return parse_queue_status(self._run(["queue", "status"]))

    def logs(self, name: str) -> str:
        try:
            return self._run(["queue", "logs", name])
        except SweepRunError as e:
            return str(e)

    def discard(self, record: ExpRecord) -> None:
        """Forget a trial: its experiment (finished) or its queue entry (queued, failed)."""
        if record.state == "running":
            raise SweepRunError(f"trial {record.name} is running; wait for it or stop it with "
                                f"`dvc queue kill {record.name}`, then try again")
        if record.state == "success":
            self._run(["exp", "remove", record.name])
        else:
            self._run(["queue", "remove", record.name])
