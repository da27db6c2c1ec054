"""The comparison table: one row per experiment, built with polars.

Columns (every number is kept at full precision; rendering rounds):
  experiment, is_baseline, final_stage, step_end, tokens (cumulative), final_train_loss,
  final_train_loss_delta, then per `<task>.<metric>` of the final checkpoint's evaluation:
  value, `_stderr`, `_delta` (vs baseline), `_within_noise_2se`, `_random`, `_above_random`.

The noise flag is an approximate, unpaired two-sigma check, |delta| < 2*sqrt(se_a^2 + se_b^2),
from lm-eval's per-task standard errors. It ignores that both models answer the same items
(a paired bootstrap over per-sample results is the sound test and is not done here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from repro.report import data
from repro.report.collect import ExperimentRun, finite

Direction = Literal["lower", "higher"]

# Which way is better. Metrics not listed get no direction and the report says so.
LOWER_IS_BETTER = frozenset({"bits_per_byte", "byte_perplexity", "word_perplexity",
                             "perplexity", "loss"})
HIGHER_IS_BETTER = frozenset({"acc", "acc_norm", "exact_match", "f1", "mcc"})
# Perplexities are monotone transforms of bits_per_byte; they stay in summary.json only.
TABLE_SKIP = frozenset({"byte_perplexity", "word_perplexity"})
# Display order of metrics within a task; others follow alphabetically.
METRIC_ORDER = ("bits_per_byte", "acc", "acc_norm")
STDERR = "_stderr"
NOISE_SIGMAS = 2.0


def direction(metric: str) -> Direction | None:
    if metric in LOWER_IS_BETTER:
        return "lower"
    if metric in HIGHER_IS_BETTER:
        return "higher"
    return None


@dataclass(frozen=True)
class MetricColumn:
    """One task metric compared across experiments."""

    task: str
    metric: str
    has_stderr: bool
    has_random: bool
    """A random (chance) baseline is known, so `above_random` is computed."""

    @property
    def key(self) -> str:
        return f"{self.task}.{self.metric}"

    @property
    def direction(self) -> Direction | None:
        return direction(self.metric)


def metric_columns(runs: list[ExperimentRun]) -> list[MetricColumn]:
    """Union of the final evaluations' task metrics, by task then METRIC_ORDER."""
    found: dict[tuple[str, str], list[bool]] = {}
    for run in runs:
        ev = run.final_eval
        for task, metrics in sorted((ev.get("tasks") or {}).items()):
            rnd = (ev.get("random_baseline") or {}).get(task) or {}
            for metric, value in metrics.items():
                if metric.endswith(STDERR) or metric in TABLE_SKIP:
                    continue
                flags = found.setdefault((task, metric), [False, False])
                flags[0] |= finite(metrics.get(metric + STDERR)) is not None
                # Normalising against chance only makes sense for bounded higher-is-better scores.
                flags[1] |= direction(metric) == "higher" and finite(rnd.get(metric)) is not None

    def order(item: tuple[str, str]) -> tuple:
        task, metric = item
        rank = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
        return task, rank, metric

    return [MetricColumn(t, m, *found[(t, m)]) for t, m in sorted(found, key=order)]


def _base_rows(runs: list[ExperimentRun], baseline: str, cols: list[MetricColumn]) -> list[dict]:
    rows = []
    for run in runs:
        ev = run.final_eval
        row: dict[str, Any] = {
            "experiment": run.name, "is_baseline": run.name == baseline,
            "final_stage": run.final.name, "step_end": run.final.step_end,
            "tokens": run.final.tokens_total, "final_train_loss": finite(run.final.final_loss),
        }
        for c in cols:
            metrics = (ev.get("tasks") or {}).get(c.task) or {}
            row[c.key] = finite(metrics.get(c.metric))
            row[c.key + STDERR] = finite(metrics.get(c.metric + STDERR))
            rnd = ((ev.get("random_baseline") or {}).get(c.task) or {}).get(c.metric)
            row[c.key + "_random"] = finite(rnd)
        rows.append(row)
    return rows


def column_order(cols: list[MetricColumn]) -> list[str]:
    out = ["experiment", "is_baseline", "final_stage", "step_end", "tokens",
           "final_train_loss", "final_train_loss_delta"]
    for c in cols:
        out.append(c.key)
        if c.has_stderr:
            out.append(c.key + STDERR)
        out.append(c.key + "_delta")
        if c.has_stderr:
            out.append(c.key + "_within_noise_2se")
        if c.has_random:
            out += [c.key + "_random", c.key + "_above_random"]
    return out


def summary_table(runs: list[ExperimentRun], baseline: str,
                  cols: list[MetricColumn] | None = None) -> Any:
    """polars DataFrame, one row per experiment in `runs` order (see module docstring)."""
    import polars as pl

    cols = metric_columns(runs) if cols is None else cols
    schema: dict[str, Any] = {"experiment": pl.String, "is_baseline": pl.Boolean,
                              "final_stage": pl.String, "step_end": pl.Int64,
                              "tokens": pl.Int64, "final_train_loss": pl.Float64}
    for c in cols:
        for suffix in ("", STDERR, "_random"):
            schema[c.key + suffix] = pl.Float64
    df = pl.DataFrame(_base_rows(runs, baseline, cols), schema=schema)
    base = df.row(by_predicate=pl.col("experiment") == baseline, named=True)

    def lit(v: float | None) -> pl.Expr:
        return pl.lit(v, dtype=pl.Float64)

    is_base = pl.col("is_baseline")
    exprs = [(pl.col("final_train_loss") - lit(base["final_train_loss"]))
             .alias("final_train_loss_delta")]
    for c in cols:
        delta = pl.col(c.key) - lit(base[c.key])
        exprs.append(delta.alias(c.key + "_delta"))
        if c.has_stderr:
            sigma = (pl.col(c.key + STDERR) ** 2 + lit(base[c.key + STDERR]) ** 2).sqrt()
            # Identical scores are within noise even when both stderrs are 0.
            within = (delta.abs() < NOISE_SIGMAS * sigma) | (delta == 0)
            exprs.append(pl.when(is_base).then(None).otherwise(within)
                         .alias(c.key + "_within_noise_2se"))
        if c.has_random:
            r = pl.col(c.key + "_random")
            exprs.append(pl.when(r < 1).then((pl.col(c.key) - r) / (1 - r))
                         .alias(c.key + "_above_random"))
    return df.with_columns(exprs).select(column_order(cols))


def stage_records(runs: list[ExperimentRun]) -> dict[str, list[dict]]:
    """Per experiment, its training stages in order (for summary.json)."""
    return {r.name: [{"stage": s.name, "step_end": s.step_end, "tokens": s.tokens,
                      "tokens_total": s.tokens_total, "final_loss": s.final_loss}
                     for s in r.stages] for r in runs}


def summary_record(name: str, baseline: str, runs: list[ExperimentRun],
                   cols: list[MetricColumn], table: Any) -> dict:
    """Everything summary.json holds: the table rows, directions, stages, all evaluations."""
    return {
        "report": name,
        "baseline": baseline,
        "experiments": [r.name for r in runs],
        "metrics": [{"column": c.key, "task": c.task, "metric": c.metric,
                     "better": c.direction} for c in cols]
                   + [{"column": "final_train_loss", "task": None, "metric": "loss",
                       "better": "lower"}],
        "noise_check": (f"within_noise_2se: |delta| < {NOISE_SIGMAS:g}*sqrt(se^2 + se_baseline^2); "
                        "approximate, unpaired (not a paired bootstrap)"),
        "above_random": "(score - random_baseline) / (1 - random_baseline)",
        "rows": [{k: (finite(v) if isinstance(v, float) else v) for k, v in row.items()}
                 for row in table.to_dicts()],
        "stages": stage_records(runs),
        "evaluations": {r.name: {s: {"tokens_seen": ev.get("tokens_seen"),
                                     "tasks": ev.get("tasks") or {},
                                     "random_baseline": ev.get("random_baseline") or {}}
                                 for s, ev in r.evals.items()} for r in runs},
        "data": data.summary(runs),
    }
