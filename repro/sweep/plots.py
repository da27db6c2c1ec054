"""One figure per sweep parameter: the objective of every completed trial against that
parameter's value, the mean at each value (the main effect), the best trial starred and the
baseline run as a dashed line. Drawn with repro.report.plots' `_figure` (bare Figure, Agg,
default style, no Software tag), so the PNG bytes are identical run to run."""

from __future__ import annotations

from repro.report.plots import COLORS, _figure
from repro.spec.search import Scalar, SweepParameter
from repro.sweep.analysis import Analysis
from repro.sweep.objective import Objective


def _numeric(values: list[Scalar]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def parameter_png(name: str, p: SweepParameter, analysis: Analysis, objective: Objective,
                  baseline: float | None) -> bytes:
    done = [r for r in analysis.ranked if r.status == "completed" and name in r.point]
    xs_raw = [r.point[name] for r in done]
    ys = [float(r.value) for r in done if r.value is not None]
    effect = analysis.sensitivity[name]
    numeric = _numeric(xs_raw)
    # categorical values (strings, booleans) sit at 0, 1, 2... in the order of the levels
    slots = {level.label: i for i, level in enumerate(effect.levels)}

    def x_of(v: Scalar) -> float:
        return float(v) if numeric else float(slots.get(str(v), len(slots)))

    out: list[bytes] = []
    with _figure((6.4, 4.2), out) as fig:
        ax = fig.add_subplot()
        ax.scatter([x_of(v) for v in xs_raw], ys, color=COLORS[0], s=22, alpha=0.8,
                   label="trial", zorder=2)
        means = [lv for lv in effect.levels if lv.value is not None]  # bins have no value
        if means:
            ax.plot([x_of(lv.value) for lv in means if lv.value is not None],
                    [lv.mean for lv in means], color=COLORS[1], marker="_", ms=14, lw=1.0,
                    label="mean at value", zorder=1)
        best = analysis.best
        if best is not None and name in best.point:
            ax.scatter([x_of(best.point[name])], [best.value], marker="*", s=180,
                       color=COLORS[3], edgecolor="black", lw=0.5, zorder=3,
                       label=f"best ({best.name})")
        if baseline is not None:
            ax.axhline(baseline, color="gray", ls="--", lw=0.9, label="baseline run")
        if p.log and numeric:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(slots)), list(slots))
        failed = sum(r.status == "failed" for r in analysis.ranked)
        ax.set_xlabel(name)
        direction = "lower" if objective.goal == "minimize" else "higher"
        ax.set_ylabel(f"{objective.label} ({direction} is better)")
        ax.set_title(f"{objective.label} vs {name}"
                     + (f" ({failed} failed trial(s) not shown)" if failed else ""), fontsize=10)
        ax.grid(alpha=0.3)
        if done or baseline is not None:
            ax.legend(fontsize=8)
    return out[0]
