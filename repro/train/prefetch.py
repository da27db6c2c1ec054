"""The loop's input pipeline: each step's batch drawn one step ahead, on a background thread.

On a GPU the host must have the next batch ready when the current step's kernels are queued
(issue 17: the loop drew, stacked and hashed each step's windows on the main thread, then
copied them from pageable memory, so the GPU waited on the host every step). `BatchFeed`
draws step k+1 while step k runs: the mixture sampler's windows, the data-order fingerprint,
this rank's rows as one tensor, in pinned (page-locked) host memory on CUDA so that the
trainer's `to(device, non_blocking=True)` is an asynchronous DMA (the recipe of torch's
DataLoader `pin_memory=True`, torchtitan's and nanotron's loaders; modded-nanogpt's
`distributed_data_generator` also pins and copies non_blocking).

The data order is untouched: the feed runs the same deterministic plan through the same
sampler, one step at a time and in order, so every batch and fingerprint is what the
synchronous loop drew (tests/train/test_prefetch.py runs both and compares them bitwise).

Positions. The sampler's `positions` run one step ahead of training while a draw is pending,
so they are not what a checkpoint after update k must hold. Each `Batch` carries the
sampler's positions right after its own draw; the trainer saves those of the last completed
update (`Trainer.positions`), and a rollback first `discard()`s the pending draw before it
resets the sampler. Only the feed's worker touches the sampler while a draw is pending.
Nothing here uses torch's RNG, so the resumable state's RNG is unchanged too.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from repro.train.data import MixtureSampler
from repro.train.data_order import fingerprint


@dataclass(frozen=True)
class Batch:
    """One step's data as this rank trains on it."""

    step: int  # stage-relative update index (0-based)
    local: torch.Tensor  # this rank's rows (rank, rank + world, ...): (rows, seq_len + 1) int64
    meta: list[tuple[str, int]]  # (source, window index) of each local row
    fingerprint: str  # of the whole step's windows, every rank's rows (the data-order ledger)
    positions: dict[str, int]  # the sampler's positions right after drawing this step


class BatchFeed:
    """Batches of steps 0..steps-1 of `plan`, each drawn while the previous one trains.

    `get(k)` returns step k's batch and starts drawing step k+1 (if any) in the background;
    steps must be asked for in order, except after `discard()` (a rollback), which waits for
    the pending draw and drops it, after which the caller resets the sampler's positions and
    asks for any step. With `ahead=False` every draw happens inside `get` on the calling
    thread: the synchronous reference path.
    """

    def __init__(self, sampler: MixtureSampler, plan: list[str], steps: int, *, rank: int = 0,
                 world: int = 1, pin_memory: bool = False, ahead: bool = True) -> None:
        self.sampler = sampler
        self.plan = plan
        self.steps = steps
        self.seqs = sampler.sequences_per_step
        self.rank, self.world = rank, world
        self.pin_memory = pin_memory
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="repro-batch-feed") if ahead else None
        self._pending: tuple[int, Future] | None = None

    def _draw(self, k: int) -> Batch:
        batch_np, meta = self.sampler.take_with_meta(self.plan[k * self.seqs:(k + 1) * self.seqs])
        positions = dict(self.sampler.positions)
        fp = fingerprint(batch_np)  # hashlib releases the GIL on large buffers
        local = torch.from_numpy(batch_np)[self.rank::self.world].contiguous()
        if self.pin_memory:
            # page-locked, so the host-to-device copy is an async DMA that overlaps compute;
            # torch's caching host allocator keeps the block alive until that copy has run
            local = local.pin_memory()
        return Batch(k, local, meta[self.rank::self.world], fp, positions)

    def get(self, k: int) -> Batch:
        if self._pending is not None:
            step, future = self._pending
            self._pending = None
            if step != k:
                future.result()  # let the worker finish before raising: it owns the sampler
                raise RuntimeError(f"batch feed: step {k} asked for while step {step} was being "
                                   "drawn; call discard() before going back")
            batch = future.result()
        else:
            batch = self._draw(k)
        if self._pool is not None and k + 1 < self.steps:
            self._pending = (k + 1, self._pool.submit(self._draw, k + 1))
        return batch

    def discard(self) -> None:
        """Wait for the pending draw and drop it; the sampler's positions are then past it,
        so the caller must set them (a rollback loads them from the saved state)."""
        if self._pending is not None:
            _, future = self._pending
            self._pending = None
            future.exception()  # wait; an error drawing a dropped step does not matter

    def close(self) -> None:
        self.discard()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> BatchFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
