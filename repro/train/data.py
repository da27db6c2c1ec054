"""Training data: token shards cut into windows, and the deterministic mixture sampler.

Shards are datatrove `.ds` files written by the `tokenize` stage (documents separated by
EOS, document order already shuffled). A window is `seq_len + 1` consecutive tokens, the
windows of a file do not overlap (datatrove/nanotron's convention: window i covers tokens
[i*(L+1), (i+1)*(L+1))), and the tail shorter than a window is dropped. Input is window[:-1],
target window[1:]. Windows cross document boundaries; the EOS token marks them (no
intra-document attention mask: SmolLM3 used one with flash-attention, FACTS 3.3, but sdpa on
CPU would need a dense mask per sequence).

We read shards with numpy memmaps instead of datatrove's DatatroveFolderDataset because the
sampler reads windows in a seeded random order and that dataset is built for sequential
reads (it seeks and re-reads its index on every backward jump).

Mixture sampling (our own; no library does phase-aware deterministic mixing):
  * which source fills each sequence slot of a step comes from smooth weighted round robin
    (nginx's algorithm) over the phase's weights: every slot each source gains its weight,
    the richest source (ties: dataset name order) takes the slot and pays 1. Over any run of
    slots each source's count stays within one slot of weight x slots, with no randomness.
    The round robin restarts at each training phase's first step.
  * each source serves its windows in a seeded permutation, a fresh one per epoch, so a
    source that runs out wraps around (repeats data) instead of stopping. A source's
    position (windows consumed so far) is saved in the checkpoint, so the next phase goes
    on where this one stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class TokenShards:
    """The windows of one tokenized dataset (a `tokenize` output folder)."""

    def __init__(self, folder: Path, seq_len: int) -> None:
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} is missing; is {folder} a `tokenize` stage output?")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.seq_len = seq_len
        self.vocab_size = int(self.meta["vocab_size"])
        self.eos_id = int(self.meta["eos_id"])
        dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        self._files = [np.memmap(folder / f, dtype=dtype, mode="r") for f in self.meta["files"]]
        per_file = [len(m) // (seq_len + 1) for m in self._files]
        self._starts = np.cumsum([0] + per_file)  # first window index of each file
        self.num_windows = int(self._starts[-1])
        if self.num_windows == 0:
            raise ValueError(
                f"{folder} holds {self.meta['num_tokens']} tokens, less than one window of "
                f"seq_len+1={seq_len + 1}; add data or lower training.seq_len"
            )

    def window(self, i: int) -> np.ndarray:
        """Window i: (seq_len + 1,) int64 token ids."""
        f = int(np.searchsorted(self._starts, i, side="right")) - 1
        j = (i - int(self._starts[f])) * (self.seq_len + 1)
        return np.asarray(self._files[f][j : j + self.seq_len + 1], dtype=np.int64)


def _name_key(name: str) -> int:
    """A stable integer for a dataset name (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def window_order(seed: int, name: str, epoch: int, n: int) -> np.ndarray:
    """The order in which a source serves its n windows during one epoch."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _name_key(name), epoch]))
    return rng.permutation(n)


def slot_sources(weights: dict[str, float], slots: int) -> list[str]:
    """Smooth weighted round robin: the source of each of `slots` consecutive slots."""
    names = sorted(weights)
    total = sum(weights[n] for n in names)
    w = [weights[n] / total for n in names]
    current = [0.0] * len(names)
    out = []
    for _ in range(slots):
        for k in range(len(names)):
            current[k] += w[k]
        best = max(range(len(names)), key=lambda k: (current[k], -k))  # ties: first name
        current[best] -= 1.0
        out.append(names[best])
    return out


@dataclass
class MixtureSampler:
    """Which windows make up each step of a training phase.

    positions: windows consumed so far per source (carried over from the previous phase).
    """

    sources: dict[str, TokenShards]
    weights: dict[str, float]
    sequences_per_step: int
    seed: int
    positions: dict[str, int]

    def __post_init__(self) -> None:
        missing = sorted(set(self.weights) - set(self.sources))
        if missing:
            raise KeyError(f"mixture names {missing} but no token shards were given for them")
        self.positions = {n: int(self.positions.get(n, 0)) for n in sorted(set(self.positions) | set(self.weights))}
        self._orders: dict[tuple[str, int], np.ndarray] = {}

    def plan(self, steps: int) -> list[str]:
        """Source of every sequence slot of the phase, in order (steps x sequences_per_step)."""
        return slot_sources(self.weights, steps * self.sequences_per_step)

    def _window_index(self, name: str, position: int) -> int:
        n = self.sources[name].num_windows
        epoch, offset = divmod(position, n)
        key = (name, epoch)
        if key not in self._orders:
            # Keep only the current epoch's order per source: memory stays O(windows).
            self._orders = {k: v for k, v in self._orders.items() if k[0] != name}
            self._orders[key] = window_order(self.seed, name, epoch, n)
        return int(self._orders[key][offset])

    def take(self, slots: list[str]) -> np.ndarray:
        """The next window of each slot's source: (len(slots), seq_len + 1) int64."""
        return self.take_with_meta(slots)[0]

    def take_with_meta(self, slots: list[str]) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """`take`, plus each row's (source, window index): the key of cached teacher
        targets for that window."""
        rows, meta = [], []
        for name in slots:
            index = self._window_index(name, self.positions[name])
            rows.append(self.sources[name].window(index))
            meta.append((name, index))
            self.positions[name] += 1
        return np.stack(rows), meta
