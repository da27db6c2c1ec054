"""train stage: a few steps on a tiny synthetic corpus. Loss goes down, reruns are
byte-identical, a second stage continues the first exactly, and mismatches fail clearly."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from repro.spec.schema import AdamWSpec, ModelSpec, TrainBPETokenizer
from repro.stages import tokenize, tokenizer, train
from repro.stages.base import StageIO
from repro.stages.configs import ScheduleSegment, TokenizeConfig, TokenizerConfig, TrainConfig

MODEL = ModelSpec(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                  nope_interval=2, max_position_embeddings=64)
WORDS = "the a cat dog sat on mat ran to house big small red blue and with of in".split()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Tokenizer and token shards of two small synthetic datasets."""
    root = tmp_path_factory.mktemp("data")
    for name, seed in (("web", 1), ("code", 2)):
        rng = random.Random(seed)
        (root / name).mkdir()
        with open(root / name / "train.jsonl", "w") as f:
            for i in range(150):
                # a little grammar so there is something to learn
                text = ". ".join(f"the {rng.choice(WORDS)} {rng.choice(['sat', 'ran'])} on the mat"
                                 for _ in range(rng.randint(2, 12)))
                f.write(json.dumps({"id": f"{name}{i}", "text": text}) + "\n")
    tokenizer.run(TokenizerConfig(tokenizer=TrainBPETokenizer(vocab_size=280), datasets=["code", "web"]),
                  StageIO("tok", {"train:web": root / "web", "train:code": root / "code"},
                          {"tokenizer": root / "tok"}))
    for name in ("web", "code"):
        tokenize.run(TokenizeConfig(dataset=name, seed=0),
                     StageIO("tz", {"docs": root / name, "tokenizer": root / "tok"},
                             {"tokens": root / f"tokens-{name}", "metrics": root / f"m-{name}.json"}))
    return root


def segment(decay_start=None, decay_end=None):
    return ScheduleSegment(peak_lr=1e-2, warmup_steps=2, decay_start_step=decay_start,
                           decay_end_step=decay_end, decay_shape="1-sqrt", min_lr_ratio=0.1)


def config(stage="s1", start=0, steps=6, mixture=None, model=MODEL, schedule=None):
    return TrainConfig(
        experiment="exp", stage=stage, model=model, optimizer=AdamWSpec(lr=1e-2), schedule=schedule or segment(),
        seq_len=32, batch_tokens=256, micro_batch_size=4, step_start=start, steps=steps,
        mixture=mixture or {"web": 0.5, "code": 0.5}, seed=0, log_every_steps=2,
    )


def run(data: Path, out: Path, cfg: TrainConfig, init: Path | None = None) -> Path:
    inputs = {"tokenizer": data / "tok", "tokens:web": data / "tokens-web", "tokens:code": data / "tokens-code"}
    if init is not None:
        inputs["init"] = init
    train.run(cfg, StageIO("train", inputs, {"checkpoint": out / "ck", "metrics": out / "metrics" / "m.json",
                                             "loss": out / "plots" / "loss.csv"}))
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_is_byte_identical_and_learns(data, tmp_path):
    cfg = config(steps=10, mixture={"web": 0.75, "code": 0.25})
    a, b = run(data, tmp_path / "a", cfg), run(data, tmp_path / "b", cfg)
    fa = files(a)
    assert fa == files(b)
    assert {"ck/model.safetensors", "ck/optimizer.pt", "ck/trainer_state.json", "ck/tokenizer.json",
            "ck/config.json", "metrics/m.json", "plots/loss.csv"} <= set(fa)
    rows = list(csv.DictReader((a / "plots" / "loss.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10]
    assert [int(r["tokens"]) for r in rows] == [512, 1024, 1536, 2048, 2560]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"]) - 0.5
    m = json.loads(fa["metrics/m.json"])
    assert (m["steps"], m["step_end"], m["tokens"], m["tokens_total"]) == (10, 10, 2560, 2560)
    assert m["final_loss"] == pytest.approx(float(rows[-1]["loss"]))
    assert m["mixture_planned_tokens"] == {"web": 1920, "code": 640} == m["mixture_consumed_tokens"]
    state = json.loads(fa["ck/trainer_state.json"])
    assert state["global_step"] == 10 and state["data_positions"] == {"web": 60, "code": 20}


def test_second_stage_continues_exactly(data, tmp_path):
    sched = segment(decay_start=4, decay_end=8)
    first = run(data, tmp_path / "first", config(steps=4, schedule=sched))
    second = run(data, tmp_path / "second", config("s2", 4, 4, schedule=sched), init=first / "ck")
    whole = run(data, tmp_path / "whole", config(steps=8, schedule=sched))
    # 4 sequences of each source per step: the round robin is back at its start after every
    # step, so two stages see exactly the data of one, and the weights must match bit for bit
    for f in ("model.safetensors", "optimizer.pt"):
        assert (second / "ck" / f).read_bytes() == (whole / "ck" / f).read_bytes(), f
    state = json.loads((second / "ck" / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and state["tokens_seen"] == 2048
    rows = list(csv.DictReader((second / "plots" / "loss.csv").open()))
    assert [int(r["step"]) for r in rows] == [6, 8] and int(rows[-1]["tokens"]) == 2048
    assert float(rows[-1]["lr"]) == pytest.approx(1e-3)  # min_lr_ratio 0.1 at the last step
    m = json.loads((second / "metrics" / "m.json").read_text())
    assert (m["tokens"], m["tokens_total"], m["step_end"]) == (1024, 2048, 8)


def test_continuing_checks_step_and_architecture(data, tmp_path):
    first = run(data, tmp_path / "first", config(steps=2))
    with pytest.raises(ValueError, match="ended at global step 2 but stage s2 starts at step 3"):
        run(data, tmp_path / "x", config("s2", 3, 2), init=first / "ck")
    with pytest.raises(ValueError, match="num_hidden_layers: checkpoint has 2"):
        run(data, tmp_path / "y", config("s2", 2, 2, model=MODEL.model_copy(update={"num_layers": 3})),
            init=first / "ck")
    assert not (tmp_path / "x" / "ck").exists() and not (tmp_path / "y" / "ck").exists()
