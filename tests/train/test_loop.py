"""The loop logs window means, and its exported checkpoint reloads with AutoModelForCausalLM
to the very same logits as the model it trained."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from repro.model.build import TokenIds, build_model
from repro.spec.schema import AdamWSpec, ModelSpec, TrainingSettings
from repro.train.schedule import ScheduleSegment
from repro.train.checkpoint import load_optimizer_state, read_trainer_state, save_export, save_state
from repro.train.data import MixtureSampler, TokenShards
from repro.spec.schema import StabilitySpec
from repro.train.distributed import DistContext
from repro.train.loop import LoopSettings, Trainer, loss_csv
from repro.train.objective import ObjectiveSettings, TrainModule
from repro.train.optim import build_adamw
from repro.train.stability import StabilityGuard

SPEC = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                 max_position_embeddings=64)
IDS = TokenIds(vocab_size=64, bos=0, eos=0, pad=1)
SCHEDULE = ScheduleSegment(warmup_steps=0)  # no decay


def settings_every(log_every_steps: int) -> TrainingSettings:
    """Micro batches of 2, no monitor, no in-stage checkpoints."""
    return TrainingSettings(micro_batch_size=2, log_every_steps=log_every_steps, monitor=None,
                            checkpoint_every_steps=None)


def shards(tmp_path) -> TokenShards:
    folder = tmp_path / "tokens"
    folder.mkdir()
    tokens = (np.arange(4000) % 60 + 2).astype("<u2")  # a learnable cycle
    tokens.tofile(folder / "t.ds")
    meta = {"files": ["t.ds"], "dtype": "uint16", "vocab_size": 64, "eos_id": 0, "num_tokens": 4000}
    (folder / "meta.json").write_text(json.dumps(meta))
    return TokenShards(folder, seq_len=16)


def test_loop_logs_and_export_reloads_with_same_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    model = build_model(SPEC, IDS, 0)
    module = TrainModule(model, ObjectiveSettings(eos_id=IDS.eos, doc_masking=True))
    opt = build_adamw(module, AdamWSpec())
    sampler = MixtureSampler({"d": shards(tmp_path)}, {"d": 1.0}, 4, 0, {})
    settings = LoopSettings(training=settings_every(3), optimizer=AdamWSpec(), schedule=SCHEDULE,
                            step_start=0, steps=7, seq_len=16, tokens_start=100, progress=False)
    result = Trainer(module, opt, sampler, settings, DistContext(0, 1, torch.device("cpu"), "single"),
                     StabilityGuard(StabilitySpec())).run()
    rows = result.rows
    assert [(r.step, r.tokens) for r in rows] == [(3, 292), (6, 484), (7, 548)]  # last window partial
    assert rows[-1].loss < rows[0].loss
    assert len(result.fingerprints) == 7 and len(set(result.fingerprints)) == 7
    csv = loss_csv(rows).splitlines()
    assert csv[0] == "step,tokens,loss,lr,grad_norm,ce"
    assert csv[1].startswith(f"3,292,{rows[0].loss:.6f},0.0002,")  # the optimizer's LR
    assert dict(rows[0].parts)["ce"] == rows[0].loss  # plain CE: the loss is its only part

    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer_config.json").write_text("{}")
    save_export(tmp_path / "ck", model, tmp_path / "tok", {"global_step": 7, "seq_len": 9,
                                                           "data_positions": {"a": 3}})
    (tmp_path / "st").mkdir()
    save_state(tmp_path / "st", opt.state_dict(), {"global_step": 7, "data_positions": {"a": 3}})
    assert read_trainer_state(tmp_path / "st") == {"global_step": 7, "data_positions": {"a": 3}}
    assert read_trainer_state(tmp_path / "ck") == {"global_step": 7, "seq_len": 9}  # progress only
    assert json.loads((tmp_path / "ck" / "tokenizer_config.json").read_text()) == {"model_max_length": 9}
    assert int(load_optimizer_state(tmp_path / "st")["state"][0]["step"]) == 7
    assert not (tmp_path / "ck" / "optimizer.pt").exists()
    x = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10, 11]])
    model.eval()
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ck")).eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=x).logits, reloaded(input_ids=x).logits)


def test_compiled_trunk_compiles_once_for_the_whole_stage(tmp_path):
    """Static shapes: every micro batch is (micro_batch_size, seq_len + 1) and seq_len is fixed
    per stage, so the trunk compiled with dynamic=False (as the train stage does) is traced on
    the first update and never again, whatever the batch's documents. CompileCounter (dynamo's
    test backend) counts traced frames without inductor, so this needs no C++ compiler."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    model = build_model(SPEC, IDS, 0)
    trunk = torch.compile(model.model, dynamic=False, backend=counter)
    module = TrainModule(model, ObjectiveSettings(eos_id=IDS.eos, doc_masking=True), compiled_trunk=trunk)
    opt = build_adamw(module, AdamWSpec())
    sampler = MixtureSampler({"d": shards(tmp_path)}, {"d": 1.0}, 4, 0, {})
    settings = LoopSettings(training=settings_every(5), optimizer=AdamWSpec(), schedule=SCHEDULE,
                            step_start=0, steps=5, seq_len=16, tokens_start=0, progress=False)
    frames = []
    result = Trainer(module, opt, sampler, settings, DistContext(0, 1, torch.device("cpu"), "single"),
                     StabilityGuard(StabilitySpec()),
                     after_update=lambda n, tokens: frames.append(counter.frame_count)).run()
    assert frames[0] >= 1 and frames == [frames[0]] * 5  # traced during update 1 only
    assert result.warmup_seconds > 0 and math.isfinite(result.rows[-1].loss)
    torch._dynamo.reset()
