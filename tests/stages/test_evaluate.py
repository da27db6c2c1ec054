"""evaluate stage: lm-eval on tiny random SmolLM3 checkpoints and tiny local tasks.

Checks the metrics contract, finite values, provenance, byte-identical reruns, that nothing
machine-specific (absolute paths) reaches the outputs, that a stage scoring several
checkpoints writes for each the bytes a stage scoring it alone writes, and that its result
cache scores only the checkpoints it has not scored before."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path

import pytest

from repro.eval.local_tasks import MANIFEST_FILE, Doc, build_task, task_files
from repro.spec.schema import LocalTaskSpec
from repro.stages.base import StageIO
from repro.stages.configs import EvaluateConfig

assert os.environ.get("HF_HUB_OFFLINE") == "1", "tests must run offline (tests/conftest.py)"

NOUNS = "parser module socket thread buffer codec archive decoder table queue".split()
VERBS = "returns reads writes closes opens encodes builds parses joins checks".split()
TASKS = [LocalTaskSpec(kind="bpb", dataset="web", max_docs=4),
         LocalTaskSpec(kind="cloze", dataset="web", max_docs=6, num_choices=3)]


def heldout_docs() -> list[Doc]:
    rng = random.Random(0)
    return [Doc(f"doc{d}", "\n".join(
        f"The {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} of item {d}. "
        f"Then it {rng.choice(VERBS)} a {rng.choice(NOUNS)} again." for _ in range(6)))
        for d in range(5)]


def make_checkpoint(folder: Path, texts: list[str], seed: int = 0, tokens_seen: int = 4096) -> None:
    """A tiny random SmolLM3 with a byte-level BPE tokenizer trained here (special tokens
    as the tokenizer stage makes them: <|endoftext|> = bos = eos = 0, <|pad|> = 1)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, SmolLM3Config, SmolLM3ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|pad|>")
    torch.manual_seed(seed)
    config = SmolLM3Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                           # short windows so rolling loglikelihood spans several of them
                           max_position_embeddings=64, tie_word_embeddings=True,
                           pad_token_id=1, bos_token_id=0, eos_token_id=0)
    SmolLM3ForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3,
                                                           "tokens_seen": tokens_seen,
                                                           "seq_len": 32}))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    docs = heldout_docs()
    make_checkpoint(root / "ckpt", [d.text for d in docs])
    found = {"checkpoint": root / "ckpt"}
    for spec in TASKS:
        data, manifest = build_task(spec, docs, seed=0)
        folder = root / spec.task_name
        folder.mkdir()
        for name, content in task_files(data, manifest).items():
            (folder / name).write_bytes(content)
        found[f"task:{spec.task_name}"] = folder
    return found


@pytest.fixture(autouse=True)
def response_cache_root(tmp_path, monkeypatch) -> Path:
    """The evaluation caches in the test's folder, never the repository's .repro/."""
    from repro.stages.evaluate import CACHE_ROOT_ENV

    root = tmp_path / "lm_eval_cache"
    monkeypatch.setenv(CACHE_ROOT_ENV, str(root))
    return root


def config(checkpoints: tuple[str, ...] = ("decay",), **evaluation) -> EvaluateConfig:
    return EvaluateConfig.model_validate({
        "experiment": "exp", "checkpoints": list(checkpoints), "seed": 0,
        "evaluation": {"local_tasks": [t.ref().model_dump() for t in TASKS], "batch_size": 4,
                       **evaluation}})


def run(inputs: dict[str, Path], out: Path, cfg: EvaluateConfig | None = None) -> Path:
    """One evaluate stage. `inputs["checkpoint"]` is the checkpoint of a one-checkpoint
    config (outputs: out/results/, out/metrics/m.json); with several checkpoints, inputs
    name them `checkpoint:<label>` and each writes out/<label>/{results/,metrics.json}."""
    from repro.stages import evaluate

    cfg = cfg or config()
    inputs = dict(inputs)
    if "checkpoint" in inputs:
        (label,) = cfg.checkpoints
        inputs[f"checkpoint:{label}"] = inputs.pop("checkpoint")
        outs = {f"results:{label}": out / "results", f"metrics:{label}": out / "metrics" / "m.json"}
    else:
        outs = {k: out / label / name for label in cfg.checkpoints
                for k, name in ((f"results:{label}", "results"), (f"metrics:{label}", "metrics.json"))}
    evaluate.run(cfg, StageIO("evaluate-x", inputs, outs))
    return out


@pytest.mark.slow
def test_metrics_results_and_determinism(inputs, tmp_path):
    a = run(inputs, tmp_path / "a")
    b = run(inputs, tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert [str(f) for f in files] == [
        "metrics/m.json", "results/results.json", "results/samples_repro_bpb_web.jsonl",
        "results/samples_repro_cloze_web.jsonl"]
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs between runs"
        text = (a / f).read_text()
        assert str(tmp_path) not in text and "/tmp" not in text, f"{f} holds a path"

    metrics = json.loads((a / "metrics/m.json").read_text())
    assert metrics["experiment"] == "exp" and metrics["checkpoint"] == "decay"
    assert metrics["tokens_seen"] == 4096
    bpb = metrics["tasks"]["repro_bpb_web"]
    cloze = metrics["tasks"]["repro_cloze_web"]
    assert set(bpb) >= {"bits_per_byte", "byte_perplexity", "word_perplexity"}
    assert set(cloze) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
    for values in metrics["tasks"].values():
        assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    assert bpb["bits_per_byte"] > 0
    assert 0 <= cloze["acc"] <= 1
    assert metrics["random_baseline"]["repro_cloze_web"] == {"acc": pytest.approx(1 / 3),
                                                             "acc_norm": pytest.approx(1 / 3)}
    # a random-init model is close to uniform over its vocabulary
    base = metrics["random_baseline"]["repro_bpb_web"]["bits_per_byte"]
    assert bpb["bits_per_byte"] == pytest.approx(base, rel=0.2)

    results = json.loads((a / "results/results.json").read_text())
    manifest = json.loads((inputs["task:repro_cloze_web"] / MANIFEST_FILE).read_text())
    task = results["tasks"]["repro_cloze_web"]
    assert task["source"]["data_sha256"] == manifest["data_sha256"]
    assert task["version"] == manifest["version"] and task["n_samples"]["effective"] == 6
    assert results["lm_eval"]["version"]
    assert len(results["checkpoint"]["model_sha256"]) == 64
    assert results["checkpoint"]["tokens_seen_source"] == "trainer_state.json:tokens_seen"
    assert results["settings"]["num_fewshot"] == 0
    # scored with windows of the training length, not max_position_embeddings (64)
    assert results["settings"]["max_length"] == 32 == results["lm_eval"]["max_length"]
    # how to reproduce it (tests/eval/test_lm_eval_cli.py runs it); the task folders are
    # outside the working directory here, so their paths are placeholders
    assert task["lm_eval_command"] == (
        "lm_eval --model hf --model_args 'pretrained=<checkpoint>,dtype=float32,max_length=32' "
        "--include_path '<task:repro_cloze_web>' --tasks repro_cloze_web --num_fewshot 0 "
        "--batch_size 4 --device cpu --seed 0")
    assert task["config"]["custom_dataset"] == "!function task_loader.load"

    rows = [json.loads(x) for x in (a / "results/samples_repro_cloze_web.jsonl").read_text().splitlines()]
    assert [r["doc_id"] for r in rows] == list(range(6))
    assert all(len(r["loglikelihoods"]) == 3 for r in rows)
    assert sum(r["acc"] for r in rows) / 6 == pytest.approx(cloze["acc"])
    rows = [json.loads(x) for x in (a / "results/samples_repro_bpb_web.jsonl").read_text().splitlines()]
    total = sum(-r["loglikelihood"] for r in rows) / math.log(2) / sum(r["bytes"] for r in rows)
    assert total == pytest.approx(bpb["bits_per_byte"])


def test_limit_and_missing_task_input(inputs, tmp_path):
    out = run(inputs, tmp_path / "lim", config(limit=2, num_fewshot=1))
    results = json.loads((out / "results/results.json").read_text())
    assert all(t["n_samples"]["effective"] == 2 for t in results["tasks"].values())
    assert all(t["n_shot"] == 1 for t in results["tasks"].values())
    partial = {k: v for k, v in inputs.items() if k != "task:repro_bpb_web"}
    with pytest.raises(ValueError, match="do not match"):
        run(partial, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_answer_longer_than_window_is_a_clear_error(inputs, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(inputs["checkpoint"], ckpt)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    (ckpt / "trainer_state.json").write_text(json.dumps({**state, "seq_len": 2}))
    with pytest.raises(ValueError, match="evaluation window"):
        run({**inputs, "checkpoint": ckpt}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
def test_response_cache_gives_identical_outputs(inputs, tmp_path, response_cache_root,
                                                monkeypatch):
    """Uncached, cold-cache and warm-cache runs write the same bytes; the warm run computes
    nothing (the model's scoring function is made to fail)."""
    from lm_eval.models.huggingface import HFLM

    uncached = outputs(run(inputs, tmp_path / "off", config(cache_requests=False)))
    assert not response_cache_root.exists()
    cold = outputs(run(inputs, tmp_path / "cold"))
    (sha_dir,) = response_cache_root.iterdir()
    assert len(sha_dir.name) == 64  # keyed by the checkpoint's sha256
    assert list(sha_dir.glob("*/responses_rank0.db"))
    shutil.rmtree(sha_dir / "results")  # the finished result would be copied: test the responses

    def no_model(*args, **kwargs):
        raise AssertionError("the warm run computed a response")

    monkeypatch.setattr(HFLM, "_loglikelihood_tokens", no_model)
    warm = outputs(run(inputs, tmp_path / "warm"))
    assert cold == warm == uncached
    # another batch size is another cache entry: it may round differently
    with pytest.raises(AssertionError, match="computed a response"):
        run(inputs, tmp_path / "bs2", config(batch_size=2))


CODE = ["import os", "", "def load(path):", "    rows = read(path)", "    if not rows:",
        "        pass", "    return rows", "", "class Reader:", "    def close(self):",
        "        self.done()"]
"""Short lines: the test checkpoint's tokenizer was trained on prose and its window is 32."""


def test_code_cloze_task_runs(inputs, tmp_path):
    docs = [Doc(f"f{i}.py", "\n".join(line.replace("rows", f"rows{i}") for line in CODE))
            for i in range(4)]
    spec = LocalTaskSpec(kind="code_cloze", dataset="code", max_docs=5, num_choices=3)
    data, manifest = build_task(spec, docs, seed=0)
    folder = tmp_path / spec.task_name
    folder.mkdir()
    for name, content in task_files(data, manifest).items():
        (folder / name).write_bytes(content)
    cfg = EvaluateConfig.model_validate({
        "experiment": "exp", "checkpoints": ["decay"], "seed": 0,
        "evaluation": {"local_tasks": [spec.ref().model_dump()], "batch_size": 4}})
    out = run({"checkpoint": inputs["checkpoint"], f"task:{spec.task_name}": folder},
              tmp_path / "out", cfg)
    results = json.loads((out / "results/results.json").read_text())
    task = results["tasks"]["repro_code_cloze_code"]
    # the versions lm-eval's add_env_info gives (repro.eval.lm_eval_overheads keeps them)
    import lm_eval
    import transformers
    assert results["lm_eval"]["version"] == lm_eval.__version__
    assert results["lm_eval"]["transformers_version"] == transformers.__version__
    assert task["config"]["target_delimiter"] == "\n"
    assert task["n_samples"]["effective"] == 5 and task["limit"] is None
    assert task["random_baseline"] == {"acc": pytest.approx(1 / 3), "acc_norm": pytest.approx(1 / 3)}
    assert task["source"]["data_sha256"] == manifest["data_sha256"]
    assert 0 <= task["metrics"]["acc"] <= 1


@pytest.mark.slow
def test_failed_standard_task_is_recorded(inputs, tmp_path, response_cache_root):
    """on_task_error: record: a standard task whose dataset is not available offline is
    left out with the fix, the local tasks are evaluated (indexing lm-eval's task YAMLs
    takes ~10 s). A misspelt name never gets here: spec validation refuses it."""
    out = run(inputs, tmp_path / "rec", config(tasks=["arc_easy"], on_task_error="record",
                                                limit=2))
    metrics = json.loads((out / "metrics/m.json").read_text())
    assert set(metrics["failed_tasks"]) == {"arc_easy"}
    assert "'arc_easy' could not load its dataset" in metrics["failed_tasks"]["arc_easy"]
    assert set(metrics["tasks"]) == {"repro_bpb_web", "repro_cloze_web"}
    results = json.loads((out / "results/results.json").read_text())
    assert results["failed_tasks"] == metrics["failed_tasks"]
    assert results["standard_tasks"] == ["arc_easy"]
    # not kept as a finished result: the task may load on the next run
    assert not list(response_cache_root.glob("*/results/*"))


@pytest.mark.parametrize("backend, missing", [("vllm", "vllm package"),
                                               ("accelerate", "no CUDA device")])
def test_unavailable_backend_fails_before_loading(inputs, tmp_path, backend, missing):
    import importlib.util

    import torch

    from repro.eval.lm_eval_runner import BackendUnavailableError

    if torch.cuda.is_available() or importlib.util.find_spec("vllm") is not None:
        pytest.skip("checks the failure on a CPU machine without vllm")
    with pytest.raises(BackendUnavailableError, match=f"'{backend}'.*{missing}"):
        run(inputs, tmp_path / "out", config(backend=backend))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_accelerate_launch_one_cpu_process(inputs, tmp_path):
    """The accelerate path end to end on one CPU process (launch, payload, worker, rank 0
    writes): the same bytes as an in-process run."""
    from repro.eval import launch
    from repro.stages import worker

    ref = outputs(run(inputs, tmp_path / "ref"))
    out = tmp_path / "acc"
    io = StageIO("evaluate-x", {**{k: v for k, v in inputs.items() if k != "checkpoint"},
                                "checkpoint:decay": inputs["checkpoint"]},
                 {"results:decay": out / "results", "metrics:decay": out / "metrics" / "m.json"})
    launch.relaunch_with_accelerate(
        1, worker.write_payload(tmp_path / "launch.json", "evaluate", config(), io), cpu=True)
    assert outputs(out) == ref


def test_dtype_auto_is_float32_on_cpu_and_recorded(inputs, tmp_path):
    """On CPU `dtype: auto` scores in float32, as before the field existed (the same bytes
    as an explicit float32), and the resolved dtype is recorded in results and metrics."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU resolution")
    auto = run(inputs, tmp_path / "auto", config(dtype="auto"))
    fp32 = run(inputs, tmp_path / "fp32", config(dtype="float32"))
    a, b = outputs(auto), outputs(fp32)
    results = json.loads(a.pop("results/results.json"))
    explicit = json.loads(b.pop("results/results.json"))
    assert a == b  # metrics and samples: the same bytes
    assert (results["settings"].pop("dtype_requested"), explicit["settings"].pop("dtype_requested")) \
        == ("auto", "float32")
    assert results == explicit and results["settings"]["dtype"] == "float32"
    metrics = json.loads((auto / "metrics/m.json").read_text())
    assert metrics["settings"] == {"device": "cpu", "dtype": "float32", "batch_size": 4}


def test_bfloat16_reaches_the_model_and_the_cache_key(inputs, tmp_path, response_cache_root):
    """An explicit bfloat16 loads the weights in bf16 (the scores change) and is a separate
    response cache entry from float32."""
    fp32 = json.loads((run(inputs, tmp_path / "fp32", config(dtype="float32"))
                       / "metrics/m.json").read_text())
    bf16 = json.loads((run(inputs, tmp_path / "bf16", config(dtype="bfloat16"))
                       / "metrics/m.json").read_text())
    assert bf16["settings"]["dtype"] == "bfloat16"
    a, b = (m["tasks"]["repro_bpb_web"]["bits_per_byte"] for m in (fp32, bf16))
    assert a != b and a == pytest.approx(b, rel=0.02)  # bf16 rounding, same model
    (sha_dir,) = response_cache_root.iterdir()
    # one cache entry per dtype, of responses and of finished results
    assert len([p for p in sha_dir.iterdir() if p.name != "results"]) == 2
    assert len(list((sha_dir / "results").iterdir())) == 2


@pytest.mark.slow
def test_batch_size_auto_runs_with_the_hf_backend(inputs, tmp_path):
    """`batch_size: auto`: lm-eval's hf model detects a batch size (on a GPU the largest
    that fits; on CPU its first guess) and the run scores every document."""
    out = run(inputs, tmp_path / "auto", config(batch_size="auto"))
    metrics = json.loads((out / "metrics/m.json").read_text())
    assert metrics["settings"]["batch_size"] == "auto"
    ref = json.loads((run(inputs, tmp_path / "ref") / "metrics/m.json").read_text())
    assert set(metrics["tasks"]) == set(ref["tasks"])
    for task, values in ref["tasks"].items():
        for name, value in values.items():
            assert metrics["tasks"][task][name] == pytest.approx(value, rel=1e-4, abs=1e-6)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_scores_in_bfloat16_with_auto_batch(inputs, tmp_path):
    """On a GPU the defaults (dtype auto, batch_size auto) score in bf16 on CUDA."""
    out = run(inputs, tmp_path / "gpu", config(batch_size="auto"))
    metrics = json.loads((out / "metrics/m.json").read_text())
    assert metrics["settings"] == {"device": "cuda", "dtype": "bfloat16", "batch_size": "auto"}
    assert all(math.isfinite(v) for t in metrics["tasks"].values() for v in t.values())


@pytest.fixture(scope="module")
def run_inputs(inputs, tmp_path_factory) -> dict[str, Path]:
    """A training run's checkpoints (other weights and token counts than `inputs`'s, which
    is the run's final one) and the local tasks, keyed as an evaluate stage reads them."""
    root = tmp_path_factory.mktemp("run")
    texts = [d.text for d in heldout_docs()]
    make_checkpoint(root / "step1", texts, seed=2, tokens_seen=1024)
    make_checkpoint(root / "stable", texts, seed=1, tokens_seen=2048)
    return {"checkpoint:stable-step1": root / "step1", "checkpoint:stable": root / "stable",
            "checkpoint:decay": inputs["checkpoint"],
            **{k: v for k, v in inputs.items() if k.startswith("task:")}}


def _scored(monkeypatch) -> list[str]:
    """The checkpoints lm-eval scores from now on (their folder names), and the times
    lm-eval's tasks are prepared (as `prepare`)."""
    from repro.stages import evaluate

    calls: list[str] = []
    real_run, real_prepare = evaluate.run_lm_eval, evaluate.prepare_tasks

    def counted_run(checkpoint, *args, **kwargs):
        calls.append(Path(checkpoint).name)
        return real_run(checkpoint, *args, **kwargs)

    def counted_prepare(*args, **kwargs):
        calls.append("prepare")
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(evaluate, "run_lm_eval", counted_run)
    monkeypatch.setattr(evaluate, "prepare_tasks", counted_prepare)
    return calls


@pytest.mark.slow
def test_each_checkpoint_scores_as_if_evaluated_alone(run_inputs, inputs, tmp_path, monkeypatch):
    """One stage scoring a run's checkpoints prepares lm-eval once and writes, for each, the
    same bytes as a stage scoring that checkpoint alone (the task objects are reused from
    one checkpoint to the next; the checkpoints differ in weights and tokens seen)."""
    calls = _scored(monkeypatch)
    labels = ("stable", "decay")
    together = run({k: v for k, v in run_inputs.items() if "step1" not in k}, tmp_path / "run",
                   config(labels, cache_requests=False))
    assert calls == ["prepare", "stable", "ckpt"]
    for label in labels:
        alone = run({**{k: v for k, v in inputs.items() if k != "checkpoint"},
                     "checkpoint": run_inputs[f"checkpoint:{label}"]},
                    tmp_path / f"alone-{label}", config((label,), cache_requests=False))
        assert outputs(together / label / "results") == outputs(alone / "results"), label
        assert (together / label / "metrics.json").read_bytes() == \
            (alone / "metrics/m.json").read_bytes(), label
    stable, decay = (json.loads((together / label / "metrics.json").read_text()) for label in labels)
    assert (stable["checkpoint"], stable["tokens_seen"]) == ("stable", 2048)
    assert (decay["checkpoint"], decay["tokens_seen"]) == ("decay", 4096)
    assert stable["tasks"] != decay["tasks"]  # other weights, other scores


@pytest.mark.slow
def test_result_cache_scores_only_new_checkpoints(run_inputs, tmp_path, monkeypatch,
                                                  response_cache_root):
    """Cold, warm and uncached runs write the same bytes; a warm run scores nothing (and
    prepares no task); adding a snapshot to the run scores that snapshot only; a setting
    that shapes the results (batch size) or a label written in them scores again."""
    two = {k: v for k, v in run_inputs.items() if "step1" not in k}
    uncached = outputs(run(two, tmp_path / "off", config(("stable", "decay"), cache_requests=False)))
    assert not response_cache_root.exists()
    calls = _scored(monkeypatch)
    cold = outputs(run(two, tmp_path / "cold", config(("stable", "decay"))))
    assert calls == ["prepare", "stable", "ckpt"]
    assert len(list(response_cache_root.glob("*/results/*"))) == 2  # one per checkpoint
    calls.clear()
    warm = outputs(run(two, tmp_path / "warm", config(("stable", "decay"))))
    assert calls == [] and cold == warm == uncached
    # a snapshot added to the run (a smaller every_tokens): only it is scored
    three = run(run_inputs, tmp_path / "three", config(("stable-step1", "stable", "decay")))
    assert calls == ["prepare", "step1"]
    assert {k: v for k, v in outputs(three).items() if not k.startswith("stable-step1/")} == cold
    assert json.loads((three / "stable-step1/metrics.json").read_text())["tokens_seen"] == 1024
    calls.clear()
    run(two, tmp_path / "bs2", config(("stable", "decay"), batch_size=2))
    assert calls == ["prepare", "stable", "ckpt"]
    calls.clear()
    relabelled = config(("stable", "final"))
    run({**{k: v for k, v in two.items() if k != "checkpoint:decay"},
         "checkpoint:final": two["checkpoint:decay"]}, tmp_path / "relabel", relabelled)
    assert calls == ["prepare", "ckpt"]  # the label is written into its results


def test_checkpoint_inputs_must_match_the_config(run_inputs, tmp_path):
    with pytest.raises(ValueError, match="checkpoint inputs .* do not match"):
        run(run_inputs, tmp_path / "out", config(("stable", "decay")))
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_listed_twice_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="name a checkpoint twice"):
        config(("stable", "stable"))


def test_result_cache_key_follows_the_paths_the_command_names(inputs, tmp_path, monkeypatch):
    """The recorded lm_eval command names the checkpoint and task folders: a checkpoint
    found at another path (a renamed stage) is a cache miss, not a copy of a result whose
    command names the old path."""
    from repro.stages import evaluate

    root = tmp_path / "repo"
    for name in ("a", "b"):
        shutil.copytree(inputs["checkpoint"], root / name)
    monkeypatch.chdir(root)
    cfg = config()
    keys = []
    for name in ("a", "b"):
        state = json.loads((root / name / "trainer_state.json").read_text())
        ckpt = evaluate._Checkpoint("decay", Path(name), "0" * 64, state, 32)
        keys.append(evaluate._result_key({"shared": 1}, cfg, ckpt, {"device": "cpu"}))
    assert keys[0] != keys[1]
