"""Tiny in-memory experiment runs for the report library tests."""

from __future__ import annotations

import polars as pl
import pytest

from repro.report.collect import Checkpoint, Collected, ExperimentRun, Replica, PhaseRun


def _phase(name: str, step_start: int, step_end: int, loss: float) -> PhaseRun:
    steps = list(range(step_start + 1, step_end + 1))
    curve = pl.DataFrame({"step": steps, "tokens": [s * 10 for s in steps],
                          "loss": [loss + 1 / s for s in steps], "lr": [1e-3] * len(steps)},
                         schema={"step": pl.Int64, "tokens": pl.Int64,
                                 "loss": pl.Float64, "lr": pl.Float64})
    return PhaseRun(name, step_end, (step_end - step_start) * 10, step_end * 10, loss, curve)


@pytest.fixture
def make_run():
    """make_run(name, tasks, random_baseline, loss, replicas=1): an experiment whose replicas
    (seed0, seed1, ...) all score `tasks` at their final checkpoint s2 (80 tokens); `tasks` as
    a list gives each replica its own scores (one replica per entry)."""
    def make(name: str, tasks: dict | list[dict], random_baseline: dict | None = None,
             loss: float = 2.0, replicas: int = 1) -> ExperimentRun:
        per_replica = tasks if isinstance(tasks, list) else [tasks] * replicas
        reps = []
        for i, mine in enumerate(per_replica):
            phases = (_phase("s1", 0, 4, loss + 1), _phase("s2", 4, 8, loss))
            ev = {"experiment": name, "checkpoint": "s2", "tokens_seen": 80, "tasks": mine,
                  "random_baseline": random_baseline or {}}
            reps.append(Replica(f"seed{i}", phases, (Checkpoint("s2", "s2", None, 80, ev),),
                                "s2"))
        return ExperimentRun(name, tuple(reps))
    return make


@pytest.fixture
def collected():
    """collected(runs, baseline): the runs as load_runs would return them, no problems."""
    def make(runs: list[ExperimentRun], baseline: str | None) -> Collected:
        return Collected(list(runs), [], baseline)
    return make
