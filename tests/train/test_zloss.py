"""z-loss against a hand computation (PaLM z-loss; FACTS 3.8 has it off for SmolLM3)."""

from __future__ import annotations

import math

import pytest
import torch

from repro.train.zloss import z_loss


def lse(row):
    return math.log(sum(math.exp(x) for x in row))


def test_matches_hand_computation():
    rows = [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [-1.0, 0.5, 4.0], [10.0, 0.0, -10.0]]
    logits = torch.tensor(rows).view(2, 2, 3)
    expected = sum(lse(r) ** 2 for r in rows) / 4
    assert z_loss(logits).item() == pytest.approx(expected, rel=1e-6)
    assert lse(rows[0]) == pytest.approx(math.log(3))


def test_ignored_targets_are_left_out():
    rows = [[1.0, 2.0, 3.0], [float("nan"), 0.0, 0.0], [-1.0, 0.5, 4.0]]
    logits = torch.tensor(rows).view(1, 3, 3)
    targets = torch.tensor([[2, -100, 0]])
    expected = (lse(rows[0]) ** 2 + lse(rows[2]) ** 2) / 2
    assert z_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_all_ignored_is_zero_and_differentiable():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    out = z_loss(logits, torch.full((2, 3), -100))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_gradient_pushes_log_partition_to_zero():
    logits = torch.full((1, 4), 2.0, requires_grad=True)  # log Z = 2 + log 4 > 0
    z_loss(logits).backward()
    # d/dx_i (lse^2) = 2 * lse * softmax_i
    assert torch.allclose(logits.grad, torch.full((1, 4), 2 * (2 + math.log(4)) / 4))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="does not match"):
        z_loss(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
