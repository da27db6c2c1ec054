"""Resumable in-stage state: everything a stage needs to continue bitwise exactly.

One file, `state.pt` (torch.save of plain containers and tensors), holds the model's and
the MTP modules' state dicts, the optimizer state, the loop's position (updates done in the
stage), the sampler's per-source positions, the LR scale left by rollbacks, the stability
guard, the loss rows, monitor rows and batch fingerprints so far, and torch's RNG state.
No randomness is drawn during training today (dropout is 0, init happens before step 1),
but a plugin that draws must resume exactly too, so the RNG state travels with the rest.

The same blob serves two purposes: written to .repro/resume/<stage id>/ every
`checkpoint_every_steps` updates (atomically: a temporary folder renamed into place), and
kept in memory as the rollback target of the stability guard. It records the stage's
config fingerprint; a state written for another config is refused with a clear error
rather than resumed (the folder is named by the stage id, so this only happens when it was
copied or edited by hand).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from repro.errors import ReproError

STATE_FILE = "state.pt"


class ResumeError(ReproError, RuntimeError):
    """A resume folder that does not belong to this stage."""


def pack(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def unpack(blob: bytes) -> dict[str, Any]:
    # weights_only: plain containers, tensors and numbers only (no pickled code).
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def write_state(folder: Path, blob: bytes) -> None:
    """Replace folder/state.pt atomically (the old state stays valid until the rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STATE_FILE}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / STATE_FILE)


def read_state(folder: Path, config_fingerprint: str) -> dict[str, Any] | None:
    """The saved state, or None when there is none. Refuses a state of another config."""
    path = Path(folder) / STATE_FILE
    if not path.exists():
        return None
    state = unpack(path.read_bytes())
    found = state.get("config_fingerprint")
    if found != config_fingerprint:
        raise ResumeError(
            f"{path} was written by a training stage with config fingerprint {found}, not this "
            f"stage's {config_fingerprint}: it belongs to another spec. Delete {folder} to "
            "start this stage from its beginning"
        )
    return state


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
