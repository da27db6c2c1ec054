"""Environment switches that make CPU float results depend only on inputs and thread count.

torch's CPU wheels do their matmuls in MKL. By default MKL may (a) use fewer threads than
asked when the machine is busy (MKL_DYNAMIC) and (b) pick kernels by the memory alignment
of each buffer (no conditional numerical reproducibility). Either changes the order of
float additions, so a stage rerun on a loaded machine gave different weights (seen on the
quickstart's distillation stage). Pinning both costs nothing measurable here (a
quickstart-sized matmul: 15.5 vs 15.7 ms). They must be set before MKL initialises, i.e.
before torch is imported, so every entry point calls `pin_numerics_env()` first.
"""

from __future__ import annotations

import os

NUMERICS_ENV = {
    "MKL_DYNAMIC": "FALSE",  # exactly the threads torch.set_num_threads asks for
    "OMP_DYNAMIC": "FALSE",  # the same for OpenMP regions
    "MKL_CBWR": "AUTO,STRICT",  # bitwise-reproducible kernels whatever the alignment
}


def pin_numerics_env() -> None:
    """Set the switches unless the user set them (setdefault: an explicit choice wins)."""
    for key, value in NUMERICS_ENV.items():
        os.environ.setdefault(key, value)
