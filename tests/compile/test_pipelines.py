"""Example pipelines (repro.compile.pipelines): the committed files are what the specs
compile to, and the pipelines partition the stages: each stage in one dvc.yaml, an example's
inputs from the default pipeline are its declared outputs, an example's params file holds its
own stages' sections only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from repro.cli import main
from repro.compile.code_deps import stage_code
from repro.compile.pipelines import compile_all, example_pipelines, pipeline_of
from repro.compile.render import GENERATED
from repro.spec.load import SpecError
from repro.stages import kinds
from repro.verify.lockfile import declared_outputs

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = ("architectures", "ladder", "lr-sweep")


@pytest.fixture(scope="module")
def compiled():
    return compile_all(REPO / "specs", REPO)


def _dvc(compiled, name=None):
    c = next(c for c in compiled if c.pipeline.name == name)
    return yaml.safe_load(c.texts()[c.pipeline.dvc_yaml])["stages"]


def test_the_shipped_examples_are_compiled_and_committed(compiled):
    assert [c.pipeline.name for c in compiled] == [None, *EXAMPLES]
    for c in compiled:
        for rel, text in c.texts().items():
            assert (REPO / rel).read_text() == text, f"{rel} is stale: run `repro compile`"


def test_no_stage_is_in_two_pipelines_and_each_output_is_declared_once(compiled):
    owner: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for c in compiled:
        for sid, entry in _dvc(compiled, c.pipeline.name).items():
            assert sid not in owner, f"{sid} in {owner.get(sid)} and {c.pipeline.dvc_yaml}"
            owner[sid] = str(c.pipeline.dvc_yaml)
            for out in declared_outputs(entry):
                assert out not in outputs, f"{out} declared by {outputs[out]} and {sid}"
                outputs[out] = sid
    # the default pipeline is qs-nope and qs-muon with their report; the examples add stages
    assert {e for c in compiled if c.pipeline.name is None for e in
            {getattr(c.graph.stages[s].config, "experiment", None) for s in c.stage_ids}} >= {
        "qs-nope", "qs-muon"}
    assert all(c.stage_ids for c in compiled)


def test_an_examples_inputs_are_its_own_or_the_default_pipelines_outputs(compiled):
    root_outputs = {o for entry in _dvc(compiled).values() for o in declared_outputs(entry)}
    code = {str(p) for kind in kinds() for p in stage_code(kind)}
    for name in EXAMPLES:
        stages = _dvc(compiled, name)
        own = {o for entry in stages.values() for o in declared_outputs(entry)}
        reused = set()
        for sid, entry in stages.items():
            # run from the workspace root, reading the example's own params file
            assert entry["wdir"] == "../.."
            assert f" --params examples/{name}/params.yaml " in entry["cmd"]
            assert [next(iter(p)) for p in entry["params"]] == [f"examples/{name}/params.yaml"]
            for dep in entry["deps"]:
                if dep in code:
                    continue
                assert dep in own or dep in root_outputs, f"{name}: {sid} reads {dep}, made by no stage"
                reused |= {dep} - own
        assert reused, f"{name} reuses nothing of the default pipeline"
        # the data and tokenizer come from the default pipeline: no example curates again
        assert not {e.split("-", 1)[0] for e in stages} & {"source", "curate", "split",
                                                             "tokenizer", "tokenize"}


def test_an_examples_params_files_hold_only_its_stages(compiled):
    for c in compiled:
        files = {rel: yaml.safe_load(text) or {} for rel, text in c.texts().items()
                 if rel.name != "dvc.yaml"}
        assert c.pipeline.params_yaml in files
        sections = [name for params in files.values() for name in params]
        assert sorted(sections) == sorted(_dvc(compiled, c.pipeline.name)) == sorted(c.stage_names)
        for params in files.values():  # each file in pipeline order
            assert list(params) == [n for n in c.stage_names if n in params]


def test_the_architectures_report_compares_default_and_example_runs(compiled):
    stages = _dvc(compiled, "architectures")
    report = stages["report-architectures"]
    root = _dvc(compiled)
    # qs-nope's and qs-muon's evaluations are the default pipeline's, read by path
    muon = [d for d in report["deps"] if d.startswith("metrics/evaluate-qs-muon-")]
    assert muon and all(any(d in declared_outputs(e) for e in root.values()) for d in muon)
    # top-level plots are resolved from the dvc.yaml's folder, not from a stage's wdir
    text = next(c for c in compiled if c.pipeline.name == "architectures").texts()[
        Path("examples/architectures/dvc.yaml")]
    plots = {k: v for p in yaml.safe_load(text)["plots"] for k, v in p.items()}
    curves = {k: v for k, v in plots.items() if k.startswith("architectures: ")}
    assert curves and all(f.startswith("../../plots/reports/architectures/")
                          for curve in curves.values() for f in curve["y"])
    # and so are its training stages' titled loss and monitor plots and their live curves
    live = {k for k in plots if k.split(": ", 1)[1].startswith("live ")}
    assert live and all(f.startswith("../../live/train-") for k in live for f in plots[k]["y"])
    assert all(f.startswith("../../plots/train-")
               for k, v in plots.items() if k not in curves and k not in live for f in v["y"])


@pytest.mark.parametrize("name", ["dvc.yaml", "params.yaml"])
def test_golden_lr_sweep_example(compiled, name):
    """The smallest example, byte for byte (regenerate with the quickstart's golden)."""
    c = next(c for c in compiled if c.pipeline.name == "lr-sweep")
    text = c.texts()[c.pipeline.folder / name]
    golden = GOLDEN / f"lr-sweep.{name}"
    if os.environ.get("REPRO_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "compiler output changed; REPRO_UPDATE_GOLDEN=1 to accept"


def test_a_spec_belongs_to_its_folders_pipeline():
    assert pipeline_of(Path("specs/qs-nope.yaml")).name is None
    example = pipeline_of(Path("specs/examples/lr-sweep/qs-lr.yaml"))
    assert (example.name, str(example.dvc_yaml)) == ("lr-sweep", "examples/lr-sweep/dvc.yaml")
    assert example.target("evaluate-x-1") == "examples/lr-sweep/dvc.yaml:evaluate-x-1"
    assert pipeline_of(Path("specs/ci/tiny.yaml")).name is None


# ---------------------------------------------------------------- in a scratch workspace


def _workspace(tmp_path: Path, monkeypatch, examples: dict[str, str]) -> Path:
    """specs/ci's tiny spec as the default pipeline and `examples` (name -> spec text
    extending it) as example pipelines, in tmp_path (the workspace)."""
    shutil.copy(REPO / "specs/qs-nope.yaml", tmp_path / "qs-nope.yaml")  # tiny extends ../
    (tmp_path / "specs").mkdir()
    shutil.copy(REPO / "specs/ci/tiny.yaml", tmp_path / "specs/tiny.yaml")
    for name, text in examples.items():
        folder = tmp_path / "specs/examples" / name
        folder.mkdir(parents=True)
        (folder / "x.yaml").write_text("extends: ../../tiny.yaml\n" + text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


X = "experiment: {name: x, replicas: []}\nmodel: {nope_interval: 0}\nreport: null\n"


def test_check_fails_on_a_missing_stale_or_orphaned_example_and_compile_fixes_it(tmp_path, monkeypatch):
    root = _workspace(tmp_path, monkeypatch, {"one": X})
    runner = CliRunner()
    assert runner.invoke(main, ["compile"]).exit_code == 0
    assert runner.invoke(main, ["compile", "--check"]).exit_code == 0
    (root / "examples/one/params.yaml").unlink()
    missing = runner.invoke(main, ["compile", "--check"])
    assert missing.exit_code == 1 and "stale: examples/one/params.yaml; run `repro compile`" in missing.output
    assert runner.invoke(main, ["compile"]).exit_code == 0
    shutil.move(root / "specs/examples/one", root / "one-moved-away")
    orphan = runner.invoke(main, ["compile", "--check"])
    assert orphan.exit_code == 1 and ("examples/one/dvc.yaml is generated but its example has "
                                      "no specs any more") in orphan.output
    (root / "examples/one/notes.txt").write_text("mine")
    fixed = runner.invoke(main, ["compile"])
    assert fixed.exit_code == 0 and "removed examples/one/dvc.yaml" in fixed.output
    assert sorted(p.name for p in (root / "examples/one").iterdir()) == ["notes.txt"]
    assert runner.invoke(main, ["compile", "--check"]).exit_code == 0
    # a generated params file no stage reads any more (an example's data stages gone): DVC
    # would not read it, and `dvc exp run -S` would edit it to no effect
    shutil.move(root / "one-moved-away", root / "specs/examples/one")
    assert runner.invoke(main, ["compile"]).exit_code == 0
    assert not (root / "examples/one/params.data.yaml").exists()  # no data stage of its own
    (root / "examples/one/params.data.yaml").write_text(GENERATED + "\ncurate-x: {}\n")
    stale = runner.invoke(main, ["compile", "--check"])
    assert stale.exit_code == 1 and ("examples/one/params.data.yaml is generated but no stage "
                                     "of example 'one' reads it any more") in stale.output
    assert "removed examples/one/params.data.yaml" in runner.invoke(main, ["compile"]).output
    assert runner.invoke(main, ["compile", "--check"]).exit_code == 0


def test_two_examples_building_the_same_stage_are_refused(tmp_path, monkeypatch):
    _workspace(tmp_path, monkeypatch, {"one": X, "two": X})
    with pytest.raises(SpecError, match=r"compiled into both example 'one' and example 'two'"):
        compile_all(Path("specs"), tmp_path)


def test_an_example_folder_name_must_name_a_pipeline(tmp_path, monkeypatch):
    _workspace(tmp_path, monkeypatch, {"Bad Name": X})
    with pytest.raises(SpecError, match="cannot name a pipeline"):
        example_pipelines(Path("specs"))


def test_an_example_report_may_compare_a_default_experiment(tmp_path, monkeypatch):
    _workspace(tmp_path, monkeypatch, {"one": X.replace(
        "report: null", "report: {name: cmp, experiments: [ci-tiny, x], baseline: ci-tiny}")})
    default, example = compile_all(Path("specs"), tmp_path)
    [report] = [example.graph.stages[s] for s in example.stage_ids if s.startswith("report-")]
    assert report.config.experiments == ["ci-tiny", "x"]
    trains = {s for s in default.stage_ids if s.startswith("train-ci-tiny-")}
    read = {ref.stage_id for _, ref in report.inputs if hasattr(ref, "stage_id")}
    assert trains <= read  # the default's runs, not rebuilt in the example
    assert not trains & set(example.stage_ids)
