"""End to end: an example pipeline next to the tiny CI pipeline, in a copy of the tiny
workspace (tests/conftest.py `tiny_workspace`, built once per test run). Its stages read the
default pipeline's outputs: with two of the default pipeline's stages returned to never
having run, `dvc repro examples/<name>/dvc.yaml` builds the one the example reads (once) and
the example's own, reusing the data; the default pipeline then builds only what is left,
and `dvc status` over every dvc.yaml is clean (repro.compile.pipelines)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

# The default pipeline: the CI spec as it is (the stages of the tiny workspace, unchanged);
# the example differs from it in one setting and has a report comparing the two (ci-tiny is
# the default pipeline's experiment, read by path, not trained again).
DEFAULT = """extends: ../ci/tiny.yaml
"""
EXAMPLE = """extends: ../../tiny.yaml
experiment: {name: ci-tiny-rope, description: "ci-tiny with RoPE everywhere"}
model: {nope_interval: 0}
evaluation: {every_tokens: null}
report: {name: ci-rope, experiments: [ci-tiny, ci-tiny-rope], baseline: ci-tiny}
"""


def _run(args: list[str], cwd: Path, timeout: int = 900) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(args, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _ran(output: str) -> Counter[str]:
    return Counter(re.findall(r"Running stage '([^']+)'", output))


def test_an_example_pipeline_reuses_the_default_pipelines_outputs(tmp_path, tiny_workspace, forget):
    repo = tiny_workspace.copy(tmp_path / "ws")
    # the repository's own examples are not the CI specs': compiling specs/ci removed them
    assert not list(repo.glob("examples/*/dvc.yaml"))
    tiny = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    (repo / "specs/e2e/examples/rope").mkdir(parents=True)
    (repo / "specs/e2e/tiny.yaml").write_text(DEFAULT)
    (repo / "specs/e2e/examples/rope/rope.yaml").write_text(EXAMPLE)
    _run([sys.executable, "-m", "repro.cli", "compile", "--specs", "specs/e2e"], repo)
    root = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    own = set(yaml.safe_load((repo / "examples/rope/dvc.yaml").read_text())["stages"])
    assert root == tiny  # the same default pipeline, already built
    assert own and not root & own
    # ci-tiny's evaluation (the example's report reads it) and its report never ran
    [evaluate] = [s for s in root if s == "evaluate-ci-tiny"]
    [report] = [s for s in root if s.startswith("report-")]
    for stage in (evaluate, report):
        forget(repo, stage)
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "example"], repo)

    first = _ran(_run(["dvc", "repro", "examples/rope/dvc.yaml"], repo))
    assert max(first.values()) == 1, first  # every stage once
    assert {f"examples/rope/dvc.yaml:{s}" for s in own} <= set(first)
    # of the default pipeline, only the stage the example reads and was missing; the data,
    # the tokenizer and ci-tiny's training are reused, not built again
    assert {s for s in first if not s.startswith("examples/")} == {evaluate}, first
    kinds = {s.split(":", 1)[1].split("-", 1)[0] for s in first if s.startswith("examples/")}
    assert kinds == {"train", "evaluate", "report"}, first
    assert (repo / "reports/ci-rope/report.md").is_file()
    assert (repo / "examples/rope/dvc.lock").is_file()

    rest = _ran(_run(["dvc", "repro"], repo))  # the default pipeline: only what is left
    assert set(rest) == {report}, rest
    assert "up to date" in _run(["dvc", "status"], repo)  # every dvc.yaml
    assert not _ran(_run(["dvc", "repro", "examples/rope/dvc.yaml"], repo))
