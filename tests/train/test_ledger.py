"""The token ledger (repro.train.ledger): tokens available vs drawn per dataset, in agreement
with what training's sampler really draws, phase after phase; refuses a mixture that repeats
a dataset beyond its max_epochs with the numbers and the fix. The train stage's use of it
(checked before training, carried from phase to phase) is tested in tests/stages/test_train.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from repro.errors import ReproError
from repro.train import ledger as ledger_mod
from repro.train.data import MixtureSampler, TokenShards
from repro.train.ledger import LedgerError, Phase, add_phase, available_tokens, check, ledger

SEQ_LEN = 15  # windows of 16 tokens
BATCH_TOKENS = 60  # 4 sequences per step


def make_tokens(folder: Path, file_tokens: list[int]) -> Path:
    """A tokenize output with one .ds file per entry, holding that many tokens."""
    folder.mkdir(parents=True)
    files = []
    for i, n in enumerate(file_tokens):
        name = f"train_{i:05d}.ds"
        np.arange(n, dtype="<u2").tofile(folder / name)
        files.append(name)
    (folder / "meta.json").write_text(json.dumps({
        "files": files, "dtype": "uint16", "vocab_size": 1000, "eos_id": 0,
        "num_tokens": sum(file_tokens), "num_docs": len(files)}))
    return folder


def phases(decay_steps: int = 5, decay_seq_len: int = SEQ_LEN) -> list[Phase]:
    return [Phase("stable", 10, {"a": 0.75, "b": 0.25}, SEQ_LEN, BATCH_TOKENS),
            Phase("decay", decay_steps, {"a": 0.5, "b": 0.5}, decay_seq_len, BATCH_TOKENS)]


def inputs(tmp: Path) -> dict[str, Path]:
    # a: 2 files, 100 + 90 tokens -> 6 + 5 windows (tails of 4 and 10 tokens are dropped)
    # b: 1 file of 1000 tokens -> 62 windows
    return {"a": make_tokens(tmp / "a", [100, 90]), "b": make_tokens(tmp / "b", [1000])}


def book_of(tmp: Path, max_epochs: dict[str, float] | None = None, **kw) -> dict:
    folders = inputs(tmp)
    return ledger("exp", phases(**kw), lambda n, seq_len: available_tokens(folders[n], seq_len),
                  max_epochs or {"a": 4.0, "b": 4.0})


def test_numbers_agree_with_the_training_sampler(tmp_path):
    book = book_of(tmp_path / "in")
    a, b = book["datasets"]["a"], book["datasets"]["b"]
    assert (a["tokens_available"], a["windows_available"]) == (190, 11)
    assert (b["tokens_available"], b["windows_available"]) == (1000, 62)
    # What training draws: the same sampler, positions carried from phase to phase.
    sources = {n: TokenShards(p, SEQ_LEN) for n, p in inputs(tmp_path / "again").items()}
    positions: dict[str, int] = {}
    for phase in phases():
        sampler = MixtureSampler(sources, dict(phase.mixture), BATCH_TOKENS // SEQ_LEN, 0,
                                 dict(positions))
        before = dict(sampler.positions)
        sampler.take(sampler.plan(phase.steps))
        for n in ("a", "b"):
            assert book["datasets"][n]["stages"][phase.name]["windows"] == (
                sampler.positions[n] - before[n])
        positions = sampler.positions
    assert a["windows_drawn"] == positions["a"] == 30 + 10
    assert b["windows_drawn"] == positions["b"] == 10 + 10
    assert a["tokens_drawn"] == 40 * SEQ_LEN
    assert a["epochs"] == round(40 / 11, 4)  # as train's metrics compute it
    assert a["stages"]["stable"]["epochs_end"] == round(30 / 11, 4)
    assert a["stages"]["stable"]["tokens_planned"] == 0.75 * 10 * BATCH_TOKENS
    assert book["stages"] == ["stable", "decay"] and book["window_tokens"] == 16
    assert book["round_robin_simulated"] is True


def test_phase_by_phase_is_the_whole_ledger(tmp_path):
    """A train stage adds its phase to the book its init checkpoint carries: the result is
    the ledger of all phases at once, and each intermediate book holds the phases so far."""
    folders = inputs(tmp_path / "in")
    max_epochs = {"a": 4.0, "b": 4.0}
    book = None
    for phase in phases():
        book = add_phase(book, "exp", phase,
                         {n: available_tokens(folders[n], phase.seq_len) for n in phase.mixture},
                         max_epochs)
        assert book["stages"][-1] == phase.name
        check(book)
    assert book == book_of(tmp_path / "whole")


def test_a_phase_keeps_the_datasets_it_does_not_draw_from(tmp_path):
    folders = inputs(tmp_path / "in")
    first = add_phase(None, "exp", Phase("p1", 3, {"a": 1.0}, SEQ_LEN, BATCH_TOKENS),
                      {"a": available_tokens(folders["a"], SEQ_LEN)}, {"a": 2.0})
    second = add_phase(first, "exp", Phase("p2", 3, {"b": 1.0}, SEQ_LEN, BATCH_TOKENS),
                       {"b": available_tokens(folders["b"], SEQ_LEN)}, {"b": 3.0})
    assert second["datasets"]["a"] == first["datasets"]["a"]
    assert second["datasets"]["b"]["max_epochs"] == 3.0 and second["stages"] == ["p1", "p2"]
    assert list(second["datasets"]["b"]["stages"]) == ["p2"]
    with pytest.raises(ReproError, match="experiment 'exp''s, not 'other''s"):
        add_phase(first, "other", Phase("p2", 3, {"a": 1.0}, SEQ_LEN, BATCH_TOKENS),
                  {"a": available_tokens(folders["a"], SEQ_LEN)}, {"a": 2.0})
    with pytest.raises(ReproError, match="already holds phase 'p1'"):
        add_phase(first, "exp", Phase("p1", 3, {"a": 1.0}, SEQ_LEN, BATCH_TOKENS),
                  {"a": available_tokens(folders["a"], SEQ_LEN)}, {"a": 2.0})


def test_a_longer_sequence_phase_counts_passes_at_its_own_windows(tmp_path):
    """A long-context phase draws windows of its own seq_len + 1 tokens, fewer of them per
    dataset: its passes are its windows over its own windows available, added to the
    earlier phases' passes (windows of different lengths are not added up as epochs)."""
    book = book_of(tmp_path / "in", decay_seq_len=30)  # windows of 31 tokens: 2 sequences/step
    a = book["datasets"]["a"]
    assert a["stages"]["decay"]["windows_available"] == 3 + 2  # 100 // 31 + 90 // 31
    assert a["windows_available"] == 5 and book["window_tokens"] == 31
    decay_windows = a["stages"]["decay"]["windows"]
    assert decay_windows == 5  # 5 steps x 2 sequences at 0.5
    assert a["stages"]["decay"]["tokens"] == 5 * 30
    assert a["epochs"] == round(30 / 11 + 5 / 5, 4)
    assert a["tokens_drawn"] == 30 * SEQ_LEN + 5 * 30


def test_too_many_epochs_fails_with_the_numbers_and_the_fix(tmp_path):
    with pytest.raises(LedgerError) as err:
        check(book_of(tmp_path / "in", max_epochs={"a": 3.0, "b": 4.0}))
    message = str(err.value)
    assert "dataset 'a' would be repeated 3.64 times" in message
    assert "max_epochs 3" in message and "stable 450 tokens (weight 0.75)" in message
    assert "190 tokens (11 windows of 16 tokens)" in message
    assert err.value.field == "training.stages"
    assert "lower the dataset's mixture weight" in err.value.fix and "raise" in err.value.fix
    assert "'b'" not in message  # b is within its limit


def test_the_limit_itself_passes(tmp_path):
    """epochs == max_epochs is allowed: the passes (40/11) are summed exactly, then compared
    as the float a spec's max_epochs is."""
    check(book_of(tmp_path / "in", max_epochs={"a": 40 / 11, "b": 4.0}))
    with pytest.raises(LedgerError):
        check(book_of(tmp_path / "again", max_epochs={"a": 40 / 11 - 1e-12, "b": 4.0}))


def test_known_counts_refuse_only_what_the_stages_would(tmp_path):
    """The compile-time check bounds the windows from above (tokens // window), so its
    epochs never exceed the stages' own; with a count missing it checks nothing."""
    counts = {"a": 190, "b": 1000}
    estimated = ledger("exp", phases(), lambda n, s: {"tokens": counts[n],
                                                      "windows": counts[n] // (s + 1)},
                       {"a": 4.0, "b": 4.0})
    real = book_of(tmp_path / "in")
    for n in counts:
        assert estimated["datasets"][n]["epochs"] <= real["datasets"][n]["epochs"]
    ledger_mod.check_known_counts("exp", phases(), {"a": 4.0, "b": 4.0}, counts)
    with pytest.raises(LedgerError, match="dataset 'a'"):
        ledger_mod.check_known_counts("exp", phases(), {"a": 2.0, "b": 4.0}, counts)
    ledger_mod.check_known_counts("exp", phases(), {"a": 2.0, "b": 4.0}, {"a": 190})


def test_large_phases_use_rounded_weights(monkeypatch):
    phase = Phase("s", 25, {"a": 0.7, "b": 0.3}, SEQ_LEN, BATCH_TOKENS)  # 100 slots
    exact = ledger_mod.phase_windows(phase)
    monkeypatch.setattr(ledger_mod, "EXACT_SLOTS", 10)
    rounded = ledger_mod.phase_windows(phase)
    assert rounded == {"a": 70, "b": 30}
    assert all(abs(exact[n] - rounded[n]) <= 1 for n in exact)
