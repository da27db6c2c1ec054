"""Every shipped spec validates; reference specs match the published recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.compile.graph import schedule_segments
from repro.spec.load import load_spec

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "specs").rglob("*.yaml"))


def test_specs_are_shipped():
    names = {p.relative_to(REPO / "specs").as_posix() for p in SHIPPED}
    assert {"qs-nope.yaml", "qs-rope.yaml", "reference/smollm3-3b.yaml",
            "reference/fineweb-ablation.yaml", "ci/tiny.yaml",
            "examples/debian-reference.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_shipped_spec_compiles(path: Path):
    """Compiled with its sibling specs, as `repro compile --specs <its folder>` would."""
    from repro.compile.graph import compile_graph
    from repro.spec.load import load_specs

    graph = compile_graph(load_specs(sorted(path.parent.glob("*.yaml"))))
    name = load_spec(path).name
    assert any(s.kind == "train" and s.config.experiment == name for s in graph.stages.values())


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
    assert steps == [3_450_000, 748_000, 522_000]            # FACTS 3.5
    segs = schedule_segments(spec)
    # Decay covers exactly stage 3; stages 1-2 do not see it (FACTS 3.9).
    assert [s.decay_start_step for _, _, s in segs] == [None, None, 4_198_000]
    assert segs[-1][2].decay_end_step == 4_720_000
    assert t.optimizer.lr == 2e-4 and t.schedule.warmup_steps == 2000


def test_example_debian_reference_curates_web_and_pdf():
    spec = load_spec(REPO / "specs/examples/debian-reference.yaml")
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
    ablation = load_spec(REPO / "specs/qs-rope.yaml")
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
