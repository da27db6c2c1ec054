"""Compare two versions of an output file within a stated tolerance.

Used only where bitwise equality cannot be expected (the two runs' environments differ in
what changes float results, see repro.environment). Every comparison either returns the
largest deviation it saw, or says plainly that the format has no numeric comparison, so a
difference is never passed silently. Integers, strings and structure must match exactly:
only floating-point values get the tolerance (|a - b| <= atol + rtol * |b|, numpy's rule).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-4
    atol: float = 1e-6

    def __str__(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}"


@dataclass(frozen=True)
class FileComparison:
    path: str
    within: bool
    detail: str  # the largest deviation, or why there is no numeric comparison


class _Mismatch(Exception):
    """Structure, integers or strings differ: no tolerance applies."""


def _close(a: float, b: float, tol: Tolerance) -> float:
    """The deviation of a from b, or raise when it is beyond the tolerance."""
    if math.isnan(a) and math.isnan(b):
        return 0.0
    dev = abs(a - b)
    if not dev <= tol.atol + tol.rtol * abs(b):
        raise _Mismatch(f"{a!r} vs {b!r}")
    return dev


def _compare_values(a: Any, b: Any, tol: Tolerance, where: str = "") -> float:
    """Max deviation of nested JSON-like values (floats within tolerance, the rest exact)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            raise _Mismatch(f"{where or 'top level'}: keys differ {sorted(set(a) ^ set(b))[:5]}")
        return max((_compare_values(a[k], b[k], tol, f"{where}.{k}") for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            raise _Mismatch(f"{where}: length {len(a)} vs {len(b)}")
        return max((_compare_values(x, y, tol, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b))),
                   default=0.0)
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            try:
                return _close(float(a), float(b), tol)
            except _Mismatch as e:
                raise _Mismatch(f"{where}: {e}") from None
    if a != b:
        raise _Mismatch(f"{where}: {str(a)[:60]!r} vs {str(b)[:60]!r}")
    return 0.0


def _number(text: str) -> float | str:
    try:
        return float(text) if any(c in text for c in ".eEn") else text
    except ValueError:
        return text


def _csv_rows(data: bytes) -> list[list[float | str]]:
    return [[_number(cell) for cell in row] for row in csv.reader(io.StringIO(data.decode("utf-8")))]


def _arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray], tol: Tolerance) -> float:
    if set(a) != set(b):
        raise _Mismatch(f"tensors differ: {sorted(set(a) ^ set(b))[:5]}")
    worst = 0.0
    for name in sorted(a):
        x, y = a[name], b[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            raise _Mismatch(f"{name}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
        if not np.issubdtype(x.dtype, np.floating):
            if not np.array_equal(x, y):
                raise _Mismatch(f"{name}: integer values differ")
            continue
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        if not np.allclose(x64, y64, rtol=tol.rtol, atol=tol.atol, equal_nan=True):
            dev = np.abs(x64 - y64)
            raise _Mismatch(f"{name}: max |diff| {float(np.nanmax(dev)):.3g}")
        if x64.size:
            worst = max(worst, float(np.nanmax(np.abs(x64 - y64))))
    return worst


def _safetensors(path: Path) -> dict[str, np.ndarray]:
    import torch
    from safetensors.torch import load_file

    # via torch: numpy has no bfloat16
    return {k: v.to(torch.float64).numpy() if v.is_floating_point() else v.numpy()
            for k, v in load_file(str(path)).items()}


def _torch_state(path: Path) -> dict[str, np.ndarray]:
    import torch

    flat: dict[str, np.ndarray] = {}

    def walk(obj: Any, prefix: str) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu()
            flat[prefix] = t.to(torch.float64).numpy() if t.is_floating_point() else t.numpy()
        elif isinstance(obj, dict):
            for k in obj:
                walk(obj[k], f"{prefix}.{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{prefix}[{i}]")
        else:
            # non-tensor values (step counts, hyperparameters) must match exactly: an integer
            # digest of their repr goes through the exact comparison
            flat[prefix] = np.frombuffer(hashlib.sha256(repr(obj).encode()).digest(), np.uint8)

    walk(torch.load(path, map_location="cpu", weights_only=True), "")
    return flat


def compare_files(rebuilt: Path, recorded: Path, tol: Tolerance) -> FileComparison:
    """Is `rebuilt` equal to `recorded` within `tol`? (`recorded` is the reference.)"""
    name = recorded.name
    a, b = rebuilt.read_bytes(), recorded.read_bytes()
    if a == b:
        return FileComparison(name, True, "identical")
    suffix = "".join(recorded.suffixes[-1:]).lower()
    try:
        if suffix == ".json":
            dev = _compare_values(json.loads(a), json.loads(b), tol)
        elif suffix == ".jsonl":
            la, lb = a.decode().splitlines(), b.decode().splitlines()
            if len(la) != len(lb):
                raise _Mismatch(f"{len(la)} vs {len(lb)} lines")
            dev = max((_compare_values(json.loads(x), json.loads(y), tol, f"line {i + 1}")
                       for i, (x, y) in enumerate(zip(la, lb))), default=0.0)
        elif suffix in (".csv", ".tsv"):
            dev = _compare_values(_csv_rows(a), _csv_rows(b), tol)
        elif suffix == ".safetensors":
            dev = _arrays(_safetensors(rebuilt), _safetensors(recorded), tol)
        elif suffix in (".pt", ".pth"):
            dev = _arrays(_torch_state(rebuilt), _torch_state(recorded), tol)
        else:
            return FileComparison(name, False, f"differs; no numeric comparison for {suffix or 'this'} "
                                               f"files (sha256 {hashlib.sha256(a).hexdigest()[:12]} "
                                               f"vs {hashlib.sha256(b).hexdigest()[:12]})")
    except _Mismatch as e:
        return FileComparison(name, False, f"beyond tolerance: {e}")
    except (ValueError, UnicodeDecodeError, OSError, RuntimeError) as e:
        return FileComparison(name, False, f"could not be compared: {e}")
    return FileComparison(name, True, f"max deviation {dev:.3g}")
