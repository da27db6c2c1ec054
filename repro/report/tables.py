"""Every number of the report as polars tables (written as CSV) and summary.json.

- `summary_table`: one row per experiment: experiment, is_baseline, replicas, final_stage,
  step_end, tokens, final_train_loss, final_train_loss_delta, final_train_loss_claim,
  final_train_loss_seed_spread, final_train_loss_within_seed_noise, then per
  `<task>.<metric>`: value, `_stderr`, `_stderr_lm_eval`, `_delta`, `_ci_low`, `_ci_high`,
  `_significant`, `_claim`, `_seed_spread`, `_within_seed_noise`, `_random`, `_above_random`;
  then the same for `aggregate`.
- `deltas_table`: one row per (experiment, metric) compared with the baseline, with its
  claim ("method" or "checkpoint", and the replica counts behind it) and seed spread.
- `scores_over_tokens`: one row per (experiment, replica, checkpoint, task, metric).
- `mean_scores`: per experiment, the mean over replicas at each checkpoint, wide (the
  `scores` output for `dvc plots`).
- `loss_table`: every replica's loss curve.
All numbers are kept at full precision; only the Markdown/HTML round them.
"""

from __future__ import annotations

from typing import Any

from repro.report import data
from repro.report.collect import Collected, ExperimentRun, dumps_problems, finite
from repro.report.compare import (AGGREGATE, BOOTSTRAP, METHOD_REPLICAS, NO_SIGNAL, NORMAL,
                                  STDERR, TABLE_SKIP, Comparison, Delta, Score, with_noise)

PER_METRIC = ("", STDERR, "_stderr_lm_eval", "_delta", "_ci_low", "_ci_high", "_significant",
              "_claim", "_seed_spread", "_within_seed_noise", "_random", "_above_random")
NOISE = ("_claim", "_seed_spread", "_within_seed_noise")


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def final_train_loss(run: ExperimentRun) -> float | None:
    """Mean over replicas of the final phase's training loss."""
    return _mean(final_train_losses(run))


def final_train_losses(run: ExperimentRun) -> list[float]:
    """Each replica's final-phase training loss, where it is a number."""
    return [v for r in run.replicas if (v := finite(r.final_train_loss)) is not None]


def loss_delta(run: ExperimentRun, baseline: ExperimentRun | None) -> Delta:
    """Difference of the mean final train losses (no interval), with its claim and the
    replicas' seed spread."""
    a, b = final_train_losses(run), [] if baseline is None else final_train_losses(baseline)
    if not a or not b:
        return Delta(None, None, None, None, None, None)
    return with_noise(Delta(sum(a) / len(a) - sum(b) / len(b), None, None, None, None, None),
                      a, b)


def _noise_cells(key: str, d: Delta | None) -> dict[str, Any]:
    return {key + "_claim": None if d is None else d.claim,
            key + "_seed_spread": None if d is None else d.seed_spread,
            key + "_within_seed_noise": None if d is None else d.within_seed_noise}


def _metric_cells(key: str, s: Score, d: Delta | None) -> dict[str, Any]:
    return {key: s.value, key + STDERR: s.stderr, key + "_stderr_lm_eval": s.stderr_lm_eval,
            key + "_delta": None if d is None else d.delta,
            key + "_ci_low": None if d is None else d.low,
            key + "_ci_high": None if d is None else d.high,
            key + "_significant": None if d is None else d.significant,
            **_noise_cells(key, d), key + "_random": s.random, key + "_above_random": s.normalised}


def summary_table(col: Collected, cmp: Comparison) -> Any:
    """polars DataFrame, one row per experiment in display order (see module docstring)."""
    import polars as pl

    keys = [c.key for c in cmp.columns] + [AGGREGATE]
    base = next((r for r in col.runs if r.name == col.baseline), None)
    rows = []
    for run in col.runs:
        phase = run.final_phase
        loss = loss_delta(run, base)
        row: dict[str, Any] = {
            "experiment": run.name, "is_baseline": run.name == col.baseline,
            "replicas": len(run.evaluated), "final_stage": None if phase is None else phase.name,
            "step_end": None if phase is None else phase.step_end,
            "tokens": None if phase is None else phase.tokens_total,
            "final_train_loss": final_train_loss(run), "final_train_loss_delta": loss.delta,
            **_noise_cells("final_train_loss", None if run.name == col.baseline else loss),
        }
        for k in keys:
            d = cmp.deltas.get(run.name, {}).get(k)
            if run.name == col.baseline:
                d = Delta(0.0, None, None, None, None, None)
            row |= _metric_cells(k, cmp.scores[run.name][k], d)
        rows.append(row)
    schema: dict[str, Any] = {"experiment": pl.String, "is_baseline": pl.Boolean,
                              "replicas": pl.Int64, "final_stage": pl.String,
                              "step_end": pl.Int64, "tokens": pl.Int64,
                              "final_train_loss": pl.Float64, "final_train_loss_delta": pl.Float64}
    types = {"_significant": pl.Boolean, "_within_seed_noise": pl.Boolean, "_claim": pl.String}
    for suffix in NOISE:
        schema["final_train_loss" + suffix] = types.get(suffix, pl.Float64)
    for k in keys:
        for suffix in PER_METRIC:
            schema[k + suffix] = types.get(suffix, pl.Float64)
    return pl.DataFrame(rows, schema=schema, orient="row")


def deltas_table(col: Collected, cmp: Comparison) -> Any:
    """One row per non-baseline experiment and metric (aggregate last)."""
    import polars as pl

    rows = []
    for name, ds in cmp.deltas.items():
        for key, d in ds.items():
            task, _, metric = key.partition(".")
            s, b = cmp.scores[name][key], cmp.scores[col.baseline][key]  # type: ignore[index]
            rows.append({"experiment": name, "baseline": col.baseline, "column": key,
                         "task": task if metric else None, "metric": metric or AGGREGATE,
                         "value": s.value, "baseline_value": b.value, "delta": d.delta,
                         "ci_low": d.low, "ci_high": d.high, "significant": d.significant,
                         "confidence": cmp.settings.confidence, "method": d.method,
                         "items": d.items, "replicas": len(s.per_replica),
                         "baseline_replicas": len(b.per_replica), "claim": d.claim,
                         "seed_spread": d.seed_spread,
                         "within_seed_noise": d.within_seed_noise,
                         "no_signal": cmp.no_signal(key)})
    schema = {"experiment": pl.String, "baseline": pl.String, "column": pl.String,
              "task": pl.String, "metric": pl.String, "value": pl.Float64,
              "baseline_value": pl.Float64, "delta": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64, "significant": pl.Boolean, "confidence": pl.Float64,
              "method": pl.String, "items": pl.Int64, "replicas": pl.Int64,
              "baseline_replicas": pl.Int64, "claim": pl.String, "seed_spread": pl.Float64,
              "within_seed_noise": pl.Boolean, "no_signal": pl.Boolean}
    return pl.DataFrame(rows, schema=schema, orient="row")


def scores_over_tokens(runs: list[ExperimentRun]) -> Any:
    """Every evaluated checkpoint's scores, one row per replica and task metric."""
    import polars as pl

    rows = []
    for run in runs:
        for rep in run.replicas:
            for cp in rep.checkpoints:
                for task, metrics in sorted(cp.tasks.items()):
                    for metric, v in sorted((metrics or {}).items()):
                        if metric.endswith(STDERR) or metric in TABLE_SKIP:
                            continue
                        rows.append({"experiment": run.name, "replica": rep.name,
                                     "checkpoint": cp.name, "stage": cp.phase, "step": cp.step,
                                     "tokens": cp.tokens_seen, "task": task, "metric": metric,
                                     "value": finite(v),
                                     "stderr": finite(metrics.get(metric + STDERR))})
    schema = {"experiment": pl.String, "replica": pl.String, "checkpoint": pl.String,
              "stage": pl.String, "step": pl.Int64, "tokens": pl.Int64, "task": pl.String,
              "metric": pl.String, "value": pl.Float64, "stderr": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def score_bands(long: Any) -> Any:
    """Mean, min and max over replicas per experiment, checkpoint and task metric, by tokens.
    A checkpoint's tokens are the smallest any replica reports (replicas train alike)."""
    import polars as pl

    return (long.filter(pl.col("value").is_not_null() & pl.col("tokens").is_not_null())
            .group_by("experiment", "checkpoint", "task", "metric")
            .agg(pl.col("tokens").min(), pl.col("value").mean().alias("mean"),
                 pl.col("value").min().alias("min"), pl.col("value").max().alias("max"),
                 pl.col("value").count().alias("replicas"))
            .sort("experiment", "task", "metric", "tokens", "checkpoint"))


SCORE_COLUMN_SEP = ":"
"""`<task>:<metric>` in the scores CSVs. Not a dot: Vega-Lite, which draws `dvc plots`, reads a
dot in a field name as nested access, and the curve comes out empty."""


def score_column(task: str, metric: str) -> str:
    return f"{task}{SCORE_COLUMN_SEP}{metric}"


def mean_scores(bands: Any, experiment: str) -> Any:
    """`tokens` then one column per `<task>:<metric>` (score_column): the mean over replicas
    at each evaluated checkpoint of one experiment, sorted by tokens (for `dvc plots`)."""
    import polars as pl

    mine = (bands.filter(pl.col("experiment") == experiment)
            .with_columns((pl.col("task") + SCORE_COLUMN_SEP + pl.col("metric")).alias("column")))
    if mine.height == 0:
        return pl.DataFrame(schema={"tokens": pl.Int64})
    wide = (mine.group_by("tokens", "column").agg(pl.col("mean").mean())
            .pivot(on="column", index="tokens", values="mean", sort_columns=True)
            .sort("tokens"))
    return wide.select("tokens", *sorted(c for c in wide.columns if c != "tokens"))


def loss_table(runs: list[ExperimentRun]) -> Any:
    """Every replica's training loss curve, phases concatenated in training order (the
    `stage` column holds the phase's name)."""
    import polars as pl

    frames = [s.loss.select(pl.lit(run.name).alias("experiment"),
                            pl.lit(rep.name).alias("replica"), pl.lit(s.name).alias("stage"),
                            "step", "tokens", "loss", "lr")
              for run in runs for rep in run.replicas for s in rep.phases]
    schema = {"experiment": pl.String, "replica": pl.String, "stage": pl.String,
              "step": pl.Int64, "tokens": pl.Int64, "loss": pl.Float64, "lr": pl.Float64}
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def phase_records(runs: list[ExperimentRun]) -> dict[str, list[dict]]:
    """Per experiment, its training phases in order (of its first replica with any: replicas
    train alike), each with every replica's own numbers under `replicas` (summary.json)."""
    out = {}
    for r in runs:
        first = next((rep for rep in r.replicas if rep.phases), None)
        out[r.name] = [] if first is None else [
            {"stage": s.name, "step_end": s.step_end, "tokens": s.tokens,
             "tokens_total": s.tokens_total,
             "final_loss": _mean([t.final_loss for rep in r.replicas for t in rep.phases
                                  if t.name == s.name and t.final_loss is not None]),
             "replicas": {rep.name: {"step_end": t.step_end, "tokens_total": t.tokens_total,
                                     "final_loss": t.final_loss}
                          for rep in r.replicas for t in rep.phases if t.name == s.name}}
            for s in first.phases]
    return out


def _mean_metrics(evals: list[dict]) -> dict[str, dict[str, float | None]]:
    """task -> metric -> mean over the replicas that report it."""
    out: dict[str, dict[str, float | None]] = {}
    for task in sorted({t for ev in evals for t in ev}):
        names = sorted({m for ev in evals for m in (ev.get(task) or {})})
        out[task] = {m: _mean([v for ev in evals
                               if (v := finite((ev.get(task) or {}).get(m))) is not None])
                     for m in names}
    return out


def evaluation_records(runs: list[ExperimentRun]) -> dict[str, dict[str, dict]]:
    """experiment -> checkpoint -> tokens_seen, tasks and random_baseline (means over
    replicas), and each replica's own record under `replicas` (summary.json)."""
    out: dict[str, dict[str, dict]] = {}
    for r in runs:
        by_cp: dict[str, dict[str, Any]] = {}
        for rep in r.replicas:
            for cp in rep.checkpoints:
                by_cp.setdefault(cp.name, {})[rep.name] = cp
        out[r.name] = {}
        for name, reps in by_cp.items():
            tokens = [cp.tokens_seen for cp in reps.values() if cp.tokens_seen is not None]
            out[r.name][name] = {
                "tokens_seen": min(tokens) if tokens else None,
                "tasks": _mean_metrics([dict(cp.tasks) for cp in reps.values()]),
                "random_baseline": _mean_metrics([dict(cp.random_baseline)
                                                  for cp in reps.values()]),
                "replicas": {rn: {"tokens_seen": cp.tokens_seen, "tasks": cp.tasks,
                                  "random_baseline": cp.random_baseline,
                                  "failed_tasks": cp.metrics.get("failed_tasks") or {}}
                             for rn, cp in sorted(reps.items())}}
    return out


def summary_record(name: str, baseline: str, col: Collected, cmp: Comparison,
                   table: Any, deltas: Any) -> dict:
    """Everything summary.json holds."""
    st = cmp.settings
    return {
        "report": name,
        "baseline": baseline,
        "baseline_compared": col.baseline is not None,
        "experiments": [r.name for r in col.runs],
        "replicas": {r.name: [rep.name for rep in r.evaluated] for r in col.runs},
        "metrics": [{"column": c.key, "task": c.task, "metric": c.metric,
                     "better": c.direction, "primary": cmp.primary.get(c.task) == c.metric}
                    for c in cmp.columns]
                   + [{"column": AGGREGATE, "task": AGGREGATE, "metric": AGGREGATE,
                       "better": "higher", "primary": False},
                      {"column": "final_train_loss", "task": None, "metric": "loss",
                       "better": "lower", "primary": False}],
        "aggregate": {"tasks": cmp.aggregate_tasks,
                      "metrics": {t: cmp.primary[t] for t in cmp.aggregate_tasks},
                      "definition": "mean over tasks of the primary metric normalised above "
                                    "chance"},
        "bootstrap": {"iterations": st.iterations, "confidence": st.confidence,
                      "seed": st.seed, "used": cmp.bootstrapped,
                      "interval": "percentile; items resampled (shared by both models) and "
                                  "each model's replicas resampled independently",
                      "fallback": NORMAL, "method": BOOTSTRAP},
        "claims": {"method": f"both sides have at least {METHOD_REPLICAS} evaluated "
                             "replicas; the interval includes seed (and data-subset) variance",
                   "checkpoint": f"a side has fewer than {METHOD_REPLICAS} evaluated replicas; "
                                 "the verdict holds for these trained checkpoints only, not "
                                 "for the method",
                   "min_replicas_for_method": METHOD_REPLICAS},
        "seed_spread": "pooled standard deviation of the per-replica values of the experiment "
                       "and the baseline, each about its own mean: sqrt(sum of squared "
                       "deviations / sum of (replicas - 1)); null when neither side has 2 "
                       "replicas. within_seed_noise: |delta| < seed_spread",
        "signal": {key: {"signal": sig.signal, "noise": sig.noise, "snr": sig.snr,
                         "scores": sig.scores, "no_signal": sig.flat}
                   for key, sig in cmp.signals.items()},
        "signal_definition": "signal: max - min of the experiments' values; noise: pooled "
                             "seed spread of every experiment's replicas; snr = signal / "
                             "noise (after Heineman et al. 2025, Signal and Noise); "
                             f"no_signal ('{NO_SIGNAL}'): every replica of every experiment "
                             "scored the same value, so a delta of 0 with a [0, 0] interval "
                             "is not a result",
        "above_random": {"higher_is_better": "(score - random) / (1 - random)",
                         "bits_per_byte": "(random - score) / random"},
        "rows": [{k: (finite(v) if isinstance(v, float) else v) for k, v in row.items()}
                 for row in table.to_dicts()],
        "deltas": [{k: (finite(v) if isinstance(v, float) else v) for k, v in row.items()}
                   for row in deltas.to_dicts()],
        "problems": dumps_problems(col.problems),
        "stages": phase_records(col.runs),
        "evaluations": evaluation_records(col.runs),
        "data": data.summary(col.runs),
    }


HEADLINE_FIELDS = ("replicas", "tokens", "final_train_loss")
"""The per-experiment cells of the Results table a headline record keeps, before its scores."""


def headline_records(table: Any, cmp: Comparison) -> dict[str, dict[str, Any]]:
    """Per experiment, the numbers of the report's Results table (its first): replicas,
    tokens, final train loss, then per task `{metric: mean, metric_stderr: its standard
    error}` and the aggregate with its standard error; missing numbers left out. The
    report stage writes one per experiment as a DVC metrics file (`headline:<experiment>`),
    so `dvc metrics show` and `dvc exp show` list a dozen headline columns rather than every
    number of every stage (issue 22); the deltas and intervals stay in summary.json."""
    records: dict[str, dict[str, Any]] = {}
    for row in table.to_dicts():
        rec: dict[str, Any] = {}
        for name in HEADLINE_FIELDS:
            value = row[name]
            value = finite(value) if isinstance(value, float) else value
            if value is not None:
                rec[name] = value
        for col in cmp.columns:
            cells = {col.metric: finite(row[col.key]),
                     col.metric + STDERR: finite(row[col.key + STDERR])}
            cells = {k: v for k, v in cells.items() if v is not None}
            if cells:
                rec.setdefault(col.task, {}).update(cells)
        for key in (AGGREGATE, AGGREGATE + STDERR):
            if (value := finite(row[key])) is not None:
                rec[key] = value
        records[row["experiment"]] = rec
    return records
