"""Split stage: set aside held-out documents for evaluation, the rest is for training.

A document is held out when a stable hash of (seed, document id) falls below `fraction`,
so the choice depends on nothing but the document's id and the seed (not on file layout
or task count); the held-out set is capped at `max_docs`, keeping the lowest hashes.
"""

from __future__ import annotations

from repro.data.layout import kept_dir
from repro.data.split import split_documents, write_split
from repro.stages.base import StageIO, atomic_dir, write_json
from repro.stages.configs import SplitConfig
from repro.stages.kind import DATA_PARAMS, ENV, METRICS, StageKind, data


def run(cfg: SplitConfig, io: StageIO) -> None:
    result = split_documents(kept_dir(io.input("docs")), cfg.heldout.fraction, cfg.heldout.max_docs, cfg.seed)
    with atomic_dir(io.output("split")) as out:
        write_split(result, out)
    write_json(io.output("metrics"), result.metrics())


KIND = StageKind(
    config=SplitConfig,
    outputs={"split": data("data/split"), "metrics": METRICS, "env": ENV},
    run=run,
    params_file=DATA_PARAMS,
)
