"""One node's task of a stage's Slurm job: `python -m repro.launch.slurm_node ARGS -- WORKER`.

The job script (repro.launch.slurm) runs this once per node under `srun`. It first checks
that the node sees the folder the stage was submitted from (the token file the submitting
process wrote there: every rank reads the stage's inputs and rank 0 writes its outputs
through that filesystem), then replaces itself with

- torchrun for a multi-process training stage: `--nnodes N --nproc_per_node P` with c10d
  rendezvous on the job's first node (torch's documented multi-node launch; the rendezvous
  assigns global ranks, and rank 0 writes the outputs where the local launcher would), or
- `python WORKER` for a single-process stage (an evaluation relaunches itself under
  accelerate on this node if its spec asks, as it does locally).

Imports nothing heavy: a node that cannot see the project fails in well under a second.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from repro.relaunch import cores_per_process

TOKEN_FILE = "token"
"""The shared-filesystem check's file in the job folder."""
NO_SHARED_FS = 78
"""Exit status of a node that cannot see the job folder (EX_CONFIG); the submitting side
turns it into an error with the fix."""
RDZV_PORT_BASE = 29500
"""torchrun's default rendezvous port; a job adds its id modulo RDZV_PORT_SPAN, so two jobs
sharing a first node do not meet in one rendezvous store."""
RDZV_PORT_SPAN = 1000


def check_shared_filesystem(folder: Path, token: str) -> str | None:
    """None when `folder`/token holds `token`; else what is wrong, for the job's log."""
    try:
        seen = (folder / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except OSError as e:
        seen = f"unreadable ({e.strerror or e})"
    if seen == token:
        return None
    return (f"repro: node {os.uname().nodename} does not see {folder.resolve()}/{TOKEN_FILE} as "
            f"the submitting process wrote it (found: {seen!r}). The stage's inputs, outputs "
            "and resumable state must be on a filesystem every node shares with the machine "
            "running `dvc repro`: run it from a directory on that filesystem (the cluster's "
            "/home, /scratch or project storage)")


def first_node() -> str:
    """The job's first node, whose torchrun hosts the c10d rendezvous."""
    nodelist = os.environ["SLURM_JOB_NODELIST"]
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True,
                         capture_output=True, text=True).stdout.split()
    if not out:
        raise RuntimeError(f"`scontrol show hostnames {nodelist}` listed no host")
    return out[0]


def torchrun_command(nodes: int, nproc_per_node: int, host: str, job_id: int,
                     worker: list[str]) -> list[str]:
    """torchrun across the job's nodes. `rdzv_id` is the job id: a requeued job (same id)
    starts a fresh rendezvous, since the old store died with the old processes.
    --max-restarts 0: a failed rank fails the job; Slurm's requeue is the restart."""
    port = RDZV_PORT_BASE + job_id % RDZV_PORT_SPAN
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}",
            f"--nproc_per_node={nproc_per_node}", "--rdzv_backend=c10d",
            f"--rdzv_endpoint={host}:{port}", f"--rdzv_id=repro-{job_id}", "--max_restarts=0",
            *worker]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m repro.launch.slurm_node")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--nproc-per-node", type=int, required=True)
    parser.add_argument("--torchrun", action="store_true")
    parser.add_argument("worker", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    worker = args.worker[1:] if args.worker[:1] == ["--"] else args.worker
    problem = check_shared_filesystem(args.folder, args.token)
    if problem is not None:
        print(problem, file=sys.stderr, flush=True)
        return NO_SHARED_FS
    env = dict(os.environ)
    # as repro.train.distributed does locally: an equal share of this node's cores per rank
    # (torchrun would leave one thread each); set REPRO_NUM_THREADS in the environment the
    # job inherits to pin it (float reductions depend on it)
    env.setdefault("REPRO_NUM_THREADS", str(cores_per_process(args.nproc_per_node)))
    env.setdefault("OMP_NUM_THREADS", env["REPRO_NUM_THREADS"])
    if args.torchrun:
        cmd = torchrun_command(args.nodes, args.nproc_per_node, first_node(),
                               int(os.environ["SLURM_JOB_ID"]), worker)
    else:
        cmd = [sys.executable, *worker]
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)  # signals from srun (preemption, scancel) reach torchrun itself


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
