"""DVC's YAML parsing with and without ruamel.yaml's C parser, side by side in one run
(shared PERF.md).

    python -m bench.dvc_yaml          # [--rounds N] [--stage NAME] [--json PATH]

DVC reads dvc.yaml, dvc.lock and params.yaml with `ruamel.yaml` (`typ="safe"`), which uses
the C parser of `ruamel.yaml.clib` when it is installed and a pure-Python one otherwise.
On the quickstart pipeline (~100 stages) those reads dominate DVC's own time in a sweep
trial (`dvc exp run` reloads the pipeline after every stage), which is why requirements.lock
pins `ruamel.yaml.clib`. This script measures, on this repository's own files:

1. parsing each of dvc.yaml, dvc.lock and params.yaml, C vs pure (in-process, median);
2. a real DVC command, `dvc status STAGE` (default: the last stage of
   dvc.yaml), run as a subprocess with the C parser vs with it switched off
   (`ruamel.yaml.main.CParser = None` before DVC starts), variants alternating per round.

Prints each pure/C time ratio; nothing is written (except `--json PATH`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("dvc.yaml", "dvc.lock", "params.yaml")
_DVC = ("import sys, ruamel.yaml.main as m\n"
        "if sys.argv[1] == 'pure': m.CParser = None\n"
        "from dvc.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n")


def c_parser_available() -> bool:
    import ruamel.yaml.main as m
    return m.CParser is not None


def parse_seconds(path: Path, pure: bool, repeats: int) -> float:
    from ruamel.yaml import YAML
    text = path.read_text()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        YAML(typ="safe", pure=pure).load(text)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def dvc_seconds(variant: str, stage: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _DVC, variant, "status", stage],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dvc status failed ({variant}): {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def last_stage() -> str:
    from ruamel.yaml import YAML
    return list(YAML(typ="safe").load((REPO / "dvc.yaml").read_text())["stages"])[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stage", default=None, help="stage for `dvc status` (default: last)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not c_parser_available():
        print("ruamel.yaml.clib is not installed: nothing to compare (make install)")
        return 1
    out: dict[str, dict[str, float]] = {}
    for name in FILES:
        path = REPO / name
        pure, c = parse_seconds(path, True, args.rounds), parse_seconds(path, False, args.rounds)
        out[name] = {"bytes": path.stat().st_size, "pure_s": pure, "c_s": c, "ratio": pure / c}
        print(f"parse {name:12s} {path.stat().st_size / 1e3:7.0f} kB: pure {pure:6.3f} s, "
              f"C {c:6.3f} s, pure/C {pure / c:5.1f}x")
    stage = args.stage or last_stage()
    runs: dict[str, list[float]] = {"pure": [], "c": []}
    for _ in range(args.rounds):
        for variant in ("pure", "c"):
            runs[variant].append(dvc_seconds(variant, stage))
    pure, c = statistics.median(runs["pure"]), statistics.median(runs["c"])
    out["dvc status"] = {"stage": stage, "pure_s": pure, "c_s": c, "ratio": pure / c}
    print(f"dvc status {stage}: pure {pure:.1f} s, C {c:.1f} s "
          f"(median of {args.rounds})")
    print(f"pure/C time ratio, dvc status: {pure / c:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
