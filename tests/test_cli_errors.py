"""No `repro` verb ends in a traceback: a user's mistake (malformed params.yaml, spec,
dvc.yaml or dvc.lock, a missing input, a wrong --in/--out) exits 2 with what is wrong and the
fix; a bug exits 1 with one line naming the log file that holds the traceback."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

import repro.stages
import repro.stages.source
from repro.cli import main
from repro.errors import ReproError
from repro.stages import kinds
from repro.yamlio import safe_load  # libyaml: the four dvc.yaml, per test

REPO = Path(__file__).resolve().parents[1]
BAD_SPECS = REPO.parent / "shared" / "bad-specs-2-public"  # beside the checkout (CI has it)


def _refused(result: Result, *needles: str) -> str:
    """The output of a run that failed cleanly: exit 2, no traceback, each needle in it."""
    out = result.output
    assert result.exit_code == 2, out
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out and "internal error" not in out, out
    for needle in needles:
        assert needle in out, out
    return out


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """The shipped specs compiled (dvc.yaml, the params files); tests copy it."""
    root = tmp_path_factory.mktemp("compiled")
    shutil.copytree(REPO / "specs", root / "specs")
    proc = subprocess.run([sys.executable, "-m", "repro.cli", "compile"], cwd=root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture
def ws(compiled, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(compiled, root)
    monkeypatch.chdir(root)
    return root


def _args(cmd: str) -> list[str]:
    """`repro stage ...` of a dvc.yaml command, as CliRunner arguments."""
    words = cmd.split()
    assert words[:2] == ["repro", "stage"], cmd
    return words[1:]


def _pipelines(root: Path) -> list[Path]:
    """The default pipeline's dvc.yaml and the examples' (a fit stage lives in the ladder's)."""
    return [root / "dvc.yaml", *sorted(root.glob("examples/*/dvc.yaml"))]


def _one_per_kind(root: Path) -> dict[str, list[str]]:
    """A command per stage kind, from the default pipeline where it has one."""
    found: dict[str, list[str]] = {}
    for dvc_yaml in _pipelines(root):
        for entry in safe_load(dvc_yaml.read_text())["stages"].values():
            args = _args(entry["cmd"])
            found.setdefault(args[1], args)
    return found


def _params_file(args: list[str]) -> str:
    """The params file a `repro stage` command reads (a data stage's and an example stage's
    name theirs)."""
    if "--params" in args:
        return args[args.index("--params") + 1]
    return str(kinds()[args[1]].params_file)


# ----------------------------------------------------------------------------- stage


@pytest.mark.parametrize("text, words", [("5\n", "is a number"), ("[1, 2]\n", "is a list"),
                                         ("'text'\n", "is a string"), ("a: [\n", "cannot read")])
def test_stage_refuses_a_params_file_that_is_not_a_mapping(ws, text, words):
    args = next(iter(_one_per_kind(ws).values()))
    (ws / _params_file(args)).write_text(text)
    _refused(CliRunner().invoke(main, args), _params_file(args), words, "repro compile")


def test_every_stage_kind_refuses_a_malformed_section(ws):
    """Each kind's section replaced by a list, a number, or a mapping of wrong types."""
    runner = CliRunner()
    compiled = _one_per_kind(ws)
    assert len(compiled) >= len(kinds()) - 1  # the shipped specs use (nearly) every kind
    for kind in kinds():
        args = compiled.get(kind, ["stage", kind, f"{kind}-by-hand"])
        file = ws / _params_file(args)
        params = yaml.safe_load(file.read_text())
        for section in ([1, 2], 7, {"no_such_field": {"x": [1]}}):
            file.write_text(yaml.safe_dump({**params, args[2]: section}))
            _refused(runner.invoke(main, args), args[2])
        file.write_text(yaml.safe_dump(params))


def test_every_stage_kind_with_missing_inputs_names_the_stage_that_makes_them(ws):
    """Nothing is built in this workspace: each kind that reads inputs is refused before it
    loads anything (a train stage used to fail inside transformers with an OSError)."""
    runner = CliRunner()
    made_by = {out if isinstance(out, str) else next(iter(out)):
               name if dvc_yaml == ws / "dvc.yaml" else f"{dvc_yaml.relative_to(ws)}:{name}"
               for dvc_yaml in _pipelines(ws)
               for name, entry in safe_load(dvc_yaml.read_text())["stages"].items()
               for key in ("outs", "metrics", "plots") for out in entry.get(key, [])}
    checked = []
    for kind, args in _one_per_kind(ws).items():
        first = next((a.split("=", 1) for a, flag in zip(args[1:], args) if flag == "--in"), None)
        if first is None:
            continue  # no inputs: source and evaltasks stages make theirs
        key, path = first
        maker = made_by[path]
        _refused(runner.invoke(main, args), f"input {key} ({path}) does not exist",
                 f"stage {maker} makes it", f"    fix: `dvc repro {maker}`")
        checked.append(kind)
    assert {"train", "tokenize", "report", "evaluate", "fit"} <= set(checked)


def test_stage_refuses_outputs_outside_the_workspace_and_keeps_them(ws, tmp_path):
    """A stage replaces its outputs whole: an --out that is absolute, climbs out with `..`,
    or is the workspace itself is refused, and what is there is untouched."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sentinel.txt").write_text("keep me")
    (ws / "sentinel.txt").write_text("keep me")
    kinds = _one_per_kind(ws)
    kind, sid = "evaltasks", kinds["evaltasks"][2]
    for out in (str(mine), f"../{mine.name}", ".", "./"):
        result = CliRunner().invoke(main, ["stage", kind, sid, "--out", f"tasks={out}"])
        _refused(result, "is not a path inside the workspace", "    fix:")
    assert (mine / "sentinel.txt").read_text() == "keep me"
    assert (ws / "sentinel.txt").read_text() == "keep me"


def test_stage_refuses_a_reserved_output_and_keeps_it(ws):
    """`--out x=specs` would replace every spec (a stage replaces its outputs whole): an
    output on, holding or inside a path repro, DVC or git keep is refused (exit 2), as the
    compiler refuses it, and what is there is untouched."""
    (ws / "specs" / "sentinel.txt").write_text("keep me")
    (ws / ".git").mkdir()
    (ws / ".git" / "HEAD").write_text("keep me")
    kind, sid = "evaltasks", _one_per_kind(ws)["evaltasks"][2]
    for out, words in (("specs", "specs (--out x) whole, a reserved path: it holds the specs"),
                       ("specs/", "a reserved path"), ("./specs", "a reserved path"),
                       ("reports", "which holds the reserved reports/verify"),
                       (".git", "a reserved path: it is git's repository"),
                       (".dvc/cache", "inside the reserved .dvc"),
                       ("reports/ladders/mine", "inside the reserved reports/ladders")):
        result = CliRunner().invoke(main, ["stage", kind, sid, "--out", f"x={out}"])
        _refused(result, words, "    fix: run the stage through `dvc repro`")
    assert (ws / "specs" / "sentinel.txt").read_text() == "keep me"
    assert (ws / ".git" / "HEAD").read_text() == "keep me"
    assert {p.name for p in (ws / "specs").iterdir()} == {
        p.name for p in (REPO / "specs").iterdir()} | {"sentinel.txt"}


@pytest.mark.parametrize("args, words", [
    (["stage", "nope", "x"], "unknown stage kind 'nope'"),
    (["stage", "train", "../../home"], "'../../home' is not a stage name or id"),
    (["stage", "train", "/etc"], "'/etc' is not a stage name or id"),
    (["stage", "evaltasks", "SID", "--out", "tasks"], "expected KEY=PATH"),
    (["stage", "evaltasks", "SID", "--out", "a=b", "--out", "a=c"], "'a' is given twice"),
    (["stage", "evaltasks", "SID", "--in", "=b"], "expected KEY=PATH"),
])
def test_stage_usage_errors(ws, args, words):
    sid = _one_per_kind(ws)["evaltasks"][2]
    _refused(CliRunner().invoke(main, [sid if a == "SID" else a for a in args]), words)


@pytest.fixture
def source_runs(monkeypatch):
    """Replace the `source` stage kind's runner: `source_runs(fn)`."""
    def patch(run):
        monkeypatch.setattr(repro.stages.source, "KIND",
                            dataclasses.replace(repro.stages.source.KIND, run=run))
        repro.stages.kind.cache_clear()  # the registry reads the module's KIND again

    yield patch
    repro.stages.kind.cache_clear()


def test_a_stage_missing_an_output_key_is_a_user_error(ws, source_runs):
    """A dvc.yaml older than the code (or a hand-run stage) without an --out the kind needs."""
    kinds = _one_per_kind(ws)
    runner = CliRunner()
    source_runs(lambda cfg, io: io.output("nonexistent"))
    _refused(runner.invoke(main, kinds["source"]), "has no output 'nonexistent'",
             "    fix: run `repro compile`")


def test_a_report_with_nothing_to_report_exits_2(ws):
    """Every input of the report stage exists but none can be read."""
    [args] = [a for k, a in _one_per_kind(ws).items() if k == "report"]
    for a, flag in zip(args[1:], args):
        if flag == "--in":
            path = ws / a.split("=", 1)[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix:
                path.write_text("{broken")
            else:
                path.mkdir(exist_ok=True)
    _refused(CliRunner().invoke(main, args), "nothing to report", "    fix: rebuild")


def test_stage_removes_the_stale_temporaries_of_its_own_outputs_only(ws, source_runs):
    """A killed run's `.<output>.tmp-<pid>` go when the stage starts again; a live writer's,
    another output's and the user's files stay."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    kinds = _one_per_kind(ws)
    args = kinds["source"]  # a kind without inputs
    outs = [Path(a.split("=", 1)[1]) for a, flag in zip(args[1:], args) if flag == "--out"]
    for out in outs:
        out.parent.mkdir(parents=True, exist_ok=True)
        (out.parent / f".{out.name}.tmp-{dead.pid}").mkdir()
        (out.parent / f".{out.name}.work-{dead.pid}").mkdir()
        (out.parent / f".{out.name}.tmp-{dead.pid}" / "part").write_text("x")
    keep = [outs[0].parent / f".{outs[0].name}.tmp-1",  # pid 1 (init) is alive
            outs[0].parent / f".other.tmp-{dead.pid}", outs[0].parent / "sentinel.txt"]
    for path in keep:
        path.write_text("keep me")
    source_runs(lambda cfg, io: None)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    left = sorted(str(p) for out in outs for p in out.parent.glob(f".{out.name}.*-*"))
    assert left == [str(keep[0])]
    assert all(p.read_text() == "keep me" for p in keep)


# ----------------------------------------------------------------------- internal errors


def test_a_bug_is_one_line_and_a_log_file(ws, source_runs):
    def boom(cfg, io):
        raise RuntimeError("boom at https://user:s3cr3t@example.com/x\nsecond line")

    source_runs(boom)
    result = CliRunner().invoke(main, _one_per_kind(ws)["source"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    out = result.output
    assert "Traceback" not in out and "s3cr3t" not in out, out
    assert "internal error: RuntimeError: boom at https://***@example.com/x / second line; " \
           "the traceback is in .repro/logs/error-" in out
    [log] = (ws / ".repro" / "logs").glob("error-*.log")
    assert str(log.relative_to(ws)) in out
    text = log.read_text()
    assert "Traceback" in text and "RuntimeError" in text and "s3cr3t" not in text


def test_a_user_error_from_a_stage_is_redacted(ws, source_runs):
    def refuse(cfg, io):
        raise ReproError("cannot reach https://user:s3cr3t@example.com/data", fix="check it")

    source_runs(refuse)
    out = _refused(CliRunner().invoke(main, _one_per_kind(ws)["source"]),
                   "https://***@example.com/data", "    fix: check it")
    assert "s3cr3t" not in out


# ------------------------------------------------------------------------ every verb


NOT_A_SPEC = {"five.yaml": "5\n", "list.yaml": "[1, 2]\n", "broken.yaml": "a: [\n",
              "empty.yaml": ""}


@pytest.mark.parametrize("name", sorted(NOT_A_SPEC))
def test_spec_verbs_refuse_a_file_that_is_not_a_spec(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / name).write_text(NOT_A_SPEC[name])
    runner = CliRunner()
    spec = f"bad/{name}"
    for args in (["validate", spec], ["plan", spec], ["compile", "--specs", "bad"],
                 ["sweep", spec, "--dry-run"], ["sweep", spec], ["fit", spec, "--no-run"],
                 ["fit", spec]):
        _refused(runner.invoke(main, args), "bad")
    assert not (tmp_path / "dvc.yaml").exists()


def test_fit_and_sweep_refuse_a_spec_without_their_block(ws):
    runner = CliRunner()
    _refused(runner.invoke(main, ["fit", "specs/qs-nope.yaml", "--no-run"]), "ladder")
    _refused(runner.invoke(main, ["sweep", "specs/qs-nope.yaml", "--dry-run"]), "sweep")


@pytest.mark.skipif(not (BAD_SPECS / "45-sweep-1e7-grid.yaml").is_file(),
                    reason="the bad-specs set is not on this machine")
def test_a_ten_million_point_grid_is_refused_without_enumerating_it(ws):
    shutil.copy(BAD_SPECS / "45-sweep-1e7-grid.yaml", ws / "specs" / "zz-huge.yaml")
    start = time.perf_counter()
    _refused(CliRunner().invoke(main, ["sweep", "specs/zz-huge.yaml", "--dry-run"]), "sweep", "10")
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize("dvc_yaml, dvc_lock, params, words", [
    ("5\n", "", "{}\n", "dvc.yaml: holds an int, not a mapping"),
    ("stages: [1]\n", "", "{}\n", "dvc.yaml: `stages` is a list"),
    ("stages: {s: 5}\n", "", "{}\n", "dvc.yaml: stage 's' is an int"),
    ("stages: {s: {cmd: echo}}\n", "stages: [\n", "{}\n", "dvc.lock: not valid YAML"),
    ("stages: {s: {cmd: echo}}\n", "stages: {s: {deps: [5]}}\n", "{}\n",
     "dvc.lock: stage 's' is not a lock record"),
    ("stages: {s: {cmd: echo}}\n", "stages: {}\n", "[1]\n", "params.yaml: holds a list"),
])
def test_explain_and_verify_refuse_malformed_dvc_files(tmp_path, monkeypatch, dvc_yaml, dvc_lock,
                                                       params, words):
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    (tmp_path / "dvc.yaml").write_text(dvc_yaml)
    (tmp_path / "dvc.lock").write_text(dvc_lock or "stages: {}\n")
    (tmp_path / "params.yaml").write_text(params)
    runner = CliRunner()
    _refused(runner.invoke(main, ["explain"]), words, "    fix:")
    if "params.yaml" not in words:  # verify does not read params.yaml itself
        _refused(runner.invoke(main, ["verify"]), words, "    fix:")


def test_explain_without_dvc_yaml_and_verify_with_a_negative_tolerance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    _refused(runner.invoke(main, ["explain"]), "no dvc.yaml", "repro compile")
    _refused(runner.invoke(main, ["verify", "--rtol", "-1"]), "--rtol")


def test_publish_refuses_bad_reports_and_a_foreign_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    _refused(runner.invoke(main, ["publish", "site", "--reports", "nowhere"]), "no reports found")
    (tmp_path / "r" / "a").mkdir(parents=True)
    for text in ("[1]", "{broken"):
        (tmp_path / "r" / "a" / "summary.json").write_text(text)
        _refused(runner.invoke(main, ["publish", "site", "--reports", "r"]), "summary.json")
    assert not (tmp_path / "site").exists()


def test_python_m_repro_cli_lists_every_verb():
    """`python -m repro.cli` runs the module as __main__: with the old import cycle
    (repro.cli <-> repro.scaling.command, broken by an import after the verbs) `fit` was
    registered on a second copy of the module only."""
    proc = subprocess.run([sys.executable, "-m", "repro.cli", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    verbs = {line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines()
             if line.strip()}
    assert {"compile", "validate", "stage", "sweep", "fit", "plan"} <= verbs, proc.stdout
