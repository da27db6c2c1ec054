"""The report's figures as PNG bytes that are identical run to run: training loss, score vs
tokens, the data funnel per dataset and the token ledger.

Determinism: an Agg canvas on a bare `Figure` (no pyplot state, no backend switch), the
default style whatever matplotlibrc says, fixed size and dpi, and no `Software` tag in the
PNG metadata (Agg writes no timestamp).
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Iterator

from repro.report import data
from repro.report.collect import ExperimentRun

DPI = 100
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
          "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
LOSS_FILE, SCORES_FILE, FUNNEL_FILE, LEDGER_FILE = ("loss.png", "scores.png", "funnel.png",
                                                    "ledger.png")


@contextlib.contextmanager
def _figure(size_in: tuple[float, float], out: list[bytes]) -> Iterator[Any]:
    """A bare Figure; its PNG bytes are appended to `out` when the block ends."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):
        fig = Figure(figsize=size_in, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    out.append(buf.getvalue())


def _label(name: str, baseline: str | None) -> str:
    return f"{name} (baseline)" if name == baseline else name


def _tokens_axis(ax: Any) -> None:
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(alpha=0.3)


def loss_png(runs: list[ExperimentRun], baseline: str | None) -> bytes:
    """Training loss (upper) and learning rate (lower) vs tokens: one thin line per replica,
    one colour per experiment; dotted lines mark the boundaries of training phases."""
    import polars as pl

    out: list[bytes] = []
    with _figure((9.0, 6.5), out) as fig:
        ax_loss, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        drawn, labelled = False, set()
        for i, run in enumerate(runs):
            color = COLORS[i % len(COLORS)]
            label: str | None = _label(run.name, baseline)
            for rep in run.replicas:
                if not rep.phases:
                    continue
                curve = pl.concat([s.loss for s in rep.phases]).sort("step", maintain_order=True)
                if curve.height:
                    drawn = True
                    ax_loss.plot(curve["tokens"].to_list(), curve["loss"].to_list(), color=color,
                                 lw=0.9, alpha=0.85, label=label)
                    ax_lr.plot(curve["tokens"].to_list(), curve["lr"].to_list(), color=color,
                               lw=0.9, alpha=0.85)
                    label = None  # one legend entry per experiment
                for prev, nxt in zip(rep.phases, rep.phases[1:]):
                    x = prev.tokens_total
                    if (x, nxt.name) in labelled:
                        continue
                    labelled.add((x, nxt.name))
                    for ax in (ax_loss, ax_lr):
                        ax.axvline(x, color="0.5", ls=":", lw=1.0)
                    ax_loss.text(x, 0.98, f" {nxt.name}", transform=ax_loss.get_xaxis_transform(),
                                 rotation=90, va="top", ha="left", fontsize=8, color="0.3")
        if drawn:
            ax_loss.legend(loc="upper right", fontsize=9)
        else:
            ax_loss.text(0.5, 0.5, "no training loss logged", transform=ax_loss.transAxes,
                         ha="center", va="center")
        ax_loss.set_ylabel("next-token cross entropy (lower is better)")
        ax_loss.set_title("Training loss vs tokens (thin lines: replicas; dotted: stage boundaries)")
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("tokens")
        _tokens_axis(ax_loss)
        _tokens_axis(ax_lr)
    return out[0]


def scores_png(bands: Any, primary: dict[str, str], baseline: str | None,
               experiments: list[str]) -> bytes:
    """One panel per task (its primary metric) vs tokens seen: the mean over replicas with a
    band from the lowest to the highest replica."""
    import polars as pl

    panels = [(t, m) for t, m in sorted(primary.items())]
    n = max(1, len(panels))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    out: list[bytes] = []
    with _figure((4.2 * ncols + 1.0, 3.2 * nrows + 0.6), out) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(panels):]:
            ax.set_axis_off()
        if not panels:
            axes[0].text(0.5, 0.5, "no evaluated scores", ha="center", va="center",
                         transform=axes[0].transAxes)
        for ax, (task, metric) in zip(axes, panels):
            sub = bands.filter((pl.col("task") == task) & (pl.col("metric") == metric))
            for i, name in enumerate(experiments):
                e = sub.filter(pl.col("experiment") == name).sort("tokens")
                if e.height == 0:
                    continue
                x = e["tokens"].to_list()
                color = COLORS[i % len(COLORS)]
                ax.plot(x, e["mean"].to_list(), color=color, marker="o", ms=3, lw=1.2,
                        label=_label(name, baseline))
                if (e["replicas"] > 1).any():
                    ax.fill_between(x, e["min"].to_list(), e["max"].to_list(), color=color,
                                    alpha=0.2, lw=0)
            better = "lower" if metric == "bits_per_byte" else "higher"
            ax.set_title(f"{task}\n{metric} ({better} is better)", fontsize=9)
            ax.set_xlabel("tokens seen", fontsize=8)
            ax.tick_params(labelsize=8)
            _tokens_axis(ax)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)),
                       fontsize=8)
        fig.suptitle("Scores vs tokens (line: mean over replicas; band: min–max)", fontsize=10)
    return out[0]


def funnel_png(runs: list[ExperimentRun]) -> bytes | None:
    """Per dataset, documents (and tokens, where counted) left after each step, as a share
    of the input; None when no funnel is wired."""
    funnels = data.unique_funnels(runs)
    if not funnels:
        return None
    n = len(funnels)
    out: list[bytes] = []
    with _figure((9.0, 1.0 + sum(0.28 * len(data.funnel_counts(f)) + 0.6 for _, f in funnels)),
                 out) as fig:
        heights = [len(data.funnel_counts(f)) for _, f in funnels]
        axes = fig.subplots(n, 1, squeeze=False, gridspec_kw={"height_ratios": heights}).ravel()
        for ax, (title, f) in zip(axes, funnels):
            counts = data.funnel_counts(f)
            labels = [c[0] for c in counts][::-1]
            docs = [c[1] for c in counts][::-1]
            top = max(docs[-1], 1)
            y = list(range(len(labels)))
            ax.barh(y, docs, color="tab:blue", height=0.6)
            for yi, d in zip(y, docs):
                ax.text(d, yi, f" {d:,} ({d / top:.0%})", va="center", fontsize=7)
            ax.set_yticks(y, labels, fontsize=8)
            ax.set_xlim(0, top * 1.3)
            ax.set_title(f"{title}: documents left after each step", fontsize=9)
            ax.tick_params(axis="x", labelsize=8)
            ax.grid(axis="x", alpha=0.3)
    return out[0]


def ledger_png(runs: list[ExperimentRun]) -> bytes | None:
    """Per dataset (and experiments sharing the numbers): tokens available, planned by the
    mixture and drawn by training; None when no ledger is wired."""
    rows = data.ledger_numbers(runs)
    if not rows:
        return None
    out: list[bytes] = []
    with _figure((9.0, 1.2 + 0.55 * len(rows)), out) as fig:
        ax = fig.subplots()
        y = list(range(len(rows)))[::-1]
        h = 0.27
        for k, (what, color) in enumerate((("available", "0.7"), ("planned", "tab:orange"),
                                          ("drawn", "tab:blue"))):
            ax.barh([v + (1 - k) * h for v in y], [r[2 + k] for r in rows], height=h,
                    color=color, label=f"tokens {what}")
        ax.set_yticks(y, [f"{r[1]}\n({r[0]})" if len(runs) > 1 else r[1] for r in rows],
                      fontsize=7)
        ax.set_title("Token ledger: tokens available vs planned (mixture) vs drawn (training)",
                     fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
        _tokens_axis(ax)
    return out[0]
