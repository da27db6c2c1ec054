"""lm-eval task names are checked at validation, offline, against the committed index of
lm-eval's registry (repro/eval/lm_eval_index.py); preset and local task names need neither
the index nor lm-eval."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from repro.cli import main
from repro.eval import lm_eval_index, registry
from repro.spec.load import SpecError, load_raw, load_spec
from repro.spec.schema import EvaluationSpec, LocalTaskSpec

REPO = Path(__file__).resolve().parents[2]


def spec_with(tmp_path: Path, **evaluation) -> Path:
    """The quickstart's qs-nope (without its report) with these evaluation fields."""
    data = copy.deepcopy(load_raw(REPO / "specs" / "qs-nope.yaml").data)
    data.pop("report", None)
    data["evaluation"].update(evaluation)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_unknown_task_is_refused_with_the_closest_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = spec_with(tmp_path, tasks=["arc_easy", "hellaswagg"])
    with pytest.raises(SpecError) as e:
        load_spec(path)
    [issue] = e.value.issues
    assert issue.field == "evaluation.tasks[1]"
    assert "'hellaswagg' is not a task, group or tag of lm-eval 0.4.13" in issue.message
    assert issue.fix.startswith("did you mean 'hellaswag'")
    assert issue.line == path.read_text().splitlines().index("  - hellaswagg") + 1


def test_cli_refuses_an_unknown_task_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec_with(tmp_path, tasks=["arc_esay"])
    result = CliRunner().invoke(main, ["validate", "spec.yaml"])
    assert result.exit_code == 2, result.output
    assert "evaluation.tasks[0]: evaluation task 'arc_esay' is not a task" in result.output
    assert "fix: did you mean 'arc_easy'" in result.output
    assert "Traceback" not in result.output


def test_suggestions_ignore_case_and_may_be_none():
    assert registry.closest_names("HellaSwag")[0] == "hellaswag"
    with pytest.raises(ValidationError) as e:
        EvaluationSpec(tasks=["zzqqxxjj"])
    message = str(e.value)
    assert "did you mean" not in message and "use a registered lm-eval name" in message


@pytest.mark.parametrize("name", [
    "hellaswag", "arc_easy", "mmlu",  # tasks and groups of the reference specs
    "ai2_arc",  # a tag (arc_easy + arc_challenge)
    "mmlu_abstract_algebra_continuation",  # a leaf of a preset's group
    "tmmluplus_education_(profession_level)",
])
def test_registered_names_are_accepted(name):
    assert EvaluationSpec(tasks=[name]).tasks == [name]


def test_the_shipped_specs_validate(monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["validate", "specs"])
    assert result.exit_code == 0, result.output
    assert "ok  specs/reference/smollm3-3b.yaml" in result.output


def test_a_declared_local_task_is_a_valid_name():
    local = [LocalTaskSpec(kind="bpb", dataset="web"),
             LocalTaskSpec(kind="code_cloze", dataset="my-code")]
    tasks = ["repro_bpb_web", "repro_code_cloze_my_code", "piqa"]
    assert EvaluationSpec(tasks=tasks, local_tasks=local).tasks == tasks


def test_an_undeclared_local_task_is_refused_with_its_declaration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as e:
        load_spec(spec_with(tmp_path, tasks=["repro_cloze_code"]))
    [issue] = e.value.issues
    assert "local task 'repro_cloze_code', which evaluation.local_tasks does not declare" \
        in issue.message
    assert issue.fix.startswith("add {kind: cloze, dataset: code} to evaluation.local_tasks")


def test_preset_and_local_names_validate_without_lm_eval_or_the_index(tmp_path):
    """Validation stays fast: lm-eval (seconds to import and index) is never imported, and
    the index is read only for a name that is neither a preset's task nor a local task."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    presets = spec_with(tmp_path / "a", presets=["fineweb_early_signal"],
                        tasks=["piqa", "repro_bpb_web"])
    other = spec_with(tmp_path / "b", tasks=["lambada_openai"])
    script = f"""
import json, sys
from repro.spec.load import load_spec
seen = []
for path in {[str(presets), str(other)]!r}:
    load_spec(path)
    seen.append(["lm_eval" in sys.modules, "repro.eval.lm_eval_index" in sys.modules])
print(json.dumps(seen))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == [[False, False], [False, True]]


@pytest.fixture
def fresh_registry():
    registry.registered_names.cache_clear()
    yield
    registry.registered_names.cache_clear()


def test_another_lm_eval_version_is_indexed_live(monkeypatch, fresh_registry):
    """The committed index belongs to one lm-eval version; another one's registry may differ."""
    monkeypatch.setattr(registry, "installed_lm_eval_version", lambda: "9.9.9")
    monkeypatch.setattr(registry, "index_live", lambda: ["brand_new_task"])
    assert EvaluationSpec(tasks=["brand_new_task"]).tasks == ["brand_new_task"]
    with pytest.raises(ValidationError, match="'hellaswagg' is not a task, group or tag of "
                                              "lm-eval 9.9.9"):
        EvaluationSpec(tasks=["hellaswagg"])


def test_the_index_is_of_the_installed_lm_eval():
    """Fails when lm-eval is upgraded without regenerating the index."""
    assert lm_eval_index.LM_EVAL_VERSION == registry.installed_lm_eval_version(), (
        "regenerate repro/eval/lm_eval_index.py: python -m repro.eval.registry")


@pytest.mark.slow
def test_the_index_is_what_lm_eval_registers():
    """Regenerates the index from the installed lm-eval (~8 s of indexing) and compares."""
    fresh = registry.render_index(registry.installed_lm_eval_version(), registry.index_live())
    assert fresh == registry.INDEX_FILE.read_text(encoding="utf-8"), (
        "repro/eval/lm_eval_index.py is stale: python -m repro.eval.registry")
