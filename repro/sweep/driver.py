"""Run a planned sweep on DVC's queue: build the shared stages once, queue the trials, start
the workers, wait, collect; resume where an earlier run stopped.

Resume rule (the default): a trial whose experiment exists on the current baseline commit
with a result is skipped; one that is queued or running (the queue outlives an interrupted
`repro sweep`) is waited for; one that failed, or never ran, is queued again. An existing
trial that ran other values than the plan's means the sweep block changed: that is an
error, not a silent mix (fix: `--restart`, or a new sweep name). `--restart` removes the
sweep's experiments and its optuna journal first.

grid and random sweeps queue every trial at once; optuna sweeps run in rounds of
`workers` trials, since each round's proposals depend on the results before it. Waiting
polls `dvc queue status` (cheap) and reads `dvc exp show` (slow on a large pipeline) only
when trials have left the queue.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from repro import paths
from repro.errors import ReproError
from repro.spec.search import Scalar
from repro.sweep.dvc import ExpRecord
from repro.sweep.errors import SweepInputError, SweepRunError
from repro.sweep.plan import SweepPlan
from repro.sweep.results import TrialResult, recorded_point, result_of, same_point, trial_index
from repro.sweep.strategies import OptunaSearch, SearchChanged, Trial, planned_trials

STALL_POLLS = 3
"""Polls with trials queued and none running before the workers are started again (a
worker that died leaves its queue unserved; `dvc queue start` only adds missing ones)."""
POLL_ERRORS = 5
"""Consecutive failed polls (`dvc queue status`, `dvc exp show`) before the sweep gives up
waiting; the trials keep running in DVC's queue either way."""
MISSING_POLLS = 3
"""Polls a trial may be out of the queue without an experiment before it counts as lost."""
LOG_TAIL_LINES = 15


class Backend(Protocol):
    """What the driver needs from DVC (repro.sweep.dvc.DvcBackend; a fake in unit tests)."""

    def reproduce(self, target: str) -> None: ...
    def queue(self, name: str, sets: Mapping[str, Scalar], target: str,
              copy_paths: Iterable[str] = ()) -> None: ...
    def start(self, workers: int) -> None: ...
    def experiments(self) -> dict[str, ExpRecord]: ...
    def in_flight(self) -> dict[str, str]: ...
    def logs(self, name: str) -> str: ...
    def discard(self, record: ExpRecord) -> None: ...


@dataclass
class Driver:
    plan: SweepPlan
    backend: Backend
    root: Path
    """The workspace: the sweep's state folder is root / repro.paths.sweep_state_dir(name)."""
    workers: int
    echo: Callable[[str], None] = print
    poll_s: float = 10.0
    sleep: Callable[[float], None] = time.sleep

    # ------------------------------------------------------------------ entry point

    def run(self, resume: bool = True) -> None:
        """Build the baseline, then run every trial still to run."""
        if not resume:
            self.restart()
        search = self._optuna() if self.plan.sweep.strategy == "optuna" else None
        self.echo(f"building the baseline and the stages trials share: "
                  f"dvc repro {self.plan.target}")
        self.backend.reproduce(self.plan.target)
        if search is None:
            self.run_trials(planned_trials(self.plan.sweep))
            return
        self.run_trials(search.pending(), search.tell, rerun_failed=False)
        while search.remaining:
            self.run_trials(search.ask(self.workers), search.tell)

    def restart(self) -> None:
        """Forget the sweep: its queue entries, its experiments on this baseline, its
        journal. Every refusal (a state folder reached through a link, a running trial)
        comes before the first thing is discarded, so a refused restart changes nothing."""
        queued = [ExpRecord(name, state) for name, state in self.backend.in_flight().items()]
        finished = list(self.backend.experiments().values())
        mine = [r for r in sorted(queued, key=lambda r: r.name)
                + sorted(finished, key=lambda r: r.name)
                if trial_index(self.plan.sweep.name, r.name) is not None]
        problem = self._state_problem()
        if problem is not None:
            raise SweepInputError([ReproError(
                f"{problem}, so {self.state_dir} is not a sweep state folder this command "
                "made; nothing was discarded or removed", field="sweep.name",
                fix="remove it by hand if it is stale (a link: the link, after checking what it "
                "points at), then rerun with --restart", file=self.plan.spec_file)])
        running = sorted({r.name for r in mine if r.state == "running"})
        if running:
            raise SweepRunError(
                f"trial(s) {', '.join(running)} are running, so the sweep cannot restart; "
                "nothing was discarded or removed. Wait for them, or stop each with "
                "`dvc queue kill <name>`, then rerun with --restart")
        for record in mine:
            self.backend.discard(record)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)

    @property
    def state_dir(self) -> Path:
        """Where the optuna journal lives: the sweep's own folder (repro.paths)."""
        return self.root / str(paths.sweep_state_dir(self.plan.sweep.name))

    def _state_problem(self) -> str | None:
        """Why the state folder must not be removed, or None: a symbolic link on the way
        from the workspace root (`.repro`, `.repro/sweeps`, the sweep's folder), through
        which rmtree would remove what the link points at, or a file in its place."""
        at = self.root
        for part in paths.sweep_state_dir(self.plan.sweep.name).parts:
            at = at / part
            if at.is_symlink():
                return f"{at} is a symbolic link"
        if at.exists() and not at.is_dir():
            return f"{at} is not a folder"
        return None

    def _optuna(self) -> OptunaSearch:
        try:
            return OptunaSearch(self.plan.sweep, self.state_dir)
        except SearchChanged as e:
            raise SweepInputError([ReproError(str(e), field="sweep",
                                              fix="rerun with --restart, or give the sweep a new "
                                                  "name",
                                              file=self.plan.spec_file)]) from None

    # ------------------------------------------------------------------ one batch

    def run_trials(self, trials: Iterable[Trial],
                   tell: Callable[[Trial, float | None], None] | None = None,
                   rerun_failed: bool = True) -> list[TrialResult]:
        """Skip, wait for or queue each trial; return the results of this batch. A trial
        whose experiment failed is queued again, unless `rerun_failed` is False (optuna:
        a failure is a result, told to the study as FAIL)."""
        trials = list(trials)
        if not trials:
            return []
        records, flying = self.backend.experiments(), self.backend.in_flight()
        done: list[tuple[Trial, TrialResult]] = []
        to_queue: list[Trial] = []
        waiting: dict[str, Trial] = {}
        for trial in trials:
            record = records.get(trial.name)
            if trial.name in flying:
                waiting[trial.name] = trial  # the queue outlived an interrupted sweep
                continue
            if record is None:
                to_queue.append(trial)
                continue
            self._check_same(trial, record)
            result = result_of(record, trial.index, self.plan.keys, self.plan.objective)
            if result is None:
                waiting[trial.name] = trial  # queued or running: the queue outlived us
            elif result.status == "completed" or not rerun_failed:
                done.append((trial, result))
            else:
                self.backend.discard(record)
                to_queue.append(trial)
        if done:
            self.echo(f"{len(done)} trial(s) already finished: "
                      + ", ".join(r.name for _, r in done))
        for trial, result in done:
            if tell is not None:
                tell(trial, result.value)
        for trial in to_queue:
            self.backend.queue(trial.name, self.plan.dvc_sets(trial.point),
                               self.plan.target, self.plan.copy_paths)
            waiting[trial.name] = trial
        return [r for _, r in done] + self._wait(waiting, tell)

    def _check_same(self, trial: Trial, record: ExpRecord) -> None:
        ran = recorded_point(record, self.plan.keys)
        if ran and not same_point(ran, trial.point):
            raise SweepInputError([ReproError(
                f"experiment {trial.name} exists with {ran}, but the sweep now plans "
                f"{trial.point} for it: the sweep block changed since it ran", field="sweep",
                fix="rerun with --restart (removes the sweep's experiments), or give the sweep "
                "a new name", file=self.plan.spec_file)])

    # ------------------------------------------------------------------ waiting

    def _wait(self, waiting: dict[str, Trial],
              tell: Callable[[Trial, float | None], None] | None) -> list[TrialResult]:
        """Poll the queue until every trial has left it; collect each result from
        `dvc exp show` once its trial has."""
        if not waiting:
            return []
        self.backend.start(self.workers)
        results: list[TrialResult] = []
        total, line, stalled = len(waiting), "", 0
        pending, unseen, errors = dict(waiting), dict.fromkeys(waiting, 0), 0
        while pending:
            self.sleep(self.poll_s)
            try:
                flying = self.backend.in_flight()
                left = [name for name in pending if name not in flying]
                records = self.backend.experiments() if left else {}
            except SweepRunError as e:  # e.g. a lock a finishing worker holds: poll again
                errors += 1
                if errors >= POLL_ERRORS:
                    raise
                self.echo(f"note: {e.message.splitlines()[0]}; polling again")
                continue
            errors = 0
            for name in left:
                trial, record = pending[name], records.get(name)
                result = (result_of(record, trial.index, self.plan.keys, self.plan.objective)
                          if record is not None else None)
                if result is None:  # not recorded yet: the queue is a step ahead of the refs
                    unseen[name] += 1
                    if unseen[name] < MISSING_POLLS:
                        continue
                    result = TrialResult(name, trial.index, trial.point, "failed",
                                         error="left DVC's queue without an experiment "
                                               "(removed with `dvc queue remove`?)")
                del pending[name]
                results.append(result)
                self._report(result)
                if tell is not None:
                    tell(trial, result.value if result.status == "completed" else None)
            running = sum(flying.get(name) == "running" for name in pending)
            queued = sum(flying.get(name) == "queued" for name in pending)
            failed = sum(r.status == "failed" for r in results)
            now = (f"{self.plan.sweep.name}: {len(results)}/{total} finished"
                   + (f" ({failed} failed)" if failed else "")
                   + f", {running} running, {queued} queued")
            if now != line:
                self.echo(now)
                line = now
            stalled = stalled + 1 if queued and not running else 0
            if stalled >= STALL_POLLS:
                self.backend.start(self.workers)
                stalled = 0
        return results

    def _report(self, result: TrialResult) -> None:
        if result.status == "completed":
            self.echo(f"  {result.name} {result.point}: {self.plan.objective.label} = "
                      f"{result.value:.6g}")
            return
        tail = "\n".join(self.backend.logs(result.name).strip().splitlines()[-LOG_TAIL_LINES:])
        self.echo(f"  {result.name} {result.point} FAILED: {result.error}\n"
                  f"  last lines of `dvc queue logs {result.name}`:\n{tail}")
