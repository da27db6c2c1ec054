"""Document masking without a dense mask: the attention path a train stage runs.

A training window packs documents separated by EOS; SmolLM3 trained with intra-document
masking (nanotron `_use_doc_masking`, FACTS 3.3). Three paths compute the same function
(`training.attention`, resolved per device by repro.train.backends.resolve):

  sdpa   position ids restarting after every EOS (repro.train.positions); transformers derives
         a dense block-diagonal 4-D mask from them (masking_utils.find_packed_sequence_indices).
         A dense mask rules out sdpa's flash kernel on a GPU: issue 17 measured -12 to -19% of
         tokens/s on an H200. The CPU default, bitwise today's behaviour.
  flex   torch FlexAttention with a BlockMask built from the EOS positions, as torchtitan does
         (torchtitan/models/attention.py `get_document_mask_mod`): document id of a token = the
         number of EOS before it, mask_mod = causal & same document. The BlockMask is built once
         per micro batch (B, T fixed per phase, so shapes stay static and torch.compile does not
         recompile) and passed as `attention_mask`: a 4-D mask makes transformers'
         create_causal_mask return it as is. RoPE still takes the per-document position ids.
  flash  flash-attn's varlen kernel through transformers' `flash_attention_2` (nanotron's
         SmolLM3 recipe: flash_attn_varlen_func with cu_seqlens). transformers only packs
         sequences for batch size 1, so the micro batch is flattened (B, T) -> (1, B*T); every
         row start is a document start (position 0), so no document crosses a row. cu_seqlens
         are computed here once per micro batch (not once per layer from position ids) and
         padded to a power-of-two number of documents with empty documents at the end, and
         max_seqlen is the row length T: shapes and Python ints then change rarely, so a
         compiled graph is reused (modded-nanogpt pads cu_seqlens for the same reason).

Flex is a transformers attention implementation registered here under FLEX_IMPLEMENTATION
(attention function + mask function, transformers' AttentionInterface /
AttentionMaskInterface) rather than transformers' own "flex_attention", for two reasons:
  * torch has no FlexAttention backward on CPU (flex_attention raises NotImplementedError for
    inputs that require grad) and transformers' own path compiles flex_attention with inductor
    even on CPU. On CPU this implementation evaluates the BlockMask's own mask_mod densely
    (torch.nn.attention.flex_attention.create_mask, the reference math flex's eager mode runs
    anyway) and calls sdpa with it, so training, tests and the QK-clip probe run on CPU with
    the very mask the GPU kernel gets; tests check torch's real flex_attention forward on CPU
    against it. On CUDA it calls torch's flex_attention kernel (compiled once, like
    transformers' WrappedFlexAttention and torchtitan's FlexAttentionWrapper; inline when the
    model itself is being compiled).
  * q/k/v are cast to one dtype (the autocast dtype under autocast) before the kernel: RoPE
    leaves q/k in fp32 next to a bf16 v under autocast, which older torch's flex rejects.

The exported checkpoint stays a plain HF checkpoint: transformers never serialises the
attention implementation (PreTrainedConfig._remove_keys_not_serialized drops
`_attn_implementation_internal`), and the stage switches the model back to sdpa before export
(set_attention returns the previous implementation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from repro.train.determinism import inductor_follows_torch
from repro.train.positions import document_position_ids

KINDS = ("sdpa", "flex", "flash")
FLEX_IMPLEMENTATION = "repro_flex"
FLASH_IMPLEMENTATION = "flash_attention_2"
HF_IMPLEMENTATION = {"sdpa": "sdpa", "flex": FLEX_IMPLEMENTATION, "flash": FLASH_IMPLEMENTATION}


# --------------------------------------------------------------------------- documents


def document_ids(inputs: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(B, T) int32 document index of every token: the number of EOS before it in its row (the
    EOS closes its own document; torchtitan get_document_mask_mod). Same documents as
    repro.train.positions.document_position_ids (positions restart on the token after EOS)."""
    if inputs.dim() != 2:
        raise ValueError(f"document_ids expects (batch, seq) token ids, got shape {tuple(inputs.shape)}")
    eos = (inputs == eos_id).to(torch.int32)
    return (eos.cumsum(dim=1) - eos).to(torch.int32)


def _document_mask_mod(docs: torch.Tensor):
    def mask_mod(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (docs[b, q_idx] == docs[b, kv_idx])

    return mask_mod


def _causal_mask_mod(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


_COMPILED_CREATE_BLOCK_MASK: Any = None


def _create_block_mask(mask_mod, batch: int | None, q_len: int, kv_len: int, device: torch.device):
    """torch's create_block_mask; compiled on CUDA (torchtitan: `torch.compile(create_block_mask)`,
    what create_block_mask(_compile=True) did before torch deprecated the flag), eager on CPU
    where inductor would only add minutes of compile for a small mask."""
    global _COMPILED_CREATE_BLOCK_MASK
    from torch.nn.attention.flex_attention import create_block_mask

    fn = create_block_mask
    if torch.device(device).type == "cuda":
        if _COMPILED_CREATE_BLOCK_MASK is None:
            _COMPILED_CREATE_BLOCK_MASK = torch.compile(create_block_mask)
        fn = _COMPILED_CREATE_BLOCK_MASK
    return fn(mask_mod, batch, None, q_len, kv_len, device=device)


def document_block_mask(inputs: torch.Tensor, eos_id: int | None):
    """BlockMask (B, 1, T, T) for causal attention within documents (eos_id None: plain
    causal). One per micro batch; H=None broadcasts over heads, so the trunk, MTP-free teacher
    and any head count share it."""
    batch, seq = inputs.shape
    if eos_id is None:
        return _create_block_mask(_causal_mask_mod, None, seq, seq, inputs.device)
    return _create_block_mask(_document_mask_mod(document_ids(inputs, eos_id)), batch, seq, seq, inputs.device)


def dense_mask(block_mask, q_start: int = 0, q_stop: int | None = None) -> torch.Tensor:
    """The boolean (B, 1, q_stop-q_start, KV) mask a BlockMask stands for (True = may attend),
    evaluated from its mask_mod (torch's create_mask), for query rows [q_start, q_stop)."""
    from torch.nn.attention.flex_attention import create_mask

    batch = block_mask.kv_num_blocks.shape[0]
    q_len, kv_len = block_mask.seq_lengths
    q_stop = q_len if q_stop is None else q_stop
    mod = block_mask.mask_mod
    if q_start:
        def mod(b, h, q_idx, kv_idx, _inner=block_mask.mask_mod):  # noqa: E306
            return _inner(b, h, q_idx + q_start, kv_idx)
    return create_mask(mod, batch, 1, q_stop - q_start, kv_len, device=block_mask.kv_num_blocks.device)


# --------------------------------------------------------------------------- flash (varlen) inputs


def packed_cu_seqlens(position_ids: torch.Tensor, *, pad_to_power_of_two: bool = True) -> torch.Tensor:
    """int32 cumulative document lengths over the flattened batch, from position ids that are 0
    at every document start (each row starts one): [0, start_1, ..., B*T], then, if
    `pad_to_power_of_two`, B*T repeated (empty documents) up to a power-of-two length so that
    a compiled graph sees few distinct shapes (modded-nanogpt pads cu_seqlens for static
    shapes). transformers' prepare_fa_kwargs_from_position_ids uses the same starts."""
    flat = position_ids.reshape(-1)
    total = flat.numel()
    starts = torch.nonzero(flat == 0, as_tuple=False).flatten().to(torch.int32)
    end = torch.tensor([total], dtype=torch.int32, device=flat.device)
    cu = torch.cat([starts, end])
    if pad_to_power_of_two:
        want = 1 << max(0, (cu.numel() - 1)).bit_length()
        want = min(max(want, 2), total + 1)
        if want > cu.numel():
            cu = torch.cat([cu, end.expand(want - cu.numel())])
    return cu


# --------------------------------------------------------------------------- per micro batch


@dataclass(frozen=True)
class AttentionInputs:
    """What the trunk forward takes for one micro batch under one attention path.

    model(input_ids=ai.input_ids, **ai.kwargs) then `ai.unflatten(out)` (logits or hidden
    states) gives (B, T, ...) as for the unflattened batch. `position_ids` are the (B, T)
    per-document position ids (or None) for consumers of labels/RoPE outside the trunk (MTP
    blocks, probes)."""

    kind: str
    shape: tuple[int, int]  # (B, T) of the micro batch
    input_ids: torch.Tensor  # what the model gets: (B, T), or (1, B*T) for flash with documents
    position_ids: torch.Tensor | None  # (B, T) document positions, None = one document per row
    kwargs: dict[str, Any] = field(default_factory=dict)  # position_ids / attention_mask / cu_seq_lens_*

    @property
    def flattened(self) -> bool:
        return tuple(self.input_ids.shape) != tuple(self.shape)

    def unflatten(self, t: torch.Tensor) -> torch.Tensor:
        """(1, B*T, ...) -> (B, T, ...) for the flash path; identity otherwise."""
        if not self.flattened:
            return t
        return t.reshape(*self.shape, *t.shape[2:])


def attention_inputs(inputs: torch.Tensor, eos_id: int, kind: str, doc_masking: bool) -> AttentionInputs:
    """The trunk's kwargs for `inputs` (B, T) under attention `kind` (sdpa|flex|flash)."""
    if kind not in KINDS:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {KINDS}")
    shape = (int(inputs.shape[0]), int(inputs.shape[1]))
    pos = document_position_ids(inputs, eos_id) if doc_masking else None
    if kind == "sdpa":
        # today's behaviour exactly: transformers builds the mask from the position ids
        return AttentionInputs(kind, shape, inputs, pos, {"position_ids": pos})
    if kind == "flex":
        mask = document_block_mask(inputs, eos_id if doc_masking else None)
        return AttentionInputs(kind, shape, inputs, pos, {"position_ids": pos, "attention_mask": mask})
    # flash
    if pos is None:
        # one document per row: the plain (non-varlen) causal kernel on (B, T)
        return AttentionInputs(kind, shape, inputs, None, {"position_ids": None})
    flat_pos = pos.reshape(1, -1)
    cu = packed_cu_seqlens(flat_pos)
    kwargs = {"position_ids": flat_pos, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
              # an upper bound is valid for flash-attn (it sizes the grid); a constant keeps
              # the compiled graph from specialising on every batch's longest document
              "max_length_q": shape[1], "max_length_k": shape[1]}
    return AttentionInputs(kind, shape, inputs.reshape(1, -1), pos, kwargs)


# --------------------------------------------------------------------------- model switching


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    while True:
        if isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), torch.nn.Module):
            model = model.module
        else:
            return model


def implementation(model: torch.nn.Module) -> str | None:
    """The transformers attention implementation a model (or MTPModules) runs."""
    cfg = getattr(_unwrap(model), "config", None)
    return getattr(cfg, "_attn_implementation", None)


def kind_of(model: torch.nn.Module) -> str:
    """The attention kind (sdpa|flex|flash) a model runs ('sdpa' for eager/None too)."""
    impl = implementation(model)
    for kind, name in HF_IMPLEMENTATION.items():
        if impl == name:
            return kind
    return "sdpa"


def set_attention(model: torch.nn.Module, kind: str) -> str:
    """Switch `model` (a transformers PreTrainedModel, possibly DDP/compile-wrapped, or
    repro.model.mtp.MTPModules) to attention `kind`; returns the previous kind so the caller
    can restore "sdpa" before export. MTPModules keep sdpa under flash: their blocks run on
    unflattened (B, T-k) inputs where flash_attention_2 would not see the documents."""
    if kind not in KINDS:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {KINDS}")
    target = _unwrap(model)
    previous = kind_of(target)
    if kind == "flex":
        register_flex()
    name = HF_IMPLEMENTATION[kind]
    if hasattr(target, "set_attn_implementation"):
        target.set_attn_implementation(name)
    else:  # MTPModules: a private config copy read by create_causal_mask and the blocks
        if kind == "flash":
            name = "sdpa"
        target.config._attn_implementation = name
    return previous


# --------------------------------------------------------------------------- flex implementation

_COMPILED_FLEX: Any = None
_REGISTERED = False


def _flex_kernel():
    global _COMPILED_FLEX
    from torch.nn.attention.flex_attention import flex_attention

    if torch.compiler.is_compiling():
        return flex_attention  # inside the compiled model: dynamo lowers it in place
    if _COMPILED_FLEX is None:
        inductor_follows_torch()
        _COMPILED_FLEX = torch.compile(flex_attention)
    return _COMPILED_FLEX


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def flex_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                           sliding_window=None, softcap=None, **kwargs):
    """transformers attention function (AttentionInterface signature) for FLEX_IMPLEMENTATION.
    query (B, Hq, T, D), key/value (B, Hkv, T, D); returns ((B, T, Hq, D), None)."""
    from torch.nn.attention.flex_attention import BlockMask

    if dropout:
        raise ValueError("attention dropout is not supported by the flex path (SmolLM3 trains without)")
    if softcap is not None or sliding_window is not None:
        raise NotImplementedError("the flex path implements causal document masking only: no logit "
                                  "softcap, no sliding window (SmolLM3 uses neither)")
    if not isinstance(attention_mask, BlockMask):
        raise TypeError(f"the flex path needs a BlockMask, got {type(attention_mask).__name__}: pass "
                        "repro.model.attention.attention_inputs(...).kwargs to the model")
    q_len, k_len = query.shape[2], key.shape[2]
    if tuple(attention_mask.seq_lengths) != (q_len, k_len):
        raise ValueError(f"BlockMask built for {tuple(attention_mask.seq_lengths)} used for "
                         f"(q={q_len}, kv={k_len}): build one per micro batch")
    dtype = torch.get_autocast_dtype(query.device.type) if torch.is_autocast_enabled(query.device.type) \
        else value.dtype
    query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    n_rep = query.shape[1] // key.shape[1]
    if query.device.type == "cpu":
        # Reference math on CPU (torch's flex has no backward here): the BlockMask's own
        # mask_mod, evaluated densely, in sdpa.
        mask = dense_mask(attention_mask)
        out = torch.nn.functional.scaled_dot_product_attention(
            query, _repeat_kv(key, n_rep), _repeat_kv(value, n_rep), attn_mask=mask, scale=scaling)
    else:
        heads = query.shape[1]
        gqa = n_rep > 1 and heads & (heads - 1) == 0  # as transformers: repeat k/v for odd head counts
        if n_rep > 1 and not gqa:
            key, value = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
        out = _flex_kernel()(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


def flex_mask(batch_size: int, q_length: int | None = None, kv_length: int | None = None,
              q_offset: int = 0, kv_offset: int = 0, mask_function=None,
              attention_mask: torch.Tensor | None = None, device=None, **kwargs):
    """transformers mask function (AttentionMaskInterface signature) for FLEX_IMPLEMENTATION:
    the BlockMask of create_causal_mask's `mask_function` (causal, and intra-document when
    position ids restart: masking_utils' packed-sequence rule). Used where no BlockMask is
    passed in: MTP blocks, evaluation/export forwards of a model still switched to flex.
    Accepts the older transformers convention too (`cache_position` instead of q_length and
    q_offset)."""
    from transformers.masking_utils import causal_mask_function

    cache_position = kwargs.get("cache_position")
    if q_length is None:
        if cache_position is None:
            raise TypeError("flex_mask needs q_length (or cache_position)")
        q_length, q_offset = int(cache_position.shape[0]), cache_position[0]
    if device is None:
        device = cache_position.device if cache_position is not None else "cpu"
    if torch.is_tensor(q_offset) and not torch.compiler.is_compiling():
        q_offset = int(q_offset)  # a 0-d tensor offset would add a dimension to the mask
    if attention_mask is not None and not bool(attention_mask.all()):
        raise NotImplementedError("the flex path has no padding masks (training windows are never padded)")
    fn = causal_mask_function if mask_function is None else mask_function
    if q_offset or kv_offset:
        inner = fn

        def fn(b, h, q_idx, kv_idx):
            return inner(b, h, q_idx + q_offset, kv_idx + kv_offset)

    return _create_block_mask(fn, batch_size, q_length, kv_length, torch.device(device))


def register_flex() -> None:
    """Register FLEX_IMPLEMENTATION with transformers (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(FLEX_IMPLEMENTATION, flex_attention_forward)
    AttentionMaskInterface.register(FLEX_IMPLEMENTATION, flex_mask)
    _REGISTERED = True
