"""lm-eval task YAMLs for local tasks, and clear errors for tasks that cannot load offline.
No model is loaded here (see tests/stages/test_evaluate.py for a full run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from repro.eval.local_tasks import (
    DATA_FILE,
    LOADER_FILE,
    Doc,
    build_task,
    check_task_files,
    read_manifest,
    task_config,
    task_files,
    yaml_file,
)
from repro.eval.lm_eval_runner import (
    TaskUnavailableError,
    check_local_tasks,
    load_tasks,
)
from repro.spec.schema import LocalTaskSpec

assert os.environ.get("HF_DATASETS_OFFLINE") == "1", "tests must run offline (tests/conftest.py)"

DOCS = [Doc(f"d{i}", f"Doc {i} starts here. It has a second sentence about item {i}. "
                     f"Then a third sentence closes document {i}.") for i in range(5)]


def write_task(folder: Path, data: bytes, manifest: dict) -> Path:
    """A task folder as the evaltasks stage writes it."""
    folder.mkdir(parents=True)
    for name, content in task_files(data, manifest).items():
        (folder / name).write_bytes(content)
    return folder


def make_task(root: Path, kind: str) -> tuple[dict, Path]:
    spec = LocalTaskSpec(kind=kind, dataset="web", max_docs=4, num_choices=3)
    data, manifest = build_task(spec, DOCS, seed=0)
    return manifest, write_task(root / spec.task_name, data, manifest)


def test_local_task_configs(tmp_path):
    manifest, folder = make_task(tmp_path, "bpb")
    cfg = task_config(manifest)
    assert cfg["output_type"] == "loglikelihood_rolling" and cfg["test_split"] == "test"
    # no path but the data file's name: it is read next to the YAML
    assert cfg["dataset_kwargs"] == {"data_file": DATA_FILE,
                                     "data_sha256": manifest["data_sha256"]}
    assert {m["metric"] for m in cfg["metric_list"]} == {"word_perplexity", "byte_perplexity",
                                                         "bits_per_byte"}
    assert cfg["metadata"]["version"] == manifest["version"]
    text = (folder / yaml_file(manifest["name"])).read_text()
    assert "custom_dataset: !function task_loader.load\n" in text
    assert "--include_path <this folder> --tasks repro_bpb_web" in text  # how to run it
    manifest, folder = make_task(tmp_path, "cloze")
    cfg = task_config(manifest)
    assert cfg["output_type"] == "multiple_choice"
    assert (cfg["doc_to_text"], cfg["doc_to_choice"], cfg["doc_to_target"]) == (
        "context", "choices", "label")
    assert {m["metric"] for m in cfg["metric_list"]} == {"acc", "acc_norm"}


def test_task_folders_load_in_lm_eval_from_anywhere(tmp_path, monkeypatch):
    """The YAMLs the evaltasks stage writes load with their folders as include paths, from
    another working directory and after the folder is moved (nothing absolute in them)."""
    from lm_eval.tasks import TaskManager

    tasks = {}
    for kind in ("bpb", "cloze"):
        manifest, folder = make_task(tmp_path / "built", kind)
        tasks[manifest["name"]] = (manifest, folder)
    (tmp_path / "built").rename(tmp_path / "moved")
    tasks = {n: (m, tmp_path / "moved" / f.name) for n, (m, f) in tasks.items()}
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tm = TaskManager(include_path=check_local_tasks(tasks), include_defaults=False)
    loaded = load_tasks(tm, sorted(tasks), standard=set())
    by_name = {t.task_name: t for t in loaded.objects}
    assert loaded.failed == {} and set(loaded.leaves) == set(tasks) == set(by_name)
    cloze = by_name["repro_cloze_web"]
    rows = [json.loads(line) for line in
            (tmp_path / "moved" / "repro_cloze_web" / DATA_FILE).read_text().splitlines()]
    assert [dict(d) for d in cloze.test_docs()] == rows  # file order, every field
    doc = cloze.test_docs()[0]
    assert cloze.doc_to_choice(doc)[cloze.doc_to_target(doc)] in DOCS[int(doc["id"][1])].text
    assert len(by_name["repro_bpb_web"].test_docs()) == 4
    assert list(elsewhere.iterdir()) == []  # no datasets cache written anywhere here


def test_task_folder_must_match_what_evaltasks_writes(tmp_path):
    manifest, folder = make_task(tmp_path, "cloze")
    assert read_manifest(folder) == manifest
    check_task_files(folder, manifest)
    (folder / yaml_file(manifest["name"])).write_text("task: repro_cloze_web\n")
    with pytest.raises(ValueError, match="stale.*dvc repro"):
        check_task_files(folder, manifest)
    (folder / yaml_file(manifest["name"])).unlink()
    with pytest.raises(ValueError, match="missing.*dvc repro"):
        check_task_files(folder, manifest)
    manifest, folder = make_task(tmp_path / "2", "cloze")
    (folder / DATA_FILE).write_bytes((folder / DATA_FILE).read_bytes()[:-2] + b"\n")
    with pytest.raises(ValueError, match="does not match its manifest"):
        read_manifest(folder)


def test_loader_refuses_data_that_does_not_match_the_task(tmp_path):
    import importlib.util

    manifest, folder = make_task(tmp_path, "bpb")
    spec = importlib.util.spec_from_file_location("task_loader", folder / LOADER_FILE)
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    ds = loader.load(data_file=DATA_FILE, data_sha256=manifest["data_sha256"], version=2,
                     pretrained="ignored")
    assert len(ds["test"]) == 4
    with pytest.raises(ValueError, match="does not match its task"):
        loader.load(data_file=DATA_FILE, data_sha256="0" * 64)


def test_task_name_mismatch_is_reported(tmp_path):
    manifest, folder = make_task(tmp_path, "bpb")
    with pytest.raises(ValueError, match="rerun `repro compile`"):
        check_local_tasks({"repro_bpb_code": (manifest, folder)})


@pytest.mark.slow
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


def test_code_cloze_requests_rebuild_the_file(tmp_path):
    """lm-eval's requests for a code_cloze question: context + "\\n" + true line is the
    file's text (no space inserted, indentation kept)."""
    import sys

    from lm_eval.tasks import TaskManager

    sys.path.insert(0, str(Path(__file__).parent))
    from test_local_tasks import make_code_docs

    docs = make_code_docs(4)
    spec = LocalTaskSpec(kind="code_cloze", dataset="code", max_docs=5, num_choices=3)
    data, manifest = build_task(spec, docs, seed=0)
    folder = write_task(tmp_path / spec.task_name, data, manifest)
    cfg = task_config(manifest)
    assert cfg["target_delimiter"] == "\n" and cfg["output_type"] == "multiple_choice"
    tm = TaskManager(include_path=[str(folder)], include_defaults=False)
    (task,) = load_tasks(tm, [spec.task_name], standard=set()).objects
    task.build_all_requests(limit=None, rank=0, world_size=1)
    by_doc: dict[int, list] = {}
    for inst in task.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    docs_text = {d.id: d.text for d in docs}
    for doc_id, insts in by_doc.items():
        doc = task.test_docs()[doc_id]
        context, continuation = insts[doc["label"]].args
        assert continuation == "\n" + doc["choices"][doc["label"]]
        assert (context + continuation) in docs_text[doc["id"].split("#")[0]]


class FakeTaskManager:
    """TaskManager stand-in: `bad` names fail to load as an offline dataset would."""

    all_tasks = ["good", "offline"]

    def load(self, names):
        (name,) = names
        if name != "good":
            raise ConnectionError("hub unreachable")
        return {"tasks": {"good": object()}, "groups": {}, "group_map": {}}


def test_record_mode_leaves_failed_tasks_out_with_the_fix():
    loaded = load_tasks(FakeTaskManager(), ["good", "offline", "tpyo"],
                        standard={"good", "offline", "tpyo"}, on_error="record")
    assert len(loaded.objects) == 1 and set(loaded.leaves) == {"good"}
    assert set(loaded.failed) == {"offline", "tpyo"}
    assert "HF_DATASETS_CACHE" in loaded.failed["offline"]
    assert "no task, group or tag named 'tpyo'" in loaded.failed["tpyo"]
    with pytest.raises(TaskUnavailableError, match="'offline'"):
        load_tasks(FakeTaskManager(), ["good", "offline"], standard={"good", "offline"})
    with pytest.raises(TaskUnavailableError, match="no evaluation task could be loaded"):
        load_tasks(FakeTaskManager(), ["offline"], standard={"offline"}, on_error="record")


class FakeTask:
    def __init__(self, n: int):
        self.eval_docs = list(range(n))


def test_sample_selection_caps_tasks_individually():
    from repro.eval.lm_eval_runner import sample_selection

    leaves = {"local": {"local": FakeTask(50)},
              "mmlu_x": {"mmlu_a": FakeTask(5), "mmlu_b": FakeTask(30)}}
    # one cap for all: lm-eval's own `limit`
    assert sample_selection(leaves, {"local": 10, "mmlu_x": 10}) == (10, None)
    assert sample_selection(leaves, {"local": None, "mmlu_x": None}) == (None, None)
    # different caps: per-leaf first documents; uncapped tasks are absent (all documents)
    limit, samples = sample_selection(leaves, {"local": None, "mmlu_x": 20})
    assert limit is None
    assert samples == {"mmlu_a": list(range(5)), "mmlu_b": list(range(20))}


def test_backend_checks_name_what_is_missing_and_the_fix():
    from repro.eval.lm_eval_runner import BackendUnavailableError, check_backend, model_spec

    check_backend("hf", cuda_devices=0, vllm_installed=False)
    with pytest.raises(BackendUnavailableError, match="'accelerate'.*no CUDA device.*backend: hf"):
        check_backend("accelerate", cuda_devices=0, vllm_installed=False, num_processes=2)
    with pytest.raises(BackendUnavailableError, match="num_processes to at most 2"):
        check_backend("accelerate", cuda_devices=2, vllm_installed=False, num_processes=4)
    check_backend("accelerate", cuda_devices=4, vllm_installed=False, num_processes=4)
    with pytest.raises(BackendUnavailableError, match="'vllm' needs the vllm package.*pip install vllm"):
        check_backend("vllm", cuda_devices=1, vllm_installed=False)
    with pytest.raises(BackendUnavailableError, match="'vllm' needs a CUDA device"):
        check_backend("vllm", cuda_devices=0, vllm_installed=True)
    with pytest.raises(BackendUnavailableError, match="tensor_parallel_size to at most 1"):
        check_backend("vllm", cuda_devices=1, vllm_installed=True, tensor_parallel_size=2)

    model, args = model_spec("vllm", Path("ckpt"), max_length=256, seed=3,
                             tensor_parallel_size=2, gpu_memory_utilization=0.5)
    assert model == "vllm" and Path(args["pretrained"]).is_absolute()
    assert (args["tensor_parallel_size"], args["gpu_memory_utilization"], args["seed"],
            args["max_length"]) == (2, 0.5, 3, 256)
    assert args["trust_remote_code"] is False  # never code shipped beside a model
    model, args = model_spec("accelerate", Path("ckpt"), max_length=None, seed=0)
    assert model == "hf" and set(args) == {"pretrained", "dtype", "trust_remote_code"}
    assert args["trust_remote_code"] is False


def test_accelerate_command():
    import sys

    from repro.eval.launch import accelerate_command

    worker = ["-m", "some.worker", "/x/launch.json"]
    cmd = accelerate_command(4, worker)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--num_processes=4" in cmd and "--multi_gpu" in cmd and "--cpu" not in cmd
    assert cmd[-3:] == worker  # the worker the stage names, run as given
    cmd = accelerate_command(1, worker, cpu=True)
    assert "--cpu" in cmd and "--multi_gpu" not in cmd and "--num_processes=1" in cmd


def test_evaluation_dtype_resolves_per_device():
    """`evaluation.dtype: auto` is bfloat16 on CUDA and float32 on CPU; explicit ones stay."""
    from repro.eval.lm_eval_runner import resolve_dtype

    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda") == resolve_dtype("auto", "cuda:1") == "bfloat16"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    assert resolve_dtype("float32", "cuda") == "float32"
    with pytest.raises(ValueError, match="unknown evaluation dtype 'float16'"):
        resolve_dtype("float16", "cuda")


def test_model_args_carry_the_resolved_dtype():
    from repro.eval.lm_eval_runner import model_spec

    for backend in ("hf", "accelerate", "vllm"):
        _, args = model_spec(backend, Path("ckpt"), max_length=None, seed=0, dtype="bfloat16")
        assert args["dtype"] == "bfloat16"
    assert model_spec("hf", Path("ckpt"), max_length=None, seed=0)[1]["dtype"] == "float32"
    with pytest.raises(ValueError, match="resolved"):  # `auto` never reaches lm-eval
        model_spec("hf", Path("ckpt"), max_length=None, seed=0, dtype="auto")


def test_response_cache_key_includes_the_dtype(tmp_path, monkeypatch):
    """bf16 and fp32 responses of one checkpoint differ: they never share a cache entry."""
    from repro.spec.schema import EvaluationSpec
    from repro.stages.evaluate import CACHE_ROOT_ENV, response_cache

    monkeypatch.setenv(CACHE_ROOT_ENV, str(tmp_path))
    ev = EvaluationSpec(local_tasks=[LocalTaskSpec(kind="bpb", dataset="web")])
    settings = {"backend": "hf", "device": "cuda", "batch_size": "auto", "max_length": 2048}
    fp32 = response_cache(ev, "a" * 64, settings | {"dtype": "float32"})
    bf16 = response_cache(ev, "a" * 64, settings | {"dtype": "bfloat16"})
    assert fp32.parent.parent == bf16.parent.parent == tmp_path / ("a" * 64)
    assert fp32 != bf16
    assert response_cache(ev, "a" * 64, settings | {"dtype": "float32"}) == fp32


def test_the_too_long_warning_of_whole_document_encodings_is_dropped_and_nothing_else():
    """lm-eval encodes a bits-per-byte document whole before scoring it in windows: inside
    `whole_documents_encoded_quietly` the tokenizer's alarm about that encoding is dropped (a
    real tokenizer, model_max_length 8); its other messages, and the same alarm outside, pass."""
    import logging

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from repro.eval.lm_eval_runner import TOO_LONG_WARNING, whole_documents_encoded_quietly

    def tokenizer() -> PreTrainedTokenizerFast:  # a new one: each warns once
        tok = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=8)

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    library = logging.getLogger("transformers")  # transformers' loggers do not propagate to root
    handler = Keep()
    library.addHandler(handler)
    try:
        with whole_documents_encoded_quietly():
            assert len(tokenizer()("a " * 20)["input_ids"]) == 20
            logging.getLogger("transformers.tokenization_utils_base").warning("another message")
        assert seen == ["another message"]
        tokenizer()("a " * 20)
        assert len(seen) == 2 and seen[1].startswith(TOO_LONG_WARNING)
        # the stage's chance level counts the same whole documents' tokens, without the alarm
        from repro.eval.provenance import uniform_rolling_baseline

        baseline = uniform_rolling_baseline(tokenizer(), 2, ["a " * 20], [40], [20])
        assert baseline["bits_per_byte"] == 20 / 40 and len(seen) == 2
    finally:
        library.removeHandler(handler)
