"""`repro verify`: rebuild stages in a scratch copy of the workspace and certify that their
outputs are the ones dvc.lock records (run.py rebuilds, certificate.py gives the verdicts,
tolerance.py says which differences are accepted).

The re-exports below are for repro/cli.py only: importing a submodule runs this file
first, so re-exporting submodules that import their siblings is an import cycle
(tests/test_layering.py, KNOWN_CYCLES). Once the CLI imports repro.verify.run and
repro.verify.tolerance, they go.
"""

from __future__ import annotations

from repro.verify.run import verify
from repro.verify.tolerance import Tolerance

__all__ = ["Tolerance", "verify"]
