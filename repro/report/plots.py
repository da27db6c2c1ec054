"""Loss and learning-rate curves against tokens, as PNG bytes that are identical run to run.

Determinism: an Agg canvas on a bare `Figure` (no pyplot state, no backend switch), the
default style whatever matplotlibrc says, fixed size and dpi, and no `Software` tag in the
PNG metadata (Agg writes no timestamp).
"""

from __future__ import annotations

from repro.report.collect import ExperimentRun

FIGSIZE_IN = (9.0, 6.5)
DPI = 100
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
          "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def _curve(run: ExperimentRun):
    """All stages of a run concatenated, in training order (global step, cumulative tokens)."""
    import polars as pl

    return pl.concat([s.loss for s in run.stages]).sort("step", maintain_order=True)


def loss_png(runs: list[ExperimentRun], baseline: str) -> bytes:
    import io

    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    with matplotlib.style.context("default"):
        fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        ax_loss, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        drawn = False
        labelled: set[tuple[int, str]] = set()
        for i, run in enumerate(runs):
            color = COLORS[i % len(COLORS)]
            curve = _curve(run)
            label = f"{run.name} (baseline)" if run.name == baseline else run.name
            if curve.height:
                drawn = True
                ax_loss.plot(curve["tokens"].to_list(), curve["loss"].to_list(),
                             color=color, lw=1.2, label=label)
                ax_lr.plot(curve["tokens"].to_list(), curve["lr"].to_list(), color=color, lw=1.0)
            # Mark where each later stage starts (end of the previous one's tokens).
            for prev, nxt in zip(run.stages, run.stages[1:]):
                x = prev.tokens_total
                for ax in (ax_loss, ax_lr):
                    ax.axvline(x, color=color, ls=":", lw=1.0, alpha=0.8)
                if (x, nxt.name) not in labelled:
                    labelled.add((x, nxt.name))
                    ax_loss.text(x, 0.98, f" {nxt.name}", transform=ax_loss.get_xaxis_transform(),
                                 rotation=90, va="top", ha="left", fontsize=8, color="0.3")
        if not drawn:
            ax_loss.text(0.5, 0.5, "no training loss logged", transform=ax_loss.transAxes,
                         ha="center", va="center")
        ax_loss.set_ylabel("next-token cross entropy (lower is better)")
        ax_loss.set_title("Training loss vs tokens (dotted lines: training stage boundaries)")
        ax_loss.grid(alpha=0.3)
        if drawn:
            ax_loss.legend(loc="upper right", fontsize=9)
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("tokens")
        ax_lr.grid(alpha=0.3)
        ax_lr.xaxis.set_major_formatter(EngFormatter(sep=""))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
