"""The export parity gate: what AutoModelForCausalLM loads must compute what was trained."""

from __future__ import annotations

import pytest
import torch

from repro.model.build import TokenIds, build_model
from repro.spec.schema import ModelSpec
from repro.train.checkpoint import ExportParityError, check_export_parity

SPEC = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                 max_position_embeddings=64)
IDS = TokenIds(vocab_size=64, bos=0, eos=0, pad=1)
BATCH = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10]])


def test_parity_passes_on_a_faithful_export(tmp_path):
    model = build_model(SPEC, IDS, 0)
    model.save_pretrained(str(tmp_path))
    assert check_export_parity(model, tmp_path, BATCH) == 0.0
    assert model.training  # the gate leaves the model's mode as it found it


def test_parity_fails_with_the_max_difference(tmp_path):
    model = build_model(SPEC, IDS, 0)
    model.save_pretrained(str(tmp_path))
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.add_(0.05)  # the export no longer matches
    with pytest.raises(ExportParityError, match=r"differing from the trained model's by up to [0-9.e-]+ \(tolerance 1e-05\)"):
        check_export_parity(model, tmp_path, BATCH)
