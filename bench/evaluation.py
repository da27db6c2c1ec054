"""Evaluation throughput, measured side by side in one run (shared PERF.md).

    python -m bench.evaluation          # or: make bench-evaluation  [--rounds N] [--json PATH]

1. Batch size: lm-eval requests/s with `batch_size: auto` vs `1`, response cache off, on a
   checkpoint and local tasks this script builds (a quickstart-size SmolLM3 -- hidden 128,
   4 layers, seq_len 256, as specs/qs-nope.yaml -- with random weights and a byte-level BPE
   trained here; a bpb, a cloze and a code_cloze task from synthetic held-out documents).
   Requests = lm-eval instances (one per choice of a multiple-choice question, one per
   rolling-loglikelihood document). PERF.md anchor: batch auto ~3x faster than batch 1.
2. Caches: the same evaluation with `cache_requests` on, cold (empty caches) vs warm
   (the finished result cached: nothing is scored) vs responses only (finished results
   removed: lm-eval answers every request from its response cache); the outputs must be
   byte-identical (checked).
3. A real quickstart evaluation, when its inputs exist: qs-nope's main-run evaluate stage
   of dvc.yaml (`evaluate-qs-nope-<hash>`: its snapshot and two phase ends, 4 local tasks)
   run through the stage's own `run` into a temporary folder, cold and warm cache (goal:
   under a minute on 2 cores).

Variants alternate within each round; reported: the median over `--rounds` (default 2).
Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from repro.numerics import pin_numerics_env  # noqa: E402

pin_numerics_env()

from repro import paths  # noqa: E402
from repro.jsonl import iter_rows  # noqa: E402
from repro.eval.local_tasks import Doc, build_task, task_files  # noqa: E402
from repro.spec.schema import LocalTaskSpec  # noqa: E402
from repro.stages.base import StageIO  # noqa: E402
from repro.stages.configs import EvaluateConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOUNS = "parser module socket thread buffer codec archive decoder table queue".split()
VERBS = "returns reads writes closes opens encodes builds parses joins checks".split()
TASKS = [LocalTaskSpec(kind="bpb", dataset="web", max_docs=16),
         LocalTaskSpec(kind="cloze", dataset="web", max_docs=60, num_choices=4),
         LocalTaskSpec(kind="code_cloze", dataset="code", max_docs=60, num_choices=4)]


def prose_docs(n: int = 24) -> list[Doc]:
    rng = random.Random(0)
    return [Doc(f"web{d:03d}", "\n".join(
        f"The {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} of item {d}-{s}. "
        f"Then it {rng.choice(VERBS)} a {rng.choice(NOUNS)} again." for s in range(12)))
        for d in range(n)]


def code_docs(n: int = 24) -> list[Doc]:
    rng = random.Random(1)
    docs = []
    for d in range(n):
        lines = [f"import {rng.choice(NOUNS)}_{d}", ""]
        for f in range(6):
            lines += [f"def {rng.choice(VERBS)}_{rng.choice(NOUNS)}_{f}(item, size={f}):",
                      f"    value = item.{rng.choice(VERBS)}(size * {d + 1})",
                      f"    if value > {d + f}:",
                      f"        return {rng.choice(NOUNS)}.{rng.choice(VERBS)}(value)",
                      "    return None", ""]
        docs.append(Doc(f"code{d:03d}.py", "\n".join(lines)))
    return docs


def make_checkpoint(folder: Path, texts: list[str]) -> None:
    """Quickstart-size random SmolLM3 (specs/qs-nope.yaml shape) and a BPE trained here,
    special tokens as the tokenizer stage makes them."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, SmolLM3Config, SmolLM3ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=1024, special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|pad|>")
    torch.manual_seed(0)
    config = SmolLM3Config(vocab_size=len(fast), hidden_size=128, intermediate_size=512,
                           num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=256, tie_word_embeddings=True,
                           pad_token_id=1, bos_token_id=0, eos_token_id=0)
    SmolLM3ForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"tokens_seen": 0, "seq_len": 256}))


def build_inputs(root: Path) -> dict[str, Path]:
    prose, code = prose_docs(), code_docs()
    make_checkpoint(root / "ckpt", [d.text for d in prose + code])
    inputs = {"checkpoint:decay": root / "ckpt"}
    for spec in TASKS:
        data, manifest = build_task(spec, code if spec.kind == "code_cloze" else prose, seed=0)
        folder = root / spec.task_name
        folder.mkdir()
        for name, content in task_files(data, manifest).items():  # as evaltasks writes it
            (folder / name).write_bytes(content)
        inputs[f"task:{spec.task_name}"] = folder
    return inputs


def evaluate(cfg: EvaluateConfig, inputs: dict[str, Path], out: Path) -> tuple[float, Path]:
    """Wall seconds of one evaluate stage run and its output folder (one folder per
    checkpoint: <label>/results/, <label>/metrics.json)."""
    from repro.stages import evaluate as stage

    outs = {f"{kind}:{label}": out / label / name for label in cfg.checkpoints
            for kind, name in (("results", "results"), ("metrics", "metrics.json"))}
    start = time.perf_counter()
    stage.run(cfg, StageIO("bench", inputs, outs))
    return time.perf_counter() - start, out


def request_count(out: Path) -> int:
    """lm-eval requests of a run (every checkpoint's): one per choice (multiple choice), one
    per document (rolling loglikelihood), from the per-sample rows."""
    n = 0
    for path in out.glob("*/results/samples_*.jsonl"):
        for row in iter_rows(path):
            n += len(row["loglikelihoods"]) if "loglikelihoods" in row else 1
    return n


def same_outputs(a: Path, b: Path) -> bool:
    files = lambda root: {str(p.relative_to(root)): p.read_bytes()  # noqa: E731
                          for p in sorted(root.rglob("*")) if p.is_file()}
    return files(a) == files(b)


def config(local_tasks: list[dict], **evaluation) -> EvaluateConfig:
    return EvaluateConfig.model_validate({
        "experiment": "bench", "checkpoints": ["decay"], "seed": 0,
        "evaluation": {"local_tasks": local_tasks, **evaluation}})


def bench_synthetic(root: Path, rounds: int) -> dict:
    from repro.stages.evaluate import CACHE_ROOT_ENV

    inputs = build_inputs(root / "inputs")
    tasks = [t.ref().model_dump() for t in TASKS]  # built by build_inputs; the stage names them
    times: dict[str, list[float]] = {"batch_1": [], "batch_auto": [], "cache_cold": [],
                                     "cache_warm": [], "responses_warm": []}
    identical = True
    requests = None
    for r in range(rounds):
        os.environ[CACHE_ROOT_ENV] = str(root / f"cache{r}")  # a fresh, empty cache per round
        order = ["batch_1", "batch_auto"] if r % 2 == 0 else ["batch_auto", "batch_1"]
        for name in order:
            bs = 1 if name == "batch_1" else "auto"
            t, out = evaluate(config(tasks, batch_size=bs, cache_requests=False), inputs,
                              root / f"{name}-{r}")
            times[name].append(t)
            requests = request_count(out)
        t, cold = evaluate(config(tasks, batch_size="auto"), inputs, root / f"cold-{r}")
        times["cache_cold"].append(t)
        t, warm = evaluate(config(tasks, batch_size="auto"), inputs, root / f"warm-{r}")
        times["cache_warm"].append(t)
        for finished in (root / f"cache{r}").glob(f"*/{paths.EVAL_RESULTS_CACHE}"):
            shutil.rmtree(finished)  # lm-eval's response cache alone
        t, responses = evaluate(config(tasks, batch_size="auto"), inputs, root / f"resp-{r}")
        times["responses_warm"].append(t)
        identical &= (same_outputs(cold, warm) and same_outputs(cold, responses)
                      and same_outputs(cold, root / f"batch_auto-{r}"))
    med = {k: statistics.median(v) for k, v in times.items()}
    rps = {k: requests / v for k, v in med.items()}
    return {"requests": requests, "seconds": med, "requests_per_s": rps,
            "ratio_auto_over_1": rps["batch_auto"] / rps["batch_1"],
            "ratio_warm_over_cold": rps["cache_warm"] / rps["cache_cold"],
            "ratio_responses_over_cold": rps["responses_warm"] / rps["cache_cold"],
            "cache_outputs_identical": identical}


def quickstart_inputs() -> tuple[str, dict[str, Path], dict] | None:
    """qs-nope's main-run evaluate stage of dvc.yaml: (name, inputs, params), if built."""
    import yaml

    try:
        stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
        params = yaml.safe_load((REPO / "params.yaml").read_text())
    except (OSError, KeyError):
        return None
    for name, stage in sorted(stages.items()):
        if not re.fullmatch(r"evaluate-qs-nope-[0-9a-f]{8}", name):  # not a replica's
            continue
        words = str(stage["cmd"]).split()
        inputs = {words[i + 1].split("=", 1)[0]: _built(REPO / words[i + 1].split("=", 1)[1])
                  for i, w in enumerate(words) if w == "--in"}
        if all(p is not None for p in inputs.values()) and name in params:
            return name, inputs, params[name]
    return None


def _built(path: Path) -> Path | None:
    """`path`, or when that exact build is absent (dvc.yaml newer than the workspace) the
    newest sibling of the same stage (same name before the content hash)."""
    if path.exists():
        return path
    prefix = path.name.rsplit("-", 1)[0] + "-"
    siblings = [p for p in path.parent.glob(prefix + "*")
                if p.name.rsplit("-", 1)[0] + "-" == prefix]
    return max(siblings, key=lambda p: p.stat().st_mtime) if siblings else None


def bench_quickstart(root: Path) -> dict | None:
    from repro.stages.evaluate import CACHE_ROOT_ENV

    found = quickstart_inputs()
    if found is None:
        return None
    name, inputs, params = found
    os.environ[CACHE_ROOT_ENV] = str(root / "qs-cache")
    cfg = EvaluateConfig.model_validate(params)
    cold, a = evaluate(cfg, inputs, root / "qs-cold")
    warm, b = evaluate(cfg, inputs, root / "qs-warm")
    return {"stage": name, "checkpoints": {k.split(":", 1)[1]: str(p.relative_to(REPO))
                                           for k, p in inputs.items() if k.startswith("checkpoint:")},
            "tasks": sorted(k.split(":", 1)[1] for k in inputs if k.startswith("task:")),
            "requests": request_count(a), "seconds_cold": cold,
            "seconds_warm": warm, "outputs_identical": same_outputs(a, b)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="lm-eval throughput: batch auto vs 1, "
                                                 "response cache cold vs warm")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    import torch

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        root = Path(tmp)
        result = {"threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                  "synthetic": bench_synthetic(root, args.rounds),
                  "quickstart": bench_quickstart(root)}
    result["seconds"] = time.perf_counter() - start
    s = result["synthetic"]
    print(f"\ntorch threads {result['threads']} (cpu_count={result['cpus']})")
    print(f"synthetic: quickstart-size model, tasks {[t.task_name for t in TASKS]}, "
          f"{s['requests']} requests per run, median of {args.rounds} rounds")
    for k in ("batch_1", "batch_auto", "cache_cold", "cache_warm", "responses_warm"):
        print(f"  {k:12} {s['seconds'][k]:7.2f} s  {s['requests_per_s'][k]:8.1f} requests/s")
    print(f"ratio batch auto / batch 1 requests/s: {s['ratio_auto_over_1']:.2f} "
          "(PERF.md anchor ~3x)")
    print(f"ratio warm / cold cache requests/s: {s['ratio_warm_over_cold']:.2f} (results "
          f"cached), {s['ratio_responses_over_cold']:.2f} (responses only); outputs "
          f"identical: {s['cache_outputs_identical']}")
    q = result["quickstart"]
    if q is None:
        print("quickstart: qs-nope's evaluate stage inputs not built (run `dvc repro` first)")
    else:
        print(f"quickstart {q['stage']} on {len(q['checkpoints'])} checkpoints "
              f"({len(q['tasks'])} local "
              f"tasks, {q['requests']} "
              f"requests): cold cache {q['seconds_cold']:.1f} s, warm {q['seconds_warm']:.1f} s "
              f"(goal < 60 s); outputs identical: {q['outputs_identical']}")
    print(f"total bench time {result['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
