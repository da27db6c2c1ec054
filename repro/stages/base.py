"""The stage contract and the chores every stage shares.

A stage is a module in `repro.stages` exposing `run(cfg: <Its>Config, io: StageIO) -> None`.
It imports neither the compiler nor DVC: it gets validated settings and the paths of its
inputs and outputs, and writes every output atomically (temporary path, then rename), so a
failure leaves nothing partial behind for DVC to cache. The writing helpers live in the
lowest layer, repro.atomic and repro.jsonio, which the training loop and the report share;
they are re-exported here so a stage imports its chores from one place.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from repro.atomic import (OutputWriteError, atomic_dir, atomic_write_bytes, atomic_write_text,
                          remove_stale_temporaries, work_sibling)
from repro.errors import ReproError
from repro.jsonio import dumps_json, read_json, write_json
from repro.spec.redact import redact_text

__all__ = ["OFFLINE_ENV", "OutputWriteError", "StageIO", "StageIOError", "atomic_dir",
           "atomic_write_bytes", "atomic_write_text", "dumps_json", "log", "read_json",
           "remove_stale_temporaries", "seed_everything", "set_offline_env", "work_sibling",
           "write_json"]


class StageIOError(ReproError, KeyError):
    """A stage was run without an --in/--out its kind needs (by hand, or from a dvc.yaml
    older than the code)."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0]) if self.args else ""


_IO_FIX = "run `repro compile`, then the stage through `dvc repro` (its command in dvc.yaml)"


@dataclass(frozen=True)
class StageIO:
    """Where a stage reads and writes. Keys are fixed per stage kind (see repro.paths)."""

    name: str
    inputs: Mapping[str, Path] = field(default_factory=dict)
    outputs: Mapping[str, Path] = field(default_factory=dict)

    def input(self, key: str) -> Path:
        try:
            return self.inputs[key]
        except KeyError:
            raise StageIOError(f"stage {self.name} has no input {key!r} (given: "
                               f"{sorted(self.inputs)})", fix=_IO_FIX) from None

    def output(self, key: str) -> Path:
        try:
            return self.outputs[key]
        except KeyError:
            raise StageIOError(f"stage {self.name} has no output {key!r} (given: "
                               f"{sorted(self.outputs)})", fix=_IO_FIX) from None

    def inputs_with_prefix(self, prefix: str) -> dict[str, Path]:
        """Inputs named `<prefix>:<suffix>`, keyed by suffix, in sorted order."""
        return {k.split(":", 1)[1]: v for k, v in sorted(self.inputs.items())
                if k.startswith(prefix + ":")}


def log(stage: str, message: str) -> None:
    """One progress line of a stage on stderr. Redacted: it may quote a dataset's source or a
    setting, which may hold a URL with a credential (repro.spec.redact)."""
    print(redact_text(f"[{stage}] {message}"), file=sys.stderr, flush=True)


OFFLINE_ENV = {
    # Nothing touches the network unless a spec names a remote source.
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline_env(allow_network: bool = False) -> None:
    if not allow_network:
        os.environ.update(OFFLINE_ENV)


def seed_everything(seed: int) -> None:
    """Seed python's and numpy's global generators. torch is not imported yet when the CLI
    calls this (the stage module is imported after), so the stages that use torch seed it
    themselves (repro.model.build, lm-eval's seeds, repro.train.distill's generators)."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed % (2**32))
