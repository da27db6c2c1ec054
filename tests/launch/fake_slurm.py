"""A stand-in Slurm for tests: `sbatch`, `srun`, `squeue`, `sacct`, `scancel` and `scontrol`
that run each job as local processes, one process per "node" (every node is this machine,
`localhost`), with the SLURM_* variables a real job step sees.

`install(bin_dir, state_dir)` writes the commands (each `python fake_slurm.py <command>`);
jobs live in `state_dir/<id>.json`. What it models of Slurm, and nothing more:

- sbatch reads `#SBATCH` lines, refuses a partition not in FAKE_SLURM_PARTITIONS (as sbatch
  does: "invalid partition specified", nothing queued), queues the job and returns its id;
  a detached runner runs the script with `--output` (`%j` expanded) in append mode;
- `--requeue` jobs go back to PENDING and run again (SLURM_RESTART_COUNT + 1) when
  `scontrol requeue` or `preempt` stopped them; `scancel` marks a job CANCELLED, which no
  requeue undoes; both stop the job with SIGTERM to all its processes (its process group);
- srun starts `--nodes` copies of its command with SLURM_NODEID/SLURM_PROCID and forwards
  SIGTERM; `--kill-on-bad-exit` stops the others when one fails;
- FAKE_SLURM_HIDE: a file deleted before the job starts (a node that does not see it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("sbatch", "srun", "squeue", "sacct", "scancel", "scontrol")


def install(bin_dir: Path, state_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} {name} \"$@\"\n")
        tool.chmod(0o755)


def _state_dir() -> Path:
    return Path(os.environ["FAKE_SLURM_STATE"])


def load(job_id: int | str) -> dict:
    return json.loads((_state_dir() / f"{job_id}.json").read_text())


def _save(job: dict) -> None:
    path = _state_dir() / f"{job['id']}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(job))
    os.replace(tmp, path)


def _update(job_id: int | str, **changes) -> dict:
    job = load(job_id)
    job.update(changes)
    _save(job)
    return job


def _stop(job: dict) -> None:
    if job.get("pgid"):
        try:
            os.killpg(job["pgid"], signal.SIGTERM)
        except ProcessLookupError:
            pass


def preempt(state_dir: Path, job_id: int) -> None:
    """What Slurm does to a `--requeue` job it preempts (PreemptMode=REQUEUE): SIGTERM to
    all the job's processes, then the job is queued again."""
    os.environ["FAKE_SLURM_STATE"] = str(state_dir)
    _stop(_update(job_id, requeue=True))


def sbatch(args: list[str]) -> int:
    script = Path(args[-1])
    text = script.read_text()
    opts = dict(re.findall(r"^#SBATCH --([a-z-]+)(?:=(.*))?$", text, re.M))
    partitions = os.environ.get("FAKE_SLURM_PARTITIONS", "cpu").split(",")
    if opts.get("partition") not in partitions:
        print("sbatch: error: invalid partition specified: " + str(opts.get("partition")), file=sys.stderr)
        print("sbatch: error: Batch job submission failed: Invalid partition name specified",
              file=sys.stderr)
        return 1
    counter = _state_dir() / "next_id"
    job_id = int(counter.read_text()) if counter.exists() else 1000 + os.getpid() % 5000
    counter.write_text(str(job_id + 1))
    _save({"id": job_id, "state": "PENDING", "exit": "0:0", "script": str(script.resolve()),
           "opts": opts, "restarts": 0, "requeue": False, "cancelled": False, "pgid": None})
    subprocess.Popen([sys.executable, __file__, "_run", str(job_id)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     cwd=os.getcwd(), env=dict(os.environ))
    print(job_id)
    return 0


def _run(job_id: str) -> int:
    job = load(job_id)
    opts = job["opts"]
    nodes = int(opts.get("nodes", 1))
    hide = os.environ.get("FAKE_SLURM_HIDE")
    if hide:
        Path(hide).unlink(missing_ok=True)
    while True:
        out = open(opts["output"].replace("%j", str(job_id)), "a" if opts.get("open-mode") == "append" else "w")
        env = dict(os.environ, SLURM_JOB_ID=str(job_id), SLURM_JOBID=str(job_id),
                   SLURM_JOB_NODELIST=",".join(["localhost"] * nodes), SLURM_JOB_NUM_NODES=str(nodes),
                   SLURM_NNODES=str(nodes), SLURM_RESTART_COUNT=str(job["restarts"]),
                   SLURM_CPUS_PER_TASK=opts.get("cpus-per-task", "1"))
        proc = subprocess.Popen(["bash", job["script"]], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        job = _update(job_id, state="RUNNING", pgid=proc.pid)
        if job["cancelled"]:  # cancelled while starting
            _stop(job)
        rc = proc.wait()
        out.close()
        job = load(job_id)
        if job["cancelled"]:
            _update(job_id, state="CANCELLED", exit=f"0:{signal.SIGTERM}", pgid=None)
            return 0
        if job["requeue"] and "requeue" in opts:
            job = _update(job_id, state="PENDING", requeue=False, restarts=job["restarts"] + 1, pgid=None)
            time.sleep(0.2)
            continue
        _update(job_id, state="COMPLETED" if rc == 0 else "FAILED", exit=f"{rc}:0", pgid=None)
        return 0


def srun(args: list[str]) -> int:
    nodes = 1
    kill_on_bad_exit = False
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt.startswith("--nodes="):
            nodes = int(opt.split("=", 1)[1])
        elif opt.startswith("--kill-on-bad-exit"):
            kill_on_bad_exit = True
    procs = [subprocess.Popen(args, env=dict(os.environ, SLURM_NODEID=str(i), SLURM_PROCID=str(i),
                                             SLURM_LOCALID="0", SLURM_STEP_NUM_NODES=str(nodes)))
             for i in range(nodes)]

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    status = 0
    while any(p.poll() is None for p in procs):
        failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
        if failed and kill_on_bad_exit:
            forward(signal.SIGTERM, None)
        time.sleep(0.05)
    for p in procs:
        status = status or p.returncode
    return status if status >= 0 else 128 - status


def squeue(args: list[str]) -> int:
    job_id = args[args.index("-j") + 1]
    try:
        state = load(job_id)["state"]
    except FileNotFoundError:
        return 1
    if state in ("PENDING", "RUNNING"):
        print(state)
    return 0


def sacct(args: list[str]) -> int:
    job = load(args[args.index("-j") + 1])
    print(f"{job['state']}|{job['exit']}")
    return 0


def scancel(args: list[str]) -> int:
    job = _update(args[-1], cancelled=True)
    _stop(job)
    return 0


def scontrol(args: list[str]) -> int:
    if args[:2] == ["show", "hostnames"]:
        print("\n".join(args[2].split(",")))
        return 0
    if args[0] == "requeue":
        job = load(args[1])
        if job["cancelled"] or job["state"] != "RUNNING":
            print(f"Requested operation is presently disabled for job {args[1]}", file=sys.stderr)
            return 1
        if not job["requeue"]:
            _stop(_update(args[1], requeue=True))
        return 0
    print(f"fake scontrol: {args} not modelled", file=sys.stderr)
    return 1


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "_run":
        sys.exit(_run(rest[0]))
    sys.exit(globals()[command](rest))
