"""repro.train.preemption: a signalled loop finishes its update, saves that update's state
and stops; the resumed run ends bitwise where an uninterrupted one does (the Slurm side,
a SIGTERM to a whole job through the stand-in Slurm: tests/launch/test_slurm.py)."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import torch

from repro.train import resume
from repro.train.distributed import DistContext
from repro.train.preemption import Preempted, StopRequest
from tests.train.test_prefetch import same_weights, sources, trainer, weights  # noqa: F401


def _signal_at(update: int, signum: int):
    """An after_update hook that signals this process once `update` is done (a signal that
    arrives while that update runs: the loop reads it at the update's end)."""
    def hook(n: int, tokens: int) -> None:
        if n == update:
            os.kill(os.getpid(), signum)
    return hook


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_signal_saves_the_update_in_progress_and_resume_is_bitwise(sources, tmp_path, signum):
    full = trainer(sources)
    full_result = full.run()
    before = signal.getsignal(signum)

    folder = tmp_path / "resume"
    # no periodic checkpoint at all: what the rerun resumes from was written on the signal
    with pytest.raises(Preempted) as stopped:
        trainer(sources, checkpoint_every=None, resume_dir=folder,
                after_update=_signal_at(4, signum)).run()
    assert stopped.value.done == 4 and stopped.value.exit_status == 128 + signum
    assert signal.Signals(signum).name in stopped.value.message and stopped.value.fix
    assert signal.getsignal(signum) == before  # the loop's handler is gone with it
    assert resume.read_state(folder, "t")["done"] == 4

    again = trainer(sources, resume_dir=folder)
    result = again.run()
    assert result.resumed_from == 4 and result.steps_timed == 5
    assert result.fingerprints == full_result.fingerprints and result.rows == full_result.rows
    assert same_weights(weights(again), weights(full))


def test_a_signal_during_the_last_update_lets_the_stage_finish(sources, tmp_path):
    """Nothing is left to resume: the outputs are written as usual (a requeued job then
    finds them: repro.launch.slurm)."""
    t = trainer(sources, resume_dir=tmp_path / "resume", after_update=_signal_at(9, signal.SIGTERM))
    assert t.run().steps_timed == 9


def test_without_a_state_folder_the_loop_leaves_signals_alone(sources):
    """A loop that cannot save (no resume folder) installs nothing: SIGTERM keeps its
    handler, here the test's own."""
    got = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    try:
        trainer(sources, steps=3, after_update=_signal_at(2, signal.SIGUSR1)).run()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert got == [signal.SIGUSR1]


def test_off_the_main_thread_no_handler_is_set():
    """Python sets signal handlers from the main thread only: elsewhere the request stays
    unset instead of failing."""
    seen = {}

    def body():
        with StopRequest() as stop:
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["agreed"] = stop.agreed(DistContext(0, 1, torch.device("cpu"), "single"))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == {"handler": before, "agreed": None}
