"""repro.numerics: the kernel pins, which CPUs get which, and that they are in place before
numpy and torch load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from repro import numerics
from repro.environment import fingerprint

REPO = Path(__file__).resolve().parents[1]
PIN_KEYS = numerics.NUMERICS_ENV_KEYS

x86_only = pytest.mark.skipif(not numerics._X86, reason="the AVX2 pins are x86's")


def _python(code: str, *flags: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PIN_KEYS}
    return subprocess.run([sys.executable, *flags, "-c", code], env=clean | env, cwd=REPO,
                          text=True, capture_output=True, timeout=120)


@x86_only
def test_the_numpy_targets_are_the_locked_numpys():
    """numpy ignores a name in NPY_DISABLE_CPU_FEATURES that its build does not dispatch,
    with an ImportWarning that nobody sees (and then runs its AVX-512 kernels after all): the
    names must be the installed numpy's, and a numpy upgrade in the lock must come back here
    (the pin is only set for numpy 2.4)."""
    assert tuple(int(p) for p in version("numpy").split(".")[:2]) == (2, 4)
    code = ("import json\n"
            "from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__\n"
            "print(json.dumps([__cpu_dispatch__, __cpu_features__]))")
    proc = _python(code, "-W", "error::ImportWarning",
                   NPY_DISABLE_CPU_FEATURES=numerics.NUMPY_AVX512_TARGETS)
    assert proc.returncode == 0, proc.stderr[-2000:]  # no name numpy would ignore
    dispatch, features = json.loads(proc.stdout)
    targets = numerics.NUMPY_AVX512_TARGETS.split()
    assert set(targets) <= set(dispatch)
    assert not any(features[t] for t in targets)  # on an AVX-512 host too: AVX2 kernels
    # the check above can fail: a name from another numpy (1.x's AVX512_SKX) is refused
    other = _python(code, "-W", "error::ImportWarning", NPY_DISABLE_CPU_FEATURES="AVX512_SKX")
    assert other.returncode != 0 and "not part of the dispatched optimizations" in other.stderr


@x86_only
def test_which_hosts_get_which_pins():
    pins = numerics._blas_and_numpy_avx2
    avx2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
    avx512 = avx2 | {"avx512f", "avx512bw", "avx512vl"}
    assert pins(avx2, (2, 4)) == {"OPENBLAS_CORETYPE": "Haswell"}  # numpy runs AVX2 there already
    assert pins(avx512, (2, 4)) == {"OPENBLAS_CORETYPE": "Haswell",
                                    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
    # another numpy names its targets otherwise: nothing numpy would refuse to import with
    assert pins(avx512, (2, 3)) == {"OPENBLAS_CORETYPE": "Haswell"}
    # without AVX2 and FMA, Haswell's kernels would not run: OpenBLAS keeps its own choice
    assert pins(frozenset({"sse4_2", "avx"}), (2, 4)) == {}


def test_the_cli_pins_before_numpy_and_torch_load():
    """`repro` (every stage's process) sets the pins before anything it imports loads numpy
    (repro.stages.base does) or torch: each reads its switches once, when it loads."""
    hook = (
        "import json, os, sys\n"
        "seen = {}\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('numpy', 'torch') and name not in seen:\n"
        f"            seen[name] = {{k: os.environ.get(k) for k in {PIN_KEYS!r}}}\n"
        "        return None\n"
        "sys.meta_path.insert(0, Watch())\n"
        "import repro.cli\n"
        "import torch\n"
        "from repro.numerics import NUMERICS_ENV\n"
        "print(json.dumps({'seen': seen, 'pins': NUMERICS_ENV}))\n")
    proc = _python(hook)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out["seen"]) == {"numpy", "torch"}
    for name, env in out["seen"].items():
        assert {k: v for k, v in env.items() if v is not None} == out["pins"], name


def test_env_records_list_every_pin_key():
    """Hosts pin different subsets (no numpy pin on an AVX2-only host): every record lists
    every key, unset ones as null, so two records compare key by key."""
    assert set(numerics.NUMERICS_ENV) <= set(PIN_KEYS)  # nothing pinned goes unrecorded
    recorded = fingerprint()["numerics"]["env"]
    assert set(PIN_KEYS) <= set(recorded)
    for key in PIN_KEYS:
        assert recorded[key] == os.environ.get(key), key  # conftest pinned this process
