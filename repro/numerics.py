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
    # Bitwise-reproducible kernels whatever the alignment (STRICT), and on x86 ATen's AVX2
    # kernels (ATEN_CPU_CAPABILITY, below, is honoured on every vendor's CPU). MKL's AVX2
    # branch is honoured on Intel CPUs only: on AMD, MKL runs its AUTO branch whatever
    # MKL_CBWR names (MKL_VERBOSE prints `CNR:AUTO,STRICT`, mkl_branch() reads "AUTO,STRICT";
    # measured 2026-12-06 on AMD EPYC, oneMKL 2024.0), so an AMD and an Intel host run
    # different sgemm kernels and train different weights (issue 20). Only the COMPATIBLE
    # branch is run on both vendors; it costs 1.56x on a quickstart train stage here (29.1 s
    # -> 45.3 s), so it is not the default: `MKL_CBWR=COMPATIBLE dvc repro` opts in, and the
    # stages' env records (mkl_branch) and `repro probe` say which branch a run used.
    "MKL_CBWR": "AVX2,STRICT" if _X86 else "AUTO,STRICT",
    **({"ATEN_CPU_CAPABILITY": "avx2"} if _X86 else {}),
}


def pin_numerics_env() -> None:
    """Set the switches unless the user set them (setdefault: an explicit choice wins)."""
    for key, value in NUMERICS_ENV.items():
        os.environ.setdefault(key, value)


_MKL_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1",
                 8: "SSE4_2", 9: "AVX", 10: "AVX2", 11: "AVX512_MIC", 12: "AVX512",
                 13: "AVX512_MIC_E1", 14: "AVX512_E1"}
"""MKL_CBWR branch codes (oneMKL's mkl_cbwr.h)."""
_MKL_STRICT = 0x10000


def mkl_branch() -> str | None:
    """The conditional-numerical-reproducibility branch MKL actually runs in this process
    (e.g. "AVX2,STRICT" on Intel, "AUTO,STRICT" on AMD for the same MKL_CBWR), read from the
    MKL that torch links (`mkl_serv_cbwr_get`); None where torch is not imported or has no
    MKL. Importing torch here would cost seconds in stages that never use it."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.backends.mkl.is_available():
        return None
    import ctypes

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):  # another platform's library name, or no such symbol
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    mode = get(-1)  # MKL_CBWR_ALL: the branch and the STRICT bit
    name = _MKL_BRANCHES.get(mode & 0xFFFF, str(mode & 0xFFFF))
    return name + (",STRICT" if mode & _MKL_STRICT else "")
