"""Live curves of a train stage while it trains (issue 22): DVCLive, plus optional sinks.

loss.csv and monitor.csv are written once, atomically, when the stage ends; a run of days
needs its curves while it trains. DVCLive is DVC's own convention for that: a folder (here
live/<stage>/, repro.paths.stage_live_dir) holding one `step<TAB>value` TSV per metric,
appended a row at a time, and a `metrics.json` summary (the latest value of each) rewritten
at each record. The compiled dvc.yaml declares the two as the train stage's metrics and
plots (repro.stages.train), so `dvc exp show`, `dvc metrics show`, `dvc plots show` and VS
Code's DVC extension read the run while it goes.

What is logged, at global step n (the x of every curve):
- at each loss-curve point (`log_every_steps`): train/loss, train/lr, train/grad_norm,
  train/<part> (ce, z_loss, mtp, kd ...) and train/tokens: loss.csv's row, rounded as its
  cells are; perf/tokens_per_s over the updates since the previous point (measured);
- at each monitor record (`monitor.every_steps`): monitor/<metric>/<layer>, monitor.csv's
  values at its precision;
- stability/events: the number of stability events so far, at each point and at each event.
  Each event is also an ALERT line on stderr as it happens (what `dvc repro` shows).

DVCLive is used as a writer only. `dvcyaml=None`: it must not edit dvc.yaml, which `repro
compile` generates (the stage kind declares the folder's files instead); `save_dvc_exp=False`
and no report: no git or DVC experiment side effects from inside `dvc repro`; `Live.end` is
not called (inside `dvc exp run` it `git add`s files of the folder). Per record it calls
`log_metric(..., timestamp=False)` (appends one row: the TSVs hold no wall-clock time) and
writes the summary as `make_summary` does, but atomically (DVC may read it mid-write); not
`next_step`/`sync`, which also post to DVC Studio after re-reading every TSV in full, a
cost that grows with the run (quadratic over a long one).

The folder is a record of the run as it happened, not part of the result: it holds the
measured tokens/s and, after a stability rollback, the abandoned steps as they were logged
followed by the redone ones at the same steps. `repro verify` leaves it out
(repro.paths.is_machine_record); loss.csv and monitor.csv are the result's curves. DVC
deletes a stage's outputs before running it, so a stage resumed after a crash first logs
again the curve its resumable state holds (`history`): the folder shows the whole phase.

Sinks (`training.live_sinks`, execution-only: they change no output): the same records go to
TensorBoard, W&B or trackio, each imported only when selected; a selected sink whose package
is missing is a ReproError naming the pip command, raised before the stage builds anything.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from repro.atomic import atomic_write_text
from repro.errors import ReproError

if TYPE_CHECKING:  # types only: repro.train.loop imports this module
    from repro.train.loop import LogRow
    from repro.train.stability import StabilityEvent

EVENTS = "stability/events"
SUMMARY_LEAVES_OUT = ("monitor", "perf")
"""Top-level groups of the live metrics left out of the summary (metrics.json)."""
LOSS, LR, GRAD_NORM, TOKENS = "train/loss", "train/lr", "train/grad_norm", "train/tokens"
TOKENS_PER_S = "perf/tokens_per_s"

# sink -> (the module that must be importable, the package that provides it)
SINK_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
                 "trackio": ("trackio", "trackio")}


class LiveSinkMissing(ReproError):
    """A live sink was selected but its package is not installed."""


def check_sinks(sinks: Iterable[str]) -> None:
    """Every selected sink's package is importable here, else LiveSinkMissing with the fix
    (checked without importing them: wandb alone takes seconds to import)."""
    for sink in sinks:
        module, package = SINK_PACKAGES[sink]
        if importlib.util.find_spec(module) is None:
            raise LiveSinkMissing(
                f"training.live_sinks names {sink}, but the {package} package is not installed "
                "in this environment", field="training.live_sinks",
                fix=f"pip install {package} (or remove {sink} from training.live_sinks; it "
                    "changes no output, so nothing reruns)")


def _round(value: float, spec: str) -> float:
    """`value` as the CSVs print it (`spec`), back as a float: the TSVs hold the same values."""
    return float(format(value, spec)) if math.isfinite(value) else value


def curve_metrics(row: LogRow) -> dict[str, float]:
    """One loss-curve point (repro.train.loop.loss_csv's row) as live metrics."""
    out = {LOSS: _round(row.loss, ".6f"), LR: _round(row.lr, ".6g"),
           GRAD_NORM: _round(row.grad_norm, ".6g"), TOKENS: row.tokens}
    out.update({f"train/{k}": _round(v, ".6f") for k, v in row.parts})
    return out


def monitor_metrics(rows: Iterable[tuple]) -> dict[str, float]:
    """One monitor record's rows (repro.train.monitor.MonitorRow as tuples: step, tokens,
    metric, layer, value) as live metrics monitor/<metric>/<layer>, at monitor.csv's
    precision (7 significant digits)."""
    return {f"monitor/{metric}/{layer}": _round(float(value), ".7g")
            for _, _, metric, layer, value in rows}


def history(rows: list[LogRow], monitor_rows: list[tuple], events: list[StabilityEvent]
            ) -> list[tuple[int, dict[str, float]]]:
    """The records a run logged up to its resumable state, by step (without tokens/s, which
    was measured by the process that died), for a resumed stage to log again."""
    by_step: dict[int, dict[str, float]] = {}
    for r in rows:
        by_step.setdefault(r.step, {}).update(curve_metrics(r))
        by_step[r.step][EVENTS] = sum(1 for e in events if e.step <= r.step)
    monitored: dict[int, list[tuple]] = {}
    for m in monitor_rows:
        monitored.setdefault(int(m[0]), []).append(tuple(m))
    for step, group in monitored.items():
        by_step.setdefault(step, {}).update(monitor_metrics(group))
    row_steps = {r.step for r in rows}
    for i, e in enumerate(events):  # an event between points: the count at its own step
        if e.step not in row_steps:
            by_step.setdefault(e.step, {})[EVENTS] = i + 1
    return sorted(by_step.items())


def alert_line(event: StabilityEvent) -> str:
    """The stderr line of a stability event as it happens."""
    if event.kind == "nonfinite":
        what = f"non-finite loss or gradient (loss {event.loss:.4g}, gradient norm {event.grad_norm:.4g})"
    else:
        what = (f"loss spike (loss {event.loss:.4g}, {event.z:.1f} standard deviations above "
                "the recent steps)")
    done = {"skip": "update skipped", "rollback": "rolling back", "stop": "stopping"}[event.action]
    return f"ALERT step {event.step}: {what}: {done} (training.stability)"


class LiveLog:
    """The live record of one train stage: DVCLive's folder and the selected sinks. Only the
    main process makes one."""

    def __init__(self, summary: Path, curves: Path, stage_id: str, experiment: str,
                 sinks: Iterable[str] = (), sink_dirs: dict[str, Path] | None = None,
                 config: dict[str, Any] | None = None) -> None:
        from dvclive import Live  # ~1 s with DVC's imports: only in the process that logs

        folder = Path(summary).parent
        if Path(summary).name != "metrics.json" or Path(curves) != folder / "plots" / "metrics":
            raise ValueError(f"live outputs {summary} and {curves} are not DVCLive's layout of one "
                             "folder (<dir>/metrics.json, <dir>/plots/metrics); rerun `repro compile`")
        # resume=False: DVCLive empties its files in the folder (a resumed stage logs its
        # history again); see the module note for the other arguments
        self.live = Live(dir=str(folder), resume=False, report=None, save_dvc_exp=False,
                         dvcyaml=None)
        self.sinks = [_open_sink(s, stage_id, experiment, (sink_dirs or {}).get(s), config)
                      for s in sinks]

    def record(self, step: int, metrics: dict[str, float]) -> None:
        """Log `metrics` at global step `step`: one row appended to each metric's TSV, the
        summary rewritten (flushed to the files before it returns), then the sinks."""
        self.live.step = step
        for name, value in metrics.items():
            self.live.log_metric(name, value, timestamp=False)
        # Live.make_summary's content and format, but replaced atomically: DVC may read the
        # summary at any moment (`dvc exp show` while the stage trains) and make_summary
        # truncates the file, then writes it
        # without the per-layer monitor and the measured tokens/s (their TSVs hold them):
        # the summary is what `dvc exp show` and `dvc metrics show` list, a column per key,
        # and ~30 per-layer columns per stage would bury the loss (issue 22, item 2)
        summary = {k: v for k, v in self.live.summary.items() if k not in SUMMARY_LEAVES_OUT}
        summary["step"] = step
        atomic_write_text(Path(self.live.metrics_file), json.dumps(summary, indent=4) + "\n")
        for sink in self.sinks:
            sink.log(step, metrics)

    def alert(self, text: str) -> None:
        for sink in self.sinks:
            sink.alert(text)

    def close(self, ok: bool = True) -> None:
        for sink in self.sinks:
            sink.close(ok)
        self.sinks = []


# ----------------------------------------------------------------------------- sinks


class _Sink:
    def log(self, step: int, metrics: dict[str, float]) -> None:
        raise NotImplementedError

    def alert(self, text: str) -> None:
        pass

    def close(self, ok: bool) -> None:
        pass


class _TensorBoard(_Sink):
    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()  # live: TensorBoard reads the event file as it grows

    def alert(self, text: str) -> None:
        self.writer.add_text("alerts", text)

    def close(self, ok: bool) -> None:
        self.writer.close()


class _WandB(_Sink):
    def __init__(self, project: str, name: str, folder: Path | None, config: dict | None) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, name=name, config=config,
                              dir=str(folder) if folder else None)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def alert(self, text: str) -> None:
        self.run.alert(title="training stability event", text=text, level=self.wandb.AlertLevel.WARN)

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


class _Trackio(_Sink):
    def __init__(self, project: str, name: str, config: dict | None) -> None:
        import trackio

        self.trackio = trackio
        trackio.init(project=project, name=name, config=config)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.trackio.log(metrics, step=step)

    def close(self, ok: bool) -> None:
        self.trackio.finish()


def _open_sink(sink: str, stage_id: str, experiment: str, folder: Path | None,
               config: dict[str, Any] | None) -> _Sink:
    check_sinks([sink])
    if sink == "tensorboard":
        if folder is None:
            raise ValueError("the tensorboard sink needs a folder")
        return _TensorBoard(folder)
    if sink == "wandb":  # the run is the stage, the project the experiment
        return _WandB(experiment, stage_id, folder, config)
    if sink == "trackio":
        return _Trackio(experiment, stage_id, config)
    raise ValueError(f"unknown live sink {sink!r}")
