"""Ladder expansion: the runs a ladder spec becomes, the fit stage over them, and the
errors a ladder gets before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from repro.compile.errors import GraphError
from repro.compile.graph import compile_graph
from repro.compile.ladder import expand, split_tokens
from repro.compile.render import render_dvc_yaml
from repro.compile.specs import compile_files
from repro.spec.load import SpecError, load_spec, load_specs
from repro.train.flops import param_counts

REPO = Path(__file__).resolve().parents[2]
LADDER = REPO / "specs" / "examples" / "ladder" / "qs-ladder.yaml"


def _ladder_spec(tmp_path: Path, ladder: str, extra: str = "") -> Path:
    """A copy of qs-nope plus a ladder spec extending it, in tmp_path."""
    (tmp_path / "qs-nope.yaml").write_text((REPO / "specs" / "qs-nope.yaml").read_text())
    path = tmp_path / "lad.yaml"
    path.write_text("extends: qs-nope.yaml\nexperiment: {name: lad, replicas: []}\nreport: null\n"
                    + extra + "ladder:\n" + ladder)
    return path


SIZES = """  sizes:
    - {name: a, hidden_size: 32, num_layers: 2, num_heads: 2, num_kv_heads: 1, intermediate_size: 96}
    - {name: b, hidden_size: 64, num_layers: 2, num_heads: 4, num_kv_heads: 2, intermediate_size: 192}
"""


def test_split_tokens_keeps_proportions_in_whole_steps():
    assert split_tokens([655360, 163840], 65536, 4096) == [53248, 12288]  # 13 + 3 steps
    assert split_tokens([100], 10_000, 4096) == [8192]  # rounded down to whole steps
    assert sum(split_tokens([3, 1, 1], 40960, 4096)) == 40960
    with pytest.raises(ValueError, match="fewer than the 2 training stages"):
        split_tokens([1, 1], 4096, 4096)


def test_qs_ladder_expands_to_the_grid_and_the_recipe_runs():
    spec = load_spec(LADDER)
    points = expand(spec)
    fit = [p for p in points if p.recipe is None]
    assert [(p.size, p.tokens) for p in fit] == [
        (s, t) for s in ("s1", "s2", "s3") for t in (65536, 131072, 262144)]
    assert {p.spec.name for p in fit} == {f"qs-{s}-{t}" for s in ("s1", "s2", "s3")
                                          for t in ("66k", "131k", "262k")}
    # the base recipe (no mixture) is the fit's own runs at the largest budget: same experiments
    base = [p for p in points if p.recipe == "base"]
    assert [p.spec.name for p in base] == ["qs-s1-262k", "qs-s2-262k", "qs-s3-262k"]
    heavy = [p for p in points if p.recipe == "code_heavy"]
    assert [p.spec.name for p in heavy] == [f"qs-code_heavy-{s}-262k" for s in ("s1", "s2", "s3")]
    for p in heavy:
        assert all(s.mixture == {"web": 0.3, "pdf": 0.05, "code": 0.65} for s in p.spec.training.stages)
    for p in points:
        size = next(s for s in spec.ladder.sizes if s.name == p.size)
        assert p.spec.model.hidden_size == size.hidden_size and p.spec.model.num_layers == size.num_layers
        assert p.spec.ladder is None and p.spec.report is None and p.spec.evaluation.every_tokens is None
        assert sum(s.tokens for s in p.spec.training.stages) == p.tokens
        # everything but the shape, budget and mixture is the parent's
        assert p.spec.training.optimizer == spec.training.optimizer
        assert p.spec.datasets == spec.datasets and p.spec.tokenizer == spec.tokenizer


def test_fit_stage_reads_every_final_evaluation_and_counts_n():
    # the ladder example, compiled with the default pipeline as `repro compile` does
    graph = compile_files(sorted((REPO / "specs").glob("*.yaml")) + [LADDER], REPO / "specs", REPO)
    [fit] = [s for s in graph.stages.values() if s.kind == "fit"]
    cfg = fit.config
    assert cfg.name == "qs" and cfg.parameters == "non_embedding" and cfg.recipe_tokens == 262144
    spec = load_spec(LADDER)
    s3 = next(p for p in expand(spec) if p.size == "s3")
    assert {r.n_params for r in cfg.runs if r.size == "s3"} == {
        param_counts(s3.spec.model, vocab_size=4096)["non_embedding"]}
    assert len([r for r in cfg.runs if r.recipe is None]) == 9 and len(cfg.runs) == 15
    evaluations = {s.id: s for s in graph.stages.values() if s.kind == "evaluate"}
    for key, ref in fit.inputs:
        evaluate = evaluations[ref.stage_id]
        # the final checkpoint's metrics of the run's evaluate stage
        assert key.startswith("eval:") and ref.key == f"metrics:{evaluate.config.checkpoints[-1]}"
        assert evaluate.config.experiment == key.split(":")[1]
    assert len(fit.inputs) == 12  # 9 fit runs + 3 code-heavy runs; base reuses the fit's
    # the reference specs' N and D, counted like the ladder's
    smol = next(t for t in cfg.predict if t.name == "reference/smollm3-3b.yaml")
    ref = load_spec(REPO / "specs/reference/smollm3-3b.yaml")
    assert smol.n_params == param_counts(ref.model, vocab_size=1)["non_embedding"]
    assert 11e12 < smol.tokens < 11.3e12  # SmolLM3's 11.2T tokens (FACTS 3)
    entry = yaml.safe_load(render_dvc_yaml(graph))["stages"][graph.name(fit.id)]
    assert "reports/ladders/qs" in str(entry["outs"]) and "repro/scaling/fit.py" in entry["deps"]


def test_a_ladder_needs_five_points_before_anything_is_compiled(tmp_path):
    path = _ladder_spec(tmp_path, "  name: l\n" + SIZES + "  tokens: [65536, 131072]\n")
    with pytest.raises(SpecError) as e:
        load_spec(path)
    text = str(e.value)
    assert "2 sizes x 2 token budgets = 4 points" in text and "at least 5" in text
    assert "add sizes or token budgets" in text and "lad.yaml" in text


@pytest.mark.parametrize("ladder,message", [
    ("  name: l\n  sizes: [{name: a, hidden_size: 32, num_layers: 2, num_heads: 2, num_kv_heads: 1, "
     "intermediate_size: 96}]\n  tokens: [1, 2, 3, 4, 5]\n", "at least 2"),
    ("  name: l\n" + SIZES + "  tokens: [65536]\n", "at least 2"),
    ("  name: l\n" + SIZES + "  tokens: [65536, 65536, 131072]\n", "repeat"),
    ("  name: l\n" + SIZES + "  tokens: [65536, 131072, 262144]\n  recipes: {only: {}}\n",
     "at least 2 `recipes`"),
    ("  name: l\n" + SIZES + "  tokens: [65536, 131072, 262144]\n  predict: [../../etc/x.yaml]\n",
     "relative to"),
    ("  name: l\n" + SIZES + "  tokens: [65536, 131072, 262144]\n"
     "  recipes: {a: {}, b: {mixture: {nope: 1.0}}}\n", "names dataset 'nope'"),
])
def test_bad_ladders_are_refused_at_validation(tmp_path, ladder, message):
    with pytest.raises(SpecError, match=message):
        load_spec(_ladder_spec(tmp_path, ladder))


def test_a_ladder_with_a_report_is_refused(tmp_path):
    path = _ladder_spec(tmp_path, "  name: l\n" + SIZES + "  tokens: [65536, 131072, 262144]\n")
    path.write_text(path.read_text().replace("report: null\n", "report: {name: r, baseline: lad}\n"))
    with pytest.raises(SpecError, match="cannot also have a `report`"):
        load_spec(path)


def test_budgets_too_small_for_the_stages_fail_at_compile(tmp_path):
    path = _ladder_spec(tmp_path, "  name: l\n" + SIZES + "  tokens: [4096, 65536, 131072]\n")
    with pytest.raises(GraphError) as e:
        compile_graph(load_specs([path]))
    assert "fewer than the 2 training stages" in str(e.value) and e.value.field == "ladder.tokens"


# qs-nope warms up over 10 steps; the 65,536-token runs train 8 (steps of 8,192 tokens)
SHORT_WARMUP = "training:\n  schedule: {warmup_steps: 2}\n"


def test_a_size_that_is_not_a_valid_model_names_the_size(tmp_path):
    sizes = SIZES.replace("num_heads: 4, num_kv_heads: 2", "num_heads: 3, num_kv_heads: 1")
    path = _ladder_spec(tmp_path, "  name: l\n" + sizes + "  tokens: [65536, 131072, 262144]\n",
                        SHORT_WARMUP)
    with pytest.raises(GraphError) as e:
        compile_graph(load_specs([path]))
    assert "size 'b'" in str(e.value) and "not divisible by num_heads" in str(e.value)
    assert e.value.field == "ladder.sizes[1]"


def test_a_generated_run_clashing_with_an_experiment_is_refused(tmp_path):
    path = _ladder_spec(tmp_path, "  name: qs\n" + SIZES + "  tokens: [65536, 131072, 262144]\n",
                        SHORT_WARMUP)
    clash = tmp_path / "clash.yaml"
    clash.write_text("extends: qs-nope.yaml\nexperiment: {name: qs-a-66k, replicas: []}\nreport: null\n")
    with pytest.raises(GraphError, match="generates experiment 'qs-a-66k', which another spec"):
        compile_graph(load_specs([path, clash]))
    # through the files: located at the ladder's name, the thing to change
    with pytest.raises(GraphError) as e:
        compile_files([path, clash], tmp_path, tmp_path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "name: qs" in text)
    assert (Path(e.value.file).name, e.value.line, e.value.field) == ("lad.yaml", line, "ladder.name")
    size = SIZES.replace("num_heads: 4, num_kv_heads: 2", "num_heads: 3, num_kv_heads: 1")
    path.write_text(path.read_text().replace(SIZES, size))
    with pytest.raises(GraphError) as e:
        compile_files([path], tmp_path, tmp_path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "name: b" in text)
    assert (e.value.field, e.value.line) == ("ladder.sizes[1]", line)


def test_predicting_a_missing_spec_is_an_error(tmp_path):
    path = _ladder_spec(tmp_path, "  name: l\n" + SIZES + "  tokens: [65536, 131072, 262144]\n"
                        "  predict: [reference/none.yaml]\n", SHORT_WARMUP)
    with pytest.raises(GraphError, match="is not a file") as e:
        compile_files([path], tmp_path, tmp_path)
    assert e.value.field == "ladder.predict"


def test_generated_runs_are_traced_back_to_their_ladder_spec():
    """So an error about a generated run (its token ledger) points at the ladder's file."""
    specs = load_specs([LADDER])
    graph = compile_graph(specs)
    generated = {p.spec.name for p in expand(specs[0])}
    assert graph.spec_of == {name: specs[0].name for name in generated}
