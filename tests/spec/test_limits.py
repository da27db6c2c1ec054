"""Hostile numbers and text in a spec (repro.spec.base): every integer has an upper limit
named in its error, what the compiler expands a spec into is counted (not built) at
validation, LR schedules fit their steps, and no spec text carries `${` (DVC interpolation)
or a credential. Each refusal: exit 2, the line, the limit or the problem, and a fix."""

from __future__ import annotations

import re
import time
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import annotated_types
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import repro.spec.schema as schema
import repro.spec.search as search
from repro.cli import main
from repro.spec import base
from repro.spec.load import load_spec

REPO = Path(__file__).resolve().parents[2]
X = "extends: base.yaml\n"  # line 1 of every override


def _base_text() -> str:
    text = (REPO / "specs/qs-nope.yaml").read_text()
    return text.split("\nreport:\n")[0] + "\n"  # its report compares specs not compiled here


def _validate(tmp_path: Path, monkeypatch, text: str) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)  # the workspace
    (tmp_path / "base.yaml").write_text(_base_text())
    (tmp_path / "bad.yaml").write_text(text)
    result = CliRunner().invoke(main, ["validate", "bad.yaml"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def _refused(tmp_path: Path, monkeypatch, text: str, *fragments: str, line: int | None = None) -> str:
    code, out = _validate(tmp_path, monkeypatch, text)
    assert code == 2, out
    for fragment in fragments:
        assert fragment in out, out
    found = re.search(r"^(\d+) problem\(s\); nothing was run\.$", out, re.MULTILINE)
    assert found and out.count("\n    fix: ") == int(found.group(1)), out  # every issue: a fix
    if line is not None:
        assert f"bad.yaml:{line}: " in out, out
    return out


# ------------------------------------------------------------------ every integer bounded


def _spec_models() -> list[type[BaseModel]]:
    found = {obj for module in (schema, search) for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, base.Model) and obj is not base.Model}
    return sorted(found, key=lambda m: m.__name__)


def _unbounded_ints(tp: Any, meta: tuple = ()) -> int:
    """How many integer alternatives in `tp` (through Annotated, unions and containers)
    carry no upper limit (an `UpTo` validator, or `le`/`lt`)."""
    while typing.get_origin(tp) is Annotated:
        meta = meta + tuple(tp.__metadata__)
        tp = typing.get_args(tp)[0]
    if tp is int:
        limited = any(isinstance(getattr(m, "func", None), base.UpTo)
                      or isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in meta)
        return 0 if limited else 1
    if typing.get_origin(tp) in (Union, types.UnionType, list, tuple, dict):
        return sum(_unbounded_ints(a) for a in typing.get_args(tp) if a is not Ellipsis)
    return 0


def test_every_integer_field_of_every_spec_model_has_an_upper_limit():
    unbounded = [f"{m.__name__}.{name}" for m in _spec_models()
                 for name, f in m.model_fields.items()
                 if _unbounded_ints(f.annotation, tuple(f.metadata))]
    # a sweep's `values` are scalars of any type: their integers are held to int64 instead
    assert unbounded == ["SweepParameter.values"]


def test_the_walk_finds_an_unbounded_integer():
    class Probe(base.Model):
        a: list[dict[str, tuple[int, float]]] = []

    assert _unbounded_ints(Probe.model_fields["a"].annotation) == 1


@pytest.mark.parametrize("override,line,limit", [
    ("training:\n  stages:\n    - {name: a, tokens: 1000000000000001, mixture: {web: 1.0}}\n",
     4, "above the limit of 1,000,000,000,000,000 (1e15 tokens"),
    ("experiment: {seed: 4294967296}\n", 2, "above the limit of 4,294,967,295 (seeds are 32-bit"),
    ("experiment:\n  replicas: [{seed: 1, data_seed: 4294967296}]\n", 3, "limit of 4,294,967,295"),
    ("model: {num_layers: 1025}\n", 2, "above the limit of 1,024"),
    ("model: {hidden_size: 1000000000}\n", 2, "above the limit of 131,072"),
    ("model: {max_position_embeddings: 1099511627776}\n", 2, "above the limit of 16,777,216"),
    ("training: {log_every_steps: 1000000001}\n", 2, "above the limit of 1,000,000,000"),
    ("datasets:\n  web:\n    shards: 65537\n", 4, "above the limit of 65,536"),
    ("datasets:\n  web:\n    source: {kind: builtin, name: pydoc_web, max_docs: 1000000000001}\n",
     4, "above the limit of 1,000,000,000,000"),
    ("evaluation: {num_fewshot: 1025}\n", 2, "above the limit of 1,024"),
])
def test_an_integer_above_its_limit_names_the_limit(tmp_path, monkeypatch, override, line, limit):
    out = _refused(tmp_path, monkeypatch, X + override, limit, "fix: write at most", line=line)
    assert "Input should" not in out


def test_a_400_digit_token_budget_is_refused_without_being_printed(tmp_path, monkeypatch):
    big = "9" * 400
    out = _refused(tmp_path, monkeypatch,
                   X + f"training:\n  stages:\n    - {{name: a, tokens: {big}, mixture: {{web: 1.0}}}}\n",
                   "a 400-digit number is above the limit of 1,000,000,000,000,000", line=4)
    assert big[:30] not in out


def test_a_float_field_given_a_400_digit_integer_is_refused(tmp_path, monkeypatch):
    out = _refused(tmp_path, monkeypatch, X + "training:\n  optimizer: {lr: " + "1" + "0" * 400 + "}\n",
                   "lr is a 401-digit number, beyond the range of a number setting", line=3)
    assert "0" * 60 not in out


def test_a_float_field_takes_a_large_integer_within_its_range():
    assert schema.ModelSpec(rope_theta=2**64).rope_theta == float(2**64)


def test_a_huge_integer_in_a_sweep_value_is_refused():
    with pytest.raises(ValueError, match="beyond the range of any setting"):
        search.SweepParameter(keys=["a.b"], values=[2**70])


def test_the_reference_specs_validate_far_inside_the_limits():
    spec = load_spec(REPO / "specs/reference/smollm3-3b.yaml")
    assert sum(s.tokens for s in spec.training.stages) * 80 < base.MAX_TOKENS
    assert sum(spec.training.phase_steps()) * 200 < base.MAX_STEPS


# ------------------------------------------------------------------ booleans for numbers


@pytest.mark.parametrize("override,line,fix", [
    ("model: {num_layers: true}\n", 2, "fix: write a whole number"),
    ("training:\n  optimizer: {lr: yes}\n", 3, "fix: write a number"),
    ("evaluation: {batch_size: on}\n", 2, "fix: write a whole number"),
    ("training:\n  stages:\n    - {name: a, tokens: 819200, mixture: {web: true}}\n", 4,
     "fix: write a number"),
])
def test_a_yaml_boolean_is_not_a_number(tmp_path, monkeypatch, override, line, fix):
    _refused(tmp_path, monkeypatch, X + override, "(YAML reads true/false", fix, line=line)


def test_a_boolean_stays_a_boolean_where_one_is_expected():
    assert schema.TrainingSpec.model_fields["doc_masking"].annotation is bool
    assert search.SweepParameter(keys=["a.b"], values=[True, False]).values == [True, False]


def test_a_whole_float_for_an_integer_is_read_as_the_integer_and_a_fraction_is_refused():
    # `tokens: 1.0e+12` is convenient and exact; 3.5 layers is a mistake
    assert schema.ModelSpec(num_layers=4.0).num_layers == 4
    with pytest.raises(ValueError, match="fractional part"):
        schema.ModelSpec(num_layers=3.5)


# ------------------------------------------------------------------ DVC interpolation


@pytest.mark.parametrize("override,line", [
    ("datasets:\n  code:\n    source: {kind: jsonl, path: 'data/external/${no.such.param}'}\n", 4),
    ("datasets:\n  code:\n    source: {kind: jsonl, path: data/external, text_key: '${x}'}\n", 4),
    ("experiment: {description: 'a ${b} c'}\n", 2),
    ("tokenizer:\n  special_tokens: ['<|endoftext|>', '${pad}']\n", 3),
    ("datasets:\n  web:\n    executor:\n      kind: slurm\n      slurm:\n        partition: cpu\n"
     "        sbatch_args: {constraint: '${x}'}\n", 8),
])
def test_dvc_interpolation_is_refused_in_any_text(tmp_path, monkeypatch, override, line):
    _refused(tmp_path, monkeypatch, X + override, "holds `${`", "fix: remove the `${`", line=line)


# ------------------------------------------------------------------ credentials


SECRET = "s3cr3tVALUE"


@pytest.mark.parametrize("override", [
    f"datasets:\n  code:\n    source: {{kind: jsonl, path: 's3://KEY:{SECRET}@bucket/code'}}\n",
    f"datasets:\n  code:\n    source: {{kind: jsonl, path: data/external, glob: 's3://KEY:{SECRET}@b/*'}}\n",
    f"datasets:\n  code:\n    source: {{kind: jsonl, path: data/external, glob: '*.jsonl?token={SECRET}'}}\n",
    f"datasets:\n  code:\n    source: {{kind: parquet, path: 'https://h/x?X-Amz-Signature={SECRET}'}}\n",
    f"datasets:\n  code:\n    source: {{kind: hf_dataset, repo: 'hf://datasets/a/b?token={SECRET}'}}\n",
    f"datasets:\n  code:\n    source: {{kind: hf_dataset, repo: a/b, subset: 'https://u:{SECRET}@h'}}\n",
    f"tokenizer: {{kind: pretrained, name_or_path: 'https://u:{SECRET}@hf.co/tok'}}\n",
    f"tokenizer: {{kind: pretrained, name_or_path: a/b, revision: 'https://u:{SECRET}@h'}}\n",
    f"training:\n  distillation: {{teacher: 'hf://u:{SECRET}@models/t'}}\n",
    f"training:\n  distillation: {{teacher: 'experiment:https://u:{SECRET}@h'}}\n",
    f"experiment: {{description: 'see https://h/x?access_token={SECRET}'}}\n",
    f"datasets:\n  web:\n    executor: {{kind: ray, ray: {{address: 'ray://u:{SECRET}@head:10001'}}}}\n",
])
def test_a_credential_is_neither_accepted_nor_echoed(tmp_path, monkeypatch, override):
    out = _refused(tmp_path, monkeypatch, X + override)
    assert SECRET not in out


def test_a_glob_is_not_a_url():
    with pytest.raises(ValueError, match="is a URL, but a glob is a pattern"):
        schema.JsonlSource(path="data/x", glob="https://h/*.jsonl")
    assert schema.JsonlSource(path="data/x", glob="part-?.jsonl").glob == "part-?.jsonl"


def test_a_ladder_prediction_is_a_spec_path_not_a_url():
    with pytest.raises(ValueError, match="is not a .yaml spec path"):
        search.LadderSpec.model_validate({
            "name": "l", "tokens": [8192, 16384, 32768],
            "sizes": [{"name": n, "hidden_size": 32, "num_layers": 2, "num_heads": 2,
                       "num_kv_heads": 1, "intermediate_size": 96} for n in ("a", "b")],
            "predict": ["https://h/x.yaml"]})


# ------------------------------------------------------------------ expanded counts


def test_snapshot_evaluations_are_counted_before_anything_is_built(tmp_path, monkeypatch):
    # 8192-token steps: 10,000 + 10,000 steps, a snapshot every step, 2 runs (qs-nope has a replica)
    out = _refused(tmp_path, monkeypatch, X + (
        "training:\n  stages:\n"
        "    - {name: a, tokens: 81920000, mixture: {web: 1.0}}\n"
        "    - {name: b, tokens: 81920000, mixture: {web: 1.0}}\n"
        "evaluation: {every_tokens: 8192}\n"),
        "19,998 snapshots per run x 2 runs = 39,996 snapshot evaluations",
        f"above the limit of {base.MAX_SNAPSHOTS:,}", "fix: raise every_tokens to at least", line=6)
    need = int(re.search(r"at least ([\d,]+)", out).group(1).replace(",", ""))
    assert need % 8192 == 0 and 2 * 20_000 * 8192 // need <= base.MAX_SNAPSHOTS


def test_runs_times_phases_are_bounded(tmp_path, monkeypatch):
    stages = "".join(f"    - {{name: s{i}, tokens: 81920, mixture: {{web: 1.0}}}}\n" for i in range(64))
    replicas = ", ".join(f"{{seed: {i}}}" for i in range(1, 17))
    _refused(tmp_path, monkeypatch,
             X + f"experiment:\n  replicas: [{replicas}]\ntraining:\n  stages:\n" + stages,
             "17 runs (the main run and 16 replicas) x 64 training stages = 1,088 train stages",
             f"above the limit of {base.MAX_TRAIN_STAGES:,}")


def test_a_list_longer_than_its_limit_is_refused(tmp_path, monkeypatch):
    replicas = ", ".join(f"{{seed: {i}}}" for i in range(1, 66))
    _refused(tmp_path, monkeypatch, X + f"experiment:\n  replicas: [{replicas}]\n",
             "at most 64 items", line=3)


def test_evaluation_task_lists_are_bounded(tmp_path, monkeypatch):
    tasks = ", ".join(["hellaswag"] * (base.MAX_EVAL_TASKS + 1))
    _refused(tmp_path, monkeypatch, X + f"evaluation:\n  tasks: [{tasks}]\n",
             f"at most {base.MAX_EVAL_TASKS} items", line=3)


def _grid(counts: list[int]) -> dict:
    return {"name": "g", "objective": {"task": "t"}, "parameters": {
        f"p{i}": {"keys": [f"a.p{i}"], "values": list(range(n))} for i, n in enumerate(counts)}}


def test_a_sweep_grid_is_counted_as_a_product_without_enumerating_it():
    start = time.perf_counter()
    with pytest.raises(ValueError) as e:
        search.SweepSpec.model_validate(_grid([1000] * 64))  # 10**192 points
    assert time.perf_counter() - start < 10  # enumerating would never end
    assert "= a 193-digit number of points, above the limit of 1,000" in str(e.value)
    with pytest.raises(ValueError, match=r"10 x 10 x 10 x 10 = 10,000 points, above the limit of 1,000"):
        search.SweepSpec.model_validate(_grid([10, 10, 10, 10]))
    assert search.SweepSpec.model_validate(_grid([10, 10, 10])).trial_count() == 1000


def test_sweep_trials_are_bounded():
    with pytest.raises(ValueError, match="above the limit of 1,000"):
        search.SweepSpec.model_validate({"name": "r", "strategy": "random", "trials": 1001,
                                         "objective": {"task": "t"},
                                         "parameters": {"a": {"keys": ["a.b"], "low": 0, "high": 1}}})


def test_a_ladder_is_counted_before_it_is_expanded():
    sizes = [{"name": f"s{i}", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
              "num_kv_heads": 1, "intermediate_size": 96} for i in range(100)]
    with pytest.raises(ValueError, match=r"100 sizes x \(100 token budgets \+ 0 recipes\) = "
                                         r"10,000 runs, above the limit of 256"):
        search.LadderSpec.model_validate({"name": "l", "sizes": sizes,
                                          "tokens": [8192 * (i + 1) for i in range(100)]})


# ------------------------------------------------------------------ schedules vs steps


def test_a_phase_schedule_longer_than_its_phase_is_refused(tmp_path, monkeypatch):
    # here the `decay` phase is 163,840 tokens = 40 steps of qs-nope's 4,096
    _refused(tmp_path, monkeypatch, X + (
        "training:\n  stages:\n"
        "    - {name: stable, tokens: 655360, mixture: {web: 1.0}}\n"
        "    - {name: decay, tokens: 163840, mixture: {web: 1.0},\n"
        "       schedule: {lr: 1.0e-3, warmup_steps: 500, decay_fraction: 1.0}}\n"),
        "stages[1].schedule.warmup_steps 500 is longer than the 40 optimizer steps it spans",
        "163,840 tokens / batch_tokens 4,096",
        "fix: lower stages[1].schedule.warmup_steps to at most 40", line=6)


def test_the_experiment_warmup_longer_than_its_steps_is_refused(tmp_path, monkeypatch):
    # qs-nope trains 48 + 12 steps
    _refused(tmp_path, monkeypatch, X + "training:\n  schedule: {warmup_steps: 61}\n",
             "schedule.warmup_steps 61 is longer than the 60 optimizer steps it spans",
             "at most 60", line=3)


def test_a_warmup_running_into_the_decay_is_refused():
    phase = {"name": "a", "tokens": 5120, "mixture": {"web": 1.0}}  # 10 steps of 512
    kw = {"seq_len": 64, "batch_tokens": 512, "micro_batch_size": 2, "stages": [phase]}
    with pytest.raises(ValueError, match=r"warmup_steps 8 \+ decay 5 steps .* are longer than "
                                         r"the 10 optimizer steps"):
        schema.TrainingSpec.model_validate(kw | {"schedule": {"warmup_steps": 8, "decay_fraction": 0.5}})
    # a warmup then a decay over everything (FineWeb's warmup-cosine) overlaps by design
    ok = schema.TrainingSpec.model_validate(kw | {"schedule": {"warmup_steps": 3, "decay_fraction": 1.0}})
    assert ok.phase_steps() == [10]


# ------------------------------------------------------------------ bounded compile


def test_a_billion_step_run_with_one_snapshot_compiles_quickly(tmp_path, monkeypatch):
    """Steps are counted, not enumerated, downstream too (graph.snapshot_steps)."""
    from repro.compile.specs import compile_files

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(_base_text())
    (tmp_path / "big.yaml").write_text(X + (
        "experiment: {replicas: []}\n"
        "datasets:\n  web: {max_epochs: 1.0e+12}\n  code: {max_epochs: 1.0e+12}\n"
        "  pdf: {max_epochs: 1.0e+12}\n"
        "training:\n  seq_len: 1\n  batch_tokens: 8\n  micro_batch_size: 8\n"
        "  stages:\n    - {name: a, tokens: 8000000000, mixture: {web: 1.0}}\n"
        "evaluation: {every_tokens: 4000000000}\n"))
    start = time.perf_counter()
    graph = compile_files([tmp_path / "big.yaml"], tmp_path, tmp_path)
    assert time.perf_counter() - start < 20
    train = next(s for s in graph.stages.values() if s.kind == "train")
    assert train.config.snapshot_steps == [500_000_000]


@pytest.mark.parametrize("path", ["qs-nope.yaml", "ci/tiny.yaml"])
def test_snapshots_are_counted_as_the_compiler_lists_them(path):
    from repro.compile.graph import snapshot_steps

    spec = load_spec(REPO / "specs" / path)
    counted = spec.snapshots_per_run()
    assert counted > 0 and counted == sum(map(len, snapshot_steps(spec)))
    for every in (1, 3, 7):  # steps between snapshots, crossing phase ends
        data = spec.model_dump(mode="json")
        data["evaluation"]["every_tokens"] = every * spec.training.batch_tokens
        other = schema.ExperimentSpec.model_validate(data)
        assert other.snapshots_per_run() == sum(map(len, snapshot_steps(other)))


def test_a_ladder_budget_too_small_for_the_warmup_is_refused_at_validation(tmp_path, monkeypatch):
    # qs-nope warms up over 6 steps of 4,096 tokens and decays over the last 20%
    sizes = "".join(f"    - {{name: {n}, hidden_size: 32, num_layers: 2, num_heads: 2, "
                    f"num_kv_heads: 1, intermediate_size: 96}}\n" for n in ("a", "b", "c"))
    _refused(tmp_path, monkeypatch, X + (
        "experiment: {replicas: []}\nevaluation: {every_tokens: null}\n"
        "ladder:\n  name: l\n  sizes:\n" + sizes + "  tokens: [16384, 131072, 262144]\n"),
        "the smallest budget, 16,384 tokens, is 4 optimizer steps of 4,096 tokens, too few "
        "for training.schedule's 6 warmup steps",
        "fix: use budgets of at least 32,768 tokens", line=10)
