"""The environment fingerprint every stage records next to its outputs.

Float results depend on more than a stage's settings: the CPU's vector units (torch picks
AVX2 or AVX-512 kernels at run time), the torch build and its BLAS, the thread count (it
changes the order of additions), the pinned MKL/OpenMP switches (repro.numerics) and the
package versions. None of these belong in params.yaml (they are the machine, not the
experiment), so each stage writes them to `metrics/<stage>.env.json` and `repro verify`
compares them when two runs disagree: the certificate can then say *why* two machines
differ instead of only *that* they do.

The fingerprint is deterministic on one machine (no time, host name or user; only
allow-listed environment variables, so credentials never get in) and split in two:
`numerics` holds what can change an output's bytes, `info` what cannot (kernel, OS).
`repro stage` adds a third section to the file, `run` (the stage's wall seconds, from
`process_seconds`), which `repro status` sums per pipeline; it is measured, so env.json's
bytes differ between runs (like perf.json), and nothing compares them by hash
(`repro.paths.MACHINE_RECORD_SUFFIXES`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from repro.numerics import NUMERICS_ENV_KEYS, cpu_flags, mkl_branch

LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements.lock"

THREAD_ENV = ("REPRO_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Allow-listed variables that set thread counts (recorded with the numerics switches)."""

KEY_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "datatrove",
                "lm_eval", "trafilatura", "pypdfium2", "polars", "pydantic", "dvc")
"""Versions named in the fingerprint (the lock digest covers the rest)."""

VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "asimd", "sve")
"""CPU feature flags that select different float kernels (x86 and Arm)."""


def _cpu() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), cpu_flags()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "cpu model") and value.strip():
            model = value.strip()
            break
    return {
        "arch": platform.machine(),
        "model": model,
        "vector_flags": [f for f in VECTOR_FLAGS if f in flags],
        "flags_sha256": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16],
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
    }


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path = LOCK_FILE) -> dict[str, str]:
    """`name==version` pins of the lock file, by canonical name."""
    pins: dict[str, str] = {}
    if lock.is_file():
        for line in lock.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            name, sep, version = line.partition("==")
            if sep:
                pins[_canonical(name.split("[", 1)[0])] = version.strip()
    return pins


_HEADER_FIELD = re.compile(r"^(Name|Version):[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def installed_versions() -> dict[str, str]:
    """Version of every distribution installed in site-packages, by canonical name.

    Read from each METADATA file's header (the lines before the first blank one) rather
    than through `Distribution.metadata`, which parses the whole file with the email
    package, description included, every time it is asked: 270 distributions took 0.25 s
    that way on a quiet 2-core machine (1.5 s under load), 0.014 s this way, and every
    stage pays it for its env record. site-packages only: sys.path can also hold vendored
    copies (setuptools puts its `_vendor` folder there once imported), which are not
    installed packages."""
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    versions: dict[str, str] = {}
    for fields in _header_fields(site):
        if fields.get("Name") and "Version" in fields:
            versions.setdefault(_canonical(fields["Name"]), fields["Version"])
    return versions


@functools.cache
def distribution_names() -> frozenset[str]:
    """The `Name` of every distribution on sys.path, lower-cased (not canonicalised: as
    datatrove compares them, repro.data.datatrove_deps), read from the METADATA headers as
    installed_versions reads them. Cached: what is installed does not change under a stage."""
    return frozenset(f["Name"].lower() for f in _header_fields(None) if f.get("Name"))


def _header_fields(path: list[str] | None) -> list[dict[str, str]]:
    """`Name` and `Version` from the METADATA (or PKG-INFO) header of every distribution on
    `path` (sys.path when None)."""
    found = []
    for dist in metadata.distributions(**({"path": path} if path is not None else {})):
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        found.append(dict(m.groups() for m in _HEADER_FIELD.finditer(text.split("\n\n", 1)[0])))
    return found


def lock_drift(lock: Path = LOCK_FILE) -> dict[str, str]:
    """Installed distributions whose version differs from the lock, or that it does not pin
    ("name": "installed X, locked Y"). Our own package and the installer are left out."""
    pins, drift = locked_versions(lock), {}
    if not pins:
        return {}
    for name, version in installed_versions().items():
        if name in ("repro", "pip", "setuptools", "wheel"):
            continue
        locked = pins.get(name)
        # a local build tag is not drift: pip installs torch==2.13.0 as 2.13.0+cpu (OFFLINE.md)
        if locked != version.split("+", 1)[0] and locked != version:
            drift[name] = f"installed {version}, locked {locked or 'not pinned'}"
    return dict(sorted(drift.items()))


def _torch() -> dict[str, Any] | None:
    """The torch build, if the stage imported torch (importing it here would cost seconds
    for stages that never use it, and their outputs do not depend on it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "capability": f"{props.major}.{props.minor}",
               "count": torch.cuda.device_count(), "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version()}
    return {
        "version": torch.__version__,
        "git_version": torch.version.git_version,
        "config_sha256": hashlib.sha256(torch.__config__.show().encode()).hexdigest()[:16],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        # the branch MKL runs, not the one MKL_CBWR asks for: AMD runs AUTO (repro.numerics)
        "mkl_branch": mkl_branch(),
        "num_threads": torch.get_num_threads(),
        "gpu": gpu,
    }


_IMPORTED = time.monotonic()


def process_seconds() -> float:
    """Wall seconds since this process started: the interpreter's start-up and every import
    count, as they are part of what a stage costs (issue 19: a small stage is mostly start-up).
    From /proc (Linux: the process's start in clock ticks after boot vs the uptime, 10 ms
    resolution); elsewhere, since this module was imported."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # fields after the command name, which is in parentheses and may hold spaces;
        # starttime is field 22 of stat(5), the 20th after the name
        started = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, uptime - started)
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def fingerprint() -> dict[str, Any]:
    """What this process's outputs may depend on besides its settings."""
    lock_bytes = LOCK_FILE.read_bytes() if LOCK_FILE.is_file() else b""
    return {
        "numerics": {
            "python": platform.python_version(),
            "cpu": _cpu(),
            "torch": _torch(),
            "packages": {p: _version(p) for p in KEY_PACKAGES},
            "lock_sha256": hashlib.sha256(lock_bytes).hexdigest()[:16] if lock_bytes else None,
            "lock_drift": lock_drift(),
            "env": {k: os.environ.get(k) for k in (*NUMERICS_ENV_KEYS, *THREAD_ENV)},
        },
        "info": {
            "os": platform.system(),
            "kernel": platform.release(),
            "libc": "-".join(platform.libc_ver()) or None,
            "python_implementation": platform.python_implementation(),
        },
    }


def differences(recorded: dict[str, Any], current: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Leaf-by-leaf differences of two fingerprints' `numerics` sections: path -> (old, new)."""
    out: dict[str, tuple[Any, Any]] = {}
    if isinstance(recorded, dict) and isinstance(current, dict):
        for key in sorted(set(recorded) | set(current)):
            path = f"{prefix}.{key}" if prefix else key
            out.update(differences(recorded.get(key), current.get(key), path))
    elif recorded != current:
        out[prefix] = (recorded, current)
    return out
