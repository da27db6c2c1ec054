"""A ladder's analysis and report: the L(N, D) fit (Chinchilla approach 3, FACTS 9.1) with
bootstrap intervals, compute-optimal N and D, predicted losses of reference specs, and the
decision accuracy of its data recipes (DataDecide, FACTS 9.2). Pure: numbers in, text and
PNG bytes out (repro.stages.fit does the I/O)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from repro.scaling import plots
from repro.scaling.decision import DecisionRecord, DecisionResult, SizeDecision, decision_accuracy
from repro.scaling.fit import BootstrapResult, FitResult, Interval, LossPoint, bootstrap_intervals, fit_scaling_law
from repro.scaling.law import CHINCHILLA, EPOCH_REFIT, ScalingLaw
from repro.stages.configs import FitConfig

PRIMARY_METRICS = ("bits_per_byte", "acc_norm", "acc")
"""Per task, the metric decision accuracy ranks recipes by: bits per byte for language
modelling tasks (continuous, DataDecide's most predictable kind, FACTS 9.2), else normalised
accuracy, else accuracy."""
LOWER_IS_BETTER = frozenset({"bits_per_byte"})


@dataclass(frozen=True)
class Optimum:
    compute: float
    n: float
    d: float
    n_interval: Interval | None
    d_interval: Interval | None


@dataclass(frozen=True)
class Prediction:
    name: str
    n: float
    d: float
    loss: float
    interval: Interval | None
    n_factor: float
    """N over the largest fitted N: how far the prediction extrapolates."""
    d_factor: float


@dataclass(frozen=True)
class LadderResult:
    cfg: FitConfig
    points: tuple[LossPoint, ...]
    fit: FitResult
    bootstrap: BootstrapResult | None
    optima: tuple[Optimum, ...]
    predictions: tuple[Prediction, ...]
    decision: DecisionResult | None
    recipe_scores: tuple[tuple[str, str, float, str, str, float], ...]
    """(recipe, size, N, task, metric, score) of every recipe run."""

    @property
    def law(self) -> ScalingLaw:
        return self.fit.law

    def interval(self, key: str) -> Interval | None:
        return None if self.bootstrap is None else self.bootstrap.intervals.get(key)

    def record(self) -> dict[str, Any]:
        return {
            "ladder": self.cfg.name,
            "form": "L(N, D) = E + A / N^alpha + B / D^beta",
            "parameters": self.cfg.parameters,
            "loss": {"task": self.cfg.loss_task, "metric": self.cfg.loss_metric},
            "huber_delta": self.cfg.huber_delta,
            "fit": self.fit.as_dict(),
            "bootstrap": None if self.bootstrap is None else self.bootstrap.as_dict(),
            "compute_optimal": [
                {"compute": o.compute, "n": o.n, "d": o.d, "tokens_per_param": o.d / o.n,
                 "n_interval": _iv(o.n_interval), "d_interval": _iv(o.d_interval)}
                for o in self.optima],
            "predictions": [
                {"spec": p.name, "n": p.n, "d": p.d, "loss": p.loss, "interval": _iv(p.interval),
                 "n_extrapolation": p.n_factor, "d_extrapolation": p.d_factor}
                for p in self.predictions],
            "decision_accuracy": None if self.decision is None else self.decision.as_dict(),
            "recipe_scores": [dict(zip(("recipe", "size", "n", "task", "metric", "score"), row))
                              for row in self.recipe_scores],
        }

    def headline(self) -> dict[str, Any]:
        """The numbers worth a `dvc metrics diff`."""
        out: dict[str, Any] = {"fit": self.law.as_dict(), "points": len(self.points),
                               "huber_objective": self.fit.objective}
        out["compute_optimal"] = {f"{o.compute:.3g}": {"n": o.n, "d": o.d} for o in self.optima}
        out["predicted_loss"] = {p.name: p.loss for p in self.predictions}
        if self.decision is not None:
            out["decision_accuracy"] = {
                task: {s.size: s.accuracy for s in td.sizes}
                for task, td in self.decision.tasks.items()}
        return out


def _iv(interval: Interval | None) -> dict[str, float] | None:
    return None if interval is None else interval.as_dict()


def primary_metric(metrics: dict[str, float]) -> str | None:
    return next((m for m in PRIMARY_METRICS if isinstance(metrics.get(m), (int, float))), None)


def analyse(cfg: FitConfig, losses: dict[tuple[str, str], float],
            scores: dict[tuple[str, str], dict[str, dict[str, float]]]) -> LadderResult:
    """Fit the ladder's runs (recipe None) and rank its recipes' runs."""
    fit_runs = [r for r in cfg.runs if r.recipe is None]
    points = tuple(LossPoint(n=float(r.n_params), d=float(r.tokens),
                               loss=losses[(r.experiment, r.run)], label=f"{r.experiment}:{r.run}")
                   for r in fit_runs)
    queries = [(float(p.n_params), float(p.tokens)) for p in cfg.predict]
    boot = None
    if cfg.bootstrap:
        boot = bootstrap_intervals(points, resamples=cfg.bootstrap, confidence=cfg.confidence,
                                   seed=cfg.seed, target_computes=cfg.target_compute,
                                   loss_queries=queries, huber_delta=cfg.huber_delta)
        fit = boot.fit
    else:
        fit = fit_scaling_law(points, huber_delta=cfg.huber_delta)
    law = fit.law
    ivs = {} if boot is None else boot.intervals
    optima = []
    for c in cfg.target_compute:
        try:
            n, d = law.compute_optimal(c)
        except ValueError:  # alpha or beta <= 0: no optimum (said in the report)
            continue
        optima.append(Optimum(c, n, d, ivs.get(f"n_opt@{c:.6g}"), ivs.get(f"d_opt@{c:.6g}")))
    n_max, d_max = max(p.n for p in points), max(p.d for p in points)
    predictions = tuple(
        Prediction(t.name, float(t.n_params), float(t.tokens), float(law.loss(t.n_params, t.tokens)),
                   ivs.get(f"loss@N={float(t.n_params):.6g},D={float(t.tokens):.6g}"),
                   t.n_params / n_max, t.tokens / d_max)
        for t in cfg.predict)
    decision, recipe_scores = _decision(cfg, scores)
    return LadderResult(cfg, points, fit, boot, tuple(optima), predictions, decision, recipe_scores)


def _decision(cfg: FitConfig, scores: dict[tuple[str, str], dict[str, dict[str, float]]]
              ) -> tuple[DecisionResult | None, tuple[tuple[str, str, float, str, str, float], ...]]:
    recipe_runs = [r for r in cfg.runs if r.recipe is not None]
    if not recipe_runs:
        return None, ()
    records: list[DecisionRecord] = []
    higher: dict[str, bool] = {}
    rows = []
    for r in recipe_runs:
        for task, metrics in sorted(scores[(r.experiment, r.run)].items()):
            metric = primary_metric(metrics)
            if metric is None:
                continue
            higher[task] = metric not in LOWER_IS_BETTER
            value = float(metrics[metric])
            seed = int(r.run.removeprefix("seed").split("-")[0]) if r.run.startswith("seed") else 0
            records.append(DecisionRecord(recipe=r.recipe or "", size=r.size, n_params=float(r.n_params),
                                       seed=seed, task=task, score=value))
            rows.append((r.recipe or "", r.size, float(r.n_params), task, metric, value))
    return decision_accuracy(records, higher), tuple(rows)


def images(result: LadderResult) -> dict[str, bytes]:
    out = {"fit.png": plots.fit_png(list(result.points), result.law),
           "isoflop.png": plots.isoflop_png(result.law, list(result.points))}
    if result.decision is not None:
        out["decision.png"] = plots.decision_png(result.decision)
    return out


def points_csv(result: LadderResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "n", "d", "tokens_per_param", "loss", "fitted", "log_residual"])
    for p, r in zip(result.points, result.fit.residuals):
        w.writerow([p.label, int(p.n), int(p.d), f"{p.d / p.n:.6g}", f"{p.loss:.6g}",
                    f"{float(result.law.loss(p.n, p.d)):.6g}", f"{r:.6g}"])
    return buf.getvalue()


def _num(x: float) -> str:
    return f"{x:.4g}" if 1e-3 <= abs(x) < 1e5 else f"{x:.3e}"


def _with_iv(x: float, iv: Interval | None) -> str:
    return _num(x) if iv is None else f"{_num(x)} [{_num(iv.lo)}, {_num(iv.hi)}]"


def markdown(result: LadderResult, image_files: list[str]) -> str:
    cfg, law, fit = result.cfg, result.law, result.fit
    conf = f"{cfg.confidence:.0%}"
    boot = result.bootstrap
    lines = [
        f"# Scaling ladder: {cfg.name}", "",
        f"Chinchilla approach 3 (Hoffmann et al. 2022): L(N, D) = E + A/N^α + B/D^β fitted to "
        f"{len(result.points)} runs by minimising the Huber loss (δ = {cfg.huber_delta:g}) of "
        f"log L with L-BFGS from {fit.n_inits} grid initialisations ({fit.n_optimised} optimised, "
        f"{fit.n_converged} converged). L = `{cfg.loss_task}` {cfg.loss_metric} of the final "
        f"evaluation; N = {cfg.parameters.replace('_', '-')} parameters; D = training tokens.",
        "",
    ]
    if boot is not None:
        lines += [f"Intervals: {conf} percentile bootstrap over runs, {boot.samples} of "
                  f"{boot.resamples} resamples fitted ({boot.skipped} degenerate, skipped), "
                  f"seed {cfg.seed}.", ""]
    lines += ["## Fitted constants", "",
              "| constant | fit | Chinchilla (published) | Epoch refit |", "|---|---|---|---|"]
    for name, label in (("e", "E"), ("a", "A"), ("b", "B"), ("alpha", "α"), ("beta", "β")):
        lines.append(f"| {label} | {_with_iv(getattr(law, name), result.interval(name))} | "
                     f"{_num(getattr(CHINCHILLA, name))} | {_num(getattr(EPOCH_REFIT, name))} |")
    lines += ["", f"Published constants are for MassiveText loss in nats per token; a fit on other "
              f"data, tokenizer or loss units has other E, A and B; α and β are comparable.",
              f"N_opt ∝ C^{law.n_exponent:.3f} (β/(α+β); Chinchilla {CHINCHILLA.n_exponent:.3f}).", ""]
    lines += ["## Runs", "", "| run | N | D | D/N | L observed | L fitted | log residual |",
              "|---|---|---|---|---|---|---|"]
    for p, r in zip(result.points, fit.residuals):
        lines.append(f"| {p.label} | {_num(p.n)} | {_num(p.d)} | {p.d / p.n:.3g} | {p.loss:.4f} | "
                     f"{float(law.loss(p.n, p.d)):.4f} | {r:+.4f} |")
    lines += ["", "## Compute-optimal allocation (C = 6ND)", ""]
    if result.optima:
        lines += ["| C (FLOPs) | N_opt | D_opt | D/N |", "|---|---|---|---|"]
        for o in result.optima:
            lines.append(f"| {o.compute:.3g} | {_with_iv(o.n, o.n_interval)} | "
                         f"{_with_iv(o.d, o.d_interval)} | {o.d / o.n:.3g} |")
    else:
        lines.append("No optimum: the fitted α or β is not positive (the loss does not fall "
                     "with N or D over this ladder); widen the ladder.")
    if result.predictions:
        lines += ["", "## Predicted loss of reference specs", "",
                  "| spec | N | D | predicted L | N / largest fitted N | D / largest fitted D |",
                  "|---|---|---|---|---|---|"]
        for p in result.predictions:
            lines.append(f"| {p.name} | {_num(p.n)} | {_num(p.d)} | {_with_iv(p.loss, p.interval)} | "
                         f"{p.n_factor:.3g}× | {p.d_factor:.3g}× |")
        far = max(max(p.n_factor, p.d_factor) for p in result.predictions)
        if far > 100:
            lines += ["", f"These predictions extrapolate up to {far:.3g}× beyond the fitted "
                      f"range, in this ladder's loss units (`{cfg.loss_task}` on this data); "
                      f"read them as what this ladder implies, not as a forecast of the "
                      f"reference runs' published losses."]
    if result.decision is not None:
        recipes = sorted({r for r, *_ in result.recipe_scores})
        lines += ["", "## Decision accuracy (DataDecide)", "",
                  f"Recipes {', '.join(recipes)}, {cfg.recipe_tokens} tokens each, at every size. "
                  f"Per task and size: the fraction of recipe pairs whose ranking there agrees "
                  f"with the ranking at the largest size ({result.decision.target_size}); ranked "
                  f"by {' / '.join(PRIMARY_METRICS)} (the first the task reports). With one seed "
                  f"per run each pair is agree (1) or disagree (0).", ""]
        tasks = result.decision.tasks
        sizes = sorted({(s.n_params, s.size) for t in tasks.values() for s in t.sizes})
        lines += ["| task | " + " | ".join(f"{name} (N={_num(n)})" for n, name in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for task, td in sorted(tasks.items()):
            by_size = {s.size: s for s in td.sizes}
            cells = [_acc_cell(by_size[name]) if name in by_size else "–" for _, name in sizes]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines += ["", "| recipe | size | N | task | metric | score |", "|---|---|---|---|---|---|"]
        for recipe, size, n, task, metric, score in result.recipe_scores:
            lines.append(f"| {recipe} | {size} | {_num(n)} | {task} | {metric} | {score:.4f} |")
    lines += [""] + [f"![{f}]({f})" for f in image_files] + [""]
    return "\n".join(lines)


def _acc_cell(acc: SizeDecision) -> str:
    if acc.accuracy is None:
        return f"– ({acc.ties} tied at the target)"
    text = f"{acc.accuracy:.2f} ({acc.pairs} pair{'s' if acc.pairs != 1 else ''}"
    if acc.ties:
        text += f", {acc.ties} tied at the target"
    return text + ")"
