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
import platform

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")

NUMERICS_ENV = {
    "MKL_DYNAMIC": "FALSE",  # exactly the threads torch.set_num_threads asks for
    "OMP_DYNAMIC": "FALSE",  # the same for OpenMP regions
    # Bitwise-reproducible kernels whatever the alignment (STRICT), and on x86 the same code
    # path on every CPU type: MKL's AVX2 branch and ATen's AVX2 kernels. Left to choose
    # (AUTO), each CPU type runs its own kernels: the previous quickstart lock (made on a
    # host whose CPU was not recorded, 322 GFLOP/s measured peak) did not reproduce on an
    # AVX2-only host (131 GFLOP/s): every data stage matched, training diverged after 10
    # steps. Pinned, an AVX2 host's results are unchanged (checked: the same gradients as
    # AUTO) and an AVX-512 host computes the same bytes, at the cost of its wider vectors.
    "MKL_CBWR": "AVX2,STRICT" if _X86 else "AUTO,STRICT",
    **({"ATEN_CPU_CAPABILITY": "avx2"} if _X86 else {}),
}


def pin_numerics_env() -> None:
    """Set the switches unless the user set them (setdefault: an explicit choice wins)."""
    for key, value in NUMERICS_ENV.items():
        os.environ.setdefault(key, value)
