"""Curate stage: run a dataset's curation steps with datatrove and write the funnel.

Outputs: `docs`, a dataset folder (repro.data.layout): `data/` with the kept documents as
JSONL (each with its size and quality signals in its metadata), `removed/<nn>_<kind>/` with
what each filter removed, `samples.json`, and the dataset card `README.md` (license, source,
steps and their settings, funnel) that makes the folder loadable by
`datasets.load_dataset`; and `metrics` (the funnel: documents/characters per step and removal
reasons). See repro.data.pipeline for how the steps are laid out as datatrove runs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from repro.stages.base import (StageIO, atomic_dir, atomic_write_text, dumps_json,
                               remove_stale_temporaries, work_sibling, write_json)
from repro.data import samples
from repro.data.layout import CARD_FILE, KEPT_DIR, REMOVED_DIR, SAMPLES_FILE
from repro.data.source_check import check_source
from repro.stages.configs import CurateConfig
from repro.stages.kind import DATA_PARAMS, ENV, METRICS, StageKind, data


def run(cfg: CurateConfig, io: StageIO) -> None:
    from repro.data import card  # imports datasets and datatrove: `repro compile` imports every stage module
    from repro.data.pipeline import Curation, step_label  # imports datatrove: `repro compile` imports every stage module

    raw = io.inputs.get("raw")
    # a missing or unreadable source, or one that is not inside the workspace (the directory
    # the stage runs in: the project root), is one clear error before any work starts
    check_source(cfg.source, Path(raw) if raw is not None else None, workspace=Path.cwd())
    docs = Path(io.output("docs"))
    # scratch and datatrove logs stay outside the outputs (they hold timings and absolute
    # paths); Ray and Slurm tasks may run on other machines, so their scratch goes next to
    # the output, which is on the filesystem they share, rather than in this machine's /tmp
    if cfg.executor.kind == "local":
        work = Path(tempfile.mkdtemp(prefix="repro-curate-"))
    else:
        remove_stale_temporaries(docs)  # a killed run's scratch, before making this one's
        work = work_sibling(docs)
    try:
        with atomic_dir(docs) as out:
            funnel = Curation(cfg.dataset, cfg.source, cfg.steps, cfg.executor,
                              Path(raw) if raw is not None else None, out, work,
                              shards=cfg.shards).run()
            labels = [step_label(i, s) for i, s in enumerate(cfg.steps, 1)]
            metrics = funnel.as_metrics()
            atomic_write_text(out / SAMPLES_FILE, dumps_json(
                samples.collect(out / KEPT_DIR, out / REMOVED_DIR, labels)))
            atomic_write_text(out / CARD_FILE, card.render(
                cfg.dataset, cfg.license, cfg.source, cfg.steps, labels, metrics, out))
        write_json(io.output("metrics"), metrics)
    finally:
        shutil.rmtree(work, ignore_errors=True)


KIND = StageKind(
    config=CurateConfig,
    outputs={"docs": data("data/curated"), "metrics": METRICS, "env": ENV},
    run=run,
    params_file=DATA_PARAMS,
    execution_only=frozenset({"executor"}),
)
