"""Scaling laws for small-ablation ladders (FACTS 9): the Chinchilla parametric law and its
compute-optimal allocation (law), approach-3 fits with bootstrap intervals (fit), DataDecide
decision accuracy (decision), their figures (plots, which need matplotlib) and the ladder
report (ladder_report). Pure functions of their inputs: no files, no network.

Import the submodules themselves: this package re-exports nothing, so importing one of them
does not run the others (a package that imports its own submodules is an import cycle, see
tests/test_layering.py).
"""
