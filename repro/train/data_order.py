"""The data-order ledger: a fingerprint of every step's batch.

The fingerprint is the first 16 hex digits of SHA-256 over the step's windows (int64
little-endian, row-major, every row in slot order). It is written with the checkpoint
(`data_order.csv`), checked when a stage resumes (the replayed order up to the resume step
must match what the interrupted run recorded) and when a stage is rerun (against the
ledger the previous completed run left under .repro/, so a silent change in data order,
e.g. new token shards under an old stage id, stops the run at the first differing step).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from repro.errors import ReproError

LEDGER_FILE = "data_order.csv"


class DataOrderError(ReproError, RuntimeError):
    """The batches differ from the ones a previous run of the same stage drew."""


def fingerprint(batch: np.ndarray) -> str:
    data = np.ascontiguousarray(batch, dtype="<i8").tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def ledger_csv(first_step: int, prints: list[str]) -> str:
    lines = ["step,fingerprint"] + [f"{first_step + i},{p}" for i, p in enumerate(prints)]
    return "\n".join(lines) + "\n"


def read_ledger(path: Path) -> dict[int, str]:
    rows = Path(path).read_text(encoding="utf-8").splitlines()[1:]
    return {int(s): f for s, f in (r.split(",") for r in rows if r)}


def check_against(expected: dict[int, str], step: int, actual: str, source: str) -> None:
    want = expected.get(step)
    if want is not None and want != actual:
        raise DataOrderError(
            f"step {step}: batch fingerprint {actual} differs from {want} recorded by {source}. "
            "The same stage drew different data: its token shards changed without a new stage "
            "id, or sampling is not deterministic. Rebuild the token shards (`dvc repro`), or "
            f"delete {source} if the change is intended"
        )
