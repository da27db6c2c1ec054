"""The numbers of the comparison: per experiment and task metric the value (mean over
replicas), its standard error, the score normalised above chance, the aggregate over the
chosen tasks, and each experiment's difference from the baseline with a confidence interval.

Intervals come from the paired bootstrap (repro.report.stats) when the final checkpoints'
per-item samples are wired (`results:` inputs); otherwise, or for a metric the samples do
not carry, from a normal approximation on lm-eval's standard errors, which ignores the
pairing, and the report says so per row (`method`).

What a difference may claim depends on the replicas behind it (`Delta.claim`). With at least
METHOD_REPLICAS evaluated replicas on both sides the interval resamples replicas as well as
items, so it carries the seed (and data-subset) variance and the verdict speaks for the
method. With fewer it resamples items only: it is about these trained checkpoints, and a
perturbation as small as another CPU kind's float rounding can flip it. Next to each
difference stands the noise floor the replicas measured (`Delta.seed_spread`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from typing import Literal, Mapping, Sequence

import numpy as np

from repro.report import samples as smp
from repro.report.collect import Collected, ExperimentRun, Problem, finite
from repro.report.stats import (ItemScores, bootstrap_stderr, draw_values, paired_draws,
                                percentile_interval, replica_picks, rng_for, task_counts)

Direction = Literal["lower", "higher"]
Claim = Literal["method", "checkpoint"]
METHOD_REPLICAS = 2
"""Evaluated replicas each side needs before a difference is a claim about the method."""

LOWER_IS_BETTER = frozenset({"bits_per_byte", "byte_perplexity", "word_perplexity",
                             "perplexity", "loss"})
HIGHER_IS_BETTER = frozenset({"acc", "acc_norm", "exact_match", "f1", "mcc"})
TABLE_SKIP = frozenset({"byte_perplexity", "word_perplexity"})
"""Monotone transforms of bits_per_byte; they stay in summary.json's evaluations only."""
METRIC_ORDER = ("bits_per_byte", "acc", "acc_norm")
PRIMARY_ORDER = ("bits_per_byte", "acc_norm", "acc")
"""A task's primary metric (normalised and aggregated): the first of these it reports."""
STDERR = "_stderr"
AGGREGATE = "aggregate"

BOOTSTRAP = "paired bootstrap"
NORMAL = "normal approximation (lm-eval stderr, unpaired)"


def direction(metric: str) -> Direction | None:
    if metric in LOWER_IS_BETTER:
        return "lower"
    if metric in HIGHER_IS_BETTER:
        return "higher"
    return None


def normalise(score, chance, metric: str):
    """Score above chance: 0 = chance, 1 = perfect (works on floats and numpy arrays).
    Higher-is-better scores in [0, 1]: (s − r)/(1 − r). bits_per_byte, perfect at 0 and r for
    a uniform distribution over the vocabulary: (r − s)/r."""
    if metric == "bits_per_byte":
        return (chance - score) / chance
    return (score - chance) / (1.0 - chance)


def _can_normalise(metric: str, chance: float | None) -> bool:
    if chance is None:
        return False
    if metric == "bits_per_byte":
        return chance > 0
    return direction(metric) == "higher" and chance < 1


@dataclass(frozen=True)
class Column:
    """One task metric compared across experiments."""

    task: str
    metric: str

    @property
    def key(self) -> str:
        return f"{self.task}.{self.metric}"

    @property
    def direction(self) -> Direction | None:
        return direction(self.metric)


@dataclass(frozen=True)
class Settings:
    iterations: int = 10_000
    confidence: float = 0.95
    seed: int = 0
    aggregate_tasks: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Score:
    """An experiment's value of one column (or of the aggregate)."""

    value: float | None
    stderr: float | None
    stderr_method: str | None
    stderr_lm_eval: float | None
    """lm-eval's stderr (mean over replicas), for comparison with the bootstrap's."""
    replicas: int
    random: float | None
    normalised: float | None
    per_replica: tuple[tuple[str, float], ...]
    """(replica, its own value) for each replica behind `value`, in evaluation order; for
    the aggregate, each replica's mean normalised score where it has every aggregate task."""


@dataclass(frozen=True)
class Delta:
    """experiment − baseline for one column (or the aggregate)."""

    delta: float | None
    low: float | None
    high: float | None
    significant: bool | None
    method: str | None
    items: int | None
    """Paired items the bootstrap used (None without samples)."""
    claim: Claim | None = None
    """"method" when both sides have METHOD_REPLICAS or more replicas, else "checkpoint": the
    verdict then holds for these trained checkpoints only (None without a difference)."""
    seed_spread: float | None = None
    """The noise floor the replicas measured (see `seed_spread`); None with fewer than 2
    replicas on both sides."""

    @property
    def within_seed_noise(self) -> bool | None:
        """|delta| is smaller than the seed spread: one retraining moves a score that much."""
        if self.delta is None or self.seed_spread is None:
            return None
        return abs(self.delta) < self.seed_spread


def claim(replicas: int, baseline_replicas: int) -> Claim:
    return "method" if min(replicas, baseline_replicas) >= METHOD_REPLICAS else "checkpoint"


def seed_spread(*sides: Sequence[float]) -> float | None:
    """Pooled standard deviation of the per-replica values, each side about its own mean:
    √(Σ_sides Σ_i (x_i − mean_side)² / Σ_sides (n_side − 1)); None when no side has 2 values.

    Why this measure: it estimates σ_seed, how far retraining with another seed (and data
    subset) moves one run's score. Both sides are trained alike, so they share it and pooling
    uses every replica; a side with one replica adds no degrees of freedom but does not void
    the other side's. The largest between-replica difference (the range) would grow with the
    number of replicas, so it would not compare across reports. Runs of one replica on two
    CPU classes, where they exist, fit as one more side: their spread is the float-rounding
    floor under the seed noise."""
    groups = [np.asarray(s, dtype=np.float64) for s in sides if len(s) > 1]
    dof = sum(len(g) - 1 for g in groups)
    if dof == 0:
        return None
    return float(np.sqrt(sum(float(np.sum(np.square(g - g.mean()))) for g in groups) / dof))


def with_noise(d: Delta, a: Sequence[float], b: Sequence[float]) -> Delta:
    """`d` with its claim (from the numbers of values a and b behind it) and seed spread."""
    if d.delta is None:
        return d
    return replace(d, claim=claim(len(a), len(b)), seed_spread=seed_spread(a, b))


def values(s: Score) -> list[float]:
    return [v for _, v in s.per_replica]


NO_SIGNAL = "no signal at this scale"


@dataclass(frozen=True)
class Signal:
    """How much one task metric separates the report's experiments, against its noise, in
    the spirit of Signal and Noise (Heineman et al. 2025, "Signal and Noise: A Framework for
    Reducing Uncertainty in Language Model Evaluation"): a benchmark is useful for a
    decision when the spread between models (signal) is large against the spread of one
    model's score across seeds (noise). Here signal is the range of the experiments' values
    (means over replicas) and noise the pooled seed spread of every experiment's replicas
    (seed_spread)."""

    signal: float | None
    """max − min of the experiments' values (None with fewer than 2 experiments scored)."""
    noise: float | None
    """Pooled seed spread over all experiments (None without 2 replicas anywhere)."""
    scores: int
    """Per-replica values behind both, over all experiments."""
    flat: bool
    """Every replica of every experiment scored the same value (at least 2 values): the
    task does not tell these models apart at this scale, and a difference of 0 with an
    interval of [0, 0] is not a result (issue 22: a cloze task answered by length gave
    exactly 0.37 for all 9 models)."""

    @property
    def snr(self) -> float | None:
        """signal / noise; None where either is missing or the noise is 0."""
        if self.signal is None or not self.noise:
            return None
        return self.signal / self.noise


def signal(scores: Sequence[Score]) -> Signal:
    """The Signal of one column from every experiment's Score of it."""
    means = [s.value for s in scores if s.value is not None]
    per_replica = [values(s) for s in scores]
    everything = [v for vs in per_replica for v in vs]
    flat = len(everything) > 1 and max(everything) - min(everything) <= 1e-12 * max(
        1.0, max(abs(v) for v in everything))
    return Signal(max(means) - min(means) if len(means) > 1 else None,
                  seed_spread(*per_replica), len(everything), flat)


@dataclass(frozen=True)
class Comparison:
    columns: list[Column]
    primary: dict[str, str]
    """task -> its primary metric."""
    aggregate_tasks: list[str]
    scores: dict[str, dict[str, Score]]
    """experiment -> column key (or AGGREGATE) -> score."""
    deltas: dict[str, dict[str, Delta]]
    """non-baseline experiment -> column key (or AGGREGATE) -> delta; empty without baseline."""
    settings: Settings
    bootstrapped: bool
    """Whether any interval comes from the bootstrap."""
    signals: dict[str, Signal] = field(default_factory=dict)
    """column key (or AGGREGATE) -> its signal and noise across the report's experiments."""

    def no_signal(self, key: str) -> bool:
        """Whether the column's scores do not move at all across experiments and replicas."""
        sig = self.signals.get(key)
        return sig is not None and sig.flat


def columns(runs: list[ExperimentRun]) -> list[Column]:
    """Union of the final evaluations' task metrics, by task then METRIC_ORDER."""
    found: set[tuple[str, str]] = set()
    for run in runs:
        for rep in run.evaluated:
            for task, metrics in rep.final.tasks.items():  # type: ignore[union-attr]
                found |= {(task, m) for m in metrics
                          if not m.endswith(STDERR) and m not in TABLE_SKIP}

    def order(item: tuple[str, str]) -> tuple:
        task, metric = item
        rank = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
        return task, rank, metric

    return [Column(t, m) for t, m in sorted(found, key=order)]


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def _items(run: ExperimentRun, problems: list[Problem],
           cache: dict[str, dict[str, dict[str, dict[str, smp.MetricItems]]]]
           ) -> dict[str, dict[str, dict[str, smp.MetricItems]]]:
    """replica -> task -> metric -> items, for replicas with a results folder."""
    if run.name not in cache:
        out = {}
        for rep in run.evaluated:
            if rep.results is None:
                continue
            items, why = smp.read_items(rep.results)
            problems += [Problem(run.name, f"replica {rep.name} samples: {w}") for w in why]
            out[rep.name] = items
        cache[run.name] = out
    return cache[run.name]


def _replica_items(items: Mapping[str, Mapping[str, Mapping[str, smp.MetricItems]]],
                   run: ExperimentRun, col: Column) -> list[smp.MetricItems] | None:
    """Items of every evaluated replica, or None if any replica lacks them."""
    parts = [items.get(r.name, {}).get(col.task, {}).get(col.metric) for r in run.evaluated
             if finite(r.final.tasks.get(col.task, {}).get(col.metric)) is not None]  # type: ignore[union-attr]
    return None if not parts or any(p is None for p in parts) else parts  # type: ignore[return-value]


def _score(run: ExperimentRun, col: Column, parts: list[smp.MetricItems] | None,
           st: Settings, problems: list[Problem]) -> Score:
    vals, ses, rnds, names = [], [], [], []
    for rep in run.evaluated:
        m = rep.final.tasks.get(col.task) or {}  # type: ignore[union-attr]
        v = finite(m.get(col.metric))
        if v is None:
            continue
        vals.append(v)
        names.append(rep.name)
        if (se := finite(m.get(col.metric + STDERR))) is not None:
            ses.append(se)
        r = finite((rep.final.random_baseline.get(col.task) or {}).get(col.metric))  # type: ignore[union-attr]
        if r is not None:
            rnds.append(r)
    value, chance = _mean(vals), _mean(rnds)
    lm_se = _mean(ses) if ses and len(ses) == len(vals) else None
    se, how = None, None
    if parts is not None:
        ids = smp.common_ids(parts)
        if max(len(p.doc_ids) for p in parts) > len(ids):
            problems.append(Problem(run.name, f"{col.key}: replicas were scored on different "
                                              f"items; {len(ids)} shared"))
        if len(ids) > 1:
            se = bootstrap_stderr(smp.stack(parts, ids), st.iterations, st.seed, col.task,
                                  run.name)
            how = "bootstrap over items" + (" and replicas" if len(parts) > 1 else "")
    if se is None and lm_se is not None:
        # Without samples: the item noise (replicas answer the same items, so it does not
        # average out across them) plus the spread of the replicas' mean.
        between = statistics.variance(vals) / len(vals) if len(vals) > 1 else 0.0
        se = float(np.sqrt(np.mean(np.square(ses)) + between))
        how = "lm-eval" + (" + replica spread" if len(vals) > 1 else "")
    norm = (float(normalise(value, chance, col.metric))
            if value is not None and _can_normalise(col.metric, chance) else None)
    return Score(value, se, how, lm_se, len(vals), chance, norm, tuple(zip(names, vals)))


def _normal_delta(a: Score, b: Score, z: float) -> Delta:
    if a.value is None or b.value is None:
        return Delta(None, None, None, None, None, None)
    d = a.value - b.value
    if a.stderr is None or b.stderr is None:
        return Delta(d, None, None, None, None, None)
    half = z * float(np.hypot(a.stderr, b.stderr))
    return Delta(d, d - half, d + half, d - half > 0 or d + half < 0, NORMAL, None)


Parts = dict[str, dict[str, "list[smp.MetricItems] | None"]]
"""experiment -> column key -> per-item data of every evaluated replica (None: not all)."""


def _paired_scores(name: str, baseline: str, key: str, parts: Parts,
                   problems: list[Problem]) -> tuple[ItemScores, ItemScores] | None:
    """Both sides of a comparison on the items every replica of both answered."""
    pa, pb = parts[name].get(key), parts[baseline].get(key)
    if pa is None or pb is None:
        return None
    ids = smp.common_ids(pa + pb)
    if len(ids) < 2:
        problems.append(Problem(name, f"{key}: fewer than 2 items shared with the baseline; "
                                      f"no paired bootstrap"))
        return None
    if len(ids) < max(len(p.doc_ids) for p in pa + pb):
        problems.append(Problem(name, f"{key}: scored on other items than the baseline; "
                                      f"compared on the {len(ids)} shared items"))
    return smp.stack(pa, ids), smp.stack(pb, ids)


def _delta(name: str, baseline: str, c: Column, scores: dict[str, dict[str, Score]],
           parts: Parts, st: Settings, z: float, problems: list[Problem]) -> Delta:
    pair = _paired_scores(name, baseline, c.key, parts, problems)
    if pair is None:
        return _normal_delta(scores[name][c.key], scores[baseline][c.key], z)
    a, b = pair
    da, db = paired_draws(a, b, st.iterations, st.seed, c.task, name, baseline)
    iv = percentile_interval(a.value() - b.value(), da - db, st.confidence)
    return Delta(iv.delta, iv.low, iv.high, iv.significant, BOOTSTRAP, a.items)


def _aggregate_tasks(st: Settings, primary: dict[str, str], scores: dict[str, dict[str, Score]],
                     problems: list[Problem]) -> list[str]:
    """The configured tasks, or every task whose primary metric has a chance level; tasks
    that cannot be normalised are left out and named in problems."""
    wanted = list(st.aggregate_tasks) if st.aggregate_tasks is not None else sorted(primary)
    out = []
    for t in wanted:
        if t not in primary:
            problems.append(Problem(None, f"aggregate: task {t} has no acc, acc_norm or "
                                          f"bits_per_byte score in any experiment; left out"))
            continue
        key = f"{t}.{primary[t]}"
        if not any(s[key].normalised is not None for s in scores.values() if key in s):
            problems.append(Problem(None, f"aggregate: task {t} has no random baseline for "
                                          f"{primary[t]}, so it cannot be normalised; left out"))
            continue
        out.append(t)
    return out


def _model_draws(name: str, scores: ItemScores, task: str, st: Settings) -> np.ndarray:
    counts = task_counts(st.seed, task, scores.items, st.iterations)
    return draw_values(scores, counts, replica_picks(rng_for(st.seed, name), scores.replicas,
                                                     st.iterations))


def _aggregate_score(name: str, tasks: list[str], primary: dict[str, str],
                     scores: dict[str, dict[str, Score]], parts: Parts, st: Settings,
                     problems: list[Problem]) -> Score:
    """Mean normalised primary score over the aggregate tasks; its stderr from one joint
    bootstrap (same draws for every task) when samples exist."""
    keys = [f"{t}.{primary[t]}" for t in tasks]
    mine = [scores[name].get(k) for k in keys]
    missing = [k for k, s in zip(keys, mine) if s is None or s.normalised is None]
    if not tasks or missing:
        if tasks:
            problems.append(Problem(name, f"no aggregate score: no normalised {missing}"))
        return Score(None, None, None, None, 0, None, None, ())
    ss = [s for s in mine if s is not None]
    value = float(np.mean([s.normalised for s in ss]))
    se, how = None, None
    own = [parts[name].get(k) for k in keys]
    if all(p is not None and len(smp.common_ids(p)) > 1 for p in own):
        draws = [normalise(_model_draws(name, smp.stack(p, smp.common_ids(p)), t, st),
                           s.random, primary[t])
                 for t, p, s in zip(tasks, own, ss) if p is not None]
        se, how = float(np.mean(draws, axis=0).std(ddof=1)), "bootstrap, tasks jointly"
    elif all(s.stderr is not None for s in ss):
        # Tasks independent; normalising scales a stderr by 1/|1 − r| (or 1/r for bpb).
        scaled = [s.stderr * abs(normalise(1.0, s.random, primary[t])
                                 - normalise(0.0, s.random, primary[t]))
                  for t, s in zip(tasks, ss)]
        se, how = float(np.sqrt(np.sum(np.square(scaled))) / len(scaled)), "lm-eval, tasks independent"
    own_values = [dict(s.per_replica) for s in ss]
    per_replica = tuple(
        (r, float(np.mean([normalise(v[r], s.random, primary[t])
                           for t, s, v in zip(tasks, ss, own_values)])))
        for r, _ in ss[0].per_replica if all(r in v for v in own_values))
    return Score(value, se, how, None, min(s.replicas for s in ss), None, value, per_replica)


def _aggregate_delta(name: str, baseline: str, tasks: list[str], primary: dict[str, str],
                     scores: dict[str, dict[str, Score]], parts: Parts, st: Settings,
                     z: float, problems: list[Problem]) -> Delta:
    a, b = scores[name][AGGREGATE], scores[baseline][AGGREGATE]
    if a.value is None or b.value is None:
        return Delta(None, None, None, None, None, None)
    pairs = [_paired_scores(name, baseline, f"{t}.{primary[t]}", parts, []) for t in tasks]
    if any(p is None for p in pairs):
        return _normal_delta(a, b, z)
    point, draws = [], []
    for t, pair in zip(tasks, pairs):
        pa, pb = pair  # type: ignore[misc]
        ra, rb = scores[name][f"{t}.{primary[t]}"].random, scores[baseline][f"{t}.{primary[t]}"].random
        da, db = paired_draws(pa, pb, st.iterations, st.seed, t, name, baseline)
        # Each model is normalised by its own chance level (bpb chance depends on the tokenizer).
        draws.append(normalise(da, ra, primary[t]) - normalise(db, rb, primary[t]))
        point.append(normalise(pa.value(), ra, primary[t]) - normalise(pb.value(), rb, primary[t]))
    iv = percentile_interval(float(np.mean(point)), np.mean(draws, axis=0), st.confidence)
    return Delta(iv.delta, iv.low, iv.high, iv.significant, BOOTSTRAP, None)


def compare(col: Collected, settings: Settings) -> Comparison:
    """All scores and deltas of a report; appends what it cannot compute to col.problems."""
    runs, problems, baseline = col.runs, col.problems, col.baseline
    cols = columns(runs)
    cache: dict = {}
    scores: dict[str, dict[str, Score]] = {r.name: {} for r in runs}
    parts: Parts = {r.name: {} for r in runs}
    for c in cols:
        for run in runs:
            parts[run.name][c.key] = _replica_items(_items(run, problems, cache), run, c)
            scores[run.name][c.key] = _score(run, c, parts[run.name][c.key], settings, problems)
    tasks = sorted({c.task for c in cols})
    metrics_of = {t: {c.metric for c in cols if c.task == t} for t in tasks}
    primary = {t: next(m for m in PRIMARY_ORDER if m in metrics_of[t]) for t in tasks
               if metrics_of[t] & set(PRIMARY_ORDER)}
    agg_tasks = _aggregate_tasks(settings, primary, scores, problems)
    for run in runs:
        scores[run.name][AGGREGATE] = _aggregate_score(run.name, agg_tasks, primary, scores,
                                                       parts, settings, problems)
    z = statistics.NormalDist().inv_cdf(0.5 + settings.confidence / 2)
    deltas: dict[str, dict[str, Delta]] = {}
    if baseline is not None:
        for run in runs:
            if run.name == baseline:
                continue
            d = {c.key: _delta(run.name, baseline, c, scores, parts, settings, z, problems)
                 for c in cols}
            d[AGGREGATE] = _aggregate_delta(run.name, baseline, agg_tasks, primary, scores,
                                            parts, settings, z, problems)
            deltas[run.name] = {k: with_noise(v, values(scores[run.name][k]),
                                              values(scores[baseline][k]))
                                for k, v in d.items()}
    evaluated = [r for run in runs for r in run.evaluated]
    if evaluated and not any(r.results for r in evaluated):
        problems.append(Problem(None, "no per-item samples (results: inputs) were given, so "
                                      "there is no paired bootstrap: standard errors are "
                                      "lm-eval's and intervals a normal approximation that "
                                      "ignores the pairing"))
    else:
        for run in runs:
            lacking = [r.name for r in run.evaluated if r.results is None]
            if lacking:
                problems.append(Problem(run.name, f"replica(s) {lacking} have no per-item "
                                                  f"samples; their metrics use lm-eval's "
                                                  f"stderr and no paired bootstrap"))
    boot = any(d.method == BOOTSTRAP for ds in deltas.values() for d in ds.values())
    signals = {key: signal([scores[r.name][key] for r in runs])
               for key in [c.key for c in cols] + [AGGREGATE]}
    return Comparison(cols, primary, agg_tasks, scores, deltas, settings, boot, signals)
