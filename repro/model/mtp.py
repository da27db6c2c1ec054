"""Multi-token prediction (MTP) modules for SmolLM3 models: training-only extra heads.

Two kinds (MTPSpec.kind):
  sequential  DeepSeek-V3 §2.2 (FACTS 6.2). Module k (k = 1..D) at position i computes
                  h^k_i = Block_k( M_k · [RMSNorm(h^{k-1}_i) ; RMSNorm(Emb(t_{i+k}))] )
              and predicts t_{i+k+1} through the main model's shared output head. Feeding the
              embedding of t_{i+k} keeps the causal chain: depth k sees every token up to the
              one just before its target, like the main model does.
  parallel    Gloeckle et al. (FACTS 6.1). Head k is an independent transformer block on the
              trunk's hidden state h^0 and predicts t_{i+k+1} through the shared unembedding;
              the main model's own last layer + head plays the role of their first head.

Conventions (the project's windows are (batch, seq_len + 1) token ids):
  inputs = window[:, :-1] (length T), main targets = window[:, 1:].
  t_i = window[:, i]; depth k at position i predicts window[:, i + k + 1].
  Depth k runs on positions 0 .. T-k-1 only (the sequence shrinks by one per depth, as in
  DeepSeek-V3): further positions would need a target beyond the window, so they are simply
  not computed, which is the same as labelling them -100.

Choices, and why:
  * h^0 is the trunk's last hidden state BEFORE the final norm. Each consumer normalises it
    anyway (hnorm in a sequential module, the block's input_layernorm in a parallel head), so
    taking the post-norm state would normalise twice and make the MTP input depend on the
    final norm's gain; pre-norm is also the state Gloeckle et al.'s heads branch from (the
    main head = last trunk layer + norm + unembedding). `trunk_forward` captures it with a
    forward hook on `model.model.norm` during the one trunk pass: in transformers 5.x
    `output_hidden_states` replaces the last entry with the post-norm state
    (capture_outputs' tie_last_hidden_states), so it cannot give us the pre-norm one.
  * Output head = the main model's final norm + lm_head, and the sequential modules use the
    main model's embed_tokens: DeepSeek-V3 shares embedding and output head with the main
    model (FACTS 6.2); Gloeckle et al.'s heads share the unembedding (FACTS 6.1). The MTP
    weights therefore hold only what is MTP-specific (norms, projections, blocks), and the
    exported HF checkpoint is the plain model.
  * Every block uses RoPE (whatever the trunk's NoPE pattern) with the trunk's position ids,
    and the same masking as the trunk: transformers' create_causal_mask with
    attention_mask=None, which is causal and, when position ids restart inside a row,
    intra-document (packed sequences).
  * Documents: a new one starts wherever position ids do not increase by exactly 1 (the rule
    transformers' find_packed_sequence_indices uses for the mask, so masking and labels agree;
    with ids that restart at 0 it is "position id 0 starts a new document"). A target in a
    different document from the token it is predicted at is ignored (-100): predicting across
    a boundary is noise. If position_ids cover only the T inputs, the window's last token is
    taken to continue the document of token T-1 (the main CE makes the same assumption).
  * Loss = (lambda / D) · Σ_k CE_k (DeepSeek-V3; FACTS 6.2), each CE_k a mean over that
    depth's unignored positions.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from repro.spec.schema import MTPSpec
from repro.train.linear_ce import linear_cross_entropy

MTP_WEIGHTS = "mtp.safetensors"
MTP_CONFIG = "mtp_config.json"
MTP_FORMAT_VERSION = 1
IGNORE_INDEX = -100
_FALLBACK_ATTN = "sdpa"  # build.ATTN_IMPLEMENTATION; used when the config does not name one


# --------------------------------------------------------------------------- helpers


def unwrap_model(model: nn.Module) -> nn.Module:
    """The SmolLM3ForCausalLM inside DDP (`.module`) / torch.compile (`._orig_mod`) wrappers."""
    while True:
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            return model


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Per-token document index within each row: a new document starts wherever the position
    id does not follow the previous one by +1 (same rule as transformers'
    find_packed_sequence_indices, which builds the intra-document attention mask)."""
    first = position_ids[:, :1] - 1
    return (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)


def _window_documents(window: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor | None:
    """Document ids for all T+1 window tokens, or None when the rows are single documents."""
    if position_ids is None:
        return None
    b, t_plus_1 = window.shape
    pos = position_ids.to(window.device)
    if pos.shape[-1] == t_plus_1 - 1:
        docs = document_ids(pos)
        # The last target has no position id: it continues the document of token T-1.
        docs = torch.cat([docs, docs[:, -1:]], dim=-1)
    elif pos.shape[-1] == t_plus_1:
        docs = document_ids(pos)
    else:
        raise ValueError(
            f"position_ids have length {pos.shape[-1]}; expected T={t_plus_1 - 1} (the inputs) "
            f"or T+1={t_plus_1} (the whole window)"
        )
    return docs.expand(b, -1)


def mtp_labels(window: torch.Tensor, k: int, position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Targets of depth k (1-based) for positions 0..T-k-1: window[:, i+k+1], or -100 where that
    token lies in another document than token i."""
    t = window.shape[1] - 1
    n = t - k
    if n <= 0:
        raise ValueError(f"window of {t + 1} tokens is too short for MTP depth {k}")
    labels = window[:, k + 1 : k + 1 + n].clone()
    docs = _window_documents(window, position_ids)
    if docs is not None:
        labels[docs[:, :n] != docs[:, k + 1 : k + 1 + n]] = IGNORE_INDEX
    return labels


def _block_config(config, depth: int):
    """The trunk's config, reshaped for `depth` standalone blocks: all RoPE, full attention.
    A copy, so the main model's config (and what save_pretrained writes) is untouched."""
    cfg = copy.deepcopy(config)
    cfg.num_hidden_layers = depth
    cfg.no_rope_layers = [1] * depth  # MTP blocks always use RoPE (brief; the trunk may mix NoPE)
    cfg.layer_types = ["full_attention"] * depth
    cfg.use_sliding_window = False
    cfg.use_cache = False
    if getattr(cfg, "_attn_implementation", None) is None:
        # Without an implementation create_causal_mask returns no mask and attention would be
        # bidirectional: pin one.
        cfg._attn_implementation = _FALLBACK_ATTN
    return cfg


# --------------------------------------------------------------------------- modules


class _SequentialDepth(nn.Module):
    """DeepSeek-V3 MTP module k minus the shared parts (FACTS 6.2): hnorm, enorm, M_k, Block_k."""

    def __init__(self, config, layer_idx: int):
        from transformers.models.smollm3.modeling_smollm3 import SmolLM3DecoderLayer, SmolLM3RMSNorm

        super().__init__()
        h = config.hidden_size
        self.hnorm = SmolLM3RMSNorm(h, eps=config.rms_norm_eps)
        self.enorm = SmolLM3RMSNorm(h, eps=config.rms_norm_eps)
        self.proj = nn.Linear(2 * h, h, bias=False)  # M_k
        self.block = SmolLM3DecoderLayer(config, layer_idx)


class _ParallelDepth(nn.Module):
    """Gloeckle et al. head k minus the shared unembedding (FACTS 6.1): one transformer block."""

    def __init__(self, config, layer_idx: int):
        from transformers.models.smollm3.modeling_smollm3 import SmolLM3DecoderLayer

        super().__init__()
        self.block = SmolLM3DecoderLayer(config, layer_idx)


class MTPModules(nn.Module):
    """The D training-only MTP depths. The embedding, final norm and LM head are borrowed from
    the main model at call time (shared, FACTS 6.1/6.2), so they are not parameters here."""

    def __init__(self, kind: str, depth: int, config):
        from transformers.models.smollm3.modeling_smollm3 import SmolLM3RotaryEmbedding

        super().__init__()
        if kind not in ("sequential", "parallel"):
            raise ValueError(f"unknown MTP kind {kind!r}")
        self.kind = kind
        self.depth = depth
        self.config = _block_config(config, depth)
        cls = _SequentialDepth if kind == "sequential" else _ParallelDepth
        self.depths = nn.ModuleList(cls(self.config, i) for i in range(depth))
        # Own RoPE tables (non-persistent buffers, nothing saved), built from the trunk's RoPE
        # parameters so positions mean the same thing as in the trunk.
        self.rotary_emb = SmolLM3RotaryEmbedding(config=self.config)
        for d in self.depths:
            assert d.block.self_attn.use_rope and d.block.self_attn.sliding_window is None

    def _run_block(self, block: nn.Module, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_causal_mask

        # Same masking as SmolLM3Model.forward: causal, plus intra-document when position ids
        # restart inside a row (attention_mask=None lets create_causal_mask detect packing).
        mask = create_causal_mask(
            config=self.config, inputs_embeds=x, attention_mask=None, cache=None, position_ids=position_ids
        )
        return block(
            x,
            attention_mask=mask,
            position_ids=position_ids,
            position_embeddings=self.rotary_emb(x, position_ids),
        )

    def hidden_states(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        window: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Per depth k the final (pre-norm) MTP hidden state, shape (B, T-k, H), position i
        predicting window[:, i+k+1]. `hidden` is the trunk's pre-norm last hidden state for
        window[:, :-1] (see trunk_forward)."""
        b, t = hidden.shape[:2]
        if window.shape[0] != b or window.shape[1] != t + 1:
            raise ValueError(f"window shape {tuple(window.shape)} does not fit hidden {tuple(hidden.shape)}: "
                             "expected (B, T+1) with hidden = trunk(window[:, :-1])")
        if t - self.depth <= 0:
            raise ValueError(f"sequence of {t} inputs is too short for MTP depth {self.depth}")
        if position_ids is None:
            pos = torch.arange(t, device=hidden.device).unsqueeze(0)
        else:
            pos = position_ids[:, :t].to(hidden.device)  # a (B, T+1) window's ids: the inputs' part
        embed = unwrap_model(model).get_input_embeddings() if self.kind == "sequential" else None

        outs, prev = [], hidden
        for k, mod in enumerate(self.depths, start=1):
            n = t - k  # positions whose target window[:, i+k+1] lies inside the window
            p = pos[:, :n]
            if self.kind == "sequential":
                # Module k at i: previous depth's state at i and the embedding of t_{i+k}.
                e = embed(window[:, k : k + n])
                x = mod.proj(torch.cat([mod.hnorm(prev[:, :n]), mod.enorm(e)], dim=-1))
                prev = self._run_block(mod.block, x, p)
                outs.append(prev)
            else:
                # Independent heads all branch from the trunk (Gloeckle et al., FACTS 6.1).
                outs.append(self._run_block(mod.block, hidden[:, :n], p))
        return outs

    def logits(self, model, hidden, window, position_ids=None) -> list[torch.Tensor]:
        """Per depth k the logits (B, T-k, V) from the main model's final norm + lm_head."""
        base = unwrap_model(model)
        norm, head = base.model.norm, base.get_output_embeddings()
        return [head(norm(h)) for h in self.hidden_states(model, hidden, window, position_ids)]

    def forward(self, model, hidden, window, position_ids=None, cross_entropy: str = "plain") -> list[torch.Tensor]:
        """Per depth k the mean CE of predicting window[:, i+k+1] at position i (see mtp_losses)."""
        base = unwrap_model(model)
        norm, head = base.model.norm, base.get_output_embeddings()
        losses = []
        for k, h in enumerate(self.hidden_states(model, hidden, window, position_ids), start=1):
            labels = mtp_labels(window, k, position_ids).to(h.device)
            # Through the shared head's weight: plain = head(norm(h)).float() then CE in fp32 (as
            # HF's loss upcasts under bf16); chunked/liger never hold this depth's (B, T-k, V)
            # logits. Mean over the unignored targets; no valid target (e.g. every position next
            # to a boundary) gives 0 with a graph, not NaN.
            out = linear_cross_entropy(norm(h), head.weight, labels, method=cross_entropy,
                                       ignore_index=IGNORE_INDEX)
            losses.append(out.loss)
        return losses


# --------------------------------------------------------------------------- public API


def build_mtp(spec: MTPSpec, config, seed: int) -> MTPModules:
    """Fresh MTP modules for a trunk with SmolLM3 `config`. Init like HF's _init_weights
    (Linear ~ N(0, initializer_range), RMSNorm weights = 1), drawn from a private generator
    seeded by `seed`: deterministic and leaves torch's global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        mtp = MTPModules(spec.kind, spec.depth, config)
    std = config.initializer_range
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in mtp.modules():
            if isinstance(mod, nn.Linear):
                mod.weight.normal_(0.0, std, generator=gen)
                if mod.bias is not None:
                    mod.bias.zero_()
            elif "RMSNorm" in type(mod).__name__:
                mod.weight.fill_(1.0)
    return mtp.float()


class _PreNormCapture:
    """Captures the input of the trunk's final norm during one forward (a forward hook, removed
    on exit): the pre-norm last hidden state h^0 (see "Choices" above)."""

    def __init__(self, model: nn.Module):
        self.norm = unwrap_model(model).model.norm
        self.hidden: torch.Tensor | None = None

    def __enter__(self) -> "_PreNormCapture":
        def grab(module, args, kw, output):
            self.hidden = args[0] if args else kw["hidden_states"]

        self.handle = self.norm.register_forward_hook(grab, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def result(self) -> torch.Tensor:
        if self.hidden is None:
            raise RuntimeError("the final norm did not run: cannot capture the trunk's hidden state")
        return self.hidden


def trunk_forward(
    model: nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of the main model: (pre-norm last hidden state (B, T, H), logits (B, T, V)).

    Calls `model(...)` itself (so DDP / compile wrappers see a normal forward) and captures the
    input of the final norm with a forward hook: the main CE uses `logits`, MTP uses the hidden
    state, with no second trunk pass."""
    kwargs.setdefault("use_cache", False)
    with _PreNormCapture(model) as cap:
        out = model(input_ids=input_ids, position_ids=position_ids, **kwargs)
    return cap.result(), out.logits


def trunk_states(
    model: nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of the trunk (`model.model`, no LM head): (pre-norm last hidden state, final
    hidden state = norm of it), each (B, T, H). For callers that apply the head themselves,
    e.g. a fused linear cross-entropy that never builds the logits (repro.train.linear_ce).
    Runs the eager trunk: a hook added per call would not be seen by a torch.compile'd one
    (Dynamo does not guard on hooks by default)."""
    kwargs.setdefault("use_cache", False)
    with _PreNormCapture(model) as cap:
        out = unwrap_model(model).model(input_ids=input_ids, position_ids=position_ids, **kwargs)
    return cap.result(), out.last_hidden_state


def mtp_losses(
    mtp: nn.Module,
    model: nn.Module,
    hidden: torch.Tensor,
    window: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    cross_entropy: str = "plain",
) -> list[torch.Tensor]:
    """Per depth k = 1..D the mean CE of predicting window[:, i+k+1] at position i.

    mtp: MTPModules (or a DDP wrapper of it); model: the main SmolLM3ForCausalLM (its
    embedding / final norm / lm_head are shared); hidden: pre-norm trunk state for
    window[:, :-1] from trunk_forward; window: (B, T+1) token ids; position_ids: the ids the
    trunk got, (B or 1, T) or (B, T+1), or None for one document per row. Targets beyond the
    window or in another document than token i are ignored. cross_entropy: "plain" (full
    logits per depth), "chunked" or "liger" (repro.train.linear_ce, the method the main loss
    uses; same value up to rounding)."""
    return mtp(model, hidden, window, position_ids, cross_entropy=cross_entropy)


def total_mtp_loss(losses: list[torch.Tensor], weight: float) -> torch.Tensor:
    """L_MTP = (lambda / D) · Σ_k CE_k (DeepSeek-V3; FACTS 6.2); add it to the main CE."""
    if not losses:
        raise ValueError("no MTP losses")
    return (weight / len(losses)) * torch.stack(list(losses)).sum()


def _spec_record(spec: MTPSpec, mtp: MTPModules) -> dict:
    return {
        "format_version": MTP_FORMAT_VERSION,
        "kind": spec.kind,
        "depth": spec.depth,
        "hidden_size": mtp.config.hidden_size,
        "vocab_size": mtp.config.vocab_size,
        "spec": spec.model_dump(mode="json"),
        "note": "training-only multi-token-prediction modules; embedding, final norm and LM head "
                "are shared with the model in this folder and are not stored here",
    }


def save_mtp(folder, mtp: MTPModules, spec: MTPSpec) -> None:
    """Write mtp.safetensors + mtp_config.json into `folder` (beside an HF checkpoint, which
    itself holds no MTP weights). Same weights give the same bytes."""
    from safetensors.torch import save_file

    if (mtp.kind, mtp.depth) != (spec.kind, spec.depth):
        raise ValueError(f"MTP modules are {mtp.kind}/depth {mtp.depth} but the spec says "
                         f"{spec.kind}/depth {spec.depth}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in sorted(mtp.state_dict().items())}
    save_file(tensors, str(folder / MTP_WEIGHTS), metadata={"format": "pt"})
    record = _spec_record(spec, mtp)
    (folder / MTP_CONFIG).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def load_mtp(folder, spec: MTPSpec, config) -> MTPModules:
    """MTP modules saved by save_mtp, checked against this run's spec (kind, depth) and the
    trunk's config (hidden size, vocabulary)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, w_path = folder / MTP_CONFIG, folder / MTP_WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(f"{folder} has no saved MTP modules ({MTP_CONFIG} and {MTP_WEIGHTS})")
    saved = json.loads(cfg_path.read_text())
    problems = []
    if saved.get("kind") != spec.kind:
        problems.append(f"kind: saved {saved.get('kind')!r}, spec {spec.kind!r}")
    if saved.get("depth") != spec.depth:
        problems.append(f"depth: saved {saved.get('depth')!r}, spec {spec.depth!r}")
    if saved.get("hidden_size") != config.hidden_size:
        problems.append(f"hidden_size: saved {saved.get('hidden_size')!r}, model {config.hidden_size!r}")
    if saved.get("vocab_size") != config.vocab_size:
        problems.append(f"vocab_size: saved {saved.get('vocab_size')!r}, model {config.vocab_size!r}")
    if problems:
        raise ValueError(f"MTP modules in {folder} do not match this run's mtp spec / model:\n  "
                         + "\n  ".join(problems))
    mtp = build_mtp(spec, config, seed=0)  # values are overwritten below
    mtp.load_state_dict(load_file(str(w_path)), strict=True)
    return mtp
