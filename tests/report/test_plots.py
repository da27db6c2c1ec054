"""Every figure is a valid PNG with identical bytes on every call."""

from __future__ import annotations

import dataclasses

from repro.report import plots
from repro.report.tables import score_bands, scores_over_tokens
from tests.report.test_data import funnel, ledger

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check(make):
    first, second = make(), make()
    assert first.startswith(PNG_MAGIC) and first == second
    assert b"matplotlib" not in first.lower()  # no Software tag naming the version


def test_pngs_are_deterministic_and_untagged(make_run):
    runs = [dataclasses.replace(make_run("a", {"t": {"acc": 0.5}}, replicas=2),
                                funnels={"web": funnel()}, ledger=ledger()),
            make_run("b", {"t": {"acc": 0.6}}, loss=1.5)]
    bands = score_bands(scores_over_tokens(runs))
    _check(lambda: plots.loss_png(runs, "a"))
    _check(lambda: plots.scores_png(bands, {"t": "acc"}, "a", ["a", "b"]))
    _check(lambda: plots.funnel_png(runs))
    _check(lambda: plots.ledger_png(runs))


def test_empty_inputs_still_plot_or_are_skipped(make_run):
    run = make_run("a", {})
    empty = tuple(dataclasses.replace(s, loss=s.loss.clear()) for s in run.replicas[0].phases)
    run = dataclasses.replace(run, replicas=(dataclasses.replace(run.replicas[0], phases=empty),))
    assert plots.loss_png([run], "a").startswith(PNG_MAGIC)
    assert plots.scores_png(score_bands(scores_over_tokens([run])), {}, "a", ["a"]).startswith(
        PNG_MAGIC)
    assert plots.funnel_png([run]) is None and plots.ledger_png([run]) is None
