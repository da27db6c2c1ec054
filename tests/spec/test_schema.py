"""Every shipped spec validates; reference specs match the published recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.compile.graph import schedule_segments, phase_optimizer
from repro.spec.schema import ExperimentSpec
from repro.spec.load import load_spec

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "specs").rglob("*.yaml"))


def test_specs_are_shipped():
    names = {p.relative_to(REPO / "specs").as_posix() for p in SHIPPED}
    assert {"qs-nope.yaml", "qs-muon.yaml", "examples/architectures/qs-rope.yaml",
            "examples/lr-sweep/qs-lr.yaml", "examples/ladder/qs-ladder.yaml",
            "reference/smollm3-3b.yaml", "reference/fineweb-ablation.yaml", "ci/tiny.yaml",
            "reference/debian-reference.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_shipped_spec_compiles(path: Path):
    """Compiled with its pipeline's specs, as `repro compile --specs <its folder>` would (an
    example's with the default pipeline's: repro.compile.pipelines)."""
    from repro.compile.pipelines import Pipeline, pipeline_of, specs_root
    from repro.compile.specs import compile_files

    pipeline = pipeline_of(path)
    root = specs_root(pipeline)
    files = pipeline.files() if pipeline.name is None else Pipeline(root).files() + pipeline.files()
    graph = compile_files(files, root, REPO)
    spec = load_spec(path)
    if spec.ladder is not None:  # trained at every ladder point, not as written, then fitted
        assert any(s.kind == "fit" and s.config.name == spec.ladder.name for s in graph.stages.values())
        return
    assert any(s.kind == "train" and s.config.experiment == spec.name for s in graph.stages.values())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_shipped_spec_validates(path: Path):
    spec = load_spec(path)
    assert spec.schema_version == 1
    assert spec.name


def test_smollm3_reference_matches_published_recipe():
    spec = load_spec(REPO / "specs/reference/smollm3-3b.yaml")
    m, t = spec.model, spec.training
    assert (m.num_layers, m.hidden_size, m.intermediate_size) == (36, 2048, 11008)
    assert (m.num_heads, m.num_kv_heads, m.nope_interval, m.rope_theta) == (16, 4, 4, 50_000)
    assert t.batch_tokens == 3 * 192 * 4096
    steps = [s.tokens // t.batch_tokens for s in t.stages]
    assert steps[:3] == [3_450_000, 748_000, 522_000]        # FACTS 3.5
    segs = schedule_segments(spec)[:3]
    # Decay covers exactly phase 3; phases 1-2 do not see it (FACTS 3.9).
    assert [s.decay_start_step for _, _, s in segs] == [None, None, 4_198_000]
    assert segs[-1][2].decay_end_step == 4_720_000
    assert t.optimizer.lr == 2e-4 and t.schedule.warmup_steps == 2000
    assert t.doc_masking and t.precision == "bf16" and m.inference_yarn.factor == 2.0


def test_smollm3_long_context_phases():
    """LC1 4k->32k (theta 2e6, 20,000 steps = 47.2B tokens), LC2 32k->64k (theta 5e6,
    22,000 steps = 51.9B, optimizer reset), each restarting lr 2e-5 / 1000 warmup / cosine
    (FACTS 3.10); the main WSD still decays over exactly phase 3."""
    spec = load_spec(REPO / "specs/reference/smollm3-3b.yaml")
    t = spec.training
    lc1, lc2 = t.stages[3], t.stages[4]
    assert [s.tokens // t.batch_tokens for s in (lc1, lc2)] == [20_000, 22_000]
    assert t.phase_seq_lens()[3:] == [32768, 65536]
    assert t.phase_rope(spec.model)[3:] == [(2e6, 32768), (5e6, 65536)]
    assert (lc1.reset_optimizer, lc2.reset_optimizer) == (False, True)
    segs = schedule_segments(spec)
    assert segs[2][2].decay_end_step == 4_720_000  # the restarts do not stretch the WSD
    for (start, n, seg), phase in zip(segs[3:], (lc1, lc2)):
        assert (seg.start_step, seg.warmup_steps, seg.decay_shape) == (start, 1000, "cosine")
        assert seg.decay_start_step == start + 1000 and seg.decay_end_step == start + n
        # the restart's LR is the phase's optimizer LR (the schedule holds none)
        assert phase_optimizer(spec, phase).lr == 2e-5
    assert phase_optimizer(spec, t.stages[0]) == t.optimizer


def test_a_restarting_phase_scales_muon_by_the_same_ratio():
    """PhaseScheduleSpec.lr is the AdamW part's LR for Muon, and the Muon LR moves by the same
    ratio; both land in the phase's optimizer (the schedule holds no LR)."""
    from repro.spec.schema import AdamWSpec, MuonSpec

    spec = load_spec(REPO / "specs/reference/smollm3-3b.yaml")
    muon = MuonSpec(lr=0.02, adamw=AdamWSpec(lr=2e-4))
    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"optimizer": muon})})
    lc1 = phase_optimizer(spec, spec.training.stages[3])
    assert lc1.adamw.lr == 2e-5 and lc1.lr == 0.02 * (2e-5 / 2e-4) == pytest.approx(2e-3)
    assert lc1.model_copy(update={"lr": 0.02, "adamw": muon.adamw}) == muon  # nothing else moves
    assert phase_optimizer(spec, spec.training.stages[0]) == muon


def _training(**kw):
    from repro.spec.schema import TrainingSpec

    base = {"seq_len": 64, "batch_tokens": 512, "micro_batch_size": 2,
            "schedule": {"warmup_steps": 2},  # of 10 steps (the default 2000 would not fit)
            "stages": [{"name": "a", "tokens": 5120, "mixture": {"web": 1.0}}]}
    base.update(kw)
    return TrainingSpec.model_validate(base)


@pytest.mark.parametrize("kw,message", [
    ({"stages": [{"name": "a", "tokens": 5120, "mixture": {"web": 1.0}, "schedule": {"lr": 1e-4}},
                 {"name": "b", "tokens": 5120, "mixture": {"web": 1.0}}]}, "restarts the LR schedule"),
    ({"stages": [{"name": "a", "tokens": 5120, "mixture": {"web": 1.0}, "seq_len": 96}]}, "not a multiple of"),
    ({"distributed": {"kind": "ddp", "nproc": 3}}, "nproc 3 does not divide the 8"),
    ({"distributed": {"kind": "ddp", "nproc": 8}}, "micro_batch_size 2 does not divide the 1 sequences per step and process"),
    ({"distributed": {"kind": "single", "nproc": 2}}, "set kind: ddp"),
    ({"distributed": {"kind": "fsdp2", "nproc": 2}, "optimizer": {"kind": "muon"}}, "Newton-Schulz"),
    ({"mtp": {"later_loss_weight": 0.1}}, "set both later_loss_weight and later_from_tokens"),
    ({"mtp": {}, "distillation": {"teacher": "x/y"}}, "cannot be combined"),
    ({"attention": "flash"}, "flash computes in bf16/fp16 only.*set precision: bf16"),
    ({"compile": "maybe"}, r"compile is 'maybe' \(fix: use auto"),
    ({"compile": 1}, r"compile is 1 \(fix: use auto"),
    ({"cross_entropy": "chunked", "distillation": {"teacher": "x/y"}}, "never holds the full logits"),
])
def test_training_options_are_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        _training(**kw)


def test_phase_context_must_fit_max_positions():
    base = load_spec(REPO / "specs/qs-nope.yaml").model_dump(mode="json")
    base["training"]["stages"][1]["seq_len"] = 1024
    base["training"]["micro_batch_size"] = 4  # a divisor of the 4 sequences of 1024 tokens a step
    with pytest.raises(ValueError, match=r"training.stages\[1\] \('decay'\) trains on sequences of 1024 tokens, "
                                         r"more than model.max_position_embeddings 512"):
        ExperimentSpec.model_validate(base)
    base["training"]["stages"][1]["max_position_embeddings"] = 1024
    ExperimentSpec.model_validate(base)


def test_example_debian_reference_curates_web_and_pdf():
    spec = load_spec(REPO / "specs/reference/debian-reference.yaml")
    assert spec.datasets["pdf"].steps[1].content == "pdf_bytes"
    assert spec.datasets["web"].steps[1].languages == ["en", "fr", "es", "de", "it", "pt"]


def test_fineweb_ablation_reference():
    spec = load_spec(REPO / "specs/reference/fineweb-ablation.yaml")
    assert spec.model.num_kv_heads == spec.model.num_heads == 32
    assert spec.training.stages[0].tokens == 28_000_000_000
    assert spec.evaluation.limit == 1000
    kinds = [s.kind for s in spec.datasets["web"].steps]
    assert kinds == ["url_filter", "trafilatura", "language", "gopher_repetition",
                     "gopher_quality", "c4_quality", "fineweb_quality", "minhash", "pii"]
    c4 = spec.datasets["web"].steps[5]
    assert c4.filter_no_terminal_punct is False              # FACTS 1.7


def test_extends_is_a_short_ablation():
    base = load_spec(REPO / "specs/qs-nope.yaml")
    ablation = load_spec(REPO / "specs/examples/architectures/qs-rope.yaml")
    assert ablation.model.nope_interval == 0 and base.model.nope_interval == 4
    assert ablation.datasets == base.datasets
    assert ablation.training == base.training


@pytest.mark.parametrize("source,steps,message", [
    ({"kind": "builtin", "name": "pydoc_pdf"}, [{"kind": "language"}], "pdf_extract"),
    ({"kind": "warc", "path": "x", "content": "pdf"}, [], "pdf_extract"),
    ({"kind": "files", "path": "x", "format": "pdf"}, [{"kind": "minhash"}], "pdf_extract"),
    ({"kind": "jsonl", "path": "x"}, [{"kind": "pdf_extract"}], "yields text"),
    ({"kind": "files", "path": "x"}, [{"kind": "language"}, {"kind": "trafilatura"}], "first step"),
    ({"kind": "files", "path": "x"}, [{"kind": "trafilatura"}, {"kind": "resiliparse"}], "one extractor"),
    ({"kind": "files", "path": "x"}, [{"kind": "exact_dedup", "content": "pdf_bytes"}], "pdf_extract"),
])
def test_curation_chain_rules(source, steps, message):
    from repro.spec.schema import DatasetSpec

    with pytest.raises(ValueError, match=message):
        DatasetSpec.model_validate({"source": source, "steps": steps})


@pytest.mark.parametrize("license", ["Apache 2.0", "MIT", "cc by 4.0", "", "-x"])
def test_dataset_license_is_a_hub_identifier(license):
    from repro.spec.schema import DatasetSpec

    source = {"kind": "jsonl", "path": "x"}
    assert DatasetSpec.model_validate({"source": source}).license == "unknown"
    for ok in ("cc-by-4.0", "odc-by", "openrail++", "other"):
        assert DatasetSpec.model_validate({"source": source, "license": ok}).license == ok
    with pytest.raises(ValueError, match="not a Hugging Face license identifier"):
        DatasetSpec.model_validate({"source": source, "license": license})


def test_mtp_loss_weight_follows_deepseek_schedule():
    """DeepSeek-V3: lambda 0.3 for the first 10T tokens, 0.1 for the rest (FACTS 6.2)."""
    from repro.spec.schema import MTPSpec

    mtp = MTPSpec(loss_weight=0.3, later_loss_weight=0.1, later_from_tokens=10 * 10**12)
    assert (mtp.weight_at(0), mtp.weight_at(10 * 10**12 - 1), mtp.weight_at(10 * 10**12)) == (0.3, 0.3, 0.1)
    assert MTPSpec().weight_at(10**15) == 0.3  # no schedule: constant
