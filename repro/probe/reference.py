"""The probe's committed references and the comparison with this machine's hashes.

A reference is keyed by the numerics class: what is meant to fix the bits of a CPU run
(architecture, the kernel ISA that repro.numerics pins ATen and MKL to, the thread count,
the torch build). Two hosts of one class should compute the same bytes whatever their
hardware: an AVX-512 host pinned to AVX2 is in the AVX2 class, and differing from the
reference there is the divergence issue 20 is about. Each entry also records the hardware
it was made on (so a difference on the same hardware is a regression, on other hardware a
kernel that ignores the pins) and the digest of the settings probed (a changed model or
optimizer makes a reference stale, not wrong).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from repro.atomic import atomic_write_text
from repro.environment import fingerprint
from repro.numerics import mkl_branch
from repro.probe.ops import OpHash

REFERENCE_FILE = Path(__file__).with_name("references.json")


def numerics_class() -> dict[str, Any]:
    """What decides a CPU run's bytes besides the inputs (call after torch's threads are set)."""
    import torch

    return {"arch": platform.machine().lower(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl_cbwr": os.environ.get("MKL_CBWR"),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def class_key(cls: dict[str, Any]) -> str:
    return (f"{cls['arch']}/{cls['cpu_capability']}/mkl_cbwr={cls['mkl_cbwr']}/"
            f"threads={cls['threads']}/torch={cls['torch']}")


def hardware() -> dict[str, Any]:
    """The CPU this runs on (model, vector extensions and a digest of all its flags, as the
    stages' env records say) and the MKL branch it ran."""
    cpu = fingerprint()["numerics"]["cpu"]
    # flags_sha256: every CPU flag, so two generations that share a model string ("AMD EPYC"
    # in a VM) and the vector extensions listed count as other hardware, not a regression
    return {"model": cpu.get("model"), "vector_flags": cpu.get("vector_flags"),
            "flags_sha256": cpu.get("flags_sha256"), "mkl_branch": mkl_branch()}


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def load_references(path: Path = REFERENCE_FILE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def record(ops: list[OpHash], key: str, settings: str, path: Path = REFERENCE_FILE) -> None:
    """Write this machine's hashes as the reference of its class (replacing an older one)."""
    refs = load_references(path)
    refs[key] = {"hardware": hardware(), "settings_sha256": settings,
                 "ops": [[op.name, op.digest] for op in ops]}
    atomic_write_text(path, json.dumps(refs, indent=1, sort_keys=True) + "\n")


Status = Literal["match", "differs", "unknown-class", "stale"]


@dataclass(frozen=True)
class Verdict:
    status: Status
    key: str
    same_hardware: bool | None
    """The reference was made on this CPU model with these vector extensions (None: no
    reference)."""
    first_difference: str | None = None
    """The first operation, in execution order, whose hash differs (or that is missing)."""
    differing: int = 0
    total: int = 0
    reference_hardware: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None
    """This machine's (hardware())."""

    def summary(self) -> str:
        ref = self.reference_hardware or {}
        made_on = f"{ref.get('model')} ({', '.join(ref.get('vector_flags') or [])})"
        if self.status == "unknown-class":
            return (f"no reference for numerics class {self.key}: nothing to compare (record one "
                    "with `repro probe --record` on a machine of that class)")
        if self.status == "stale":
            return (f"the reference for {self.key} (made on {made_on}) probed other settings: "
                    "the model or optimizer changed since; re-record it with `repro probe "
                    "--record` on a machine of that class")
        if self.status == "match":
            return (f"all {self.total} operations match the reference for {self.key} "
                    f"(made on {made_on})")
        where = "the same hardware: a regression" if self.same_hardware else \
            "other hardware: a kernel that the pins in repro/numerics.py do not fix"
        here = self.hardware or {}
        if here.get("mkl_branch") != ref.get("mkl_branch"):
            where += (f"; MKL ran its {here.get('mkl_branch')} branch here and "
                      f"{ref.get('mkl_branch')} there: MKL_CBWR=COMPATIBLE is the branch every "
                      "vendor's CPU runs (repro/numerics.py)")
        return (f"{self.differing} of {self.total} operations differ from the reference for "
                f"{self.key} (made on {made_on}; {where}); the first is {self.first_difference}")


def compare(ops: list[OpHash], key: str, settings: str,
            refs: dict[str, Any] | None = None) -> Verdict:
    refs = load_references() if refs is None else refs
    entry = refs.get(key)
    here = hardware()
    if entry is None:
        return Verdict("unknown-class", key, None, total=len(ops), hardware=here)
    same = entry["hardware"] == here
    if entry["settings_sha256"] != settings:
        return Verdict("stale", key, same, total=len(ops), reference_hardware=entry["hardware"],
                       hardware=here)
    expected = dict(map(tuple, entry["ops"]))
    wrong = [op.name for op in ops if expected.get(op.name) != op.digest]
    missing = [name for name, _ in entry["ops"] if name not in {op.name for op in ops}]
    if not wrong and not missing:
        return Verdict("match", key, same, total=len(ops), reference_hardware=entry["hardware"],
                       hardware=here)
    return Verdict("differs", key, same, first_difference=(wrong or missing)[0],
                   differing=len(wrong) + len(missing), total=len(ops),
                   reference_hardware=entry["hardware"], hardware=here)
