"""Run a train or evaluate stage as one Slurm job and wait for it (issue 21).

`repro stage` calls `run_stage` instead of the stage's `run` when the stage's launcher is
`slurm`. It writes, under .repro/slurm/<stage id>/ (on the filesystem the nodes must share):

- `payload.json`: the stage's worker payload (repro.stages.worker), with the launcher's kind
  set to `local`, so inside the job the stage runs exactly as it does here under torchrun,
  and its resumable state (.repro/resume/<stage id>/) serves either launcher;
- `token`: a random value each node's task checks before it starts (repro.launch.slurm_node),
  so a cluster that does not share this directory fails in a second, with the fix;
- `job.sh`: the batch script, submitted with `sbatch`; Slurm writes its log to
  `slurm-<job id>.out` in the same folder.

Why a generated sbatch script and not submitit: submitit pickles a Python callable and
collects its return value, neither of which a stage needs (the job runs a command line, the
worker, and its outputs are files), and its requeue-on-preemption is the same USR1 ->
`scontrol requeue` handshake the script does in a few lines. A dependency saved.

The job (one task per node, `srun`): each node's task runs torchrun with c10d rendezvous on
the first node (`--nnodes` x `--nproc_per_node`, as distributed.nproc / launcher.slurm.nodes
give), or the worker alone for a single-process stage. Rank 0 writes the outputs where the
local launcher does, atomically (repro.stages.base).

Preemption and time limits: the job is submitted with `--requeue` and
`--signal=B:USR1@<signal_grace_s>`. On USR1 (time limit near) or SIGTERM (preemption) the
batch script asks Slurm to requeue the job (`scontrol requeue`); Slurm stops its processes
(SIGTERM, then SIGKILL after KillWait) and starts it again. On that SIGTERM each training
rank finishes its update and the ranks save the state of the same update before exiting
(repro.train.preemption), so the requeued job resumes bitwise from there; a rank killed
before it could save resumes from the last periodic in-stage checkpoint
(`checkpoint_every_steps`, repro.train.resume). The log is opened in append mode, so one
file holds every attempt.

The stage's `env` output (repro.environment) describes the job's first node, where the batch
step records it once the step succeeded (repro.launch.record_env), not the login node this
process waits on; `repro stage` adds this process's wall seconds (queue time included).

Here, this process blocks until the job leaves the queue: it echoes the job's log (rank 0
logs; the other ranks print only their errors) and every PROGRESS_S seconds a progress line
(step, tokens/s, loss, ETA, read from the training loop's progress bar in the log), exits
with the job's status, and cancels the job (`scancel`) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro import paths
from repro.errors import ReproError
from repro.jsonio import read_json
from repro.launch import slurm_node
from repro.spec.schema import LauncherSpec, SlurmLaunchSpec
from repro.stages import worker
from repro.stages.base import StageIO, log
from repro.stages.kind import StageKind, launcher_field

NODE_MODULE = "repro.launch.slurm_node"
RECORD_MODULE = "repro.launch.record_env"
ENV_RECORD = "env.json"
"""The job's environment record in its folder (repro.launch.record_env)."""
POLL_S = float(os.environ.get("REPRO_SLURM_POLL_S", "10"))
"""Seconds between `squeue` calls (the controller is shared: Slurm's docs ask users not to
poll it in tight loops); REPRO_SLURM_POLL_S sets another (a site's rule, or a test's stand-in
Slurm). How often a stage asks changes nothing it makes."""
TAIL_S = 1.0
"""Seconds between reads of the job's log."""
PROGRESS_S = 30.0
"""Seconds between progress lines."""
CANCEL_WAIT_S = 60.0
"""How long a cancelled job may take to leave the queue before this process gives up
waiting (its processes are Slurm's to stop by then)."""
INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, as a shell reports it)."""

TERMINAL = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                      "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"})
"""Job states after which the job will not run again (sacct(1), JOB STATE CODES)."""


class SlurmError(ReproError):
    """A stage's Slurm job could not be submitted (exit status 2, the user's input: the
    launcher settings) or did not complete (the job's own exit status, at least 1)."""

    def __init__(self, message: str, *, fix: str = "", field: str = "",
                 exit_status: int = ReproError.exit_status):
        super().__init__(message, fix=fix, field=field)
        self.exit_status = exit_status


def job_folder(stage_id: str) -> Path:
    """.repro/slurm/<stage id>/: the job's payload, token, script and logs. Next to the
    stage's resumable state (repro.paths.resume_dir); never a DVC output. Built here, not in
    repro.paths: every stage imports that module, so a function added there would change
    every stage's code dependencies (repro.compile.code_deps) for a folder no stage reads."""
    return Path(paths.STATE_DIR) / "slurm" / stage_id


def spec_field(config_field: str) -> str:
    """The spec's name for a stage config's launcher field (`launcher` of a train stage is
    the spec's `training.launcher`)."""
    return {"launcher": "training.launcher"}.get(config_field, config_field)


@dataclass(frozen=True)
class JobPlan:
    """What the job runs on its nodes."""

    kind: str
    stage: str
    folder: Path
    nodes: int
    nproc_per_node: int
    torchrun: bool
    worker: list[str]
    token: str
    outputs: tuple[str, ...] = ()
    """What the job writes (the stage's outputs but `env`, which `repro stage` writes here
    after the job): a requeued attempt that finds them all, newer than the token, is done."""


def plan_job(kind: str, cfg: Any, slurm: SlurmLaunchSpec, field: str, stage: str, folder: Path,
             worker_args: list[str], token: str, outputs: tuple[str, ...] = ()) -> JobPlan:
    """Nodes and processes per node: a training stage's distributed.nproc spread evenly over
    the nodes under torchrun; anything else, one process on one node. Checked again here
    because `dvc exp run -S` edits params.yaml after the spec was validated."""
    distributed = getattr(cfg, "distributed", None)
    if distributed is None and slurm.nodes != 1:
        raise SlurmError(f"{field}.slurm.nodes is {slurm.nodes}, but this stage runs on one "
                         "node", field=f"{field}.slurm.nodes", fix="set nodes: 1")
    nproc = distributed.nproc if distributed is not None else 1
    if nproc % slurm.nodes:
        raise SlurmError(f"{slurm.nodes} nodes cannot split distributed.nproc {nproc} evenly",
                         field=f"{field}.slurm.nodes",
                         fix=f"set nodes to a divisor of distributed.nproc ({nproc})")
    if slurm.gpus_per_node and nproc // slurm.nodes > slurm.gpus_per_node:
        raise SlurmError(f"{nproc // slurm.nodes} processes per node, more than gpus_per_node "
                         f"{slurm.gpus_per_node}", field=f"{field}.slurm.gpus_per_node",
                         fix=f"use at least {-(-nproc // slurm.gpus_per_node)} nodes, or lower "
                             "distributed.nproc")
    return JobPlan(kind, stage, folder, slurm.nodes, nproc // slurm.nodes, nproc > 1,
                   list(worker_args), token, tuple(outputs))


def sbatch_options(plan: JobPlan, slurm: SlurmLaunchSpec, log_path: Path) -> list[tuple[str, str | None]]:
    """The job's `#SBATCH` options, in script order (value None: a flag)."""
    opts: list[tuple[str, str | None]] = [
        ("job-name", f"repro-{plan.stage}"), ("partition", slurm.partition),
        ("nodes", str(plan.nodes)), ("ntasks-per-node", "1"),
        ("cpus-per-task", str(slurm.cpus_per_task)),
        ("mem-per-cpu", f"{max(1, round(slurm.mem_per_cpu_gb * 1024))}M"),
        ("time", slurm.time), ("output", str(log_path)), ("open-mode", "append"),
        ("requeue", None), ("signal", f"B:USR1@{slurm.signal_grace_s}"),
    ]
    if slurm.gpus_per_node:
        opts.append(("gpus-per-node", str(slurm.gpus_per_node)))
    for key, value in (("account", slurm.account), ("qos", slurm.qos),
                       ("constraint", slurm.constraint)):
        if value is not None:
            opts.append((key, value))
    opts += sorted(slurm.sbatch_args.items())  # allow-listed (SBATCH_EXTRA_OPTIONS)
    return opts


def job_script(plan: JobPlan, slurm: SlurmLaunchSpec, cwd: Path, python: str) -> str:
    """The batch script (pure: tests read it). `python` is the interpreter the nodes run:
    `python` from the environment `env_command` sets up, else this process's own."""
    log_path = cwd / plan.folder / "slurm-%j.out"
    node = [python, "-m", NODE_MODULE, f"--folder={plan.folder}", f"--token={plan.token}",
            f"--nodes={plan.nodes}", f"--nproc-per-node={plan.nproc_per_node}",
            *(["--torchrun"] if plan.torchrun else []), "--", *plan.worker]
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH --{k}" + (f"={v}" if v is not None else "")
              for k, v in sbatch_options(plan, slurm, log_path)]
    where = shlex.quote(str(cwd))
    lines += [
        f"# generated by repro (repro.launch.slurm) for stage {plan.stage}; Slurm reruns it",
        "# as is when it requeues the job",
        "set -u",
        f"cd {where} || {{ echo \"repro: $(hostname) cannot enter {where}: run dvc repro from a "
        f"directory every node shares\"; exit {slurm_node.NO_SHARED_FS}; }}",
    ]
    if slurm.env_command:  # checked: commands of the allowed forms only (repro.spec.safety)
        lines.append(slurm.env_command)
    record = " ".join(shlex.quote(w) for w in (python, "-m", RECORD_MODULE, plan.kind,
                                               str(plan.folder / ENV_RECORD)))
    lines += ["record_env() {  # where the outputs were computed (repro.launch.record_env)",
              f"  {record}", "}"]
    if plan.outputs:
        # Slurm signals the job (USR1 before the time limit) as it finishes: the requeued
        # attempt finds every output written by this job (newer than its token) and stops,
        # instead of training again from scratch (the resumable state is gone by then)
        token = shlex.quote(str(plan.folder / slurm_node.TOKEN_FILE))
        written = " && ".join(f"[ {shlex.quote(o)} -nt {token} ]" for o in plan.outputs)
        lines.append(f'if [ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ] && {written}; then')
        lines.append('  echo "repro: the previous attempt wrote every output; nothing left to do"')
        lines.append(f"  [ -e {shlex.quote(str(plan.folder / ENV_RECORD))} ] || record_env")
        lines.append("  exit")
        lines.append("fi")
    lines += [
        'echo "repro: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, attempt $((${SLURM_RESTART_COUNT:-0} + 1))"',
        "requeue() {",
        '  echo "repro: job $SLURM_JOB_ID got SIG$1: requeueing it; a training stage saves '
        'the update in progress and resumes from it"',
        '  scontrol requeue "$SLURM_JOB_ID" || true',
        "}",
        "trap 'requeue USR1' USR1",
        "trap 'requeue TERM' TERM",
        # in the background: bash runs a trap only between commands, and `wait` is one.
        # The step's CPUs and GPUs are named again: srun does not inherit sbatch's
        # --cpus-per-task (Slurm 22.05 on), and a step given one CPU would run every rank
        # of the node on it
        f"srun --nodes={plan.nodes} --ntasks-per-node=1 --cpus-per-task={slurm.cpus_per_task} "
        + (f"--gpus-per-node={slurm.gpus_per_node} " if slurm.gpus_per_node else "")
        + "--kill-on-bad-exit=1 " + " ".join(shlex.quote(w) for w in node) + " &",
        "step=$!",
        "while :; do",
        '  wait "$step"; status=$?',
        '  kill -0 "$step" 2>/dev/null || break  # wait ended for a signal: the step runs on',
        "done",
        'if [ "$status" -eq 0 ]; then record_env || status=$?; fi',
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


_SBATCH_FIELDS = (("account", "account", "an account `sacctmgr show assoc user=$USER` lists"),
                  ("qos", "qos", "a QOS `sacctmgr show assoc user=$USER` lists"),
                  ("feature", "constraint", "features `sinfo -o '%f'` lists"),
                  ("time limit", "time", "a time within the partition's limit (`sinfo -s`)"),
                  ("partition", "partition", "a partition `sinfo -s` lists"))
"""(word in sbatch's refusal, field, what to set it to), most specific first: sbatch says
"Invalid account or account/partition combination specified" for an unknown account."""


def submit(script: Path, field: str) -> int:
    """`sbatch` the script; its job id. An sbatch refusal (unknown partition or account...)
    is a SlurmError quoting sbatch, with the field to change; nothing is queued then."""
    try:
        proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    except FileNotFoundError:
        raise SlurmError("`sbatch` is not on PATH", field=f"{field}.kind",
                         fix="run `dvc repro` on a Slurm login node, or set the launcher's "
                             "kind to local") from None
    if proc.returncode != 0:
        said = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        lowered = said.lower()
        for word, key, valid in _SBATCH_FIELDS:
            if word in lowered:
                raise SlurmError(f"sbatch refused the job: {said}", field=f"{field}.slurm.{key}",
                                 fix=f"set {field}.slurm.{key} in the spec to {valid}, then "
                                     "`repro compile`")
        raise SlurmError(f"sbatch refused the job: {said}", field=f"{field}.slurm",
                         fix=f"change {field}.slurm in the spec as sbatch says, then `repro compile`")
    try:
        return int(proc.stdout.strip().split(";")[0])
    except ValueError:
        raise SlurmError(f"sbatch printed {proc.stdout.strip()!r}, not a job id",
                         fix="check `sbatch --parsable` on this machine") from None


LEFT = "LEFT"
"""queue_state's answer for a job no longer in the queue."""


def queue_state(job_id: int) -> str:
    """The job's state while Slurm's queue holds it (PENDING, RUNNING, ...); LEFT once it is
    gone; UNKNOWN when squeue failed (a busy controller times out: ask again later)."""
    proc = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"],
                          capture_output=True, text=True)
    out = proc.stdout.split()
    if proc.returncode != 0:
        # squeue's answer for a job past the controller's MinJobAge
        return LEFT if "invalid job id" in proc.stderr.lower() else "UNKNOWN"
    return out[0] if out else LEFT


def final_state(job_id: int, attempts: int = 6) -> tuple[str, int] | None:
    """(state, exit status) of a job that left the queue, from accounting (which may lag a
    few seconds behind the queue); None while accounting shows it still running (requeued)."""
    said = ""
    for attempt in range(attempts):
        proc = subprocess.run(["sacct", "-j", str(job_id), "-X", "-n", "-P", "-o",
                               "State,ExitCode"], capture_output=True, text=True)
        said = " ".join(proc.stderr.split())
        lines = [line for line in proc.stdout.split("\n") if line.strip()]
        fields = lines[-1].split("|") if lines else []
        state = fields[0].split()[0] if fields else ""
        if state in TERMINAL:
            code, _, sig = (fields[1] if len(fields) > 1 else "0:0").partition(":")
            status = int(code or 0) or (128 + int(sig) if sig.isdigit() and int(sig) else 0)
            return state, status
        if state:
            return None
        time.sleep(POLL_S / attempts * attempt)
    raise SlurmError(f"Slurm job {job_id} left the queue but accounting (`sacct`) does not "
                     f"say how it ended{': ' + said if said else ''}",
                     fix="the launcher needs Slurm's job accounting to tell success from "
                         "failure: ask the cluster's admins, or set the launcher's kind to local",
                     exit_status=1)


_BAR = re.compile(r"(?P<n>\d+)/(?P<total>\d+) \[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+),\s*"
                  r"(?P<rate>[\d.]+)(?P<unit>step/s|s/step)(?:.*?loss=(?P<loss>[-\d.e+na]+))?")


def progress_line(stage: str, record: str, batch_tokens: int | None) -> str | None:
    """A progress line from one refresh of the training loop's tqdm bar in the job's log
    (`train:  40%|... | 4/10 [00:02<00:03, 1.9step/s, loss=5.2, lr=...]`), or None."""
    m = _BAR.search(record)
    if m is None or not record.lstrip().startswith("train"):
        return None
    rate = float(m["rate"]) if m["unit"] == "step/s" else (1 / float(m["rate"]) if float(m["rate"]) else 0.0)
    parts = [f"step {m['n']}/{m['total']}"]
    if batch_tokens:
        parts.append(f"{rate * batch_tokens:,.0f} tokens/s")
    if m["loss"]:
        parts.append(f"loss {m['loss']}")
    parts.append(f"ETA {m['eta']}")
    return f"[{stage}] " + " · ".join(parts)


class LogTail:
    """Echo what the job appends to its log; keep the latest progress-bar refresh."""

    def __init__(self, path: Path, stage: str, batch_tokens: int | None):
        self.path, self.stage, self.batch_tokens = path, stage, batch_tokens
        self.offset, self.partial = 0, ""
        self.progress: str | None = None
        self.shown_progress: str | None = None
        self.last_progress = 0.0

    def pump(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        text = self.partial + data.decode("utf-8", errors="replace")
        records = re.split(r"(\r|\n)", text)
        self.partial = "" if final else records.pop()  # the record being written
        for i in range(0, len(records), 2):
            record, end = records[i], records[i + 1] if i + 1 < len(records) else "\n"
            line = progress_line(self.stage, record, self.batch_tokens)
            if line is not None:
                self.progress = line
            elif record.strip() and (end == "\n" or final):
                print(record, file=sys.stderr, flush=True)
        now = time.monotonic()
        if self.progress and self.progress != self.shown_progress and (
                final or now - self.last_progress >= PROGRESS_S):
            print(self.progress, file=sys.stderr, flush=True)
            self.shown_progress, self.last_progress = self.progress, now


def cancel(job_id: int) -> None:
    """scancel the job and wait until it has left the queue (its processes stopped)."""
    subprocess.run(["scancel", str(job_id)], capture_output=True, text=True)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while queue_state(job_id) not in (LEFT, "CANCELLED") and time.monotonic() < deadline:
        time.sleep(min(POLL_S, 1.0))


def wait(job_id: int, tail: LogTail, stage: str) -> tuple[str, int]:
    """Follow the job until it leaves the queue; its (state, exit status)."""
    last_poll, seen = -POLL_S, None
    while True:
        tail.pump()
        if time.monotonic() - last_poll >= POLL_S:
            last_poll = time.monotonic()
            state = queue_state(job_id)
            if state == LEFT or state in TERMINAL:
                final = final_state(job_id)
                if final is not None:
                    tail.pump(final=True)
                    return final
            elif state != seen and state != "UNKNOWN":
                log(stage, f"Slurm job {job_id} is {state}")
                seen = state
        time.sleep(TAIL_S)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def with_local_launcher(cfg: Any, dotted: str) -> Any:
    """`cfg` with the launcher at `dotted` set to kind `local` (its `slurm:` block kept):
    what the job's processes run. The train stage's resumable state records its config
    (repro.train.resume), so this is the config `dvc exp run -S <stage>.launcher.kind=local`
    gives: a stage started on Slurm resumes here, and the other way round."""
    head, _, rest = dotted.partition(".")
    value = getattr(cfg, head)
    if rest:
        value = with_local_launcher(value, rest)
    else:
        assert isinstance(value, LauncherSpec)
        value = value.model_copy(update={"kind": "local"})
    return cfg.model_copy(update={head: value})


def _outcome(job_id: int, state: str, status: int, log_path: Path, field: str) -> None:
    if state == "COMPLETED" and status == 0:
        return
    if status == slurm_node.NO_SHARED_FS or not log_path.exists():
        raise SlurmError(f"Slurm job {job_id}'s nodes do not see this directory "
                         f"({Path.cwd()}): {'the log says why' if log_path.exists() else f'its log {log_path} never appeared here'}",
                         fix="run `dvc repro` from a directory on a filesystem the compute "
                             "nodes share (the cluster's /home, /scratch or project storage)",
                         exit_status=status or 1)
    fixes = {
        "TIMEOUT": f"raise {field}.slurm.time, or {field}.slurm.signal_grace_s so the job "
                   "has time to requeue itself; `dvc repro` resumes from the last checkpoint",
        "OUT_OF_MEMORY": f"raise {field}.slurm.mem_per_cpu_gb",
        "CANCELLED": "it was cancelled outside this process; `dvc repro` resubmits it and it "
                     "resumes from its last in-stage checkpoint",
        "NODE_FAIL": "rerun `dvc repro`: the stage resumes from its last in-stage checkpoint",
        "PREEMPTED": "rerun `dvc repro`: the stage resumes from its last in-stage checkpoint",
    }
    raise SlurmError(f"Slurm job {job_id} ended {state} with exit status {status}; its log: "
                     f"{log_path}", fix=fixes.get(state, "the processes' errors are in the "
                                                          "log above"),
                     exit_status=status or 1)


def run_stage(kind_name: str, declared: StageKind, cfg: Any, io: StageIO) -> dict[str, Any]:
    """Run the stage as a Slurm job (its launcher is `slurm`); when it completed, the
    environment fingerprint its first node recorded (for the stage's `env` output); raise
    SlurmError otherwise. Ctrl-C or SIGTERM cancels the job."""
    config_field = launcher_field(declared.config)
    launcher = declared.launcher(cfg)
    assert config_field is not None and launcher is not None and launcher.slurm is not None
    slurm, field = launcher.slurm, spec_field(config_field)
    folder = job_folder(io.name)
    folder.mkdir(parents=True, exist_ok=True)
    worker_args = worker.write_payload(folder / "payload.json", kind_name,
                                       with_local_launcher(cfg, config_field), io)
    token = secrets.token_hex(16)
    (folder / slurm_node.TOKEN_FILE).write_text(token + "\n", encoding="utf-8")
    (folder / ENV_RECORD).unlink(missing_ok=True)  # an older job's
    written = tuple(str(path) for key, path in sorted(io.outputs.items()) if key != "env")
    plan = plan_job(kind_name, cfg, slurm, field, io.name, folder, list(worker_args), token,
                    written)
    python = "python" if slurm.env_command else sys.executable
    script = folder / "job.sh"
    script.write_text(job_script(plan, slurm, Path.cwd(), python), encoding="utf-8")
    job_id = submit(script, field)
    log_path = folder / f"slurm-{job_id}.out"
    log(io.name, f"submitted Slurm job {job_id}: {plan.nodes} node(s) x {plan.nproc_per_node} "
        f"process(es), partition {slurm.partition}; log {log_path}")
    tail = LogTail(log_path, io.name, getattr(cfg, "batch_tokens", None))
    main = threading.current_thread() is threading.main_thread()  # signal handlers live there
    on_term = signal.signal(signal.SIGTERM, _interrupt) if main else None  # DVC's stop, like Ctrl-C
    try:
        state, status = wait(job_id, tail, io.name)
    except BaseException as e:  # Ctrl-C, or anything else: leave nothing running
        cancel(job_id)
        if isinstance(e, KeyboardInterrupt):
            raise SlurmError(f"interrupted: cancelled Slurm job {job_id}", exit_status=INTERRUPTED,
                             fix="rerun `dvc repro`: the stage resumes from its last in-stage "
                                 "checkpoint") from None
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, on_term)
    _outcome(job_id, state, status, log_path, field)
    log(io.name, f"Slurm job {job_id} completed")
    try:
        return read_json(folder / ENV_RECORD)
    except (OSError, ValueError) as e:
        raise SlurmError(f"Slurm job {job_id} completed but left no environment record "
                         f"({folder / ENV_RECORD}: {e})", fix="rerun `dvc repro`: the "
                         "requeued job finds its outputs written and records it") from None
