"""The one-step-ahead batch feed changes nothing the loop computes: the same batches and
fingerprints as drawing inline, checkpoints holding the positions of the last completed
update (not of the batch already drawn ahead), bitwise resume and rollback, and the same loss
curve as a plain synchronous reference loop written out here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from repro.model.build import TokenIds, build_model
from repro.spec.schema import AdamWSpec, ModelSpec, StabilitySpec, TrainingSettings
from repro.train.schedule import ScheduleSegment
from repro.train import resume
from repro.train.data import MixtureSampler, TokenShards
from repro.train.data_order import fingerprint
from repro.train.distributed import DistContext
from repro.train.loop import LoopSettings, Trainer
from repro.train.objective import ObjectiveSettings, TrainModule
from repro.train.optim import build_adamw
from repro.train.prefetch import BatchFeed
from repro.train.stability import StabilityGuard

SPEC = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                 max_position_embeddings=64)
IDS = TokenIds(vocab_size=64, bos=0, eos=0, pad=1)
SCHEDULE = ScheduleSegment(warmup_steps=0)  # no decay
CPU = DistContext(0, 1, torch.device("cpu"), "single")


def make_shards(folder, seed: int, n: int = 3000) -> TokenShards:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 64, n).astype("<u2")
    tokens[rng.integers(0, n, n // 20)] = 0  # EOS: documents for the doc masking
    tokens.tofile(folder / "t.ds")
    meta = {"files": ["t.ds"], "dtype": "uint16", "vocab_size": 64, "eos_id": 0, "num_tokens": n}
    (folder / "meta.json").write_text(json.dumps(meta))
    return TokenShards(folder, seq_len=16)


@pytest.fixture
def sources(tmp_path) -> dict[str, TokenShards]:
    # two sources, one small enough to wrap into a second epoch within the tests' steps
    return {"a": make_shards(tmp_path / "a", 1), "b": make_shards(tmp_path / "b", 2, n=300)}


def sampler(sources, positions=None) -> MixtureSampler:
    return MixtureSampler(sources, {"a": 0.6, "b": 0.4}, 6, 3, dict(positions or {}))


# ------------------------------------------------------------------------- BatchFeed


@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)])
def test_feed_ahead_draws_what_the_sampler_draws_inline(sources, rank, world):
    steps = 12
    ref = sampler(sources)
    plan = ref.plan(steps)
    s = sampler(sources)
    with BatchFeed(s, plan, steps, rank=rank, world=world, ahead=True) as feed:
        for k in range(steps):
            batch_np, meta = ref.take_with_meta(plan[k * 6:(k + 1) * 6])
            b = feed.get(k)
            assert b.step == k and b.fingerprint == fingerprint(batch_np)
            assert torch.equal(b.local, torch.from_numpy(batch_np)[rank::world])
            assert b.local.is_contiguous() and b.local.dtype == torch.int64
            assert b.meta == meta[rank::world]
            assert b.positions == ref.positions  # after this step's draw, not the next one's
    assert s.positions == ref.positions  # nothing drawn past the last step
    assert ref.positions["b"] > sources["b"].num_windows  # the small source wrapped


def test_feed_discard_then_redraw_from_restored_positions(sources):
    s = sampler(sources)
    plan = s.plan(6)
    with BatchFeed(s, plan, 6) as feed:
        first = [feed.get(k) for k in range(3)]  # step 3 is now being drawn
        with pytest.raises(RuntimeError, match="discard"):
            feed.get(1)  # going back without discarding: refused (after the worker finished)
        feed.discard()
        s.positions = dict(first[0].positions)  # what a rollback to update 1 restores
        again = feed.get(1)
        assert again.fingerprint == first[1].fingerprint and again.positions == first[1].positions


def test_feed_pins_memory_on_cuda_only_when_asked(sources):
    s = sampler(sources)
    with BatchFeed(s, s.plan(2), 2, ahead=False) as feed:
        assert not feed.get(0).local.is_pinned()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory and async copies need CUDA")
def test_feed_pins_memory_for_async_copies(sources):
    s = sampler(sources)
    with BatchFeed(s, s.plan(2), 2, pin_memory=True) as feed:
        for k in range(2):
            b = feed.get(k)
            assert b.local.is_pinned()
            on_gpu = b.local.to("cuda", non_blocking=True)
            assert torch.equal(on_gpu.cpu(), b.local)


# ------------------------------------------------------------------------- Trainer


def trainer(sources, steps=9, *, prefetch=True, checkpoint_every=None, resume_dir=None,
            after_update=None, guard=None, micro=3) -> Trainer:
    torch.manual_seed(0)
    model = build_model(SPEC, IDS, 0)
    module = TrainModule(model, ObjectiveSettings(eos_id=IDS.eos, doc_masking=True))
    opt = build_adamw(module, AdamWSpec())
    training = TrainingSettings(micro_batch_size=micro, log_every_steps=1, monitor=None,
                                checkpoint_every_steps=checkpoint_every)
    settings = LoopSettings(training=training, optimizer=AdamWSpec(), schedule=SCHEDULE,
                            step_start=0, steps=steps, seq_len=16, tokens_start=0,
                            resume_dir=resume_dir, config_fingerprint="t", progress=False,
                            prefetch=prefetch)
    return Trainer(module, opt, sampler(sources), settings, CPU, guard or StabilityGuard(StabilitySpec()),
                   after_update=after_update)


def weights(t: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in t.module.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def reference_losses(sources, steps: int, micro: int = 3) -> list[tuple[float, float]]:
    """The synchronous loop as it was before the feed: draw inline, copy each micro batch,
    move each micro batch's loss to the host, one float per value."""
    torch.manual_seed(0)
    model = build_model(SPEC, IDS, 0)
    module = TrainModule(model, ObjectiveSettings(eos_id=IDS.eos, doc_masking=True))
    opt = build_adamw(module, AdamWSpec())
    s = sampler(sources)
    plan = s.plan(steps)
    module.train()
    out = []
    for k in range(steps):
        batch = torch.from_numpy(s.take_with_meta(plan[k * 6:(k + 1) * 6])[0])
        step_loss = torch.zeros((), dtype=torch.float64)
        for begin in range(0, 6, micro):
            loss, _ = module(batch[begin:begin + micro], [], 0)
            (loss * (micro / 6)).backward()
            step_loss += loss.detach().double().cpu() * (micro / 6)
        params = [p for p in module.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True))
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.append((float(step_loss), norm))
    return out


def test_prefetch_on_off_and_the_synchronous_reference_agree_bitwise(sources):
    ref = reference_losses(sources, 9)
    runs = []
    for prefetch in (True, False):
        t = trainer(sources, prefetch=prefetch)
        r = t.run()
        runs.append((r, weights(t), dict(t.sampler.positions)))
        assert [(row.loss, row.grad_norm) for row in r.rows] == ref  # log_every=1: each step's values
        assert 0 < r.warmup_seconds <= r.seconds and r.steps_timed == 9
    (a, wa, pa), (b, wb, pb) = runs
    assert a.fingerprints == b.fingerprints and a.rows == b.rows and pa == pb
    assert same_weights(wa, wb)


def test_checkpoint_holds_positions_of_the_last_update_and_resume_is_bitwise(sources, tmp_path):
    """With step k+1 already drawn ahead, the state saved after update k must hold the
    sampler's positions after k updates, so that the resumed run replays the same order
    (_verify_replay) and ends bitwise equal to an uninterrupted run."""
    full = trainer(sources)
    full_result = full.run()

    saved = {}
    expected = sampler(sources)
    plan = expected.plan(9)

    class Crash(Exception):
        pass

    def crash_after(n, tokens):
        expected.take(plan[(n - 1) * 6:n * 6])
        if n == 6:
            saved["positions"] = dict(expected.positions)
        if n == 7:  # the state of update 6 is on disk; update 7's is not
            raise Crash()

    folder = tmp_path / "resume"
    with pytest.raises(Crash):
        trainer(sources, checkpoint_every=3, resume_dir=folder, after_update=crash_after).run()
    state = resume.read_state(folder, "t")
    assert state["done"] == 6 and state["positions"] == saved["positions"]

    again = trainer(sources, checkpoint_every=3, resume_dir=folder)
    result = again.run()
    assert result.resumed_from == 6 and result.steps_timed == 3
    assert result.fingerprints == full_result.fingerprints and result.rows == full_result.rows
    assert again.sampler.positions == full.sampler.positions
    assert same_weights(weights(again), weights(full))


def test_rollback_redraws_the_same_batches_with_prefetch(sources, monkeypatch):
    """A NaN at update 5: rollback discards the batch drawn ahead, restores the state of
    update 4 and redraws; with and without the feed the decisions and weights agree."""
    real = TrainModule.forward

    def runs(prefetch: bool):
        hit = []

        def flaky(self, windows, meta, tokens_seen):
            loss, parts = real(self, windows, meta, tokens_seen)
            if tokens_seen == 4 * 6 * 16 and not hit:
                hit.append(1)
                loss = loss * math.nan
            return loss, parts

        monkeypatch.setattr(TrainModule, "forward", flaky)
        guard = StabilityGuard(StabilitySpec(on_nonfinite="rollback"))
        t = trainer(sources, prefetch=prefetch, checkpoint_every=2, guard=guard)
        return t.run(), weights(t), dict(t.sampler.positions)

    (a, wa, pa), (b, wb, pb) = runs(True), runs(False)
    assert [e["step"] for e in a.events] == [5] and a.lr_scale == 0.5
    assert a.fingerprints == b.fingerprints and a.rows == b.rows and pa == pb
    assert same_weights(wa, wb)
    assert a.fingerprints == trainer(sources).run().fingerprints  # the same data order as no rollback
