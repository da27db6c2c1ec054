"""The Slurm launcher against a stand-in Slurm (tests/launch/fake_slurm.py) that runs each job
as local processes, one per "node": the generated job, sbatch's refusals, a cluster without a
shared filesystem, Ctrl-C, a 2-node torchrun (c10d rendezvous on localhost, gloo) whose
outputs equal the local 2-process DDP run's byte for byte, and a preempted job that is
requeued and resumes to the same bytes."""

from __future__ import annotations

import _thread
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from repro.cli import main
from repro.launch import slurm
from repro.launch.slurm_node import NO_SHARED_FS, TOKEN_FILE, torchrun_command
from repro.spec.schema import AdamWSpec, ModelSpec, SlurmLaunchSpec, TrainBPETokenizer
from repro.stages import kinds, tokenize, tokenizer
from repro.stages.base import StageIO
from repro.stages.configs import EvaluateConfig, TokenizeConfig, TokenizerConfig, TrainConfig
from repro.sweep.dvc import DvcBackend, tool_path
from repro.train.schedule import ScheduleSegment

sys.path.insert(0, str(Path(__file__).parent))
import fake_slurm  # noqa: E402  (the stand-in commands, next to this file)

MODEL = ModelSpec(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                  nope_interval=2, max_position_embeddings=64)
SID = "train-exp-s1-00000000"
OUTPUTS = {"checkpoint": "out/ck", "state": "out/st", "metrics": "out/m.json", "ledger": "out/ledger.json",
           "loss": "out/loss.csv", "monitor": "out/monitor.csv", "perf": "out/perf.json",
           "env": "out/env.json", "live": "out/live/metrics.json", "live_curves": "out/live/plots/metrics"}
SLURM = {"partition": "cpu", "time": "00:10:00", "nodes": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A tokenizer and the token shards of one small synthetic dataset."""
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(1)
    (root / "web").mkdir()
    with open(root / "web" / "train.jsonl", "w") as f:
        for i in range(80):
            text = ". ".join(f"the {rng.choice(['cat', 'dog', 'mat'])} {rng.choice(['sat', 'ran'])}"
                             for _ in range(rng.randint(2, 10)))
            f.write(json.dumps({"id": f"w{i}", "text": text}) + "\n")
    tokenizer.run(TokenizerConfig(tokenizer=TrainBPETokenizer(vocab_size=280), datasets=["web"]),
                  StageIO("tok", {"train:web": root / "web"}, {"tokenizer": root / "tok"}))
    tokenize.run(TokenizeConfig(dataset="web", seed=0),
                 StageIO("tz", {"docs": root / "web", "tokenizer": root / "tok"},
                         {"tokens": root / "tokens-web", "metrics": root / "m-web.json"}))
    return root


@pytest.fixture
def cluster(tmp_path, monkeypatch) -> Path:
    """The stand-in Slurm on PATH, a fresh workspace as the working directory, fast polling.
    Returns the fake's state folder (one JSON file per job)."""
    state = tmp_path / "slurm-state"
    fake_slurm.install(tmp_path / "bin", state)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_STATE", str(state))
    monkeypatch.setenv("REPRO_NUM_THREADS", "1")  # the same float reductions in every run
    monkeypatch.setattr(slurm, "POLL_S", 0.2)
    monkeypatch.setattr(slurm, "TAIL_S", 0.05)
    monkeypatch.setattr(slurm, "PROGRESS_S", 0.0)
    (tmp_path / "ws").mkdir()
    monkeypatch.chdir(tmp_path / "ws")
    return state


def config(launcher: dict | None = None, steps: int = 4) -> TrainConfig:
    return TrainConfig(
        experiment="exp", phase="s1", model=MODEL, optimizer=AdamWSpec(lr=1e-2),
        schedule=ScheduleSegment(warmup_steps=2).for_phase(0, steps), seq_len=32, batch_tokens=256,
        micro_batch_size=2, step_start=0, steps=steps, mixture={"web": 1.0}, seed=0,
        max_epochs={"web": 50.0}, log_every_steps=1, checkpoint_every_steps=1,
        distributed={"kind": "ddp", "nproc": 2},
        launcher=launcher or {"kind": "local"},
    )


def stage(cfg: TrainConfig, data: Path):
    """`repro stage train` in the current directory, as dvc.yaml runs it."""
    Path("params.yaml").write_text(json.dumps({SID: cfg.model_dump(mode="json")}))
    args = ["stage", "train", SID, "--in", f"tokenizer={data / 'tok'}",
            "--in", f"tokens:web={data / 'tokens-web'}"]
    for key, path in OUTPUTS.items():
        args += ["--out", f"{key}={path}"]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def outputs(root: Path) -> dict[str, bytes]:
    """Every output file but the measured records (timings, the machine, the live record)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "out").rglob("*"))
            if p.is_file() and p.name not in ("perf.json", "env.json")
            and p.relative_to(root / "out").parts[0] != "live"}


def jobs(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(state.glob("*.json"))]


def test_job_script_runs_torchrun_on_every_node_and_requeues(tmp_path):
    spec = SlurmLaunchSpec(partition="gpu", nodes=4, gpus_per_node=8, cpus_per_task=32,
                           mem_per_cpu_gb=4, account="proj", qos="high", constraint="h100",
                           env_command="module load cuda", sbatch_args={"reservation": "r1"})
    plan_cfg = config({"kind": "slurm", "slurm": {**SLURM, "partition": "gpu"}}).model_copy(
        update={"distributed": config().distributed.model_copy(update={"nproc": 32})})
    plan = slurm.plan_job("train", plan_cfg, spec, "training.launcher", SID, Path(".repro/slurm") / SID,
                          ["-m", "repro.stages.worker", "payload.json"], "tok")
    assert (plan.nodes, plan.nproc_per_node, plan.torchrun) == (4, 8, True)
    script = slurm.job_script(plan, spec, Path("/shared/proj"), "python")
    lines = script.splitlines()
    for expected in ("#SBATCH --partition=gpu", "#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1",
                     "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=32",
                     "#SBATCH --mem-per-cpu=4096M", "#SBATCH --time=24:00:00",
                     "#SBATCH --account=proj", "#SBATCH --qos=high", "#SBATCH --constraint=h100",
                     "#SBATCH --reservation=r1", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                     "#SBATCH --signal=B:USR1@120", f"#SBATCH --job-name=repro-{SID}",
                     f"#SBATCH --output=/shared/proj/.repro/slurm/{SID}/slurm-%j.out",
                     "module load cuda", "trap 'requeue USR1' USR1", "trap 'requeue TERM' TERM"):
        assert expected in lines, (expected, script)
    srun = next(line for line in lines if line.startswith("srun "))
    assert "--nodes=4 --ntasks-per-node=1 --cpus-per-task=32 --gpus-per-node=8" in srun
    assert "--torchrun" in srun
    assert srun.endswith("-- -m repro.stages.worker payload.json &")
    # params.yaml edited after the spec was checked (`dvc exp run -S`): checked again
    for nodes, gpus, message in ((3, 8, "cannot split distributed.nproc 32"),
                                 (2, 8, "16 processes per node, more than gpus_per_node 8")):
        with pytest.raises(slurm.SlurmError, match=message):
            slurm.plan_job("train", plan_cfg, spec.model_copy(update={"nodes": nodes,
                                                                       "gpus_per_node": gpus}),
                           "training.launcher", SID, Path("f"), [], "t")
    cmd = torchrun_command(4, 8, "node01", 4242, ["-m", "repro.stages.worker", "p"])
    assert cmd[3:9] == ["--nnodes=4", "--nproc_per_node=8", "--rdzv_backend=c10d",
                        "--rdzv_endpoint=node01:29742", "--rdzv_id=repro-4242", "--max_restarts=0"]


def test_progress_line_from_the_training_bar():
    bar = "train:  40%|████      | 4/10 [00:02<00:03,  2.00step/s, loss=5.1234, lr=1.00e-02]"
    assert slurm.progress_line("s", bar, 256) == "[s] step 4/10 · 512 tokens/s · loss 5.1234 · ETA 00:03"
    assert slurm.progress_line("s", "[s] web: 100 tokens drawn", 256) is None


def test_unknown_partition_is_refused_and_nothing_is_queued(cluster, data):
    result = stage(config({"kind": "slurm", "slurm": {**SLURM, "partition": "gpu"}}), data)
    assert result.exit_code == 2, result.output
    assert "invalid partition specified: gpu" in result.output
    assert "training.launcher.slurm.partition" in result.output and "sinfo -s" in result.output
    assert jobs(cluster) == []


def test_a_cluster_without_the_shared_filesystem_fails_with_the_fix(cluster, data, monkeypatch):
    token = Path(".repro/slurm") / SID / TOKEN_FILE
    monkeypatch.setenv("FAKE_SLURM_HIDE", str(token.resolve()))  # the nodes do not see it
    result = stage(config({"kind": "slurm", "slurm": SLURM}), data)
    assert result.exit_code == NO_SHARED_FS, result.output
    assert "nodes do not see this directory" in result.output
    assert "filesystem the compute nodes share" in result.output
    log = next((Path(".repro/slurm") / SID).glob("slurm-*.out")).read_text()
    assert "does not see" in log  # the node said why (srun stops the others on its failure)
    assert not Path("out").exists()


def test_ctrl_c_cancels_the_job(cluster, data):
    def interrupt_once_running():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(j["state"] == "RUNNING" for j in jobs(cluster)):
                _thread.interrupt_main()  # KeyboardInterrupt in the waiting process
                return
            time.sleep(0.02)

    # Ctrl-C reaches `repro stage` with Python's own SIGINT handler, as DVC starts it;
    # interrupt_main does nothing where SIGINT is ignored or default, as an earlier test of
    # this worker process may have left it (seen once in a full `make test`)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_once_running, daemon=True).start()
        result = stage(config({"kind": "slurm", "slurm": SLURM}), data)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == slurm.INTERRUPTED, result.output
    assert "interrupted: cancelled Slurm job" in result.output
    (job,) = jobs(cluster)
    assert job["state"] == "CANCELLED" and job["restarts"] == 0


@pytest.fixture(scope="module")
def local_ddp(data, tmp_path_factory) -> dict[str, bytes]:
    """The stage's outputs from the local launcher: torchrun with 2 gloo processes here."""
    ws = tmp_path_factory.mktemp("local")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        mp.setenv("REPRO_NUM_THREADS", "1")
        result = stage(config(), data)
    assert result.exit_code == 0, result.output
    return outputs(ws)


@pytest.mark.slow
def test_two_nodes_preempted_and_requeued_resume_to_the_local_ddp_bytes(cluster, data, local_ddp):
    state = Path(".repro/resume") / SID / "state.pt"

    def preempt_after_first_checkpoint():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not state.exists():
            time.sleep(0.01)
        (job,) = jobs(cluster)
        fake_slurm.preempt(cluster, job["id"])  # SIGTERM to every process of the job

    watcher = threading.Thread(target=preempt_after_first_checkpoint, daemon=True)
    watcher.start()
    result = stage(config({"kind": "slurm", "slurm": SLURM}), data)
    watcher.join()
    assert result.exit_code == 0, result.output
    (job,) = jobs(cluster)
    assert job["state"] == "COMPLETED" and job["restarts"] == 1
    log = (Path(".repro/slurm") / SID / f"slurm-{job['id']}.out").read_text()
    assert "got SIGTERM: requeueing it" in log and "attempt 2" in log
    # every rank finished the update it was in, saved it and stopped (repro.train.preemption)
    assert "stopped by SIGTERM after update" in log
    assert "resuming at update" in log  # from the in-stage checkpoint, not from scratch
    # two nodes x one process, preempted and resumed, build what the local 2-process DDP run
    # builds, byte for byte (one run covers both: an uninterrupted 2-node run cost 18 s more)
    assert outputs(Path.cwd()) == local_ddp
    assert not state.parent.exists() or not state.exists()  # cleared once the stage completed
    perf = json.loads(Path(OUTPUTS["perf"]).read_text())
    assert perf["processes"] == 2
    # the environment record is the job's node's (here the same machine), with this wall time
    env = json.loads(Path(OUTPUTS["env"]).read_text())
    recorded = json.loads((Path(".repro/slurm") / SID / slurm.ENV_RECORD).read_text())
    assert env["numerics"] == recorded["numerics"] and env["run"]["wall_seconds"] > 0
    assert env["numerics"]["torch"] is not None  # recorded after importing the stage's module
    streamed = result.output  # what `dvc repro` shows: the job's log and progress, echoed
    assert "step 4/4" in streamed and "tokens/s" in streamed  # the progress line came back
    assert f"[{SID}] steps 1..4, 1 torch threads x 2 process(es)" in streamed  # rank 0's log


def test_the_launcher_changes_no_stage_identity():
    local, on_slurm = config(), config({"kind": "slurm", "slurm": SLURM})
    exclude = kinds()["train"].identity_exclude()
    assert local.model_dump(exclude=exclude) == on_slurm.model_dump(exclude=exclude)


def test_a_state_saved_under_either_launcher_resumes_under_the_other():
    """The resumable state's fingerprint leaves out what the stage id leaves out: a stage
    stopped in a Slurm job resumes under `-S ...launcher.kind=local` and back."""
    from repro.stages.train import config_fingerprint

    io = StageIO(SID, {"tokenizer": Path("tok")}, {})
    local = config()
    assert config_fingerprint(local, io) == config_fingerprint(config({"kind": "slurm", "slurm": SLURM}), io)
    assert config_fingerprint(local, io) == config_fingerprint(
        local.model_copy(update={"checkpoint_every_steps": 7}), io)
    assert config_fingerprint(local, io) != config_fingerprint(local.model_copy(update={"seed": 1}), io)


def test_an_evaluation_job_runs_its_worker_on_one_node():
    """An evaluate stage's launcher sits in its `evaluation` settings: the job runs the worker
    once (it relaunches under accelerate on that node if its backend says so), with the
    launcher's kind set to local inside the job."""
    root = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((root / "params.yaml").read_text())
    section = next(v for k, v in params.items() if k.startswith("evaluate-"))
    section["evaluation"]["launcher"] = {"kind": "slurm", "slurm": {**SLURM, "nodes": 1}}
    cfg = EvaluateConfig.model_validate(section)
    declared = kinds()["evaluate"]
    launcher = declared.launcher(cfg)
    assert launcher.kind == "slurm"
    plan = slurm.plan_job("evaluate", cfg, launcher.slurm, "evaluation.launcher", "evaluate-x", Path("f"),
                          ["-m", "repro.stages.worker", "p"], "t")
    assert (plan.nodes, plan.nproc_per_node, plan.torchrun) == (1, 1, False)
    inside = slurm.with_local_launcher(cfg, "evaluation.launcher")
    # as `dvc exp run -S ...launcher.kind=local` leaves it: either launcher resumes the other's
    assert declared.launcher(inside) == launcher.model_copy(update={"kind": "local"})
    assert inside.model_dump(exclude={"evaluation": {"launcher"}}) == cfg.model_dump(
        exclude={"evaluation": {"launcher"}})
    with pytest.raises(slurm.SlurmError, match="this stage runs on one node"):
        slurm.plan_job("evaluate", cfg, launcher.slurm.model_copy(update={"nodes": 2}), "evaluation.launcher",
                       "evaluate-x", Path("f"), [], "t")


def test_a_requeued_attempt_after_the_outputs_were_written_does_nothing(tmp_path):
    """The time-limit signal can come as the job finishes: the requeued attempt finds every
    output newer than the job's token and ends at once instead of training again."""
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / TOKEN_FILE).write_text("t\n")
    time.sleep(0.02)  # mtimes: the outputs come after the token
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "m.json").write_text("{}")
    spec = SlurmLaunchSpec(partition="cpu", nodes=1)
    (folder / slurm.ENV_RECORD).write_text("{}")  # the previous attempt recorded it
    plan = slurm.JobPlan("train", SID, folder, 1, 1, False, ["-c", "pass"], "t",
                         ("out", "out/m.json"))
    script = tmp_path / "job.sh"
    script.write_text(slurm.job_script(plan, spec, tmp_path, sys.executable))
    env = dict(os.environ, SLURM_JOB_ID="1", SLURM_JOB_NODELIST="localhost",
               PATH=f"{tmp_path / 'nothing'}")  # no srun: reaching it fails
    done = subprocess.run(["/bin/bash", str(script)], env={**env, "SLURM_RESTART_COUNT": "1"},
                          capture_output=True, text=True)
    assert done.returncode == 0 and "nothing left to do" in done.stdout, done
    first = subprocess.run(["/bin/bash", str(script)], env={**env, "SLURM_RESTART_COUNT": "0"},
                           capture_output=True, text=True)
    assert first.returncode != 0 and "srun" in first.stderr  # a first attempt always runs
    os.utime(folder / TOKEN_FILE)  # a token newer than an output: written by an older job
    stale = subprocess.run(["/bin/bash", str(script)], env={**env, "SLURM_RESTART_COUNT": "1"},
                           capture_output=True, text=True)
    assert stale.returncode != 0 and "srun" in stale.stderr


@pytest.mark.parametrize("stderr,expected", [
    ("slurm_load_jobs error: Socket timed out on send/recv operation", "UNKNOWN"),
    ("slurm_load_jobs error: Invalid job id specified", slurm.LEFT)])
def test_a_busy_controller_is_asked_again_and_accounting_gives_the_end(tmp_path, monkeypatch,
                                                                       stderr, expected):
    (tmp_path / "squeue").write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit 1\n")
    (tmp_path / "sacct").write_text("#!/bin/sh\necho 'CANCELLED by 1000|0:15'\n")
    for tool in ("squeue", "sacct"):
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert slurm.queue_state(7) == expected
    assert slurm.final_state(7) == ("CANCELLED", 128 + 15)


@pytest.mark.parametrize("said,field", [
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition "
     "combination specified", "training.launcher.slurm.account"),
    ("sbatch: error: Batch job submission failed: Invalid qos specification",
     "training.launcher.slurm.qos"),
    ("sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or "
     "exceeds some limit)", "training.launcher.slurm.time"),
    ("sbatch: error: Batch job submission failed: Invalid feature specification",
     "training.launcher.slurm.constraint")])
def test_sbatch_refusals_name_the_field(tmp_path, monkeypatch, said, field):
    (tmp_path / "sbatch").write_text(f"#!/bin/sh\necho '{said}' >&2\nexit 1\n")
    (tmp_path / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(slurm.SlurmError) as info:
        slurm.submit(tmp_path / "job.sh", "training.launcher")
    assert info.value.field == field and said in info.value.message
    assert info.value.exit_status == 2 and "repro compile" in info.value.fix


def _trial_repo(cfg: TrainConfig, data: Path) -> None:
    """The current directory as a committed git + DVC repository whose pipeline is the one
    train stage `cfg` (its outputs as `repro compile` declares a train stage's)."""
    Path("params.yaml").write_text(yaml.safe_dump({SID: cfg.model_dump(mode="json")}, sort_keys=False))
    cmd = " ".join(["repro", "stage", "train", SID, f"--in tokenizer={data / 'tok'}",
                    f"--in tokens:web={data / 'tokens-web'}",
                    *(f"--out {key}={path}" for key, path in OUTPUTS.items())])
    uncached = [{OUTPUTS[k]: {"cache": False}} for k in ("perf", "env")]
    cached = [OUTPUTS[k] for k in ("checkpoint", "state", "ledger", "loss", "monitor")]
    Path("dvc.yaml").write_text(yaml.safe_dump({"stages": {SID: {
        "cmd": cmd, "params": [SID], "outs": cached + uncached,
        "metrics": [{OUTPUTS[k]: {"cache": False}} for k in ("metrics", "live")],
        "plots": [{OUTPUTS["live_curves"]: {"cache": False, "x": "step"}}]}}}, sort_keys=False))
    env = dict(os.environ, PATH=tool_path())
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                 ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "t"]):
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{args}: {proc.stderr}"


@pytest.mark.slow
def test_a_sweep_trial_submits_its_training_as_a_slurm_job(cluster, data, monkeypatch):
    """Sweeps on the cluster (issue 21 item 6): a trial is a DVC queue experiment
    (repro.sweep.dvc, as `repro sweep` drives it), and its train stage, launched by DVC in
    the trial's own workspace, submits its Slurm job from there, waits for it and leaves its
    metrics where DVC collects them, as a local trial does."""
    monkeypatch.setenv("REPRO_SLURM_POLL_S", "0.5")  # the stage's process is DVC's child
    one_node = config({"kind": "slurm", "slurm": {**SLURM, "nodes": 1}}).model_copy(
        update={"distributed": config().distributed.model_copy(update={"kind": "single", "nproc": 1})})
    _trial_repo(one_node, data)
    backend = DvcBackend(Path.cwd(), echo=False)
    backend.queue("lr-high", {f"{SID}.optimizer.lr": 0.02}, SID)
    backend.start(1)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        record = backend.experiments().get("lr-high")
        if record is not None and record.state in ("success", "failed"):
            break
        time.sleep(1)
    assert record is not None and record.state == "success", backend.logs("lr-high")
    assert record.params[SID]["optimizer"]["lr"] == 0.02
    assert record.params[SID]["launcher"]["kind"] == "slurm"
    assert record.metrics[OUTPUTS["metrics"]]["final_loss"] > 0
    (job,) = jobs(cluster)
    assert job["state"] == "COMPLETED"
    # submitted from the trial's workspace (DVC's temporary copy), not the repository's
    assert f".dvc{os.sep}tmp{os.sep}exps" in job["script"], job["script"]
    assert not Path(".repro/slurm").exists()
