"""The loss plot is a valid PNG with identical bytes on every call."""

from __future__ import annotations

import dataclasses

import polars as pl

from repro.report.plots import loss_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_png_is_deterministic_and_untagged(make_run):
    runs = [make_run("a", {}), make_run("b", {}, loss=1.5)]
    first, second = loss_png(runs, "a"), loss_png(runs, "a")
    assert first.startswith(PNG_MAGIC)
    assert first == second
    assert b"matplotlib" not in first.lower()  # no Software tag naming the version


def test_empty_curves_still_plot(make_run):
    run = make_run("a", {})
    empty = tuple(dataclasses.replace(s, loss=s.loss.clear()) for s in run.stages)
    png = loss_png([dataclasses.replace(run, stages=empty)], "a")
    assert png.startswith(PNG_MAGIC)
    assert isinstance(run.stages[0].loss, pl.DataFrame)
