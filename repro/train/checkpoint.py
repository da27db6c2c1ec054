"""Checkpoint folder of a training stage: what the next stage and lm-eval load.

  config.json, generation_config.json, model.safetensors   model.save_pretrained (fp32)
  tokenizer.json, tokenizer_config.json, ...               copied from the tokenizer stage
  optimizer.pt                                             torch.save(optimizer.state_dict())
  trainer_state.json                                       global_step, tokens_seen,
                                                           data_positions, seq_len, ...
Every file is byte-identical across reruns: safetensors sorts tensors and stores no time;
torch.save's zip has no timestamps and its serialization id is derived from the content
(checked in tests/train/test_loop.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from repro.stages.base import dumps_json, read_json

OPTIMIZER_FILE = "optimizer.pt"
TRAINER_STATE_FILE = "trainer_state.json"


def save_checkpoint(folder: Path, model, optimizer_state: dict, tokenizer_dir: Path,
                    trainer_state: dict) -> None:
    """optimizer_state: the optimizer's state_dict() (unsharded; see
    repro.train.distributed.optimizer_state)."""
    save_snapshot(folder, model, tokenizer_dir, trainer_state)
    torch.save(optimizer_state, Path(folder) / OPTIMIZER_FILE)


def save_snapshot(folder: Path, model, tokenizer_dir: Path, trainer_state: dict) -> None:
    """What lm-eval needs to load a model: save_pretrained weights and config, the tokenizer
    files and trainer_state.json; no optimizer state (a snapshot is never continued)."""
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    for f in sorted(Path(tokenizer_dir).iterdir()):
        if f.is_file() and not (folder / f.name).exists():  # never overwrite the model's files
            shutil.copyfile(f, folder / f.name)
    (folder / TRAINER_STATE_FILE).write_text(dumps_json(trainer_state), encoding="utf-8")


def read_trainer_state(folder: Path) -> dict:
    path = Path(folder) / TRAINER_STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; is {folder} a checkpoint written by a `train` stage?")
    return read_json(path)


def load_optimizer_state(folder: Path) -> dict:
    # weights_only: the file holds tensors and plain containers only.
    return torch.load(Path(folder) / OPTIMIZER_FILE, map_location="cpu", weights_only=True)


class ExportParityError(RuntimeError):
    """The exported checkpoint does not compute what the trained model computes."""


def check_export_parity(model, folder: Path, input_ids: torch.Tensor, atol: float = 1e-5) -> float:
    """Reload `folder` with plain AutoModelForCausalLM and compare its logits with `model`'s
    on `input_ids`; the max absolute difference, or ExportParityError above `atol`. This is
    what lm-eval and every downstream user will load, so it is checked before anything
    evaluates it."""
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32,
                                                    trust_remote_code=False).eval()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        ours = model(input_ids=input_ids.to(device), use_cache=False).logits.float().cpu()
        theirs = reloaded(input_ids=input_ids, use_cache=False).logits.float()
    model.train(was_training)
    diff = float((ours - theirs).abs().max())
    if not diff <= atol:
        raise ExportParityError(
            f"the exported checkpoint {folder} reloaded with AutoModelForCausalLM gives logits "
            f"differing from the trained model's by up to {diff:.3g} (tolerance {atol:g}) on a "
            "fixed batch: the export lost or changed weights or config; nothing was evaluated"
        )
    return diff
