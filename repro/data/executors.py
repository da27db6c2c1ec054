"""Run one datatrove pass on the executor the spec chose: local processes, Ray or Slurm.

Each pass is a datatrove executor over a pipeline; this module maps `ExecutorSpec` onto
datatrove's LocalPipelineExecutor, RayPipelineExecutor and SlurmPipelineExecutor, waits
for the pass to finish (Slurm jobs are asynchronous), checks that every task completed,
and merges the tasks' stats. Nothing here changes what a pass produces: outputs depend on
the pipeline and its task count only (see repro.data.shards).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import multiprocess  # datatrove's own process pools (its LocalPipelineExecutor)
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from repro.data import datatrove_deps  # noqa: F401  (datatrove's dependency check, fast: see the module)
from repro.data import spacy_without_torch  # noqa: F401  (spaCy's import, without torch: see the module)
from repro.errors import ReproError
from repro.spec import schema as S

FORKSERVER_PRELOAD = ("repro.data.datatrove_deps", "datatrove.pipeline.dedup",
                      "repro.data.spacy_without_torch")
"""Modules the local executor's forkserver imports once, before it forks any worker, besides
those of the first pass's steps (reader, filters, writers): our fast answer to datatrove's
dependency check (which every worker asks again when it unpickles the steps), the dedup
passes' own, and spaCy,
which datatrove's English word tokenizer imports on a step's first document, in every worker
of every pass with a Gopher filter or a MinHash signature step (imported without torch, see
repro.data.spacy_without_torch; a forkserver ignores a preload it cannot import).

datatrove's LocalPipelineExecutor runs each pass with `workers > 1` on a fresh process pool
started from multiprocess's forkserver, and every worker then unpickles the pass's pipeline,
importing datatrove, our steps and their libraries anew: ~0.8 s per worker per pass, and a
curation runs up to 9 passes (measured on the tiny PDF curation, 2 tasks x 2 workers: 15.2 s
with the bare forkserver, 10.0-10.9 s with this preload, 8.3 s on one worker). Importing them in
the forkserver instead, which every worker is forked from, pays it once per stage. The
forkserver runs no Python threads, loggers or pools of its own, so forking it stays safe
(numpy's OpenBLAS keeps an idle thread pool there, which OpenBLAS re-creates after a fork)."""

SLURM_POLL_S = float(os.environ.get("REPRO_SLURM_POLL_S", "30"))
"""Seconds between checks on a running Slurm pass."""


class ExecutorError(ReproError, RuntimeError):
    """A pass did not complete on its executor."""


def _merged_stats(logging_dir: Path, tasks: int) -> PipelineStats:
    total = PipelineStats()
    for rank in range(tasks):
        with open(logging_dir / "stats" / f"{rank:05d}.json") as f:
            total += PipelineStats.from_json(json.load(f))
    return total


def _check_complete(executor, logging_dir: Path, tasks: int, what: str) -> None:
    missing = executor.get_incomplete_ranks(range(tasks), skip_completed=True)
    if missing:
        raise ExecutorError(
            f"{what}: {len(missing)} of {tasks} tasks did not complete (ranks {missing[:10]}); "
            f"see the logs in {logging_dir / 'logs'}")


def _preload_forkserver(pipeline: list[PipelineStep]) -> None:
    """Name the modules of this pass's steps and FORKSERVER_PRELOAD for the forkserver to
    import when it starts (it starts with the first pool of the process and is then reused,
    so the first pass's list is the one that counts; a later call changes nothing)."""
    steps = sorted({type(step).__module__ for step in pipeline} - set(FORKSERVER_PRELOAD))
    # "__main__" is the forkserver's default preload: kept, so it behaves as before for
    # anything defined there. Ours next, in order: spaCy must come before anything that
    # could import it (or torch) the usual way.
    multiprocess.get_context("forkserver").set_forkserver_preload(
        ["__main__", *FORKSERVER_PRELOAD, *steps])


def ensure_ray(spec: S.RaySpec) -> None:
    """Connect to the Ray cluster the spec names, or start a local instance."""
    import ray

    if ray.is_initialized():
        return
    if spec.address is None:
        # a local instance sized to this machine; no dashboard (it needs extra packages)
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=spec.address, log_to_driver=False, configure_logging=False)


class PassRunner:
    """Runs the passes of one curation; logs of pass n live under `<work>/logs/<n>`."""

    def __init__(self, spec: S.ExecutorSpec, work: Path, name: str):
        self.spec = spec
        self.work = Path(work)
        self.name = name
        self.runs = 0

    def _logging_dir(self) -> Path:
        self.runs += 1
        return self.work / "logs" / f"{self.runs:02d}"

    def build(self, pipeline: list[PipelineStep], tasks: int, logging_dir: Path):
        """The datatrove executor of one pass (not started)."""
        spec = self.spec
        workers = min(spec.workers, tasks)
        if spec.kind == "local":
            from datatrove.executor import LocalPipelineExecutor

            return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers,
                                         logging_dir=str(logging_dir), skip_completed=False)
        if spec.kind == "ray":
            from datatrove.executor.ray import RayPipelineExecutor

            return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers,
                                       logging_dir=str(logging_dir), skip_completed=False,
                                       cpus_per_task=spec.ray.cpus_per_task,
                                       mem_per_cpu_gb=spec.ray.mem_per_cpu_gb)
        if spec.kind == "slurm":
            from datatrove.executor.slurm import SlurmPipelineExecutor

            slurm = spec.slurm
            assert slurm is not None  # the schema requires it for kind slurm
            sbatch_args = dict(slurm.sbatch_args)
            if slurm.account:
                sbatch_args.setdefault("account", slurm.account)
            return SlurmPipelineExecutor(
                pipeline, tasks=tasks, workers=workers, time=slurm.time,
                partition=slurm.partition, cpus_per_task=slurm.cpus_per_task,
                mem_per_cpu_gb=slurm.mem_per_cpu_gb, qos=slurm.qos,
                job_name=f"repro-{self.name}-{self.runs:02d}",
                # the tasks run this interpreter's environment unless the spec says otherwise
                env_command=slurm.env_command or f"source {Path(sys.prefix) / 'bin' / 'activate'}",
                sbatch_args=sbatch_args, logging_dir=str(logging_dir),
                skip_completed=False, requeue=False,
            )
        raise ValueError(f"unknown executor kind {spec.kind!r}")  # pragma: no cover

    def run(self, pipeline: list[PipelineStep], tasks: int) -> PipelineStats:
        """Run one pass to completion and return its stats merged over tasks."""
        logging_dir = self._logging_dir()
        what = f"{self.name} pass {self.runs} ({self.spec.kind}, {tasks} tasks)"
        if self.spec.kind == "ray":
            ensure_ray(self.spec.ray)
        executor = self.build(pipeline, tasks, logging_dir)
        if self.spec.kind == "local":
            _preload_forkserver(pipeline)
            stats = executor.run()
            _check_complete(executor, logging_dir, tasks, what)
            return stats
        if self.spec.kind == "slurm":
            if shutil.which("sbatch") is None:
                raise ExecutorError(f"{what}: `sbatch` is not on PATH; run on a Slurm login node")
            executor.run()  # submits the job array and returns
            self._wait_slurm(executor, logging_dir, tasks, what)
        else:
            executor.run()
        _check_complete(executor, logging_dir, tasks, what)
        return _merged_stats(logging_dir, tasks)

    def _wait_slurm(self, executor, logging_dir: Path, tasks: int, what: str) -> None:
        """Poll until every task has completed, or the job has left the queue without."""
        job_id = str(executor.job_id)
        while executor.get_incomplete_ranks(range(tasks), skip_completed=True):
            queued = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"],
                                    capture_output=True, text=True).stdout.strip()
            if not queued and executor.get_incomplete_ranks(range(tasks), skip_completed=True):
                _check_complete(executor, logging_dir, tasks, f"{what}, Slurm job {job_id}")
            time.sleep(SLURM_POLL_S)
