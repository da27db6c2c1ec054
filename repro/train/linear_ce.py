"""LM-head cross-entropy without the (tokens x vocab) logits: output projection, log-softmax,
CE and z-loss in one pass over row chunks (issue 17 item 4).

Why: with fp32 logits a 360M SmolLM-shaped model at 16 x 2048 tokens per micro batch holds
16*2048*49152*4 B = 6.4 GiB of logits, plus their bf16 copy, their gradient and softmax
temporaries; issue 17 measured 85 GiB peak on an H200, most of it there. The fused loss
holds one chunk of logits at a time.

Three methods, chosen by `training.cross_entropy` through repro.train.backends.resolve:
  plain    full logits = hidden @ W^T, .float(), F.cross_entropy (and zloss.z_loss): the
           reference, bit for bit what the code did before this module existed.
  chunked  `_ChunkedLinearCE`, plain torch (runs anywhere). The anchor is Liger's
           fused_linear_cross_entropy (liger_kernel.ops.fused_linear_cross_entropy): the
           forward loops over row chunks, computes each chunk's logits, its CE and z-loss AND
           at once the gradient of the loss w.r.t. the chunk's logits, turns it into the
           chunk's grad_hidden rows and adds its share of grad_W (fp32 accumulator); the chunk's
           logits are then dropped. backward only scales the stored gradients by grad_output.
           Same matmul FLOPs as plain forward + backward (3 x N x V x H x 2), memory of one
           chunk. torchtitan's chunked CE and modded-nanogpt's fused CE follow the same idea.
  liger    Liger's Triton kernel (CUDA only; `liger_fused_linear_cross_entropy`), same
           function, same reductions (see `_liger`).

Numerics (what the tests check): the chunk logits are computed in the autocast dtype when the
caller runs under autocast, exactly as the plain `lm_head` Linear would (both operands cast to
that dtype), then upcast to fp32 for the log-softmax, as the plain path's `.float()` does. The
gradient w.r.t. the logits is computed in fp32 and cast back to the matmul dtype for the two
gradient matmuls, as autograd does through the plain path's cast; grad_W is summed over chunks
in fp32 (Liger does the same), so it is, if anything, more precise than plain's one
reduced-precision matmul. In fp32 chunked equals plain to rounding (~1e-6 relative).

Reductions: CE and z-loss are means over the targets != ignore_index (F.cross_entropy's mean,
zloss.z_loss(logits, targets)); with no target left the loss is 0 (with a graph), not NaN:
the MTP heads' convention, where a depth can lose every target to document boundaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from repro.train.backends import BackendError
from repro.train.zloss import IGNORE_INDEX, z_loss

METHODS = ("plain", "chunked", "liger")

# Chunk rule (deterministic, from shapes only, like Liger's): rows per chunk so that one chunk
# of logits has about as many elements as the hidden states (N x H), i.e.
# N / ceil(V / H) rows, rounded up to a power of two; never fewer than MIN_CHUNK_ROWS (smaller
# matmuls waste the hardware and the loop costs per chunk; measured in bench/linear_ce.py),
# never more than N. Examples: 360M (N=32768, H=960, V=49152): 1024 rows, 32 chunks, 0.2 GB
# of fp32 logits per chunk instead of 6.4 GB; the quickstart (N=2048, H=128, V=4096): 1024
# rows, 2 chunks.
MIN_CHUNK_ROWS = 1024


def chunk_rows(n_rows: int, hidden_size: int, vocab_size: int) -> int:
    """Rows per chunk for `n_rows` tokens of width `hidden_size` over `vocab_size` classes."""
    if n_rows <= 0:
        return 1
    factor = -(-vocab_size // hidden_size)  # ceil(V / H): chunk logits ~ size of the hidden states
    rows = 1 << max(0, math.ceil(math.log2(max(1, -(-n_rows // factor)))))
    return min(n_rows, max(MIN_CHUNK_ROWS, rows))


@dataclass(frozen=True)
class LMLoss:
    """loss = ce + z_weight * z (differentiable); ce and z are detached, for logging."""

    loss: torch.Tensor
    ce: torch.Tensor
    z: torch.Tensor | None  # unweighted mean logsumexp^2; None when z_weight == 0


def matmul_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype | None:
    """The dtype the plain lm_head Linear would multiply in here: the autocast dtype under
    autocast on this device, else None (the operands' own dtype)."""
    dev = hidden.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return None


class _ChunkedLinearCE(torch.autograd.Function):
    """(hidden (N, H), weight (V, H), targets (N,)) -> (ce + z_weight*z, ce, z), grads computed
    in forward one row chunk at a time (module docstring)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index: int, z_weight: float, rows: int,
                cast: torch.dtype | None, grad_mode: bool):
        # forward always runs with grad off: `grad_mode` is the caller's, so an evaluation
        # under no_grad skips the gradient work
        need_h, need_w = grad_mode and ctx.needs_input_grad[0], grad_mode and ctx.needs_input_grad[1]
        dev = hidden.device
        keep = targets != ignore_index
        denom = keep.sum().clamp(min=1).to(torch.float32)  # a tensor: no host sync
        with torch.autocast(dev.type, enabled=False):  # dtypes are explicit below
            w_mm = weight.to(cast) if cast is not None else weight  # as autocast casts it for plain
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=dev) if need_w else None
            ce_sum = torch.zeros((), dtype=torch.float32, device=dev)
            z_sum = torch.zeros((), dtype=torch.float32, device=dev)
            for start in range(0, hidden.shape[0], rows):
                end = min(start + rows, hidden.shape[0])
                h = hidden[start:end]
                h_mm = h.to(cast) if cast is not None else h
                logits = F.linear(h_mm, w_mm).float()  # (r, V) fp32; the only (r, V) buffers
                k = keep[start:end]
                t = torch.where(k, targets[start:end], 0)  # any valid index where ignored
                target_logit = logits.gather(1, t.unsqueeze(1)).squeeze(1)
                # log-sum-exp and softmax in place over the one (r, V) buffer: e = exp(x - max),
                # lse = max + log(sum e), softmax = e / sum e (torch.logsumexp would allocate
                # a second (r, V) temporary and take more passes)
                peak = logits.amax(dim=-1, keepdim=True)
                e = logits.sub_(peak).exp_()
                total = e.sum(dim=-1)
                lse = peak.squeeze(1) + total.log()
                ce_sum += torch.where(k, lse - target_logit, 0.0).sum()
                if z_weight:
                    z_sum += torch.where(k, lse.square(), 0.0).sum()
                if not (need_h or need_w):
                    continue
                # d loss / d logits, rows scaled by 1/denom and zero where ignored:
                #   CE:      softmax - onehot(target)
                #   z-loss:  z_weight * 2 * lse * softmax      (d lse / d logits = softmax)
                scale = k.to(torch.float32) / denom
                coef = scale * (1.0 + 2.0 * z_weight * lse) if z_weight else scale
                g = e.mul_((coef / total).unsqueeze(1))  # softmax * coef, in place
                rows_idx = torch.arange(end - start, device=dev)
                g[rows_idx, t] -= scale  # index_put_, deterministic (one index per row)
                g_mm = g.to(cast) if cast is not None else g
                if need_h:
                    if g_mm.dtype == hidden.dtype:
                        torch.mm(g_mm, w_mm, out=grad_h[start:end])  # a contiguous row block
                    else:
                        grad_h[start:end] = (g_mm @ w_mm).to(hidden.dtype)
                if need_w:
                    if g_mm.dtype == torch.float32:
                        grad_w.addmm_(g_mm.t(), h_mm)  # no (V, H) temporary
                    else:  # a reduced-precision product, summed in fp32
                        grad_w += (g_mm.t() @ h_mm).float()
                del logits, e, g, g_mm
        ctx.save_for_backward(grad_h, grad_w)
        # three distinct tensors: only the first is differentiable
        loss = (ce_sum + z_weight * z_sum) / denom
        ce = ce_sum / denom
        z = z_sum / denom
        ctx.mark_non_differentiable(ce, z)
        return loss, ce, z

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce, _grad_z):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_loss.to(grad_h.dtype) if grad_h is not None else None
        gw = grad_w * grad_loss if grad_w is not None else None
        # grad_W is fp32; for a low-precision weight the autograd engine casts it to the
        # weight's dtype (it casts every gradient to its input's dtype)
        return gh, gw, None, None, None, None, None, None


def _chunked(hidden, weight, targets, ignore_index, z_weight, rows) -> LMLoss:
    rows = rows or chunk_rows(hidden.shape[0], hidden.shape[1], weight.shape[0])
    loss, ce, z = _ChunkedLinearCE.apply(hidden, weight, targets, ignore_index, float(z_weight), rows,
                                         matmul_dtype(hidden, weight), torch.is_grad_enabled())
    return LMLoss(loss, ce, z if z_weight else None)


def _plain(hidden, weight, targets, ignore_index, z_weight) -> LMLoss:
    logits = F.linear(hidden, weight).float()  # what lm_head(hidden).float() computes
    total = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")
    ce = total / (targets != ignore_index).sum().clamp(min=1)
    if not z_weight:
        return LMLoss(ce, ce.detach(), None)
    z = z_loss(logits, targets, ignore_index)
    return LMLoss(ce + z_weight * z, ce.detach(), z.detach())


def _liger(hidden, weight, targets, ignore_index, z_weight) -> LMLoss:
    """Liger's fused kernel with reduction="sum", divided here by the number of kept targets
    so that the all-ignored case gives 0 like the other methods (Liger's "mean" divides by
    that count and would give NaN). Liger's returned loss already includes
    lse_square_scale * sum(lse^2) over kept rows, and its z_loss is that term, scaled."""
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
    except ImportError as e:
        raise BackendError(f"liger-kernel cannot be imported ({e})", field="training.cross_entropy",
                           fix="`pip install liger-kernel` on the GPU machine, or set cross_entropy: auto") from e
    kwargs: dict = {"ignore_index": ignore_index, "reduction": "sum"}
    if z_weight:
        kwargs.update(lse_square_scale=float(z_weight), return_z_loss=True)
    try:
        out = liger_fused_linear_cross_entropy(hidden, weight, targets, **kwargs)
    except TypeError as e:  # liger-kernel < 0.5.3 has no return_z_loss for the fused loss
        raise BackendError(f"this liger-kernel's fused linear cross-entropy does not take {sorted(kwargs)} ({e})",
                           field="training.cross_entropy",
                           fix="upgrade liger-kernel (>= 0.5.3), or set cross_entropy: chunked") from e
    denom = (targets != ignore_index).sum().clamp(min=1).to(torch.float32)
    if not z_weight:
        total = out.loss if hasattr(out, "loss") else out
        loss = total.float() / denom
        return LMLoss(loss, loss.detach(), None)
    # >= 0.7: a CrossEntropyOutput(loss, z_loss, ...); 0.5.3-0.6: a tuple (loss, z_loss)
    total, z_scaled = (out.loss, out.z_loss) if hasattr(out, "loss") else out
    loss = total.float() / denom
    z_scaled = z_scaled.detach().float()
    return LMLoss(loss, (total.detach().float() - z_scaled) / denom, z_scaled / (z_weight * denom))


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                         method: str = "chunked", z_weight: float = 0.0,
                         ignore_index: int = IGNORE_INDEX, rows: int | None = None) -> LMLoss:
    """Mean CE of logits = hidden @ weight^T against `targets` (+ z_weight * mean lse^2) over
    the targets != ignore_index. hidden (..., H), weight (V, H) (e.g. the lm_head's, tied or
    not: autograd adds this gradient to the embedding's), targets (...). `rows` overrides the
    chunk size of the chunked method (tests)."""
    if method not in METHODS:
        raise ValueError(f"unknown cross-entropy method {method!r}; expected one of {METHODS}")
    h = hidden.reshape(-1, hidden.shape[-1])
    t = targets.reshape(-1)
    if h.shape[0] != t.shape[0]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and targets {tuple(targets.shape)} do not match")
    if method == "plain":
        return _plain(h, weight, t, ignore_index, z_weight)
    if method == "liger":
        return _liger(h, weight, t, ignore_index, z_weight)
    return _chunked(h, weight, t, ignore_index, z_weight, rows)
