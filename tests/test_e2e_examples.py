"""End to end: an example pipeline next to the tiny CI pipeline, in a scratch copy of the
repository. `dvc repro examples/<name>/dvc.yaml` builds the default pipeline's stages the
example reads (once), then the example's own; the default pipeline then builds only what is
left, and `dvc status` over every dvc.yaml is clean (repro.compile.pipelines)."""

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

# The default pipeline: the CI spec without its replica (fewer stages to build); the
# example differs from it in one setting and has a report comparing the two (ci-tiny is the
# default pipeline's experiment, read by path, not trained again).
DEFAULT = """extends: ../ci/tiny.yaml
experiment: {name: ci-tiny, replicas: []}
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


def test_an_example_pipeline_reuses_the_default_pipelines_outputs(tmp_path, make_workspace):
    repo = make_workspace(tmp_path)
    # the repository's own examples are not the CI specs': compiling specs/ci removed them
    assert not list(repo.glob("examples/*/dvc.yaml"))
    (repo / "specs/e2e/examples/rope").mkdir(parents=True)
    (repo / "specs/e2e/tiny.yaml").write_text(DEFAULT)
    (repo / "specs/e2e/examples/rope/rope.yaml").write_text(EXAMPLE)
    _run([sys.executable, "-m", "repro.cli", "compile", "--specs", "specs/e2e"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "example"], repo)
    root = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    own = set(yaml.safe_load((repo / "examples/rope/dvc.yaml").read_text())["stages"])
    assert own and not root & own

    first = _ran(_run(["dvc", "repro", "examples/rope/dvc.yaml"], repo))
    assert max(first.values()) == 1, first  # every stage once
    assert {f"examples/rope/dvc.yaml:{s}" for s in own} <= set(first)
    built = {s for s in first if not s.startswith("examples/")}
    assert built and built <= root
    kinds = {s.split("-", 1)[0] for s in built}
    # the data, the tokenizer and ci-tiny's training and evaluation the report compares
    assert {"curate", "tokenizer", "tokenize", "train", "evaluate"} <= kinds
    assert (repo / "reports/ci-rope/report.md").is_file()
    assert (repo / "examples/rope/dvc.lock").is_file()

    rest = _ran(_run(["dvc", "repro"], repo))  # the default pipeline: only what is left
    assert not set(rest) & built and set(rest) <= root and max(rest.values()) == 1
    assert "ci-tiny" in {s.split("-", 1)[1].rsplit("-", 1)[0] for s in rest if s.startswith("report-")}
    assert "up to date" in _run(["dvc", "status"], repo)  # every dvc.yaml
    assert not _ran(_run(["dvc", "repro", "examples/rope/dvc.yaml"], repo))
