"""A DVC stage's fixed cost, apart from its work (issue 19 item 3), side by side in one run
(shared PERF.md).

    python -m bench.stage_overhead     # [--rounds N] [--stages N] [--json PATH] [--part imports|dvc|lock|layout]

1. Process start and imports: what every `repro stage` process pays before it does any work,
   each a fresh interpreter, variants interleaved per round, median wall seconds: a bare
   `python -c pass`; `import repro.cli` (what `repro stage` loads to dispatch); each stage
   kind's module on top of it (`repro.stages.<kind>`, as `repro stage <kind>` imports it);
   and the libraries the train and evaluate stages import when they run (torch;
   transformers; lm-eval's evaluator). Printed with the ratio to the bare interpreter.
2. DVC's bookkeeping per stage: scratch git + DVC repositories of 1, N and 2N trivial
   stages (a chain of `cp` of a small file, each stage with its own params.yaml section,
   sections copied from this repository's params files as `repro compile` writes them; and
   the same pipelines without params), built once, then no-op `dvc status` and `dvc repro`
   alternating between the sizes per round. Per stage, marginal: the first N stages cost
   (t(N) - t(1)) / (N - 1) each, the next N (t(2N) - t(N)) / N each; their ratio is 1.0
   when DVC's cost per stage is constant and grows with the pipeline when it is not (DVC
   reads and walks the whole params.yaml once per stage that declares params).
3. dvc.lock's size: after each stage it runs, DVC re-parses and rewrites the whole dvc.lock
   round-trip, and it never drops the entry of a stage that left dvc.yaml (`repro compile`
   does: repro.compile.lockfile). The same N-stage pipeline twice, its dvc.lock as DVC wrote
   it and with `--dead` x N entries of stages no longer declared added (main once held 149
   dead entries beside 36 live ones), each timed rerunning one stage (`dvc repro -f -s`),
   alternating per round; the ratio is the per-stage cost the dead entries add.
4. The params layout: one trivial stage per stage of this repository's default pipeline, each
   declaring exactly the params keys its real stage declares, with every section in one
   params.yaml (the layout before issue 19) vs params.yaml + params.data.yaml as `repro
   compile` writes them; no-op `dvc repro` alternating per round; the ratio is split / one.
Prints every figure and the ratios last; nothing is written except `--json PATH`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _kinds() -> list[str]:
    from repro.stages import kinds  # imports every stage module: this process only

    return sorted(kinds())


def import_variants() -> dict[str, str]:
    """Label -> code run by a fresh `python -c`."""
    out = {"python (bare)": "pass", "repro.cli": "import repro.cli"}
    for k in _kinds():
        out[f"repro.cli + stages.{k}"] = f"import repro.cli, repro.stages.{k}"
    out["torch"] = "import torch"
    out["torch + transformers"] = "import torch, transformers; transformers.AutoModelForCausalLM"
    out["lm_eval.evaluator (+ torch, transformers)"] = "import lm_eval.evaluator"
    return out


def _seconds(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr.strip()[-1500:]}")
    return elapsed


def measure_imports(rounds: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))
    variants = import_variants()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for label, code in variants.items():  # warm the page cache once, untimed
        _seconds([sys.executable, "-c", code], REPO, env)
    for _ in range(rounds):
        for label, code in variants.items():
            times[label].append(_seconds([sys.executable, "-c", code], REPO, env))
    return {k: statistics.median(v) for k, v in times.items()}


def _params_sections() -> list[dict]:
    """Real params sections (this repository's params.yaml and params.data.yaml), cycled to
    size the synthetic ones."""
    try:
        params = {}
        for name in ("params.yaml", "params.data.yaml"):
            if (REPO / name).is_file():
                params.update(yaml.safe_load((REPO / name).read_text()) or {})
    except OSError:
        params = {}
    return [v for v in params.values() if isinstance(v, dict)] or [{"x": 1}]


def make_pipeline(root: Path, n: int, with_params: bool) -> Path:
    """A git + DVC repository of `n` chained trivial stages, built once."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    root.mkdir(parents=True)
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"],
                 ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(args, cwd=root, env=env, check=True, capture_output=True)
    (root / "s000.txt").write_text("seed\n")
    sections, stages, params = _params_sections(), {}, {}
    for i in range(1, n + 1):
        name = f"s{i:03d}"
        stage = {"cmd": f"cp s{i - 1:03d}.txt {name}.txt", "deps": [f"s{i - 1:03d}.txt"],
                 "outs": [f"{name}.txt"]}
        if with_params:
            stage["params"] = [name]
            params[name] = sections[i % len(sections)]
        stages[name] = stage
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    if with_params:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["dvc", "repro", "-q"], cwd=root, env=env, check=True, capture_output=True)
    return root


def measure_dvc(n: int, rounds: int, scratch: Path) -> dict[str, dict[str, float]]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    out: dict[str, dict[str, float]] = {}
    sizes = (1, n, 2 * n)
    for with_params in (True, False):
        label = "with params" if with_params else "no params"
        repos = {size: make_pipeline(scratch / f"{label.replace(' ', '-')}-{size}", size, with_params)
                 for size in sizes}
        for command in (["status", "-q"], ["repro", "-q"]):
            times: dict[int, list[float]] = {size: [] for size in sizes}
            for size, repo in repos.items():  # warm: DVC's state database, page cache
                _seconds([str(BIN / "dvc"), *command], repo, env)
            for _ in range(rounds):
                for size, repo in repos.items():
                    times[size].append(_seconds([str(BIN / "dvc"), *command], repo, env))
            t = {size: statistics.median(v) for size, v in times.items()}
            first, second = (t[n] - t[1]) / (n - 1), (t[2 * n] - t[n]) / n
            out[f"dvc {command[0]} no-op, {label}"] = {
                **{f"{size} stage(s)": t[size] for size in sizes},
                f"per stage, stages 2..{n}": first, f"per stage, stages {n + 1}..{2 * n}": second,
                "ratio": second / first if first > 0 else float("nan")}
    return out


def measure_lock(n: int, dead: int, rounds: int, scratch: Path) -> dict[str, float]:
    from dvc.utils.serialize import dumps_yaml, parse_yaml_for_update

    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    live = make_pipeline(scratch / "lock-live", n, with_params=True)
    stale = scratch / "lock-dead"
    shutil.copytree(live, stale)
    lock = stale / "dvc.lock"
    data = parse_yaml_for_update(lock.read_text(), str(lock))
    entries = list(data["stages"].items())
    for i in range(dead * n):
        name, entry = entries[i % len(entries)]
        data["stages"][f"gone-{i:04d}-{name}"] = entry
    lock.write_text(dumps_yaml(data))
    command = [str(BIN / "dvc"), "repro", "-f", "-s", "-q", "s001"]
    repos = {"live entries only": live, f"+ {dead * n} dead entries": stale}
    times: dict[str, list[float]] = {k: [] for k in repos}
    for label, repo in repos.items():
        _seconds(command, repo, env)  # warm
    for _ in range(rounds):
        for label, repo in repos.items():
            times[label].append(_seconds(command, repo, env))
    out = {k: statistics.median(v) for k, v in times.items()}
    out["lock KB (live, with dead)"] = (round((live / "dvc.lock").stat().st_size / 1024),
                                        round(lock.stat().st_size / 1024))
    return out


def _layout_pipeline(root: Path, split: bool) -> Path:
    """A git + DVC repository with one trivial stage (a `cp` chain) per stage of this
    repository's default pipeline, each declaring the params keys its real stage declares
    (dvc.yaml), in the real params files (`split`: params.yaml and params.data.yaml as
    compiled) or all in one params.yaml (the layout before issue 19 split them); built once."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    real = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    files = {name: yaml.safe_load((REPO / name).read_text()) or {}
             for name in ("params.yaml", "params.data.yaml") if (REPO / name).is_file()}
    root.mkdir(parents=True)
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"],
                 ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(args, cwd=root, env=env, check=True, capture_output=True)
    (root / "s000.txt").write_text("seed\n")
    stages = {}
    for i, (name, entry) in enumerate(real.items(), start=1):
        declared = entry.get("params") or []
        keys = [k for d in declared for k in ([d] if isinstance(d, str) else next(iter(d.values())))]
        stages[name] = {"cmd": f"cp s{i - 1:03d}.txt s{i:03d}.txt", "deps": [f"s{i - 1:03d}.txt"],
                        "params": declared if split else keys, "outs": [f"s{i:03d}.txt"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    if split:
        for name in files:
            shutil.copy(REPO / name, root / name)
    else:
        merged = {k: v for sections in files.values() for k, v in sections.items()}
        (root / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    subprocess.run(["dvc", "repro", "-q"], cwd=root, env=env, check=True, capture_output=True)
    return root


def measure_layout(rounds: int, scratch: Path) -> dict[str, float]:
    """No-op `dvc repro` of the default pipeline's stages and params, trivial commands: one
    params.yaml vs params.yaml + params.data.yaml, alternating per round (median seconds)."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    repos = {"one params.yaml": _layout_pipeline(scratch / "one", split=False),
             "params.yaml + params.data.yaml": _layout_pipeline(scratch / "split", split=True)}
    command = [str(BIN / "dvc"), "repro", "-q"]
    times: dict[str, list[float]] = {k: [] for k in repos}
    for repo in repos.values():
        _seconds(command, repo, env)  # warm: DVC's state database, page cache
    for _ in range(rounds):
        for label, repo in repos.items():
            times[label].append(_seconds(command, repo, env))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stages", type=int, default=30, help="N: pipelines of 1, N and 2N stages")
    ap.add_argument("--part", choices=("imports", "dvc", "lock", "layout", "all"), default="all")
    ap.add_argument("--dead", type=int, default=4,
                    help="dead dvc.lock entries per live stage for --part lock")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    result: dict[str, object] = {"rounds": args.rounds}
    if args.part in ("imports", "all"):
        imports = measure_imports(args.rounds)
        bare = imports["python (bare)"]
        print(f"Process start + imports (fresh interpreter, median of {args.rounds}):")
        for label, seconds in imports.items():
            print(f"  {label:44s} {seconds:6.2f} s  {seconds / bare:5.1f}x bare python")
        result["imports_seconds"] = imports
    if args.part in ("dvc", "all"):
        scratch = Path(tempfile.mkdtemp(prefix="stage-overhead-"))
        try:
            dvc = measure_dvc(args.stages, args.rounds, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"DVC bookkeeping, trivial stages, N = {args.stages} (median of {args.rounds}):")
        for label, row in dvc.items():
            cells = "  ".join(f"{k}: {v:.3f}{'' if k == 'ratio' else ' s'}" for k, v in row.items())
            print(f"  {label:30s} {cells}")
        result["dvc"] = dvc
    if args.part in ("lock", "all"):
        scratch = Path(tempfile.mkdtemp(prefix="stage-overhead-lock-"))
        try:
            lock = measure_lock(args.stages, args.dead, args.rounds, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        (live_label, live_s), (dead_label, dead_s) = list(lock.items())[:2]
        print(f"One stage rerun (dvc repro -f -s) in a {args.stages}-stage pipeline, median of "
              f"{args.rounds}; dvc.lock {lock['lock KB (live, with dead)'][0]} KB live, "
              f"{lock['lock KB (live, with dead)'][1]} KB with the dead entries:")
        print(f"  {live_label:30s} {live_s:6.2f} s")
        print(f"  {dead_label:30s} {dead_s:6.2f} s  ratio {dead_s / live_s:.2f}")
        result["lock"] = lock
    if args.part in ("layout", "all"):
        scratch = Path(tempfile.mkdtemp(prefix="stage-overhead-layout-"))
        try:
            layout = measure_layout(args.rounds, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        (one_label, one_s), (split_label, split_s) = layout.items()
        print(f"No-op dvc repro, the default pipeline's {len(yaml.safe_load((REPO / 'dvc.yaml').read_text())['stages'])} "
              f"stages and params (trivial commands), median of {args.rounds}:")
        print(f"  {one_label:32s} {one_s:6.2f} s")
        print(f"  {split_label:32s} {split_s:6.2f} s  ratio {split_s / one_s:.2f}")
        result["layout"] = layout
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.part in ("dvc", "all"):
        print("ratio of per-stage cost, second N stages / first N (1.0 = constant):",
              ", ".join(f"{k}: {v['ratio']:.2f}" for k, v in result["dvc"].items()))  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
