"""lm-eval task YAMLs for local tasks, and clear errors for tasks that cannot load offline.
No model is loaded here (see tests/stages/test_evaluate.py for a full run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from repro.eval.local_tasks import DATA_FILE, MANIFEST_FILE, Doc, build_task
from repro.eval.lm_eval_runner import (
    TaskUnavailableError,
    load_tasks,
    local_task_config,
    write_local_tasks,
)
from repro.spec.schema import LocalTaskSpec
from repro.stages.base import dumps_json

assert os.environ.get("HF_DATASETS_OFFLINE") == "1", "tests must run offline (tests/conftest.py)"

DOCS = [Doc(f"d{i}", f"Doc {i} starts here. It has a second sentence about item {i}. "
                     f"Then a third sentence closes document {i}.") for i in range(5)]


def make_task(root: Path, kind: str) -> tuple[dict, Path]:
    spec = LocalTaskSpec(kind=kind, dataset="web", max_docs=4, num_choices=3)
    data, manifest = build_task(spec, DOCS, seed=0)
    folder = root / spec.task_name
    folder.mkdir()
    (folder / DATA_FILE).write_bytes(data)
    (folder / MANIFEST_FILE).write_text(dumps_json(manifest))
    return manifest, folder


def test_local_task_configs(tmp_path):
    manifest, folder = make_task(tmp_path, "bpb")
    cfg = local_task_config(manifest, folder / DATA_FILE, tmp_path / "cache")
    assert cfg["output_type"] == "loglikelihood_rolling"
    assert cfg["dataset_path"] == "json" and cfg["test_split"] == "test"
    assert Path(cfg["dataset_kwargs"]["data_files"]["test"]).is_absolute()
    assert {m["metric"] for m in cfg["metric_list"]} == {"word_perplexity", "byte_perplexity",
                                                         "bits_per_byte"}
    assert cfg["metadata"]["version"] == manifest["version"]
    manifest, folder = make_task(tmp_path, "cloze")
    cfg = local_task_config(manifest, folder / DATA_FILE, tmp_path / "cache")
    assert cfg["output_type"] == "multiple_choice"
    assert (cfg["doc_to_text"], cfg["doc_to_choice"], cfg["doc_to_target"]) == (
        "context", "choices", "label")
    assert {m["metric"] for m in cfg["metric_list"]} == {"acc", "acc_norm"}


def test_written_yamls_load_in_lm_eval(tmp_path):
    from lm_eval.tasks import TaskManager

    tasks = {}
    for kind in ("bpb", "cloze"):
        manifest, folder = make_task(tmp_path, kind)
        tasks[manifest["name"]] = (manifest, folder)
    work = tmp_path / "yamls"
    work.mkdir()
    write_local_tasks(work, tasks)
    assert yaml.safe_load((work / "repro_cloze_web.yaml").read_text())["task"] == "repro_cloze_web"
    tm = TaskManager(include_path=str(work), include_defaults=False)
    objs = load_tasks(tm, sorted(tasks), standard=set())
    by_name = {t.task_name: t for t in objs}
    assert set(by_name) == set(tasks)
    cloze = by_name["repro_cloze_web"]
    doc = cloze.test_docs()[0]
    assert cloze.doc_to_choice(doc)[cloze.doc_to_target(doc)] in DOCS[int(doc["id"][1])].text
    assert len(by_name["repro_bpb_web"].test_docs()) == 4
    # no datasets cache written outside the temporary folder
    assert (work / "hf_datasets_cache").is_dir()


def test_task_name_mismatch_is_reported(tmp_path):
    manifest, folder = make_task(tmp_path, "bpb")
    with pytest.raises(ValueError, match="rerun `repro compile`"):
        write_local_tasks(tmp_path, {"repro_bpb_code": (manifest, folder)})


def test_standard_tasks_offline_fail_with_instructions(tmp_path):
    """A known task whose dataset is on the hub, and a misspelt one (indexing lm-eval's
    built-in tasks takes ~10 s)."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(tmp_path), include_defaults=True)
    with pytest.raises(TaskUnavailableError) as e:
        load_tasks(tm, ["arc_easy"], standard={"arc_easy"})
    msg = str(e.value)
    assert "'arc_easy'" in msg and "HF_DATASETS_CACHE" in msg and "local_tasks" in msg
    with pytest.raises(TaskUnavailableError, match="no task, group or tag named 'arc_eazy'"):
        load_tasks(tm, ["arc_eazy"], standard={"arc_eazy"})
