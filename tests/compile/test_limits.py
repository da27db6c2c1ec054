"""Graph size limits (repro.compile.limits): counted from the specs before anything is
built, upper bounds of what the compiler really builds, and refused with the limit, the
biggest spec and the field to change; absurd model sizes compile and plan without building
a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.compile import limits
from repro.compile.errors import GraphError
from repro.compile.graph import StageGraph, compile_graph
from repro.compile.specs import compile_files
from repro.spec.load import SpecError, load_specs

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = sorted((REPO / "specs").glob("*.yaml")) + sorted(
    (REPO / "specs" / "examples").glob("*/*.yaml"))  # every pipeline's experiments


def _values(obj) -> int:
    return limits._values(obj)


def test_the_estimate_bounds_the_graph_it_describes():
    specs = load_specs(QUICKSTART)
    graph = compile_files(QUICKSTART, REPO / "specs", REPO)
    expansions = limits.check(specs)
    stages = sum(e.total_stages for e in expansions)
    size = sum(e.total_size for e in expansions)
    real_size = sum(_values(s.config.model_dump(mode="json")) + len(s.inputs)
                    for s in graph.stages.values())
    # an upper bound, not a wild one: most of the excess is the data stages the quickstart
    # specs share (one set of about 23), counted once per spec, and it grew relative to the
    # graph as each run became fewer stages (one evaluate stage per run: 76 stages, 243
    # counted)
    assert len(graph.stages) <= stages <= 4 * len(graph.stages)
    assert real_size <= size


def _refuses_before_building(monkeypatch, specs, **limit):
    for name, value in limit.items():
        monkeypatch.setattr(limits, name, value)

    def no_stage(self, stage):
        raise AssertionError("a stage was built before the limits were checked")

    monkeypatch.setattr(StageGraph, "add", no_stage)
    with pytest.raises(GraphError) as e:
        compile_graph(specs)
    return e.value


def test_too_many_stages_are_refused_before_any_is_built(monkeypatch):
    specs = load_specs(QUICKSTART)
    err = _refuses_before_building(monkeypatch, specs, MAX_GRAPH_STAGES=100)
    assert "above the limit of 100" in str(err) and "MAX_GRAPH_STAGES" in str(err)
    assert err.experiment in {s.name for s in specs} and err.field in limits.PART_FIELD.values()
    assert "compile fewer specs together" in err.fix


def test_too_big_a_graph_is_refused_and_located(monkeypatch, tmp_path):
    """qs-nope's three datasets are the biggest part of its graph: the error points there."""
    err = _refuses_before_building(monkeypatch, load_specs([REPO / "specs" / "qs-nope.yaml"]),
                                   MAX_GRAPH_SIZE=1_000)
    assert "MAX_GRAPH_SIZE" in str(err) and "above the limit of 1,000" in str(err)
    assert (err.experiment, err.field) == ("qs-nope", "datasets")
    monkeypatch.undo()
    monkeypatch.setattr(limits, "MAX_GRAPH_SIZE", 1_000)
    (tmp_path / "qs-nope.yaml").write_text((REPO / "specs" / "qs-nope.yaml").read_text()
                                           .replace("name: quickstart", "name: qs"))
    with pytest.raises(GraphError) as e:
        compile_files([tmp_path / "qs-nope.yaml"], tmp_path, tmp_path)
    assert e.value.file.endswith("qs-nope.yaml") and e.value.line is not None


def test_a_ladder_counts_its_runs(monkeypatch):
    [ladder] = load_specs([REPO / "specs" / "examples" / "ladder" / "qs-ladder.yaml"])
    exp = limits.expansion(ladder)
    runs = ladder.ladder.run_count()
    assert exp.runs == runs and exp.stages["ladder"] == runs * (len(ladder.training.stages) + 1) + 1
    assert exp.size["ladder"] >= runs * limits.LADDER_RUN_COST


def test_plan_refusal_is_a_located_spec_error(monkeypatch):
    from repro.plan.build import plan_spec

    [spec] = load_specs([REPO / "specs" / "qs-nope.yaml"])
    monkeypatch.setattr(limits, "MAX_GRAPH_SIZE", 1_000)
    with pytest.raises(SpecError) as e:
        plan_spec(spec, str(REPO / "specs" / "qs-nope.yaml"), root=REPO)
    [issue] = e.value.issues
    assert issue.file.endswith("qs-nope.yaml") and issue.line and issue.field == "datasets"


HUGE = """extends: ../qs-nope.yaml
experiment: {name: huge, replicas: [{seed: 1}]}
report: null
model: {hidden_size: 131072, num_layers: 1024, num_heads: 1024, num_kv_heads: 8,
        intermediate_size: 1048576, max_position_embeddings: 16777216}
tokenizer: {kind: train_bpe, vocab_size: 1000000}
training:
  seq_len: 16777216
  batch_tokens: 1073741824
  micro_batch_size: 1
  stages:
    - {name: stable, tokens: 900000000000000, mixture: {web: 0.6, pdf: 0.05, code: 0.35}}
    - {name: decay, tokens: 100000000000000, mixture: {web: 0.6, pdf: 0.05, code: 0.35}}
evaluation:
  every_tokens: null
"""
"""The largest model, context and budget a spec may hold (repro.spec.base limits)."""


def _no_tensors(monkeypatch) -> None:
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("compile or plan built a model or a tensor")

    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)
    for name in ("empty", "zeros", "ones", "randn", "rand", "tensor", "full", "arange"):
        monkeypatch.setattr(torch, name, refuse)


def test_a_ladder_counts_parameters_without_building_a_model(monkeypatch):
    _no_tensors(monkeypatch)
    graph = compile_files(QUICKSTART, REPO / "specs", REPO)
    [fit] = [s for s in graph.stages.values() if s.kind == "fit"]
    assert all(run.n_params > 0 for run in fit.config.runs)


def test_the_largest_model_compiles_and_plans_without_building_one(tmp_path, monkeypatch):
    from repro.plan.build import plan_spec

    _no_tensors(monkeypatch)
    (tmp_path / "qs-nope.yaml").write_text((REPO / "specs" / "qs-nope.yaml").read_text())
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "huge.yaml").write_text(HUGE)
    monkeypatch.chdir(tmp_path)
    graph = compile_files([Path("specs/huge.yaml")], Path("specs"), tmp_path)
    assert sum(s.kind == "train" for s in graph.stages.values()) == 4
    [spec] = load_specs([Path("specs/huge.yaml")])
    plan = plan_spec(spec, "specs/huge.yaml", root=tmp_path)
    assert plan.training.tokens_per_run == 10**15 // 2**30 * 2**30
    assert plan.training.params_total > 4e14
