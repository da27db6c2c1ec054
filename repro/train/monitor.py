"""Feature-learning monitor: per-layer relative update size, effective rank of the residual
stream and max attention logit, on a fixed probe batch (MonitorSpec).

Metrics (names as they appear in the CSV's `metric` column):
  update_rms_ratio  RMS(ΔW)/RMS(W_before) per decoder layer over all its 2-D matrices
                    (q/k/v/o and the SwiGLU gate/up/down), plus `embed` (token embedding,
                    which is also the LM head when tied) and `lm_head` when untied. It is
                    the relative size of one optimizer step (or of several, depending on
                    when `snapshot` was taken). Feature learning needs ||ΔW||/||W|| to stay
                    Θ(1)-scaled across widths (Yang, Simon & Bernstein 2023, "A Spectral
                    Condition for Feature Learning" states it in spectral norm; RMS, i.e.
                    Frobenius / sqrt(numel), is the cheap proxy Moonlight's update-RMS
                    matching also uses, FACTS 5.6). The layer value pools the matrices:
                    ||ΔW||_F / ||W||_F over their concatenation, so the MLP (2/3 of a
                    SmolLM3 layer's weights) dominates it. Norm gains (1-D) are left out.
  effective_rank    exp(entropy of the normalised singular values) of the layer's output
                    hidden states (tokens x hidden), centred; see `effective_rank`.
  max_attn_logit    largest pre-softmax q·k/sqrt(d) over heads and allowed pairs
                    (repro.train.attention_probe.MaxLogitProbe).
Layer labels: "embed", then "0".."L-1" (decoder layers, 0-based), then "lm_head".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from repro.train.attention_probe import MaxLogitProbe, decoder_layers

_PARAM_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.")


EFFECTIVE_RANK, MAX_ATTN_LOGIT, UPDATE_RMS_RATIO = "effective_rank", "max_attn_logit", "update_rms_ratio"
METRICS = (EFFECTIVE_RANK, MAX_ATTN_LOGIT, UPDATE_RMS_RATIO)
"""The values of monitor.csv's `metric` column: the compiled pipeline draws one plot per metric
(repro.stages.train.MONITOR_METRICS), so a name is written and plotted from here only."""


def _group(name: str) -> str | None:
    """CSV layer label of a 2-D parameter, or None for parameters the monitor ignores."""
    m = _PARAM_LAYER_RE.search(name)
    if m:
        return m.group(1)
    if "embed_tokens" in name:
        return "embed"
    if "lm_head" in name:
        return "lm_head"  # only reached when untied: named_parameters() drops the tied alias
    return None


def _full(p: torch.Tensor) -> torch.Tensor:
    # FSDP2 parameters are DTensor shards; the RMS needs the whole matrix. full_tensor() is a
    # collective, so with FSDP2 every rank must call snapshot/update_rms_ratios together.
    return p.full_tensor() if hasattr(p, "full_tensor") else p


def snapshot(model: torch.nn.Module, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Detached copies of the 2-D parameters `update_rms_ratios` compares (decoder matrices,
    embedding, untied LM head), by parameter name; tied weights are copied once. `device`
    ("cpu" to spare accelerator memory) defaults to each parameter's own device, the fastest."""
    out = {}
    for name, p in model.named_parameters():
        if p.ndim == 2 and _group(name) is not None:
            out[name] = _full(p.detach()).to(device=device, copy=True)
    return out


@torch.no_grad()
def update_rms_ratios(before: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, float]:
    """Layer label -> RMS(W_now - W_before) / RMS(W_before), pooled over each layer's 2-D
    matrices (sums of squares in float64). `before` comes from `snapshot(model)`."""
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    params = dict(model.named_parameters())
    for name, old in before.items():
        if name not in params:
            raise KeyError(f"snapshot has {name!r}, which the model does not")
        now = _full(params[name].detach()).to(device=old.device, dtype=torch.float64)
        old64 = old.to(torch.float64)
        g = _group(name)
        num[g] = num.get(g, 0.0) + float((now - old64).pow(2).sum())
        den[g] = den.get(g, 0.0) + float(old64.pow(2).sum())
    # equal numel in numerator and denominator, so the RMS ratio is the ratio of Frobenius norms
    return {g: (math.sqrt(num[g]) / math.sqrt(den[g]) if den[g] > 0 else math.inf) for g in num}


def effective_rank(hidden: torch.Tensor, *, center: bool = False) -> float:
    """Entropy effective rank (Roy & Vetterli 2007, "The effective rank: a measure of effective
    dimensionality", EUSIPCO): p_k = σ_k / Σσ over the singular values of the (tokens, hidden)
    matrix, erank = exp(-Σ p_k log p_k). Between 1 and rank; r equal singular values give r,
    the n x n identity gives n. A 3-D (batch, seq, hidden) input is flattened to tokens;
    an all-zero matrix gives 0.

    `center=False` (default) is the definition on the matrix as given. `center=True` first
    subtracts the mean token vector. The monitor uses centred values because LM residual
    streams carry a large direction shared by all tokens (anisotropy, Ethayarajh 2019), which
    would take most of σ_1 and make the uncentred value mostly a ratio of mean to spread; and
    rank collapse is tokens converging to one common vector 1·xᵀ (Dong, Cordonnier & Loukas
    2021, "Attention is not all you need: pure attention loses rank"), i.e. a shrinking
    centred spectrum. Singular values are computed in float64."""
    x = hidden.detach().reshape(-1, hidden.shape[-1]).to(torch.float64)
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    total = s.sum()
    if not total > 0:
        return 0.0
    p = s / total
    p = p[p > 0]  # 0·log 0 = 0
    return float(torch.exp(-(p * p.log()).sum()))


def probe_metrics(model: torch.nn.Module, probe_inputs: torch.Tensor,
                  position_ids: torch.Tensor | None = None, *, attention=None) -> dict[str, dict[str, float]]:
    """One no-grad forward of the probe batch (batch, seq) returning
    {"effective_rank": {"embed": .., "0": .., ...}, "max_attn_logit": {"0": .., ...}}.

    Effective ranks are of each decoder layer's output (the residual stream, centred) and of
    the embedding output, read by forward hooks and reduced at once, so only one layer's
    activations are held extra. Hooks rather than `output_hidden_states`: in transformers 5.x
    the last entry of `hidden_states` is the final-RMSNorm output (capture_outputs ties it to
    last_hidden_state), which would make the last layer's value not comparable with the others.
    Max logits are MaxLogitProbe's per-head maxima, maxed over heads. The model is put in
    eval mode for the forward and its mode restored after.

    `attention` (repro.model.attention.AttentionInputs of the probe batch, built on the model's
    device) runs the forward through the model's attention path (BlockMask for flex, the
    flattened batch for flash; the effective ranks flatten tokens anyway, and MaxLogitProbe
    reads each path's mask); without it the forward gets `position_ids` (the sdpa path)."""
    ranks: dict[str, float] = {}
    handles = []

    def rank_hook(label):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            ranks[label] = effective_rank(h, center=True)
        return hook

    handles.append(model.get_input_embeddings().register_forward_hook(rank_hook("embed")))
    for i, layer in decoder_layers(model).items():
        handles.append(layer.register_forward_hook(rank_hook(str(i))))
    was_training = model.training
    try:
        model.eval()
        with MaxLogitProbe(model) as probe, torch.no_grad():
            if attention is not None:
                model(input_ids=attention.input_ids, use_cache=False, **attention.kwargs)
            else:
                model(input_ids=probe_inputs, position_ids=position_ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    logits = {str(i): float(v.max()) for i, v in probe.result().items()}
    return {EFFECTIVE_RANK: ranks, MAX_ATTN_LOGIT: logits}


# --------------------------------------------------------------------------- CSV


@dataclass(frozen=True)
class MonitorRow:
    step: int
    tokens: int
    metric: str
    layer: str
    value: float


def monitor_rows(step: int, tokens: int, metrics: dict[str, dict[str, float]]) -> list[MonitorRow]:
    """Rows for one monitor record from {metric: {layer label: value}} (probe_metrics' result,
    optionally with {"update_rms_ratio": update_rms_ratios(...)} merged in)."""
    return [MonitorRow(step, tokens, metric, str(layer), float(v))
            for metric, per_layer in metrics.items() for layer, v in per_layer.items()]


def _layer_key(label: str):
    # embed first, decoder layers numerically (10 after 9), then other labels by name
    if label == "embed":
        return (0, 0, "")
    if label.isdigit():
        return (1, int(label), "")
    return (2, 0, label)


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.7g}"  # 7 significant digits: stable text, float32-level precision


def monitor_csv(rows: list[MonitorRow]) -> str:
    """Long-format CSV `step,tokens,metric,layer,value`, sorted by step, metric, layer
    (embed, 0..L-1, others) so the same rows always give the same bytes; one row per value
    suits DVC plots templated on x=step, y=value."""
    lines = ["step,tokens,metric,layer,value"]
    for r in sorted(rows, key=lambda r: (r.step, r.tokens, r.metric, _layer_key(r.layer))):
        lines.append(f"{int(r.step)},{int(r.tokens)},{r.metric},{r.layer},{_fmt(r.value)}")
    return "\n".join(lines) + "\n"
