"""z-loss (PaLM, Chowdhery et al. 2022, arXiv 2204.02311, training setup): an auxiliary loss z_weight * log(Z)^2, with
log(Z) = logsumexp of a token's logits, that keeps the softmax normaliser near 1 (log Z
near 0) and so the output logits from drifting; PaLM used weight 1e-4. SmolLM3 trains
without it (FACTS 3.8), so the spec's `z_loss` weight defaults to 0.

This is the definition; the fused LM-head losses (repro.train.linear_ce: chunked, Liger's
`lse_square_scale`) compute the same mean over kept targets inside their one pass over the
logits, and tests/train/test_linear_ce.py checks them against this function.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # the cross-entropy convention for "no target here"


def z_loss(logits: torch.Tensor, targets: torch.Tensor | None = None,
           ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean over tokens of logsumexp(logits, -1)**2, unweighted (the caller multiplies by
    the spec's weight). logits: (..., vocab); targets: the matching (...) target ids, whose
    `ignore_index` positions are left out of the mean like cross entropy leaves them out.
    Computed in fp32. With every position ignored the result is 0 (still differentiable)."""
    lse = torch.logsumexp(logits.float(), dim=-1)  # (...)
    sq = lse.square()
    if targets is None:
        return sq.mean()
    if targets.shape != lse.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} does not match logits {tuple(logits.shape)}")
    keep = targets != ignore_index
    # where, not multiply: a non-finite logit at an ignored position stays out of the value.
    return torch.where(keep, sq, 0.0).sum() / keep.sum().clamp(min=1)
