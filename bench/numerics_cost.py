"""What the numerics pins and the portable MKL branch cost: training steps with the default
pins against no pins and against MKL_CBWR=COMPATIBLE, side by side in one run (issue 20;
shared PERF.md).

    python -m bench.numerics_cost      # [--rounds N] [--steps N] [--params params.yaml] [--json PATH]

MKL honours the AVX2 branch that repro.numerics pins only on Intel CPUs; AMD CPUs run its
AUTO branch whatever MKL_CBWR asks, so the two vendors run different sgemm kernels and train
different weights. COMPATIBLE is the branch both run. MKL reads MKL_CBWR once per process,
so each measurement is a fresh process: per round, one child per variant (order alternating
between rounds), each building the first AdamW train stage of `--params` (the quickstart's
model, repro.probe.ops.build_training) and timing `--steps` training steps (forward,
backward, clip, optimizer step; fp32, the train stage's thread count) on fixed random windows
after 2 untimed ones. Reported: each variant's median tokens/s, the MKL branch each child
actually ran (repro.numerics.mkl_branch), whether each computed the default's loss (COMPATIBLE
should not, on AMD), and the ratios default / no pins (what repro.numerics' pins cost on
this CPU: on an AVX2 host ATen runs AVX2 kernels anyway, on an AVX-512 host the ATen pin
gives up its AVX-512 kernels) and COMPATIBLE / default (1.0 = free).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from repro.numerics import NUMERICS_ENV_KEYS

NO_PINS = "REPRO_BENCH_NO_PINS"
"""Set in a child's environment: it skips repro.numerics.pin_numerics_env (the variables it
would set are removed from that child's environment too)."""
VARIANTS = {"default pins": {}, "no pins": {NO_PINS: "1"},
            "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"}}


def variant_env(name: str, base: dict[str, str]) -> dict[str, str]:
    """The environment of `name`'s child: `base` without the pins (and without the no-pins
    switch), then the variant's own settings; the default's child pins in process."""
    kept = {k: v for k, v in base.items() if k not in NUMERICS_ENV_KEYS and k != NO_PINS}
    return kept | VARIANTS[name]


def child(params: str, steps: int) -> dict:
    """One variant's measurement, in this (fresh) process."""
    from repro.numerics import pin_numerics_env

    if not os.environ.get(NO_PINS):
        pin_numerics_env()  # before torch: MKL reads MKL_CBWR when it starts
    import time

    import torch

    from repro.model.build import TokenIds
    from repro.numerics import mkl_branch
    from repro.probe.ops import build_training, probe_windows
    from repro.probe.run import probe_settings
    from repro.train.determinism import setup_torch

    settings = probe_settings(Path(params))
    cfg = settings.adamw
    threads = setup_torch(1, torch.device("cpu"), deterministic=True)
    ids = TokenIds(vocab_size=settings.vocab_size, bos=0, eos=0, pad=1)
    module, optimizer = build_training(cfg, ids)
    windows = probe_windows(cfg, settings.vocab_size)
    meta = [("bench", 0)] * windows.size(0)
    params_ = [p for p in module.parameters() if p.requires_grad]

    def step() -> float:
        loss, _ = module(windows, meta, 0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params_, 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    for _ in range(2):
        step()
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    seconds = time.perf_counter() - start
    return {"tokens_per_s": steps * windows[:, :-1].numel() / seconds, "seconds": seconds,
            "last_loss": losses[-1], "mkl_branch": mkl_branch(), "threads": threads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--json", dest="json_path", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.params, args.steps)))
        return
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            env = variant_env(name, dict(os.environ))
            out = subprocess.run([sys.executable, "-m", "bench.numerics_cost", "--child",
                                  "--params", args.params, "--steps", str(args.steps)],
                                 env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {name}: {runs[name][-1]['tokens_per_s']:.0f} tokens/s "
                  f"(MKL branch {runs[name][-1]['mkl_branch']})", flush=True)
    median = {name: statistics.median(x["tokens_per_s"] for x in rs) for name, rs in runs.items()}
    default, unpinned, portable = (median["default pins"], median["no pins"],
                                   median["MKL_CBWR=COMPATIBLE"])
    same_loss = {name: rs[0]["last_loss"] == runs["default pins"][0]["last_loss"]
                 for name, rs in runs.items() if name != "default pins"}
    result = {"median_tokens_per_s": median, "ratio_default_to_no_pins": default / unpinned,
              "ratio_compatible_to_default": portable / default,
              "same_loss_as_default": same_loss, "runs": runs}
    for name, v in median.items():
        print(f"{name:>22}: {v:8.0f} tokens/s (median of {args.rounds})")
    for name, same in same_loss.items():
        print(f"{name}: the default's loss after {args.steps + 2} steps: {same}")
    print(f"ratio default pins / no pins: {default / unpinned:.3f}")
    print(f"ratio COMPATIBLE / default: {portable / default:.3f}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
