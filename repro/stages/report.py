"""Stage `report`: compare experiments (each with one or more replicas) at their final
checkpoints, against a baseline.

Inputs (see repro.report.collect): `train:`, `loss:`, `eval:`, `results:` keyed
`<experiment>:<replica>:<stage or checkpoint>`, `ledger:<experiment>` and
`funnel:<experiment>:<dataset>`. Missing or broken inputs are reported, not fatal; the stage
fails only when nothing can be reported.

Outputs:
- `report`: a folder with report.md (GitHub Markdown, links the PNGs), report.html
  (self-contained), summary.csv (one row per experiment), deltas.csv (one row per compared
  metric), scores_over_tokens.csv (every evaluated checkpoint), loss.csv (every loss curve),
  summary.json, and loss.png, scores.png, funnel.png and ledger.png (the last two when the
  data accounts are wired);
- `scores`: a folder with `<experiment>.csv` per experiment with an evaluation: `tokens`
  then one column per `<task>.<metric>`, the mean over replicas (for `dvc plots`);
- `headline:<experiment>`, per experiment: metrics/reports/<report>/<experiment>.json, the
  DVC metrics file of its Results-table row (repro.report.tables.headline_records), so
  `dvc metrics show metrics/reports` is one row per experiment.
Every file is a pure function of the inputs and the config (the bootstrap is seeded), so
reruns are byte-identical.
"""

from __future__ import annotations

from repro import paths
from repro.report import content, plots, render, tables
from repro.report.collect import load_runs
from repro.report.compare import Settings, compare
from repro.stages.base import StageIO, atomic_dir, atomic_write_bytes, atomic_write_text, dumps_json
from repro.stages.configs import ReportConfig
from repro.stages.kind import ENV, Output, Role, StageKind

HEADLINE = "headline"
"""Prefix of the report's output keys `headline:<experiment>`."""


def _headline_outputs(cfg: ReportConfig) -> dict[str, Output]:
    return {f"{HEADLINE}:{name}": Output(
        Role.METRICS, lambda stage_id, cfg, name=name: paths.report_headline(cfg.name, name),
        named_by="report.name") for name in cfg.experiments}


def run(cfg: ReportConfig, io: StageIO) -> None:
    collected = load_runs(io, list(cfg.experiments), cfg.baseline)
    settings = Settings(cfg.bootstrap_iterations, cfg.confidence, cfg.bootstrap_seed,
                        None if cfg.aggregate_tasks is None else tuple(cfg.aggregate_tasks))
    cmp = compare(collected, settings)
    summary, deltas = tables.summary_table(collected, cmp), tables.deltas_table(collected, cmp)
    over_tokens = tables.scores_over_tokens(collected.runs)
    bands = tables.score_bands(over_tokens)
    names = [r.name for r in collected.runs]
    images = {plots.LOSS_FILE: plots.loss_png(collected.runs, collected.baseline),
              plots.SCORES_FILE: plots.scores_png(bands, cmp.primary, collected.baseline, names)}
    for file, png in ((plots.FUNNEL_FILE, plots.funnel_png(collected.runs)),
                      (plots.LEDGER_FILE, plots.ledger_png(collected.runs))):
        if png is not None:
            images[file] = png
    blocks = content.build(cfg.name, cfg.baseline, collected, cmp, images)
    record = tables.summary_record(cfg.name, cfg.baseline, collected, cmp, summary, deltas)
    headlines = tables.headline_records(summary, cmp)
    for name in cfg.experiments:  # every declared output exists, empty for a run not loaded
        atomic_write_text(io.output(f"{HEADLINE}:{name}"),
                          dumps_json(headlines.get(name, {})))
    with atomic_dir(io.output("scores")) as out:
        for name in names:
            wide = tables.mean_scores(bands, name)
            if wide.width > 1:
                atomic_write_text(out / f"{name}.csv", wide.write_csv())
    with atomic_dir(io.output("report")) as out:
        for file, png in images.items():
            atomic_write_bytes(out / file, png)
        atomic_write_text(out / "report.md", render.to_markdown(blocks))
        atomic_write_text(out / "report.html", render.to_html(blocks, f"Report: {cfg.name}",
                                                              images))
        atomic_write_text(out / "summary.csv", summary.write_csv())
        atomic_write_text(out / "deltas.csv", deltas.write_csv())
        atomic_write_text(out / "scores_over_tokens.csv", over_tokens.write_csv())
        atomic_write_text(out / "loss.csv", tables.loss_table(collected.runs).write_csv())
        atomic_write_text(out / "summary.json", dumps_json(record))


KIND = StageKind(
    config=ReportConfig,
    outputs={
        "report": Output(Role.RECORD, lambda stage_id, cfg: paths.report_dir(cfg.name),
                         named_by="report.name"),
        "scores": Output(Role.RECORD, lambda stage_id, cfg: paths.report_scores_dir(cfg.name),
                         named_by="report.name"),
        "env": ENV,
    },
    run=run,
    extra_outputs=_headline_outputs,
)
