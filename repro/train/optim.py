"""AdamW with named weight-decay exclusions (nanotron's `weight_decay_exclude_named_params`).

A parameter skips weight decay when its full name (as `model.named_parameters()` gives it,
e.g. `model.embed_tokens.weight`) fully matches one of the spec's regexes. SmolLM3 excludes
only the token embedding, so RMSNorm gains are decayed (FACTS 3.8). Tied weights appear once
in `named_parameters()` (under the embedding's name), so the LM head follows the embedding.
"""

from __future__ import annotations

import re

import torch

from repro.spec.schema import AdamWSpec


def param_groups(model: torch.nn.Module, spec: AdamWSpec) -> list[dict]:
    """Two groups in a fixed order: [decayed, not decayed]. Parameters are given as
    (name, tensor) pairs, so torch records `param_names` in the optimizer state."""
    patterns = [re.compile(p) for p in spec.no_decay_patterns]
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if any(r.fullmatch(name) for r in patterns) else decay).append((name, p))
    return [
        {"params": decay, "weight_decay": spec.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_adamw(model: torch.nn.Module, spec: AdamWSpec) -> torch.optim.AdamW:
    """torch.optim.AdamW over `param_groups`; the LR is set per step by the schedule."""
    groups = param_groups(model, spec)
    # foreach (multi-tensor) is torch's default on CPU; fused would add nothing at this size.
    return torch.optim.AdamW(groups, lr=0.0, betas=tuple(spec.betas), eps=spec.eps)


def load_state(optimizer: torch.optim.Optimizer, state: dict, spec: AdamWSpec) -> None:
    """Load a saved optimizer state into `optimizer` (built by `build_adamw` for the same
    model), then re-apply the spec's hyper-parameters: the saved groups carry the previous
    stage's values, and a stage may change betas, eps or weight decay."""
    expected = [g["param_names"] for g in optimizer.param_groups]
    saved = [g.get("param_names") for g in state["param_groups"]]
    if saved != expected:
        raise ValueError(
            "the saved optimizer state groups parameters differently from this stage "
            f"(saved {saved}, now {expected}); no_decay_patterns or the architecture changed "
            "between stages: keep them equal across an experiment's stages"
        )
    optimizer.load_state_dict(state)
    decayed, excluded = optimizer.param_groups
    for g in (decayed, excluded):
        g["betas"] = tuple(spec.betas)
        g["eps"] = spec.eps
    decayed["weight_decay"] = spec.weight_decay
    excluded["weight_decay"] = 0.0
