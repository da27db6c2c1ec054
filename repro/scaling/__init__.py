"""Scaling laws for small-ablation ladders (FACTS 9): the Chinchilla parametric law and its
compute-optimal allocation (law), approach-3 fits with bootstrap intervals (fit), DataDecide
decision accuracy (decision) and their figures (plots, imported on its own since it needs
matplotlib). Pure functions of their inputs: no files, no network.
"""

from __future__ import annotations

from repro.scaling.decision import DecisionRecord, DecisionResult, decision_accuracy
from repro.scaling.fit import (MIN_POINTS, BootstrapResult, FitResult, InitGrid, LossPoint,
                               bootstrap_intervals, fit_scaling_law)
from repro.scaling.law import CHINCHILLA, EPOCH_REFIT, ScalingLaw

__all__ = ["CHINCHILLA", "EPOCH_REFIT", "MIN_POINTS", "BootstrapResult", "DecisionRecord",
           "DecisionResult", "FitResult", "InitGrid", "LossPoint", "ScalingLaw",
           "bootstrap_intervals", "decision_accuracy", "fit_scaling_law"]
