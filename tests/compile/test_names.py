"""Stage names (repro.compile.graph.name_stages): what a stage is, without its settings hash,
so a settings change keeps every name (issue 22); clashes get a deterministic suffix."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro.compile.graph import ExternalPath, Stage, StageGraph, name_stages
from repro.compile.pipelines import compile_all
from repro.compile.render import render_params_yaml
from repro.compile.specs import compile_files
from repro.stages.configs import FunnelConfig

REPO = Path(__file__).resolve().parents[2]
ALL = sorted((REPO / "specs").glob("*.yaml")) + sorted((REPO / "specs/examples").glob("*/*.yaml"))
ROPE = "model:\n  rope_theta: 100000.0\n"


def _specs(tmp_path: Path, append: dict[str, str]) -> list[Path]:
    """Every pipeline's spec files side by side in tmp_path, `append[name]` added to each."""
    for f in ALL:
        text = f.read_text().replace("extends: ../../", "extends: ")
        (tmp_path / f.name).write_text(text + append.get(f.name, ""))
    return [tmp_path / f.name for f in ALL]


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        return {k: v for key, sub in node.items()
                for k, v in _leaves(sub, f"{prefix}.{key}" if prefix else key).items()}
    return {prefix: node}


def test_a_one_field_edit_keeps_every_name_and_changes_only_that_field(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    base = compile_files(_specs(tmp_path / "a", {}), REPO / "specs", REPO)
    new = compile_files(_specs(tmp_path / "b", {"qs-muon.yaml": ROPE}), REPO / "specs", REPO)
    assert sorted(base.names.values()) == sorted(new.names.values())
    assert set(base.stages) != set(new.stages)  # the ids (output folders) did change
    assert all(not re.search(r"-[0-9a-f]{8}$", n) for n in new.names.values())
    old_params = _leaves(yaml.safe_load(render_params_yaml(base)))
    new_params = _leaves(yaml.safe_load(render_params_yaml(new)))
    changed = {k for k in old_params.keys() | new_params.keys() if old_params.get(k) != new_params.get(k)}
    assert changed == {f"train-{e}-{p}.model.rope_theta" for e in ("qs-muon", "qs-muon-seed1")
                       for p in ("stable", "decay")}
    assert {old_params[k] for k in changed} == {50000.0} and {new_params[k] for k in changed} == {100000.0}


def test_names_are_deterministic_and_shared_stages_keep_one_name():
    a, b = compile_files(ALL, REPO / "specs", REPO), compile_files(ALL[::-1], REPO / "specs", REPO)
    assert a.names == b.names
    assert len(set(a.names.values())) == len(a.stages)
    assert {"curate-web", "tokenizer-bpe4096", "evaltasks-repro-bpb-web", "train-qs-muon-stable",
            "evaluate-qs-muon", "report-quickstart", "fit-qs"} <= set(a.names.values())
    # the output paths keep the id, hash included
    curate = next(s for s in a.stages.values() if a.name(s.id) == "curate-web")
    assert str(curate.outputs()["docs"]) == f"data/curated/{curate.id}"
    assert re.fullmatch(r"curate-web-[0-9a-f]{8}", curate.id)


WEB_HELDOUT = "datasets:\n  web:\n    heldout: {fraction: 0.1}\n"


def test_two_variants_of_a_dataset_are_named_after_their_experiments(tmp_path):
    """qs-muon splits `web` otherwise than qs-nope: its split and everything downstream of
    it are stages of their own, each clash named `<kind>-<label>-<first experiment>`; the
    curation both still share keeps its plain name."""
    for f in ("qs-nope.yaml", "qs-muon.yaml"):
        (tmp_path / f).write_text((REPO / "specs" / f).read_text()
                                  + (WEB_HELDOUT if f == "qs-muon.yaml" else ""))
    files = [tmp_path / "qs-nope.yaml", tmp_path / "qs-muon.yaml"]
    graph = compile_files(files, tmp_path, REPO)
    names = set(graph.names.values())
    assert {"curate-web", "split-code", "split-web-qs-muon", "split-web-qs-nope",
            "tokenizer-bpe4096-qs-muon", "tokenizer-bpe4096-qs-nope",
            "evaltasks-repro-bpb-web-qs-muon", "train-qs-muon-stable"} <= names
    assert "split-web" not in names and len(names) == len(graph.stages)
    assert compile_files(files[::-1], tmp_path, REPO).names == graph.names


def test_an_examples_own_stage_never_takes_a_default_stages_name(tmp_path):
    """The default pipeline's names are fixed before an example's are given: adding the
    example renames nothing of the default, and no name means two stages across the params
    files a sweep merges."""
    specs = tmp_path / "specs"
    (specs / "examples/ex").mkdir(parents=True)
    for f in ("qs-nope.yaml", "qs-muon.yaml"):
        (specs / f).write_text((REPO / "specs" / f).read_text())
    (specs / "examples/ex/qs-web.yaml").write_text(
        (REPO / "specs/qs-muon.yaml").read_text().replace("extends: qs-nope.yaml", "extends: ../../qs-nope.yaml")
        .replace("name: qs-muon,", "name: qs-web,") + WEB_HELDOUT)
    default, example = compile_all(specs, tmp_path)
    assert "split-web" in default.stage_names
    assert "split-web-qs-web" in example.stage_names and "split-web" not in example.stage_names
    assert {s: example.graph.name(s) for s in default.stage_ids} == default.graph.names
    assert not set(default.stage_names) & set(example.stage_names)


def test_labels_that_still_clash_fall_back_to_the_id():
    graph = StageGraph()
    graph.building = "exp"
    one = graph.add(Stage("funnel", "web", FunnelConfig(dataset="web"), (("curated", ExternalPath("a")),)))
    two = graph.add(Stage("funnel", "web", FunnelConfig(dataset="web"), (("curated", ExternalPath("b")),)))
    graph.building = "other"
    three = graph.add(Stage("funnel", "Web!", FunnelConfig(dataset="web"), (("curated", ExternalPath("c")),)))
    assert name_stages(graph) == {one.id: one.id, two.id: two.id, three.id: "funnel-web-other"}


@pytest.mark.slow
def test_dvc_params_diff_and_explain_show_the_one_field_under_the_same_name(make_workspace, tmp_path):
    """The real DVC CLI on a one-field spec edit: `dvc params diff` names the field under
    the stage's unchanged section, and `repro explain` says `field: old → new`."""
    from dvc.utils.serialize import dumps_yaml

    from tests.conftest import tool_env

    root = make_workspace(tmp_path)
    run = lambda *args: subprocess.run(args, cwd=root, env=tool_env(), text=True,  # noqa: E731
                                       capture_output=True, check=True).stdout
    before = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    stage = "train-ci-tiny-stable"
    old_theta = params[stage]["model"]["rope_theta"]
    # a record of the stage as it was (what `dvc repro` would have written, less the files)
    tracked = {k: params[k.split(".", 1)[0]][k.split(".", 1)[1]] for k in before[stage]["params"]}
    (root / "dvc.lock").write_text(dumps_yaml({"schema": "2.0", "stages": {stage: {
        "cmd": before[stage]["cmd"], "params": {"params.yaml": tracked}}}}))
    run("git", "add", "dvc.lock")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock")
    spec = root / "specs/ci/tiny.yaml"
    spec.write_text(spec.read_text().replace("max_position_embeddings: 256}",
                                             "max_position_embeddings: 256, rope_theta: 100000.0}"))
    run(sys.executable, "-m", "repro.cli", "compile", "--specs", "specs/ci")
    after = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert list(after) == list(before)
    diff = json.loads(run("dvc", "params", "diff", "--json"))
    assert diff == {"params.yaml": {f"train-ci-tiny-{p}.model.rope_theta": {
        "old": old_theta, "new": 100000.0, "diff": 100000.0 - old_theta} for p in ("stable", "decay")}}
    explained = {e["stage"]: e["reasons"] for e in json.loads(run("repro", "explain", "--json"))}
    assert f"setting model.rope_theta: {json.dumps(old_theta)} → 100000.0" in explained[stage]


def test_a_label_that_reads_as_another_stages_id_is_refused():
    """The last resort (the id) cannot clash unless a label spells another stage's label
    and hash: refused with the fix, not renamed by guess."""
    from repro.compile.errors import GraphError

    graph = StageGraph()
    graph.building = "exp"
    one = graph.add(Stage("funnel", "web", FunnelConfig(dataset="web"), (("curated", ExternalPath("a")),)))
    graph.add(Stage("funnel", "web", FunnelConfig(dataset="web"), (("curated", ExternalPath("b")),)))
    graph.add(Stage("funnel", f"web-{one.id.rsplit('-', 1)[1]}", FunnelConfig(dataset="web"),
                    (("curated", ExternalPath("c")),)))
    with pytest.raises(GraphError, match=f"would both be named '{one.id}'") as e:
        name_stages(graph)
    assert "rename one of the datasets" in e.value.fix
