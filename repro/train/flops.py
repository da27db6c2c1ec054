"""Training FLOPs per token, measured peak FLOP/s and MFU.

Model FLOPs per token follow PaLM (Chowdhery et al. 2022, arXiv 2204.02311, Appendix B,
"Compute usage and MFU"):  6·N + 12·L·H·Q·T  for a forward + backward pass, where
  N  matmul parameters (below), 6 = 2 FLOPs per multiply-add in the forward times 3 for
     forward + backward (the backward computes gradients for both activations and weights,
     twice the forward; Kaplan et al. 2020, arXiv 2001.08361, §2.1);
  L  layers, H query heads, Q head dim, T sequence length: per layer and token the forward
     computes QKᵀ (2·H·Q·T FLOPs) and the attention-weighted sum of V (2·H·Q·T), times 3.
PaLM counts the full T. With `causal=True` (default) a query attends to (t+1) keys, on average
(T+1)/2 ≈ T/2, so the attention term is halved to 6·L·H·Q·T (the convention of FlashAttention's
benchmarks for causal attention). GQA does not reduce this term: scores are per query head.
Document masking inside packed rows is ignored (the attention still spans the full window
for fused kernels, and MFU counts model FLOPs, not what a kernel may skip).

N counts exactly the weights that enter a matmul once per token (SmolLM3 has no biases):
  per layer  q_proj d·H·Q + k_proj d·KV·Q + v_proj d·KV·Q + o_proj H·Q·d
             + SwiGLU gate, up, down 3·d·F
  LM head    V·d, counted even when tied to the embedding: the output matmul runs either way.
Not counted: the embedding lookup (a gather, no multiply-adds), RMSNorm gains, RoPE, softmax,
SiLU and residual adds (elementwise, O(d) per token, < 0.1% here), the loss. This is the
"model FLOPs" of MFU: recomputation under activation checkpointing is not added (that would be
hardware FLOPs utilisation, PaLM App. B).

For SmolLM3-3B (ModelSpec defaults, vocab 128256, T = 4096): N = 3.075e9 (the parameter count
less the norm gains, since tied), 6N = 18.45 GFLOP/token, causal attention 1.81 GFLOP/token.
tests/train/test_flops.py also checks the formula against torch's FlopCounterMode on a tiny
model's real forward + backward.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class _Arch:
    d: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    tied: bool


def _arch(config, vocab_size: int | None) -> _Arch:
    """Shape numbers from a repro ModelSpec (needs vocab_size) or a transformers config."""
    def first(*names):
        for n in names:
            v = getattr(config, n, None)
            if v is not None:
                return v
        raise ValueError(f"config has none of {names}")

    d = first("hidden_size")
    heads = first("num_attention_heads", "num_heads")
    vocab = vocab_size if vocab_size is not None else getattr(config, "vocab_size", None)
    if vocab is None:
        raise ValueError("vocab_size is needed (a ModelSpec does not carry it; the tokenizer does)")
    return _Arch(
        d=d,
        layers=first("num_hidden_layers", "num_layers"),
        heads=heads,
        kv_heads=first("num_key_value_heads", "num_kv_heads"),
        head_dim=getattr(config, "head_dim", None) or d // heads,
        ffn=first("intermediate_size"),
        vocab=vocab,
        tied=bool(first("tie_word_embeddings", "tie_embeddings")),
    )


def param_counts(config, *, vocab_size: int | None = None) -> dict[str, int]:
    """Parameter counts of a SmolLM3-style decoder (no biases):
    'attention', 'mlp', 'norms' (per-layer and final RMSNorm gains), 'embedding', 'lm_head'
    (0 when tied), 'total' (tied weights once; equals repro.model.build.count_params),
    'non_embedding' (total less embedding and untied head, Kaplan et al.'s N), and 'matmul'
    (the N of 6N: attention + mlp + V·d for the LM head matmul)."""
    a = _arch(config, vocab_size)
    attention = a.layers * (2 * a.d * a.heads * a.head_dim + 2 * a.d * a.kv_heads * a.head_dim)
    mlp = a.layers * 3 * a.d * a.ffn
    norms = a.layers * 2 * a.d + a.d
    embedding = a.vocab * a.d
    lm_head = 0 if a.tied else a.vocab * a.d
    total = attention + mlp + norms + embedding + lm_head
    return {
        "attention": attention, "mlp": mlp, "norms": norms, "embedding": embedding,
        "lm_head": lm_head, "total": total, "non_embedding": attention + mlp + norms,
        "matmul": attention + mlp + a.vocab * a.d,
    }


def flops_per_token(config, seq_len: int, *, causal: bool = True,
                    vocab_size: int | None = None) -> dict[str, float]:
    """Training (forward + backward) FLOPs per token, PaLM App. B (module docstring):
    'dense' = 6·N (N = param_counts(...)['matmul']), 'attention' = 12·L·H·Q·T, halved when
    `causal`, 'total' = their sum. `config`: a transformers config, or a ModelSpec with
    `vocab_size` given."""
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    a = _arch(config, vocab_size)
    dense = 6.0 * param_counts(config, vocab_size=vocab_size)["matmul"]
    attention = 12.0 * a.layers * a.heads * a.head_dim * seq_len * (0.5 if causal else 1.0)
    return {"dense": dense, "attention": attention, "total": dense + attention}


def measure_peak_flops(dtype: torch.dtype = torch.float32, seconds: float = 1.0, size: int = 1024,
                       threads: int | None = None, device: str | torch.device = "cpu") -> float:
    """Achievable matmul FLOP/s on this machine now: the best rate over several timed repeats
    of `size` x `size` matmuls (2·size³ FLOPs each) after a warmup, within about `seconds`.

    This is the "peak measured in the same run" that MFU divides by on CPU, where a datasheet
    peak depends on clocks, AVX frequency offsets and the cores other jobs leave free. It is
    a dense-GEMM ceiling, so MFU against it is an upper-bound-style utilisation, not against
    the vendor's theoretical peak. `threads` sets torch's intra-op threads for the measurement
    (restored after); None keeps the current setting, which is what training uses."""
    device = torch.device(device)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    try:
        g = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
        b = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
        c = torch.empty_like(a)
        flop = 2.0 * size ** 3
        # warmup (thread pool, caches, clocks) and a first timing to size the repeats
        torch.mm(a, b, out=c)
        sync()
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        sync()
        one = max(time.perf_counter() - t0, 1e-9)
        repeats = 5
        iters = max(1, int(seconds / repeats / one))
        best = flop / one
        deadline = time.perf_counter() + seconds
        for r in range(repeats):
            t0 = time.perf_counter()
            for _ in range(iters):
                torch.mm(a, b, out=c)
            sync()
            best = max(best, flop * iters / (time.perf_counter() - t0))
            if r >= 2 and time.perf_counter() > deadline:
                break
        return best
    finally:
        torch.set_num_threads(old_threads)


def mfu(tokens_per_s: float, flops_per_token_total: float, peak: float) -> float:
    """Model FLOPs utilisation = achieved model FLOP/s / peak FLOP/s (PaLM App. B)."""
    if not peak > 0 or not math.isfinite(peak):
        raise ValueError(f"peak FLOP/s must be positive and finite, got {peak}")
    return tokens_per_s * flops_per_token_total / peak


# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from NVIDIA's datasheets. Matched
# against torch.cuda.get_device_name() in order: the first key found in the name wins, so
# the specific names come before their family.
DATASHEET_BF16: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("GH200", 989e12),
    ("H200", 989e12),  # H200 SXM: same compute as H100 SXM, more HBM
    ("H100", 989e12),  # H100 SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("H800", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
    ("L4", 121e12),
)


def datasheet_peak(device_name: str) -> float | None:
    """The dense bf16 datasheet peak of a GPU by its name, or None when not in the table."""
    for key, peak in DATASHEET_BF16:
        if key.lower() in device_name.lower():
            return peak
    return None
