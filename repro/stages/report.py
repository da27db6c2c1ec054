"""Stage `report`: compare experiments at their final checkpoints.

Inputs: `eval:<experiment>:<stage>` (evaluate metrics), `train:<experiment>:<stage>` (train
metrics), `loss:<experiment>:<stage>` (loss CSV). Output `report`: a folder with report.md
(GitHub Markdown, links loss.png), report.html (self-contained), summary.csv, summary.json
and loss.png. Every file is a pure function of the inputs, so reruns are byte-identical.
"""

from __future__ import annotations

from repro.report import content, plots, render, tables
from repro.report.collect import load_runs
from repro.stages.base import StageIO, atomic_dir, atomic_write_bytes, atomic_write_text, dumps_json
from repro.stages.configs import ReportConfig


def run(cfg: ReportConfig, io: StageIO) -> None:
    runs = load_runs(io, list(cfg.experiments), cfg.baseline)
    cols = tables.metric_columns(runs)
    table = tables.summary_table(runs, cfg.baseline, cols)
    png = plots.loss_png(runs, cfg.baseline)
    blocks = content.build(cfg.name, cfg.baseline, runs, cols, table)
    with atomic_dir(io.output("report")) as out:
        atomic_write_bytes(out / content.PLOT_FILE, png)
        atomic_write_text(out / "report.md", render.to_markdown(blocks))
        atomic_write_text(out / "report.html", render.to_html(
            blocks, f"Report: {cfg.name}", {content.PLOT_FILE: png}))
        atomic_write_text(out / "summary.csv", table.write_csv())
        atomic_write_text(out / "summary.json", dumps_json(
            tables.summary_record(cfg.name, cfg.baseline, runs, cols, table)))
