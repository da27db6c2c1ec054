"""QK-Clip (Kimi K2's MuonClip; FACTS 5.7): keep attention logits bounded by shrinking the
query/key projections of a head whose largest pre-softmax logit exceeded tau.

After an optimizer step, with S_h = the largest q_i.k_j/sqrt(d) of query head h seen in the
step's batch, every head with S_h > tau gets gamma_h = tau / S_h and
  * MHA (one key head per query head): W_q rows of head h and W_k rows of head h are each
    scaled by sqrt(gamma_h), as in Kimi K2, so the logit scales by gamma_h;
  * GQA (a key head shared by several query heads): only W_q rows of head h are scaled by
    gamma_h. The source covers MHA/MLA only; this is our choice (QKClipSpec docstring,
    FACTS 5.7): scaling the shared W_k would also shrink the other query heads' logits.
Scaling is exact through RoPE (a per-position rotation, linear in q and k) and for NoPE
layers alike. SmolLM3 has no q/k norm (a norm after the projection would undo the scaling)
and no attention biases; biases, if present, are scaled with their rows.

`MaxLogitRecorder` measures S_h during the forward passes of a step (forward hooks that
recompute q and k; sdpa does not expose its logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class QKClipEvent:
    """One clipped head: its layer and query-head index, the step's max logit, and gamma."""

    layer: int
    head: int
    s_max: float
    gamma: float


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder layers of a *ForCausalLM (`model.model.layers`) or of a bare decoder."""
    inner = getattr(model, "model", model)
    return inner.layers


def _check_attention(attn: torch.nn.Module) -> None:
    for name in ("q_norm", "k_norm"):
        if getattr(attn, name, None) is not None:
            raise ValueError(f"QK-Clip rescales W_q/W_k, which {name} would undo: this model has a {name}, "
                             "so training.qk_clip cannot apply; remove qk_clip from the spec")


def _scale_rows(proj: torch.nn.Linear, rows: slice, factor: float) -> None:
    proj.weight[rows].mul_(factor)
    if proj.bias is not None:
        proj.bias[rows].mul_(factor)


@torch.no_grad()
def apply_qk_clip(model: torch.nn.Module, max_logits: dict[int, torch.Tensor], tau: float) -> list[QKClipEvent]:
    """Clip, in place, every query head whose max logit exceeded `tau` (see module doc).

    max_logits: decoder layer index -> (num_attention_heads,) tensor of the largest
    pre-softmax logit q.k/sqrt(head_dim) of each query head in the step. Returns the
    clipped heads. A non-finite entry raises ValueError: the step already diverged, and
    gamma = 0 would erase the head.
    """
    layers = decoder_layers(model)
    events: list[QKClipEvent] = []
    for i in sorted(max_logits):
        attn = layers[i].self_attn
        _check_attention(attn)
        n_heads, n_kv = attn.config.num_attention_heads, attn.config.num_key_value_heads
        d = attn.head_dim
        s = max_logits[i].detach().to("cpu", torch.float64)
        if s.shape != (n_heads,):
            raise ValueError(f"layer {i}: max_logits has shape {tuple(s.shape)}, expected ({n_heads},)")
        if not torch.isfinite(s).all():
            raise ValueError(f"layer {i}: non-finite max attention logit {s.tolist()}")
        mha = n_kv == n_heads
        for h in torch.nonzero(s > tau).flatten().tolist():
            s_max = float(s[h])
            gamma = tau / s_max
            rows = slice(h * d, (h + 1) * d)
            if mha:
                _scale_rows(attn.q_proj, rows, math.sqrt(gamma))
                _scale_rows(attn.k_proj, rows, math.sqrt(gamma))
            else:
                _scale_rows(attn.q_proj, rows, gamma)
            events.append(QKClipEvent(i, h, s_max, gamma))
    return events

# The S_h that apply_qk_clip takes are measured by repro.train.attention_probe.MaxLogitProbe.
