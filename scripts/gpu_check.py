"""The one-call GPU check of issue 17 (run by scripts/gpu-check.sh, `make gpu-check`).

    python scripts/gpu_check.py --out DIR [--device cuda|cpu] [--size gpu|tiny]

Parts, each recorded in DIR/gpu-check.json (rewritten after every part, so a check cut
short still leaves what it measured), each continuing past a failure of the previous one:

  environment  torch, CUDA, the GPU, the versions of what the check imports.
  bench-<size> `python -m bench.training --device D --size S --json` (bench/training_gpu.py) in
               its own process (an out-of-memory variant cannot take the others down, and its
               GPU memory is returned); the JSON lands in DIR/bench-<size>.json.
  pipeline     specs/gpu/gpu-360m.yaml compiled (`repro compile`) into a scratch workspace and
               every stage of it run with `repro stage` in dependency order, as DVC would run
               them (no DVC here: the GPU machine has none): source -> curate -> split ->
               tokenizer -> tokenize -> train -> evaluate (+ evaltasks, funnel). A
               failed stage skips the stages that need its outputs; the others still run.
               The train stage's metrics and perf, and the evaluation's scores, go into the
               summary.

`--size tiny` (with --device cpu) is the rehearsal: the bench at its tiny size and the same
spec shrunk (a toy model, 8 steps, small corpora) through the same stages, in a few minutes
on a CPU. `--budget` bounds the whole check (seconds): each part gets at most what is left.
`--record-imports` writes which top-level modules every stage process imported (how the
wheel list of `make gpu-wheels` was found: scripts/gpu-wheels.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "gpu" / "gpu-360m.yaml"
SUMMARY = "gpu-check.json"

# The spec shrunk for a CPU rehearsal: the same stages and settings, toy sizes.
TINY_OVERRIDES = """\
datasets:
  web:
    source: {kind: builtin, name: pydoc_web, max_docs: 60}
  code:
    source: {kind: builtin, name: stdlib_code, max_docs: 80}
tokenizer: {kind: train_bpe, vocab_size: 1024}
model: {hidden_size: 64, num_layers: 2, num_heads: 4, num_kv_heads: 2, intermediate_size: 128,
        max_position_embeddings: 256}
training:
  seq_len: 256
  batch_tokens: 2048
  micro_batch_size: 4
  schedule: {warmup_steps: 2, decay_shape: linear, decay_fraction: 0.25}
  stages:
    - {name: stable, tokens: 16384, mixture: {web: 0.5, code: 0.5}}
  log_every_steps: 2
evaluation:
  local_tasks:
    - {kind: bpb, dataset: web, max_docs: 8}
    - {kind: bpb, dataset: code, max_docs: 8}
    - {kind: cloze, dataset: web, max_docs: 8}
"""

# bench settings per size for the check: short (a few warm steps per variant), the whole-
# model compile of the minimal loop left out (ours_default still compiles: its warmup is
# 65-80 s on 32 layers); at 1.7b also the plain-CE variant (its memory case is the 360m one)
BENCH_ARGS = {
    "360m": ["--warmup", "2", "--rounds", "2", "--steps", "3", "--skip", "minimal_compiled",
             "--peak-seconds", "1"],
    "1.7b": ["--warmup", "2", "--rounds", "2", "--steps", "2", "--skip", "minimal_compiled",
             "--skip", "ours_doc_plain_ce", "--peak-seconds", "1"],
    "3b": ["--warmup", "2", "--rounds", "1", "--steps", "2", "--skip", "minimal_compiled",
           "--peak-seconds", "1"],
    "tiny": ["--warmup", "1", "--rounds", "1", "--steps", "1", "--skip", "minimal_compiled",
             "--peak-seconds", "0.1"],
}

# time cap per bench size (s): on an H200 the 360m pass takes ~2 minutes, the 1.7b one a
# little more; the pipeline needs ~3 minutes of the check's 8
BENCH_SECONDS = {"360m": 170, "1.7b": 150, "3b": 240, "tiny": 240}

IMPORTS_HOOK = (
    "import atexit, json, os, sys\n"
    "def _dump():\n"
    "    path = os.environ.get('GPU_CHECK_IMPORTS')\n"
    "    if path:\n"
    "        with open(path, 'a', encoding='utf-8') as f:\n"
    "            f.write(json.dumps({'argv': sys.argv[1:4], 'modules': sorted({m.split('.')[0] "
    "for m in list(sys.modules)})}) + '\\n')\n"
    "atexit.register(_dump)\n"
)


def _tail(text: str, n: int = 4000) -> str:
    return text[-n:]


class Check:
    def __init__(self, out: Path, budget: float):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + budget
        self.summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "budget_seconds": budget, "parts": {}}
        self.log = (out / "gpu-check.log").open("a", encoding="utf-8")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.summary["seconds"] = round(time.monotonic() - (self.deadline - self.summary["budget_seconds"]), 1)
        tmp = self.out / (SUMMARY + ".tmp")
        tmp.write_text(json.dumps(self.summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.out / SUMMARY)

    def part(self, name: str, result: dict) -> None:
        self.summary["parts"][name] = result
        status = result.get("status")
        print(f"== {name}: {status} ({result.get('seconds', 0):.0f} s)", flush=True)
        self.save()

    def run(self, cmd: list[str], *, cwd: Path, timeout: float, env: dict | None = None) -> dict:
        """Run a command; its output goes to the log, its tail to the result."""
        timeout = max(1.0, min(timeout, self.left()))
        self.log.write(f"\n$ (cd {cwd}) {' '.join(cmd)}\n")
        self.log.flush()
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
            rc, out = p.returncode, (p.stdout or "") + (p.stderr or "")
        except subprocess.TimeoutExpired as e:
            rc = None
            out = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")) + \
                  ((e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or ""))
            out += f"\n[gpu-check] timed out after {timeout:.0f} s"
        self.log.write(out)
        self.log.flush()
        seconds = time.monotonic() - t0
        status = "ok" if rc == 0 else ("timeout" if rc is None else "failed")
        return {"status": status, "returncode": rc, "seconds": round(seconds, 1),
                **({} if rc == 0 else {"output_tail": _tail(out)})}


# --------------------------------------------------------------------------- parts


def environment() -> dict:
    import importlib.metadata as md

    import torch

    out: dict = {"status": "ok", "python": sys.version.split()[0], "torch": torch.__version__,
                 "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                      "capability": f"{props.major}.{props.minor}", "count": torch.cuda.device_count(),
                      "bf16": torch.cuda.is_bf16_supported()}
    versions = {}
    for dist in ("transformers", "accelerate", "triton", "tokenizers", "safetensors", "numpy",
                 "pydantic", "datatrove", "lm_eval", "datasets", "trafilatura", "flash_attn",
                 "liger_kernel", "pyarrow", "huggingface_hub", "fsspec", "pandas", "typing_extensions"):
        # datasets 5.2 needs pyarrow >= 24 and huggingface-hub >= 1.31 from the image
        try:
            versions[dist] = md.version(dist.replace("_", "-"))
        except md.PackageNotFoundError:
            versions[dist] = None
    out["versions"] = versions
    return out


def bench_part(check: Check, size: str, device: str) -> dict:
    path = check.out / f"bench-{size}.json"
    cmd = [sys.executable, "-m", "bench.training", "--device", device, "--size", size,
           "--json", str(path)] + BENCH_ARGS[size]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = check.run(cmd, cwd=REPO, timeout=BENCH_SECONDS[size], env=env)
    if path.exists():  # complete, or the variants measured before a time limit ("partial")
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("ratios", "peak_flops_measured", "peak_flops_datasheet", "partial"):
            if key in data:
                result[key] = data[key]
        result["variants"] = {
            name: ({"error": r["error"].splitlines()[0][:300]} if "error" in r else
                   {k: r.get(k) for k in ("tokens_per_s", "mfu_datasheet", "mfu_measured_peak",
                                          "peak_memory_bytes", "first_step_seconds", "backends")})
            for name, r in data["variants"].items()}
        failed = [n for n, r in data["variants"].items() if "error" in r]
        if failed and result["status"] == "ok":
            result["status"] = "partial"
            result["failed_variants"] = failed
    return result


def stage_order(dvc: dict) -> list[str]:
    """The stages of a dvc.yaml in an order where every stage follows the makers of its deps."""
    stages = dvc["stages"]
    maker = {}
    for name, entry in stages.items():
        for out in entry.get("outs", []) + entry.get("metrics", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            maker[path] = name
    order, seen = [], set()

    def visit(name: str, stack: tuple = ()) -> None:
        if name in seen:
            return
        if name in stack:
            raise ValueError(f"dependency cycle through {name}")
        for dep in stages[name].get("deps", []):
            if dep in maker:
                visit(maker[dep], stack + (name,))
        seen.add(name)
        order.append(name)

    for name in stages:
        visit(name)
    return order


def _repro_cmd(args: list[str], record: bool) -> list[str]:
    boot = (IMPORTS_HOOK if record else "") + "import sys\nfrom repro.cli import main\nsys.argv[0] = 'repro'\nmain()\n"
    return [sys.executable, "-c", boot] + args


def pipeline_part(check: Check, work: Path, tiny: bool, record: Path | None) -> dict:
    import shlex

    import yaml

    t0 = time.monotonic()
    if work.exists():
        shutil.rmtree(work)
    (work / "specs" / "base").mkdir(parents=True)
    shutil.copy(SPEC, work / "specs" / "base" / SPEC.name)
    if tiny:
        text = f"extends: base/{SPEC.name}\n" + TINY_OVERRIDES
    else:
        text = f"extends: base/{SPEC.name}\n"
    (work / "specs" / "gpu-check.yaml").write_text(text, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if record is not None:
        env["GPU_CHECK_IMPORTS"] = str(record)
    result: dict = {"workspace": str(work), "stages": {}}
    compiled = check.run(_repro_cmd(["compile", "--specs", "specs", "--root", "."], record is not None),
                         cwd=work, timeout=120, env=env)
    result["compile"] = compiled
    if compiled["status"] != "ok":
        return result | {"status": "failed", "seconds": round(time.monotonic() - t0, 1)}
    dvc = yaml.safe_load((work / "dvc.yaml").read_text(encoding="utf-8"))
    missing_outputs: set[str] = set()
    for name in stage_order(dvc):
        entry = dvc["stages"][name]
        blocked = [d for d in entry.get("deps", []) if d in missing_outputs]
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in entry.get("outs", []) + entry.get("metrics", [])]
        if blocked or check.left() < 5:
            result["stages"][name] = {"status": "skipped", "seconds": 0.0,
                                      "why": f"needs {blocked}" if blocked else "out of time"}
            missing_outputs.update(outs)
            check.summary["parts"]["pipeline"] = result | {"status": "running"}
            continue
        argv = shlex.split(entry["cmd"])
        if argv[0] != "repro":
            raise ValueError(f"unexpected stage command {entry['cmd']!r}")
        r = check.run(_repro_cmd(argv[1:], record is not None), cwd=work, timeout=1800, env=env)
        result["stages"][name] = r
        print(f"   {name}: {r['status']} ({r['seconds']:.0f} s)", flush=True)
        if r["status"] != "ok":
            missing_outputs.update(outs)
        check.summary["parts"]["pipeline"] = result | {"status": "running"}
        check.save()
    statuses = {r["status"] for r in result["stages"].values()}
    result["status"] = "ok" if statuses == {"ok"} else "failed"
    result["seconds"] = round(time.monotonic() - t0, 1)
    result |= collect_outputs(work, dvc)
    return result


def collect_outputs(work: Path, dvc: dict) -> dict:
    """The train stage's metrics and perf, the evaluation's scores and settings."""
    out: dict = {}
    for name, entry in dvc["stages"].items():
        paths = [next(iter(o)) if isinstance(o, dict) else o for o in entry.get("outs", []) + entry.get("metrics", [])]
        for p in paths:
            f = work / p
            if not (f.is_file() and f.suffix == ".json") or f.name.endswith(".env.json"):
                continue
            data = json.loads(f.read_text(encoding="utf-8"))
            if name.startswith("train-"):
                key = "train_perf" if f.name.endswith(".perf.json") else "train_metrics"
                out[key] = data
            elif name.startswith("evaluate-"):
                # one metrics file per checkpoint, in training order: the last is the final
                out["evaluation"] = data
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the summary, logs and bench JSON")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--size", choices=("gpu", "tiny"), default="gpu",
                   help="gpu: bench at 360m and 1.7b, the spec as written; tiny: a CPU rehearsal")
    p.add_argument("--bench-sizes", default=None, help="comma-separated bench sizes (default: 360m,1.7b; tiny)")
    p.add_argument("--parts", default="environment,bench,pipeline")
    p.add_argument("--budget", type=float, default=470.0, help="seconds for the whole check")
    p.add_argument("--work", type=Path, default=None, help="scratch workspace (default: a temporary folder)")
    p.add_argument("--record-imports", action="store_true",
                   help="write DIR/imports.jsonl: the top-level modules each stage process imported")
    args = p.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.out, args.budget)
    check.summary |= {"device": device, "size": args.size, "repo": str(REPO)}
    parts = args.parts.split(",")
    record = args.out / "imports.jsonl" if args.record_imports else None
    if record is not None and record.exists():
        record.unlink()
    if "environment" in parts:
        t0 = time.monotonic()
        try:
            env = environment()
        except Exception as e:  # noqa: BLE001 - recorded, the check goes on
            env = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        check.part("environment", env | {"seconds": round(time.monotonic() - t0, 1)})
    if "bench" in parts:
        sizes = (args.bench_sizes or ("tiny" if args.size == "tiny" else "360m,1.7b")).split(",")
        for size in sizes:
            check.part(f"bench-{size}", bench_part(check, size, device))
    if "pipeline" in parts:
        work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"repro-gpu-check-{os.getpid()}"
        try:
            result = pipeline_part(check, work, args.size == "tiny", record)
        except Exception as e:  # noqa: BLE001
            import traceback

            result = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc()[-4000:]}
        check.part("pipeline", result)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    statuses = {name: r.get("status") for name, r in check.summary["parts"].items()}
    check.summary["status"] = "ok" if set(statuses.values()) <= {"ok"} else "failed"
    check.save()
    print(json.dumps(statuses))
    print(f"summary: {args.out / SUMMARY}")
    return 0 if check.summary["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
