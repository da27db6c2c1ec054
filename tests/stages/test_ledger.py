"""ledger stage: tokens available vs drawn per dataset, in agreement with what training's
sampler really draws; refuses a mixture that repeats a dataset beyond its max_epochs, before
any training, with the numbers and the fix; its gate does not change while it passes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from repro.stages import ledger as ledger_stage
from repro.stages.base import StageIO
from repro.stages.configs import LedgerConfig, LedgerPhase
from repro.stages.ledger import LedgerError, run
from repro.train.data import MixtureSampler, TokenShards

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


def config(max_epochs: dict[str, float] | None = None, decay_steps: int = 5) -> LedgerConfig:
    return LedgerConfig(
        experiment="exp", seq_len=SEQ_LEN, batch_tokens=BATCH_TOKENS,
        phases=[LedgerPhase(name="stable", steps=10, mixture={"a": 0.75, "b": 0.25}),
                LedgerPhase(name="decay", steps=decay_steps, mixture={"a": 0.5, "b": 0.5})],
        max_epochs=max_epochs or {"a": 4.0, "b": 4.0})


def inputs(tmp: Path) -> dict[str, Path]:
    # a: 2 files, 100 + 90 tokens -> 6 + 5 windows (tails of 4 and 10 tokens are dropped)
    # b: 1 file of 1000 tokens -> 62 windows
    return {"tokens:a": make_tokens(tmp / "a", [100, 90]),
            "tokens:b": make_tokens(tmp / "b", [1000])}


def run_ledger(tmp: Path, cfg: LedgerConfig, name: str = "out") -> tuple[dict, Path]:
    metrics, gate = tmp / f"{name}.json", tmp / f"{name}.ok"
    run(cfg, StageIO("ledger-exp", inputs(tmp / f"in-{name}"), {"metrics": metrics, "gate": gate}))
    return json.loads(metrics.read_text()), gate


def test_numbers_agree_with_the_training_sampler(tmp_path):
    cfg = config()
    book, gate = run_ledger(tmp_path, cfg)
    a, b = book["datasets"]["a"], book["datasets"]["b"]
    assert (a["tokens_available"], a["windows_available"]) == (190, 11)
    assert (b["tokens_available"], b["windows_available"]) == (1000, 62)
    # What training draws: the same sampler, positions carried from phase to phase.
    sources = {n: TokenShards(p, SEQ_LEN) for n, p in inputs(tmp_path / "again").items()
               for n in [n.split(":")[1]]}
    positions: dict[str, int] = {}
    for phase in cfg.phases:
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
    assert gate.read_text() == "token ledger of exp passed\n"


def test_too_many_epochs_fails_before_training_with_the_fix(tmp_path):
    cfg = config(max_epochs={"a": 3.0, "b": 4.0})
    with pytest.raises(LedgerError) as err:
        run_ledger(tmp_path, cfg)
    message = str(err.value)
    assert "dataset 'a' would be repeated 3.64 times" in message
    assert "max_epochs 3" in message and "stable 450 tokens (weight 0.75)" in message
    assert "190 tokens (11 windows of 16 tokens)" in message
    assert "lower the dataset's mixture weight" in message and "raise" in message
    assert "'b'" not in message  # b is within its limit
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "out.ok").exists()


def test_the_gate_stays_the_same_while_the_ledger_passes(tmp_path):
    """Training depends on the gate: a passing ledger with other numbers must not change it."""
    _, gate1 = run_ledger(tmp_path, config(), "one")
    book2, gate2 = run_ledger(tmp_path, config(max_epochs={"a": 9.0, "b": 9.0}, decay_steps=2), "two")
    assert gate1.read_bytes() == gate2.read_bytes()
    assert book2["datasets"]["a"]["max_epochs"] == 9.0


def test_missing_tokens_input_is_a_clear_error(tmp_path):
    ins = inputs(tmp_path)
    del ins["tokens:b"]
    with pytest.raises(KeyError, match=r"mixture names \['b'\]"):
        run(config(), StageIO("l", ins, {"metrics": tmp_path / "m.json", "gate": tmp_path / "g"}))


def test_large_phases_use_rounded_weights(monkeypatch):
    phase = LedgerPhase(name="s", steps=25, mixture={"a": 0.7, "b": 0.3})
    exact = ledger_stage.phase_windows(phase, 4)
    monkeypatch.setattr(ledger_stage, "EXACT_SLOTS", 10)
    rounded = ledger_stage.phase_windows(phase, 4)
    assert rounded == {"a": 70, "b": 30}
    assert all(abs(exact[n] - rounded[n]) <= 1 for n in exact)
