"""The renderer against hostile strings, on its own: spec validation refuses `${`, shell
metacharacters and control characters in names and paths, but dvc.yaml must be safe even for
a value that got past it. DVC substitutes `${key}` in every string of dvc.yaml with params.yaml
values before the shell runs the command, inside our shell quoting; the renderer escapes every
`${` as DVC documents (`\\${`), and `shlex` quotes the rest.

The graph here is built directly, with configs made by `model_construct` (no validation), so
every string field that reaches dvc.yaml (input keys, local input paths, report and ladder
names in output paths, task and experiment names in plots) holds `${...}` that
names a real params.yaml value and one that names nothing, `$(...)`, backticks, quotes and
`;`; a line break or other control character in a command is refused (DVC would run the text
after it as a command of its own).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro import paths
from repro.compile.code_deps import stage_code
from repro.compile.errors import GraphError
from repro.compile.graph import ExternalPath, OutputRef, Stage, StageGraph
from repro.compile.render import DVC_ESCAPED, _cmd, dvc_literal, render_dvc_yaml, render_params
from repro.spec.schema import EvaluationSpec, ExecutorSpec, JsonlSource
from repro.stages.configs import (
    CurateConfig,
    EvaluateConfig,
    FitConfig,
    ReportConfig,
    TokenizeConfig,
)

DVC = Path(sys.executable).parent / "dvc"
PAYLOAD = "' ; touch PWNED-params ; echo '"
"""A params.yaml value that runs `touch` if DVC splices it into a command line."""
MARKER = "PWNED"


def _hostile(tag: str, param: str, end: str = "", missing: bool = True) -> str:
    """A string that runs `touch PWNED-<tag>-...` if any layer (DVC, the shell) interprets it
    (`missing`: also names a params key that does not exist, which fails DVC if interpolated)."""
    return (f"{tag}-${{{param}}}{'-${no.such.param}' if missing else ''}"
            f"-$(touch {MARKER}-{tag}-subst)"
            f"-`touch {MARKER}-{tag}-tick`-'\"; touch {MARKER}-{tag}-semi;{end}")


def _graph(end: str = "", missing: bool = True) -> tuple[StageGraph, str]:
    """Stages whose every user-named string is hostile (and ends with `end`); and the params
    key of the payload."""
    graph = StageGraph()
    source = JsonlSource.model_construct(path="data/external/x", text_key=PAYLOAD)
    # a first stage with the payload in its params section, for `${<id>.experiment}`: an
    # evaluate stage, whose section lies in params.yaml, DVC's interpolation source (a data
    # stage's, in params.data.yaml, is not one unless dvc.yaml names it under `vars`)
    carrier = graph.add(Stage("evaluate", "carrier", EvaluateConfig.model_construct(
        experiment=PAYLOAD, checkpoints=["final"], seed=0, evaluation=EvaluationSpec.model_construct(
            tasks=[], presets=[], local_tasks=[]))))
    param = f"{carrier.id}.experiment"

    def h(tag: str, param: str) -> str:
        return _hostile(tag, param, end, missing)

    curate = graph.add(Stage("curate", h("label", param), CurateConfig.model_construct(
        dataset=h("dataset", param), source=source, steps=[], shards=1, executor=ExecutorSpec()),
        ((h("key", param), ExternalPath(h("path", param))),
         ("carrier", OutputRef(carrier.id, "metrics:final")))))
    experiment = h("experiment", param)
    tokens = graph.add(Stage("tokenize", experiment, TokenizeConfig.model_construct(
        dataset=h("dataset", param), seed=0),
        ((f"docs:{h('dataset', param)}", OutputRef(curate.id, "docs")),)))
    evaluation = EvaluationSpec.model_construct(tasks=[h("task", param)], presets=[], local_tasks=[])
    evaluate = graph.add(Stage("evaluate", experiment, EvaluateConfig.model_construct(
        experiment=experiment, checkpoints=["final"], evaluation=evaluation, seed=0),
        (("checkpoint:final", OutputRef(tokens.id, "tokens")),)))
    graph.add(Stage("report", h("report", param), ReportConfig.model_construct(
        name=h("report", param), baseline=experiment, experiments=[experiment]),
        ((f"eval:{experiment}", OutputRef(evaluate.id, "metrics:final")),)))
    graph.add(Stage("fit", h("ladder", param), FitConfig.model_construct(
        name=h("ladder", param), runs=[]),
        ((f"eval:{experiment}", OutputRef(evaluate.id, "metrics:final")),)))
    return graph, param


def _unescaped(text: str) -> dict:
    return yaml.safe_load(text.replace(DVC_ESCAPED, "${"))


def test_every_interpolation_is_escaped_and_nothing_else_changes():
    graph, _ = _graph()
    text = render_dvc_yaml(graph)
    assert "${" not in text.replace(DVC_ESCAPED, "")
    doc = _unescaped(text)
    # what remains after removing the escapes is the graph as the compiler means it
    assert [e["cmd"] for e in doc["stages"].values()] == [_cmd(s, graph) for s in graph.stages.values()]
    assert any("no.such.param" in key for p in doc["plots"] for key in p)


@pytest.mark.parametrize("end", ["\n", "\r", "\u2028", "\x1b[2J"])
def test_a_line_break_or_control_character_in_a_command_is_refused(end):
    """DVC runs each line of a `cmd` string as its own shell command (str.splitlines), so
    the text after a line break would run outside any quoting."""
    graph, _ = _graph(end)
    with pytest.raises(GraphError, match="line break or control character") as e:
        render_dvc_yaml(graph)
    assert "remove control characters" in e.value.fix


@pytest.mark.parametrize("value", ["${a}", "x-${a}-${a.b}-${}", "a\\${a}", "a\\\\${a}",
                                   "${a}\\", "$${a}}", "plain", "\\"])
def test_dvc_resolves_an_escaped_string_to_itself(value):
    """DVC's own resolver (dvc.parsing.context), with `a` defined: the escaped string comes
    back unchanged, backslashes the value held before `${` included."""
    from dvc.parsing.context import Context

    assert Context({"a": {"b": "B"}}).resolve_str(dvc_literal(value)) == value
    assert dvc_literal({"${k}": ["${v}", 1]}) == {"\\${k}": ["\\${v}", 1]}


def _workspace(root: Path, dvc_yaml: str, graph: StageGraph) -> dict[str, str]:
    """A git + DVC repository at `root` holding `dvc_yaml`, the graph's params files and every
    input it reads, and a fake `repro` first on PATH that records its arguments and writes
    the outputs it is given (so DVC runs every command for real, in milliseconds); returns
    the environment to run DVC in."""
    if not DVC.is_file():
        pytest.skip("dvc is not installed beside this interpreter")
    root.mkdir(parents=True, exist_ok=True)
    (root / paths.DVC_YAML).write_text(dvc_yaml)
    for path, text in render_params(graph).items():
        (root / str(path)).write_text(text)
    for stage in graph.stages.values():
        for p in stage_code(stage.kind):
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            if not (root / p).exists():
                (root / p).write_text("# code\n")
        for _, ref in stage.inputs:
            if isinstance(ref, ExternalPath):
                (root / ref.path).parent.mkdir(parents=True, exist_ok=True)
                (root / ref.path).write_text("external\n")
    bin_dir = root.parent / f"{root.name}-bin"
    bin_dir.mkdir()
    fake = bin_dir / "repro"
    fake.write_text(f"""#!{sys.executable}
import json, sys
from pathlib import Path
with open("argv.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
for flag, value in zip(args, args[1:]):
    if flag == "--out":
        out = Path(value.split("=", 1)[1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{{}}")
""")
    fake.chmod(0o755)
    (root / ".gitignore").write_text("argv.jsonl\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], [str(DVC), "init", "-q"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return env


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, StageGraph, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile-dvc") / "ws"
    graph, _ = _graph()
    return root, graph, _workspace(root, render_dvc_yaml(graph), graph)


def _dvc(workspace, *args: str) -> subprocess.CompletedProcess:
    root, _, env = workspace
    return subprocess.run([str(DVC), *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def _markers(root: Path) -> list[str]:
    """Files `touch` made (outputs named after hostile values hold the word too, later on)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"{MARKER}*"))


@pytest.mark.slow
def test_dvc_runs_every_hostile_command_verbatim(workspace):
    root, graph, _ = workspace
    run = _dvc(workspace, "repro")
    assert run.returncode == 0, run.stdout + run.stderr
    assert _markers(root) == []
    # a dry run prints every command without running it (`--force`: all are up to date now;
    # before the first run, DVC's dry run stops at a stage whose inputs do not exist yet)
    dry = _dvc(workspace, "repro", "--dry", "--force")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("Running stage") == len(graph.stages)
    calls = [json.loads(line) for line in (root / "argv.jsonl").read_text().splitlines()]
    # every stage ran once, and its arguments arrived exactly as the compiler built them:
    # DVC left `${...}` alone and the shell expanded nothing
    expected = [shlex.split(_cmd(s, graph))[1:] for s in graph.stages.values()]
    assert sorted(map(json.dumps, calls)) == sorted(map(json.dumps, expected))
    for verb in (["status"], ["dag"]):
        done = _dvc(workspace, *verb)
        assert done.returncode == 0, done.stderr
    assert _markers(root) == []


def test_without_escaping_dvc_runs_the_payload(tmp_path):
    """The control: the same graph rendered without the escapes (and without the missing key,
    which would stop DVC first) makes DVC splice the params.yaml payload into a command and
    the shell run its `touch`, so the test above would catch an unescaped value."""
    from repro.compile import render

    graph, param = _graph(missing=False)
    raw = render.HEADER + render._dump({"stages": {s.id: render._stage_entry(s, graph)
                                                   for s in graph.stages.values()}})
    root = tmp_path / "ws"
    env = _workspace(root, raw, graph)
    target = next(s for s in graph.stages.values() if s.kind == "curate" and "label" in s.id)
    for _, ref in target.inputs:  # the input as DVC will read it, so the stage gets to run
        if isinstance(ref, ExternalPath):
            (root / ref.path.replace(f"${{{param}}}", PAYLOAD)).write_text("external\n")
    subprocess.run([str(DVC), "repro", target.id], cwd=root, env=env, capture_output=True,
                   text=True, timeout=120)
    assert "PWNED-params" in _markers(root)
