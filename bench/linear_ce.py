"""Plain vs chunked LM-head cross-entropy on the CPU (repro.train.linear_ce), side by side in
one run: step time (forward + backward) and the peak memory a step adds.

    python -m bench.linear_ce [--case quickstart|large|all] [--reps N] [--json PATH]

Cases:
  quickstart  the quickstart's model (specs/qs-nope.yaml: hidden 128, 4 layers, vocab 4096,
              its tokenizer's size) and micro batch (8 x 256 tokens), fp32 as a CPU run
              trains: (1) the head + loss alone and (2) a whole TrainModule step (trunk, head,
              loss, backward) with doc masking, so the loss's share of a real step shows.
  large       the head + loss of a SmolLM2-360M-shaped model (hidden 960, vocab 49152) at
              8 x 2048 tokens, fp32: 3 GiB of logits for the plain loss.

Time: after one warmup step of each, rounds alternate plain and chunked (the order flips every
round) in one process, so both see the same machine load; the median is reported and the
ratio chunked / plain (< 1: chunked faster). Memory: each method runs one step in a fresh
process, and the figure is that process's peak RSS during the step (VmHWM, reset just before
it) minus its RSS then: what the step itself adds, allocator caches included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from repro.model.build import TokenIds, build_model  # noqa: E402
from repro.spec.schema import ModelSpec  # noqa: E402
from repro.train.linear_ce import chunk_rows, linear_cross_entropy  # noqa: E402
from repro.train.objective import ObjectiveSettings, TrainModule  # noqa: E402

METHODS = ("plain", "chunked")
# specs/qs-nope.yaml's model; vocab 4096 = its tokenizer.vocab_size
QS_SPEC = ModelSpec(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=384,
                    nope_interval=4, max_position_embeddings=512)
QS_IDS = TokenIds(vocab_size=4096, bos=0, eos=0, pad=1)
# (name, rows, hidden, vocab)
HEADS = {"quickstart-head": (8 * 256, 128, 4096), "large-head": (8 * 2048, 960, 49152)}
CASES = {"quickstart": ("quickstart-head", "quickstart-step"), "large": ("large-head",)}


def _head_inputs(name: str):
    rows, hidden, vocab = HEADS[name]
    g = torch.Generator().manual_seed(0)
    h = torch.randn(rows, hidden, generator=g).requires_grad_(True)
    w = (torch.randn(vocab, hidden, generator=g) * 0.02).requires_grad_(True)
    t = torch.randint(0, vocab, (rows,), generator=g)
    return h, w, t


def _qs_step_inputs():
    model = build_model(QS_SPEC, QS_IDS, 0)
    g = torch.Generator().manual_seed(0)
    windows = torch.randint(2, QS_IDS.vocab_size, (8, 257), generator=g)
    windows[:, ::100] = QS_IDS.eos  # a few documents per row: doc masking has work to do
    return model, windows


def make_step(name: str, method: str):
    """A zero-argument function running one forward + backward of `name` with `method`."""
    if name == "quickstart-step":
        model, windows = _qs_step_inputs()
        module = TrainModule(model, ObjectiveSettings(QS_IDS.eos, True, cross_entropy=method))

        def step():
            module.zero_grad(set_to_none=True)
            loss, _ = module(windows, [], 0)
            loss.backward()
        return step
    h, w, t = _head_inputs(name)

    def step():
        h.grad = w.grad = None
        linear_cross_entropy(h, w, t, method=method).loss.backward()
    return step


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child_memory(name: str, method: str) -> None:
    """Run in a fresh process: one step, print the peak RSS it adds (bytes). Linux: writing 5
    to /proc/self/clear_refs resets the peak (VmHWM) to the current RSS, so the peak read
    after the step is the step's own, not the imports'."""
    step = make_step(name, method)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    step()
    print(json.dumps({"added_bytes": max(0, _status_kib("VmHWM") - before) * 1024}))


def memory(name: str, method: str) -> int:
    out = subprocess.run([sys.executable, "-m", "bench.linear_ce", "--child", name, method],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["added_bytes"]


def timing(name: str, reps: int) -> dict[str, list[float]]:
    steps = {m: make_step(name, m) for m in METHODS}
    for m in METHODS:
        steps[m]()  # warmup
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(reps):
        for m in (METHODS if r % 2 == 0 else METHODS[::-1]):
            start = time.perf_counter()
            steps[m]()
            times[m].append(time.perf_counter() - start)
    return times


def run(cases: list[str], reps: int) -> list[dict]:
    results = []
    for case in cases:
        for name in CASES[case]:
            times = timing(name, reps if name != "large-head" else max(2, reps // 4))
            mem = {m: memory(name, m) for m in METHODS}
            med = {m: statistics.median(v) for m, v in times.items()}
            if name in HEADS:
                rows, hidden, vocab = HEADS[name]
            else:
                rows, hidden, vocab = 8 * 256, QS_SPEC.hidden_size, QS_IDS.vocab_size
            rec = {"case": name, "rows": rows, "hidden": hidden, "vocab": vocab,
                   "chunk_rows": chunk_rows(rows, hidden, vocab), "threads": torch.get_num_threads(),
                   "seconds_median": med, "seconds_all": times,
                   "peak_added_mib": {m: round(b / 2**20, 1) for m, b in mem.items()},
                   "time_ratio_chunked_over_plain": round(med["chunked"] / med["plain"], 3),
                   "memory_ratio_chunked_over_plain": round(mem["chunked"] / max(1, mem["plain"]), 3)}
            results.append(rec)
            print(f"{name:16s} rows {rows} H {hidden} V {vocab} chunk {rec['chunk_rows']}: "
                  f"plain {med['plain'] * 1e3:.1f} ms, chunked {med['chunked'] * 1e3:.1f} ms "
                  f"(x{rec['time_ratio_chunked_over_plain']}); peak added: plain "
                  f"{rec['peak_added_mib']['plain']} MiB, chunked {rec['peak_added_mib']['chunked']} MiB "
                  f"(x{rec['memory_ratio_chunked_over_plain']})", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["quickstart", "large", "all"], default="all")
    parser.add_argument("--reps", type=int, default=20, help="timed rounds (the large case runs reps/4, >= 2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_memory(*args.child)
        return
    cases = ["quickstart", "large"] if args.case == "all" else [args.case]
    results = run(cases, args.reps)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
