"""`repro verify`: rebuild stages in a scratch copy of the workspace and certify that their
outputs are the ones dvc.lock records (run.py rebuilds, certificate.py gives the verdicts,
tolerance.py says which differences are accepted).

Import them by name (repro.verify.run.verify, repro.verify.tolerance.Tolerance): this file
re-exports nothing, because importing any submodule runs it first, and re-exporting run,
which imports its siblings, would make every submodule import itself through it (a cycle;
tests/test_layering.py).
"""
