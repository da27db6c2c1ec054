"""Max pre-softmax attention logit per layer and query head, read without touching the forward.

Why: growth of the largest attention logit (q·k/sqrt(d_head)) is the early sign of the
attention-logit divergence that precedes loss spikes (Dehghani et al. 2023, "Scaling Vision
Transformers to 22 Billion Parameters"; Wortsman et al. 2023, "Small-scale proxies for
large-scale Transformer training instabilities"); Kimi K2's MuonClip (Moonshot AI 2025)
rescales q/k weights exactly when this per-head max exceeds a threshold.
Fused attention (sdpa / flash) never materialises the logits, so the probe recomputes them.

How: a forward pre-hook (with_kwargs=True) on every decoder layer's `self_attn` receives the
same `hidden_states` (already through `input_layernorm`), `position_embeddings` (cos, sin) and
4-D `attention_mask` the attention is about to use, and recomputes under `torch.no_grad()`:
    q = q_proj(h), k = k_proj(h)  -> (batch, heads, seq, head_dim)
    RoPE on q and k only where `module.use_rope` (SmolLM3's NoPE layers skip it, FACTS 3.2)
    k repeated over the query heads of its group (GQA, as transformers' `repeat_kv`)
    logits = q·k^T * module.scaling  (scaling = head_dim**-0.5, the attention's own scale)
then masks every key the query may not attend to with -inf and keeps the running max per
head. This mirrors `SmolLM3Attention.forward` in transformers 5.x line by line up to the
attention call. The hook returns None, so the module's inputs are unchanged; everything runs
on detached tensors without grad, so outputs and gradients are bitwise those of the unprobed
model (tests/train/test_attention_probe.py checks both).

Mask the probe applies (the attention's own):
  * a 4-D boolean mask (sdpa): True = may attend;
  * a 4-D float mask (eager): 0 = may attend, finfo.min / -inf = masked. Any other additive
    bias is treated as "allowed" and not added to the logit (SmolLM3 has none);
  * None: plain causal. transformers' `create_causal_mask` returns None for sdpa only when the
    mask is exactly causal; with `position_ids` that restart inside a row (packed documents)
    and no 2-D attention_mask it builds the intra-document mask instead, which the probe then
    receives as a tensor (masking_utils.find_packed_sequence_indices);
  * a FlexAttention BlockMask (repro.model.attention's flex path): its own mask_mod, evaluated
    per query chunk (torch's create_mask);
  * None under flash-attention (repro.model.attention's flash path, the micro batch flattened
    to one row): the documents flash packs, from the `cu_seq_lens_q` the attention receives,
    or else, for batch size 1, from the position ids (a document starts where the position id
    is at its minimum, transformers' prepare_fa_kwargs_from_position_ids); causal within each.
    Keys are read from the start of the query chunk's first document only, so the flattened
    B*T row costs what B rows of T cost.
Not supported (raise rather than report a wrong number): a KV cache (generation), and a None
mask with restarting position_ids under attention implementations other than sdpa/eager/flash.

Cost: the logits are computed in query chunks so at most ~`max_elements` floats are alive
at once; for a probe batch of 4 x 4096 tokens with 16 heads this is a few extra attention
forwards, acceptable for a probe run every `monitor.every_steps` steps but not for every step.
With gradient checkpointing the recomputed layer forwards fire the hook again; the max is
idempotent, so the result is unchanged.
"""

from __future__ import annotations

import re

import torch
from repro.model.attention import dense_mask

_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)$")
_EAGER_LIKE = ("sdpa", "eager")


def decoder_layers(model: torch.nn.Module) -> dict[int, torch.nn.Module]:
    """The decoder layers by index, found by module name `...layers.<i>` (works through DDP's
    `module.` prefix and for any HF decoder with a `layers` ModuleList)."""
    found: dict[int, torch.nn.Module] = {}
    for name, module in model.named_modules():
        m = _LAYER_RE.search(name)
        if m and hasattr(module, "self_attn"):
            found[int(m.group(1))] = module
    if not found:
        raise ValueError("no decoder layers (modules named '...layers.<i>' with a self_attn) in this model")
    return dict(sorted(found.items()))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    # transformers' rotate_half (Llama-style RoPE: halves, not interleaved pairs)
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # apply_rotary_pos_emb with unsqueeze_dim=1: cos/sin (batch, seq, head_dim) -> broadcast over heads
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + _rotate_half(x) * sin


def _restarts(position_ids: torch.Tensor | None) -> bool:
    if position_ids is None or position_ids.shape[-1] < 2:
        return False
    return bool((torch.diff(position_ids, dim=-1) != 1).any())


def _is_block_mask(mask) -> bool:
    try:
        from torch.nn.attention.flex_attention import BlockMask
    except ImportError:
        return False
    return isinstance(mask, BlockMask)


def _flash_documents(implementation: str | None, position_ids: torch.Tensor | None,
                     attn_kwargs: dict | None, bsz: int, seq: int, device) -> torch.Tensor | None:
    """(bsz, seq) document ids of the tokens flash-attention packs, or None (no packing)."""
    if implementation is None or "flash" not in implementation:
        return None
    cu = (attn_kwargs or {}).get("cu_seq_lens_q")
    if cu is not None:
        idx = torch.arange(bsz * seq, device=device)
        return torch.bucketize(idx, cu[1:].to(device=device, dtype=torch.long), right=True).view(bsz, seq)
    if bsz != 1 or position_ids is None or not _restarts(position_ids):
        return None  # transformers' flash path packs only a single row (_is_packed_sequence)
    flat = position_ids.reshape(1, -1).to(device)
    return (flat == flat.min()).long().cumsum(-1)


class _AllowedKeys:
    """The keys each query may attend to, read from what the attention receives, one query
    chunk at a time: chunk(start, stop) -> (bool mask (b|1, h|1, stop-start, hi-lo), lo, hi)
    over keys lo..hi-1."""

    def __init__(self, attention_mask, q_len: int, k_len: int, device, *, implementation: str | None = None,
                 position_ids: torch.Tensor | None = None, attn_kwargs: dict | None = None, bsz: int = 1):
        self.mask, self.q_len, self.k_len, self.device = attention_mask, q_len, k_len, device
        self.docs = None
        if attention_mask is None:
            self.docs = _flash_documents(implementation, position_ids, attn_kwargs, bsz, q_len, device)
            if self.docs is not None:
                starts = torch.arange(q_len, device=device).expand(bsz, q_len)
                new = torch.ones_like(self.docs, dtype=torch.bool)
                new[:, 1:] = self.docs[:, 1:] != self.docs[:, :-1]
                # index of the first token of each token's document
                self.doc_start = torch.where(new, starts, torch.zeros_like(starts)).cummax(dim=1).values
            elif (implementation not in _EAGER_LIKE and "flash" not in (implementation or "")
                  and _restarts(position_ids)):
                raise NotImplementedError(
                    f"attention implementation {implementation!r} gets no mask and restarting position_ids "
                    "(packed documents); the probe knows sdpa/eager/flash's conventions only"
                )
        elif _is_block_mask(attention_mask):
            if tuple(attention_mask.seq_lengths) != (q_len, k_len):
                raise ValueError(f"BlockMask of {tuple(attention_mask.seq_lengths)} for q_len={q_len}, "
                                 f"k_len={k_len}")
        elif not isinstance(attention_mask, torch.Tensor):
            raise NotImplementedError(f"attention mask of type {type(attention_mask).__name__} is not "
                                      "supported by MaxLogitProbe")
        elif attention_mask.ndim != 4:
            raise ValueError("expected the 4-D mask the attention receives, got shape "
                             f"{tuple(attention_mask.shape)}")

    def chunk(self, start: int, stop: int, *, window: bool = True) -> tuple[torch.Tensor, int, int]:
        mask, k_len = self.mask, self.k_len
        if mask is None and self.docs is not None:
            lo = int(self.doc_start[:, start].min()) if window else 0
            hi = stop if window else k_len
            q = torch.arange(start, stop, device=self.device)[:, None]
            k = torch.arange(lo, hi, device=self.device)[None, :]
            same = self.docs[:, start:stop, None] == self.docs[:, None, lo:hi]
            return ((k <= q) & same)[:, None], lo, hi
        if mask is None:
            full = torch.ones(self.q_len, k_len, dtype=torch.bool, device=self.device).tril(k_len - self.q_len)
            return full[None, None, start:stop], 0, k_len
        if _is_block_mask(mask):
            return dense_mask(mask, start, stop).to(self.device), 0, k_len
        m = mask[..., start:stop, :k_len]  # sdpa_attention_forward slices the key dim the same way
        if m.dtype != torch.bool:
            # eager: additive float mask, 0 where allowed and finfo(dtype).min (or -inf) where masked
            m = m > torch.finfo(m.dtype).min / 2
        return m, 0, k_len


def allowed_mask(attention_mask, q_len: int, k_len: int, device, *, implementation: str | None = None,
                 position_ids: torch.Tensor | None = None, attn_kwargs: dict | None = None,
                 bsz: int = 1) -> torch.Tensor:
    """Boolean (batch|1, heads|1, q_len, k_len) mask of the keys each query attends to, read
    from the mask the attention receives (see the module docstring for the conventions)."""
    keys = _AllowedKeys(attention_mask, q_len, k_len, device, implementation=implementation,
                        position_ids=position_ids, attn_kwargs=attn_kwargs, bsz=bsz)
    return keys.chunk(0, q_len, window=False)[0]


class MaxLogitProbe:
    """Context manager recording, per decoder layer and query head, the largest pre-softmax
    attention logit q·k/sqrt(head_dim) over all allowed (query, key) pairs of every forward
    pass run while it is active.

        with MaxLogitProbe(model) as probe:
            model(input_ids=x, position_ids=pos)
        probe.result()  # {layer: tensor(num_heads)}

    `max_elements` bounds the temporary logits tensor (queries are processed in chunks).
    """

    def __init__(self, model: torch.nn.Module, *, max_elements: int = 1 << 26):
        self.model = model
        self.max_elements = max_elements
        self._handles: list = []
        self._max: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> MaxLogitProbe:
        if self._handles:
            raise RuntimeError("MaxLogitProbe is already active")
        for idx, layer in decoder_layers(self.model).items():
            self._handles.append(
                layer.self_attn.register_forward_pre_hook(self._hook(idx), with_kwargs=True)
            )
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # ------------------------------------------------------------------ results
    def result(self) -> dict[int, torch.Tensor]:
        """layer index -> (num_heads,) float32 CPU tensor of max logits (-inf for a head that
        saw no allowed pair). Layers the forward never reached are absent."""
        return {i: t.detach().float().cpu().clone() for i, t in sorted(self._max.items())}

    def reset(self) -> None:
        self._max.clear()

    # ------------------------------------------------------------------ the hook
    def _hook(self, layer_idx: int):
        def hook(module, args, kwargs):
            # SmolLM3DecoderLayer passes everything by keyword; accept the positional order of
            # SmolLM3Attention.forward(hidden_states, position_embeddings, attention_mask, cache) too.
            names = ("hidden_states", "position_embeddings", "attention_mask", "cache")
            got = {n: kwargs.get(n) for n in names}
            for n, a in zip(names, args):
                got[n] = a
            if got["cache"] is not None or kwargs.get("past_key_values") is not None:
                raise NotImplementedError("MaxLogitProbe does not support a KV cache; run the probe "
                                          "forward with use_cache=False")
            with torch.no_grad():
                per_head = self._layer_max(module, got["hidden_states"], got["position_embeddings"],
                                           got["attention_mask"], kwargs.get("position_ids"), kwargs)
            old = self._max.get(layer_idx)
            self._max[layer_idx] = per_head if old is None else torch.maximum(old, per_head)
            return None  # inputs untouched

        return hook

    def _layer_max(self, module, hidden, position_embeddings, attention_mask, position_ids,
                   attn_kwargs=None) -> torch.Tensor:
        hidden = hidden.detach()
        bsz, seq, _ = hidden.shape
        head_dim = module.head_dim
        # Same projections and reshape as SmolLM3Attention.forward: (b, s, h*d) -> (b, h, s, d)
        q = module.q_proj(hidden).view(bsz, seq, -1, head_dim).transpose(1, 2)
        k = module.k_proj(hidden).view(bsz, seq, -1, head_dim).transpose(1, 2)
        if getattr(module, "use_rope", True):
            cos, sin = (t.detach() for t in position_embeddings)
            q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)  # in the model's dtype, as it does
        n_heads = q.shape[1]
        k = k.repeat_interleave(n_heads // k.shape[1], dim=1)  # GQA: == transformers' repeat_kv
        # Logits in fp32: the max is reported, not used, so avoid bf16 rounding of large values.
        q, k = q.float(), k.float()
        implementation = getattr(getattr(module, "config", None), "_attn_implementation", None)
        keys = _AllowedKeys(attention_mask, seq, k.shape[2], hidden.device, implementation=implementation,
                            position_ids=position_ids, attn_kwargs=attn_kwargs, bsz=bsz)
        chunk = max(1, self.max_elements // max(1, bsz * n_heads * k.shape[2]))
        best = torch.full((n_heads,), float("-inf"), device=hidden.device)
        for start in range(0, seq, chunk):
            stop = min(seq, start + chunk)
            allowed, lo, hi = keys.chunk(start, stop)
            logits = torch.matmul(q[:, :, start:stop], k[:, :, lo:hi].transpose(2, 3)) * module.scaling
            logits = logits.masked_fill(~allowed, float("-inf"))
            best = torch.maximum(best, logits.amax(dim=(0, 2, 3)))
        return best
