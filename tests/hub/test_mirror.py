"""Standard lm-eval tasks without the internet, against a loopback stand-in of the hub.

First the `fineweb_early_signal` preset end to end: the evaluate stage loads each of its
lm-eval tasks through `datasets`' real hub download path (dataset card, revision, tree
listing, parquet downloads) from the stand-in, and scores a tiny checkpoint on them. Then
`repro mirror`: the hub assets of a spec fetched from the stand-in into a folder, used
offline (the stand-in stopped) by the stages, with the same scores. One module, so the
online run (~2 min) is made once per test process (pytest-xdist hands out whole modules)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from repro.eval.presets import PRESETS
from repro.hub.mirror import MANIFEST, Asset, MirrorError, _classify, hub_assets
from repro.spec.load import load_raw, load_spec

from conftest import REPO, ROWS, evaluate_config, hub_env  # noqa: E402 (tests/hub/conftest.py)
from hub_standin import HubStandin, Repo  # noqa: E402
from standard_task_data import mmlu_subjects  # noqa: E402

TOKENIZER, TEACHER = "test-org/tiny-tokenizer", "test-org/tiny-teacher"


@pytest.mark.slow
def test_early_signal_preset_scores_every_task(online_early_signal, hub):
    metrics = json.loads((online_early_signal / "metrics.json").read_text())
    results = json.loads((online_early_signal / "results" / "results.json").read_text())
    preset = PRESETS["fineweb_early_signal"]
    subjects = [f"mmlu_{s}_continuation" for s in mmlu_subjects()]
    assert len(subjects) == 57
    # every task of the preset, and every mmlu subject of its cloze group, scored
    leaves = [t for t in preset.tasks if t != "mmlu_continuation"] + subjects
    for task in leaves:
        scores = metrics["tasks"][task]
        assert 0.0 <= scores["acc"] <= 1.0 and math.isfinite(scores["acc"]), (task, scores)
        # n samples as served: all rows of the split the task evaluates on
        assert results["tasks"][task]["n_samples"]["effective"] == ROWS, task
    assert 0.0 <= metrics["tasks"]["mmlu_continuation"]["acc"] <= 1.0
    assert results.get("failed_tasks", {}) == {}
    # lm-eval read the data through the hub's API, not from anything local
    assert any(r.startswith("GET /api/datasets/cais/mmlu/tree/") for r in hub.requests)
    assert any(r.endswith("/ARC-Challenge/test-00000-of-00001.parquet") for r in hub.requests)


def test_assets_of_the_reference_specs():
    ablation = hub_assets([load_spec(REPO / "specs/reference/fineweb-ablation.yaml")])
    assert [(a.kind, a.name) for a in ablation] == [
        *(("eval_task", t) for t in ("commonsense_qa", "hellaswag", "openbookqa", "piqa",
                                     "social_iqa", "winogrande", "arc_easy", "arc_challenge",
                                     "mmlu")),
        ("tokenizer", "openai-community/gpt2")]
    assert ablation[0].used_by == ("fineweb-ablation",)
    # a tokenizer trained here, local tasks only: nothing from the hub
    assert hub_assets([load_spec(REPO / "specs/ci/tiny.yaml")]) == []


def write_spec(folder: Path, **changes) -> Path:
    """specs/ci/tiny.yaml (its `extends:` chain merged) with the top-level sections in
    `changes` replaced, written as one spec file in `folder`; returns its path."""
    data = load_raw(REPO / "specs/ci/tiny.yaml").data
    data.pop("extends", None)
    data |= {"experiment": {"name": "hub-mirror", "replicas": []},
             "report": {"name": "hub-mirror", "experiments": ["hub-mirror"],
                        "baseline": "hub-mirror"}} | changes
    folder.mkdir(parents=True)
    path = folder / "hub.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def training_with(**changes) -> dict:
    return load_raw(REPO / "specs/ci/tiny.yaml").data["training"] | changes


def model_repo(repo_id: str, checkpoint: Path) -> Repo:
    return Repo("model", repo_id, {p.name: p.read_bytes() for p in sorted(checkpoint.iterdir())
                                   if p.is_file() and p.name != "trainer_state.json"})


def mirror_cmd(spec: Path, folder: Path, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro.cli", "mirror", str(spec), str(folder)],
                          env=env, cwd=cwd, text=True, capture_output=True, timeout=900)


@pytest.mark.slow
def test_mirror_then_evaluate_offline(hub, checkpoint, online_early_signal, tmp_path):
    # a hub of its own, serving the same datasets and the tokenizer and teacher repos, so it
    # can be stopped before the offline run
    standin = HubStandin(repos=dict(hub.repos))
    standin.add(model_repo(TOKENIZER, checkpoint))
    standin.add(model_repo(TEACHER, checkpoint))
    standin.start()
    try:
        spec = write_spec(tmp_path / "specs",
                          tokenizer={"kind": "pretrained", "name_or_path": TOKENIZER},
                          training=training_with(distillation={"teacher": TEACHER}),
                          evaluation={"presets": ["fineweb_early_signal"]})
        mirror = tmp_path / "mirror"
        proc = mirror_cmd(spec, mirror, hub_env(standin, tmp_path / "home-online"), tmp_path)
    finally:
        standin.stop()
    assert proc.returncode == 0, proc.stderr[-4000:]
    # progress per asset, in order, then where the offline cluster points at it
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert [line.split(" ", 1)[0] for line in progress] == [f"[{i}/11]" for i in range(1, 12)]
    assert progress[0] == "[1/11] lm-eval task commonsense_qa"
    assert progress[-1] == f"[11/11] teacher model {TEACHER}"
    assert "57 task(s) from 57 dataset config(s): cais/mmlu:abstract_algebra" in proc.stderr
    assert f"REPRO_HUB_MIRROR={mirror.resolve()}" in proc.stdout
    manifest = json.loads((mirror / MANIFEST).read_text())
    assert [a["name"] for a in manifest["assets"]][-2:] == [TOKENIZER, TEACHER]
    arc = next(a for a in manifest["assets"] if a["name"] == "arc_easy")
    assert arc["tasks"] == [{"task": "arc_easy", "dataset_path": "allenai/ai2_arc",
                             "dataset_name": "ARC-Easy",
                             "splits": {"test": 3, "train": 3, "validation": 3}}]
    assert (mirror / "hub").is_dir() and (mirror / "datasets").is_dir()
    assert not (tmp_path / "home-online").exists()  # everything went into the mirror

    # offline: the stage as DVC runs it (`repro stage`, which forces offline mode), its HF
    # home empty, the hub gone; REPRO_HUB_MIRROR is the only way to the data. Three of the
    # mirrored tasks (a plain one, one with a dataset config, an mmlu subject), not all 65:
    # the online run scored every task already, and each costs lm-eval's per-task set-up
    work = tmp_path / "offline"
    work.mkdir()
    offline_tasks = ["hellaswag", "arc_challenge", "mmlu_abstract_algebra_continuation"]
    (work / "params.yaml").write_text(yaml.safe_dump(
        {"evaluate-hub-mirror": evaluate_config([], offline_tasks)}))
    env = hub_env(None, tmp_path / "home-offline", HF_ENDPOINT=standin.url,
                  REPRO_HUB_MIRROR=str(mirror))
    proc = subprocess.run(
        [sys.executable, "-m", "repro.cli", "stage", "evaluate", "evaluate-hub-mirror",
         "--in", f"checkpoint:final={checkpoint}", "--out", "results:final=out/results",
         "--out", "metrics:final=out/metrics.json", "--out", "env=out/env.json"],
        env=env, cwd=work, text=True, capture_output=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    offline = json.loads((work / "out/metrics.json").read_text())
    online = json.loads((online_early_signal / "metrics.json").read_text())
    assert sorted(offline["tasks"]) == sorted(offline_tasks)
    assert offline["tasks"] == {t: online["tasks"][t] for t in offline_tasks}
    offline_results = json.loads((work / "out/results/results.json").read_text())["tasks"]
    online_results = json.loads((online_early_signal / "results/results.json").read_text())["tasks"]
    for task in offline_tasks:  # scored on the same rows as online
        assert offline_results[task]["n_samples"] == online_results[task]["n_samples"], task

    # the hub tokenizer and teacher load offline from the mirror, through repro's loaders
    load = ("import os\n"
            "from repro.hub.mirror import mirror_offline_env\n"
            "from repro.stages.base import set_offline_env\n"
            "set_offline_env(); os.environ.update(mirror_offline_env())  # as `repro stage`\n"
            "from repro.stages.tokenizer import load_pretrained\n"
            "from repro.train.distill import load_teacher\n"
            f"tok = load_pretrained({TOKENIZER!r}, None)\n"
            f"teacher = load_teacher({TEACHER!r}, len(tok))\n"
            "print(len(tok), sum(p.numel() for p in teacher.parameters()))")
    proc = subprocess.run([sys.executable, "-c", load], env=env, cwd=work, text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert int(proc.stdout.split()[0]) > 256


@pytest.mark.slow
def test_mirror_errors_name_the_asset_and_the_fix(tmp_path, request):
    spec = write_spec(tmp_path / "specs",
                      tokenizer={"kind": "pretrained", "name_or_path": "test-org/missing"})
    hub = HubStandin().start()  # serving nothing
    request.addfinalizer(hub.stop)
    # a repo the hub does not have
    proc = mirror_cmd(spec, tmp_path / "m", hub_env(hub, tmp_path / "home"), tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "tokenizer test-org/missing (needed by hub-mirror): not found on" in proc.stderr
    assert "check the name (and revision) in the spec" in proc.stderr
    assert not (tmp_path / "m" / MANIFEST).exists()
    # offline mode set: refused before anything is fetched
    proc = mirror_cmd(spec, tmp_path / "m", hub_env(hub, tmp_path / "home", HF_HUB_OFFLINE="1"),
                      tmp_path)
    assert proc.returncode == 2 and "HF_HUB_OFFLINE is set" in proc.stderr
    # a stage pointed at a folder that is not a mirror
    env = hub_env(None, tmp_path / "home", REPRO_HUB_MIRROR=str(tmp_path / "nothing"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate-x": evaluate_config(["fineweb_early_signal"])}))
    proc = subprocess.run([sys.executable, "-m", "repro.cli", "stage", "evaluate", "evaluate-x",
                           "--in", f"checkpoint:final={tmp_path}", "--out", "env=env.json",
                           "--out", "results:final=r", "--out", "metrics:final=m.json"],
                          env=env, cwd=tmp_path, text=True, capture_output=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "is not a hub mirror" in proc.stderr and "repro mirror SPEC" in proc.stderr


def test_no_network_says_where_to_run_it():
    asset = Asset("eval_task", "hellaswag", None, ("exp",))
    try:
        try:
            raise httpx.ConnectError("[Errno -2] Name or service not known")
        except httpx.ConnectError as e:
            raise ConnectionError("Couldn't reach 'Rowan/hellaswag' on the Hub") from e
    except ConnectionError as e:
        error = _classify(asset, e)
    assert isinstance(error, MirrorError)
    assert error.message.startswith("lm-eval task hellaswag (needed by exp): cannot reach the hub")
    assert "machine with network access" in error.fix
