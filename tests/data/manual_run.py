"""Manual runner for the data stages (not a test): build, curate and split a dataset of a
spec outside DVC, print timings, the funnel and a hash of every output.

    .venv/bin/python tests/data/manual_run.py specs/qs-nope.yaml web /tmp/run-web [--tasks N --workers N]
    .venv/bin/python tests/data/manual_run.py specs/qs-nope.yaml web /tmp/run-web --only curate
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def main() -> None:
    from repro.spec.load import load_spec
    from repro.spec.schema import ExecutorSpec
    from repro.stages import curate, source, split
    from repro.stages.base import StageIO, set_offline_env
    from repro.stages.configs import CurateConfig, SourceConfig, SplitConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("dataset")
    ap.add_argument("out", type=Path)
    ap.add_argument("--tasks", type=int)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--only", choices=["source", "curate", "split"], action="append")
    args = ap.parse_args()
    set_offline_env()
    spec = load_spec(args.spec)
    ds = spec.datasets[args.dataset]
    executor = ds.executor
    if args.tasks or args.workers:
        executor = ExecutorSpec(tasks=args.tasks or executor.tasks,
                                workers=args.workers or executor.workers)
    todo = args.only or ["source", "curate", "split"]
    out = args.out
    raw, docs = out / "raw", out / "docs"

    def timed(name, fn):
        t = time.time()
        fn()
        print(f"{name}: {time.time() - t:.1f} s", file=sys.stderr)

    if "source" in todo and ds.source.kind == "builtin":
        timed("source", lambda: source.run(SourceConfig(source=ds.source),
                                           StageIO("source", {}, {"corpus": raw})))
    if "curate" in todo:
        cfg = CurateConfig(dataset=args.dataset, source=ds.source, steps=ds.steps, executor=executor)
        ins = {"raw": raw} if ds.source.kind == "builtin" else {}
        timed("curate", lambda: curate.run(cfg, StageIO("curate", ins, {
            "docs": docs, "metrics": out / "curate_metrics.json"})))
        print(json.dumps(json.loads((out / "curate_metrics.json").read_text()), indent=1))
    if "split" in todo:
        cfg = SplitConfig(heldout=ds.heldout, seed=spec.experiment.seed)
        timed("split", lambda: split.run(cfg, StageIO("split", {"docs": docs}, {
            "split": out / "split", "metrics": out / "split_metrics.json"})))
        print((out / "split_metrics.json").read_text())
    for name in ("raw", "docs", "split"):
        if (out / name).exists():
            print(f"hash {name}: {tree_hash(out / name)}")


if __name__ == "__main__":  # datatrove's executor starts workers that re-import __main__
    main()
