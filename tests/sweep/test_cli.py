"""`repro sweep`: a dry run prints the exact DVC commands; bad input exits 2 before any DVC
command runs (these workspaces are not even git repositories)."""

from __future__ import annotations


from click.testing import CliRunner

from repro.cli import main
from tests.sweep.test_plan import SWEEP, _in_workspace, tiny_workspace  # noqa: F401 (fixture)


def _run(tmp_path, monkeypatch, *args: str):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # not inside a repo
    return CliRunner().invoke(main, ["sweep", "specs/tiny.yaml", *args])


def test_dry_run_prints_every_trial_command(tmp_path, monkeypatch):
    tiny_workspace(tmp_path)
    result = _run(tmp_path, monkeypatch, "--dry-run", "--workers", "3")
    assert result.exit_code == 0, result.output
    out = result.output
    queued = [line for line in out.splitlines() if line.startswith("dvc exp run --queue")]
    assert [line.split()[5] for line in queued] == ["tiny-0", "tiny-1", "tiny-2", "tiny-3"]
    assert "optimizer.lr=0.001 " in queued[0] and "schedule.warmup_steps=2 " in queued[1]
    assert queued[0].split()[-1] == "evaluate-ci-tiny"  # the main run's
    assert out.rstrip().endswith("dvc queue start --jobs 3")
    assert not (tmp_path / "reports").exists()


def test_bad_input_exits_2_and_queues_nothing(tmp_path, monkeypatch):
    tiny_workspace(tmp_path, SWEEP.replace("values: [1, 2]", "values: [1, -2]"))
    result = _run(tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert "sweep.parameters.warmup.values" in result.output
    assert "1 problem(s); nothing was queued." in result.output


def test_a_workspace_without_a_commit_is_refused_before_dvc_runs(tmp_path, monkeypatch):
    tiny_workspace(tmp_path)
    result = _run(tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert "not a git repository with a commit" in result.output
