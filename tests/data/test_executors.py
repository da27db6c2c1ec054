"""Executors: the Slurm job configuration a pass generates, and a whole curation submitted
through datatrove's SlurmPipelineExecutor to stand-in `sbatch`/`srun`/`squeue` commands that
run the job array on this machine; outputs match the local executor byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from repro.data.executors import PassRunner
from repro.data.pipeline import Curation
from repro.spec import schema as S

SLURM = S.SlurmSpec(partition="cpu", time="01:00:00", cpus_per_task=2, mem_per_cpu_gb=4,
                    qos="high", account="proj-42", sbatch_args={"constraint": "zen4"})


def test_slurm_job_configuration(tmp_path):
    runner = PassRunner(S.ExecutorSpec(kind="slurm", tasks=3, workers=2, slurm=SLURM), tmp_path, "web")
    executor = runner.build([], tasks=3, logging_dir=tmp_path / "logs")
    script = executor.get_launch_file_contents(executor.get_sbatch_args(max_array=3), "RUN")
    lines = set(script.splitlines())
    for expected in ("#SBATCH --partition=cpu", "#SBATCH --time=01:00:00",
                     "#SBATCH --cpus-per-task=2", "#SBATCH --mem-per-cpu=4.0G",
                     "#SBATCH --array=0-2%2", "#SBATCH --qos=high", "#SBATCH --account=proj-42",
                     "#SBATCH --constraint=zen4", "#SBATCH --job-name=repro-web-00"):
        assert expected in lines, (expected, script)
    assert "#SBATCH --requeue" not in lines  # a requeued task would rerun a pass in flight
    assert f"source {Path(sys.prefix) / 'bin' / 'activate'}" in script
    assert script.rstrip().endswith("RUN")


def test_slurm_env_command_from_spec(tmp_path):
    spec = S.ExecutorSpec(kind="slurm", slurm=SLURM.model_copy(update={"env_command": "module load py"}))
    executor = PassRunner(spec, tmp_path, "code").build([], tasks=1, logging_dir=tmp_path / "logs")
    assert "module load py" in executor.get_launch_file_contents(executor.get_sbatch_args(), "RUN")


def test_slurm_spec_is_required():
    with pytest.raises(ValueError, match="slurm"):
        S.ExecutorSpec(kind="slurm")


FAKE_SBATCH = """\
#!{python}
# Stand-in for sbatch: runs every index of the job array now, side by side (as Slurm would,
# within the array's %N limit), and returns when all have ended.
import os, re, subprocess, sys
args, script = sys.argv[1:-1], sys.argv[-1]
env = dict(os.environ, SLURM_NODELIST="localhost", SLURM_ARRAY_JOB_ID="4242")
for a in args:
    if a.startswith("--export=ALL,"):
        env.update(kv.split("=", 1) for kv in a[len("--export=ALL,"):].split(","))
text = open(script).read()
m = re.search(r"^#SBATCH --array=0-(\\d+)(?:%(\\d+))?", text, re.M)
indices = list(range(int(m.group(1)) + 1 if m else 1))
limit = int(m.group(2)) if m and m.group(2) else len(indices)
for start in range(0, len(indices), limit):
    procs = [subprocess.Popen(["bash", script], env=dict(env, SLURM_ARRAY_TASK_ID=str(i)),
                              stdout=open(os.environ["FAKE_SLURM_LOG"] + ".out", "a"),
                              stderr=subprocess.STDOUT)
             for i in indices[start:start + limit]]
    if any([p.wait() for p in procs]):
        sys.exit("an array task failed")
with open(os.environ["FAKE_SLURM_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
print("Submitted batch job 4242")
"""

FAKE_SRUN = """\
#!/bin/bash
# Stand-in for srun: drop the options, run the command.
while [[ "$1" == -* ]]; do if [[ "$1" == "-n" ]]; then shift; fi; shift; done
exec "$@"
"""


def _tool(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_curation_through_slurm_matches_local(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "sbatch", FAKE_SBATCH.format(python=sys.executable))
    _tool(bin_dir, "srun", FAKE_SRUN)
    _tool(bin_dir, "squeue", "#!/bin/bash\nexit 0\n")
    _tool(bin_dir, "scontrol", "#!/bin/bash\necho \"$3\"\n")  # show hostnames <list>
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_LOG", str(tmp_path / "sbatch.log"))
    monkeypatch.setattr("repro.data.executors.SLURM_POLL_S", 0.1)

    src = tmp_path / "src"
    src.mkdir()
    code = "def f{i}(x):\n    return x * {i} + {i}\n\n\nprint(f{i}(2))\n"
    with open(src / "code.jsonl", "w") as f:
        for i in range(12):
            text = code.format(i=i % 9)  # ids 9..11 repeat 0..2: exact duplicates
            f.write(json.dumps({"id": f"m{i:02d}.py", "text": text}) + "\n")
    source = S.JsonlSource(path=str(src))
    # 2 buckets, not FineWeb's 14: every task of a Slurm pass is a new Python process here
    # (~1.5 s), and the bucket pass runs one task per bucket
    steps = [S.CodeQualityStep(), S.ExactDedupStep(), S.MinhashStep(num_buckets=2)]

    def curate(kind: str) -> tuple[Path, dict]:
        spec = S.ExecutorSpec(kind=kind, tasks=2, workers=2, slurm=SLURM if kind == "slurm" else None)
        out = tmp_path / f"out-{kind}"
        funnel = Curation("code", source, steps, spec, None, out, tmp_path / f"work-{kind}", shards=2).run()
        return out, funnel.as_metrics()

    local_out, local_funnel = curate("local")
    slurm_out, slurm_funnel = curate("slurm")
    assert slurm_funnel == local_funnel
    assert local_funnel["steps"]["02_exact_dedup"]["removed"] == {"duplicate": 3}
    assert _digest(slurm_out) == _digest(local_out)
    submitted = (tmp_path / "sbatch.log").read_text().splitlines()
    passes = len(list((tmp_path / "work-slurm" / "logs").iterdir()))
    # one job array per pass, plus datatrove's stats-merging job after each
    assert sum("RUN_OFFSET=0" in line for line in submitted) == passes >= 5
    assert all(line in ("", "--export=ALL,RUN_OFFSET=0") for line in submitted)
