"""Fixtures of the curation tests."""

from __future__ import annotations

import pytest


def _funnel_adds_up(metrics: dict) -> None:
    """Every step sees exactly what the previous one kept, and keeps or removes each doc."""
    docs = metrics["docs_in"]
    for label, step in metrics["steps"].items():
        assert step["docs_in"] == docs, label
        assert step["docs_out"] + sum(step["removed"].values()) == docs, label
        docs = step["docs_out"]


@pytest.fixture
def funnel_adds_up():
    return _funnel_adds_up
