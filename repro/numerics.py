"""Environment switches that make CPU float results depend only on inputs and thread count.

torch's CPU wheels do their matmuls in MKL. By default MKL may (a) use fewer threads than
asked when the machine is busy (MKL_DYNAMIC) and (b) pick kernels by the memory alignment
of each buffer (no conditional numerical reproducibility). Either changes the order of
float additions, so a stage rerun on a loaded machine gave different weights (seen on the
quickstart's distillation stage). Pinning both costs nothing measurable here (a
quickstart-sized matmul: 15.5 vs 15.7 ms). They must be set before MKL initialises, i.e.
before torch is imported, so every entry point calls `pin_numerics_env()` first.

numpy and the OpenBLAS that numpy and scipy ship pick their kernels by CPU too (the ladder's
fit and the reports' bootstraps compute with them): on an AMD EPYC host with AVX-512 (Zen 5,
2026-12-06) every quickstart and architectures output came out as the AVX2 hosts' did, but
the ladder's fit gave other bootstrap intervals (188 -> 187 resamples fitted, E's upper end
2.403 -> 2.238) until numpy's AVX-512 kernels were switched off; then it matched byte for
byte. With OpenBLAS's SkylakeX kernels (its own choice there) it differed again.
"""

from __future__ import annotations

import os
import platform

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")

NUMPY_AVX512_TARGETS = "X86_V4 AVX512_ICL AVX512_SPR"
"""numpy 2.4's AVX-512 dispatch targets on x86-64 (`numpy._core._multiarray_umath.
__cpu_dispatch__`: X86_V3 X86_V4 AVX512_ICL AVX512_SPR): disabled, numpy runs its X86_V3
(AVX2) kernels, as on an AVX2-only host. numpy ignores a name its build does not dispatch
(an ImportWarning, hidden by default), so this is only set for the numpy these names are
checked against (tests/test_numerics.py imports the locked numpy with it, warnings as errors)."""


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux lists them (/proc/cpuinfo: `flags` on x86, `Features`
    on ARM); empty elsewhere. The env records' CPU section reads them here too."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def _numpy_version() -> tuple[int, int] | None:
    """The installed numpy's (major, minor), read from its metadata (numpy is not imported:
    its kernel choice is what is being pinned)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = version("numpy").split(".")[:2]
        return int(major), int(minor)
    except (PackageNotFoundError, ValueError):
        return None


def _blas_and_numpy_avx2(flags: frozenset[str] | None = None,
                         numpy_version: tuple[int, int] | None = None) -> dict[str, str]:
    """On x86 hosts with AVX2, the AVX2 kernels of numpy and of OpenBLAS, whatever else the CPU
    has, as ATen's are pinned above. OpenBLAS (built DYNAMIC_ARCH in numpy's and scipy's
    wheels) picks its kernels by CPU: SkylakeX ones on the AVX-512 Zen 5 host (threadpoolctl),
    where the ladder's fit then gave other bytes than with the Haswell ones, which AVX2 hosts
    run (that host's own environment set OPENBLAS_CORETYPE=Haswell already, which is how its
    first rebuild matched). numpy's AVX-512 targets are only named on a host that has AVX-512
    (elsewhere numpy runs AVX2 kernels already) and with numpy 2.4, whose target names these
    are (another numpy would ignore them)."""
    if not _X86:
        return {}
    flags = cpu_flags() if flags is None else flags
    env = {}
    if {"avx2", "fma"} <= flags:  # Haswell kernels need both; a CPU without them keeps its own
        env["OPENBLAS_CORETYPE"] = "Haswell"
    if "avx512f" in flags and (numpy_version or _numpy_version()) == (2, 4):
        env["NPY_DISABLE_CPU_FEATURES"] = NUMPY_AVX512_TARGETS
    return env


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
    **_blas_and_numpy_avx2(),
}

NUMERICS_ENV_KEYS = ("MKL_DYNAMIC", "OMP_DYNAMIC", "MKL_CBWR", "ATEN_CPU_CAPABILITY",
                     "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")
"""Every variable NUMERICS_ENV may set on some host: what the stages' env records list (unset
ones as null), so records from hosts that pin different subsets compare key by key."""


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
