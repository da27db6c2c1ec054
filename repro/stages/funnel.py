"""Stage `funnel`: one dataset's funnel in documents, characters and tokens, as one DVC
metrics file, so `dvc metrics diff` shows what a threshold change did all the way down to
the tokens left for training.

Inputs: `curated` (curate's docs output: its removed/<nn>_<kind>/ folders are read, see
repro.data.layout), `curate_metrics`, `split`, `tokenizer`, and `decontaminated` when
decontamination is on. Output `metrics`; the definitions are in repro.data.token_funnel.

A stage of its own, per dataset and tokenizer, rather than part of `tokenize`: the counts
need the removed documents and the held-out split, which the token shards do not, so the
shards and training never wait for them, and one file holds the whole funnel.
"""

from __future__ import annotations

from repro.stages.base import StageIO, read_json, write_json
from repro.stages.configs import FunnelConfig
from repro.stages.kind import DATA_PARAMS, ENV, METRICS, StageKind


def run(cfg: FunnelConfig, io: StageIO) -> None:
    from repro.data.token_funnel import dataset_funnel  # imports datatrove: `repro compile` imports every stage module

    metrics = read_json(io.input("curate_metrics"))
    if metrics.get("dataset") != cfg.dataset:
        raise ValueError(f"curate_metrics are for dataset {metrics.get('dataset')!r}, not "
                         f"{cfg.dataset!r}; rerun `repro compile`")
    decont = io.inputs.get("decontaminated")
    write_json(io.output("metrics"), dataset_funnel(
        cfg.dataset, io.input("curated"), metrics, io.input("split"), decont,
        io.input("tokenizer") / "tokenizer.json"))


KIND = StageKind(
    config=FunnelConfig,
    outputs={"metrics": METRICS, "env": ENV},
    run=run,
    params_file=DATA_PARAMS,
)
