"""SmolLM3 models from a ModelSpec (transformers' SmolLM3Config / SmolLM3ForCausalLM).

The spec names things the way papers do; this module maps them onto the HF config:
  nope_interval n  -> no_rope_layers[i] = int((i + 1) % n != 0): 1 = RoPE, 0 = NoPE, so every
                      n-th layer (0-based 3, 7, ... for n = 4) skips RoPE (FACTS 3.2);
                      n = 0 disables NoPE (all ones).
  rope_theta       -> rope_parameters {"rope_type": "default", "rope_theta": ...}
                      (transformers 5.x; the class default theta is 2e6, SmolLM3 pretrained
                      with 5e4, FACTS 3.4).
  init_std         -> initializer_range (normal init of linear and embedding weights).
Token ids come from the tokenizer: the config defaults (128000+) do not exist in a small
vocabulary (shared OFFLINE.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from repro.spec.schema import ModelSpec

# torch's fused attention; works on CPU. What every model is built and loaded with, and what an
# exported checkpoint reloads with: a train stage switches the model to its attention path
# (flex / flash, repro.model.attention.set_attention) for training only and back to this before
# export; transformers never writes the implementation into config.json.
ATTN_IMPLEMENTATION = "sdpa"


@dataclass(frozen=True)
class TokenIds:
    """Special token ids the model config records (all must be < vocab_size)."""

    vocab_size: int
    bos: int
    eos: int
    pad: int


def no_rope_layers(num_layers: int, nope_interval: int) -> list[int]:
    """HF's per-layer RoPE switch: 1 = RoPE, 0 = NoPE."""
    if nope_interval == 0:
        return [1] * num_layers
    return [int((i + 1) % nope_interval != 0) for i in range(num_layers)]


def smollm3_config(spec: ModelSpec, ids: TokenIds):
    from transformers import SmolLM3Config

    for name in ("bos", "eos", "pad"):
        tid = getattr(ids, name)
        if not 0 <= tid < ids.vocab_size:
            raise ValueError(f"{name} token id {tid} is outside the vocabulary (size {ids.vocab_size})")
    cfg = SmolLM3Config(
        vocab_size=ids.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        hidden_act="silu",  # SwiGLU MLP (FACTS 3.1)
        max_position_embeddings=spec.max_position_embeddings,
        initializer_range=spec.init_std,
        rms_norm_eps=spec.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(spec.rope_theta)},
        no_rope_layers=no_rope_layers(spec.num_layers, spec.nope_interval),
        no_rope_layer_interval=spec.nope_interval,  # informational: no_rope_layers is explicit
        use_sliding_window=False,
        attention_bias=False,  # no biases anywhere (FACTS 3.1)
        mlp_bias=False,
        attention_dropout=0.0,
        tie_word_embeddings=spec.tie_embeddings,
        bos_token_id=ids.bos,
        eos_token_id=ids.eos,
        pad_token_id=ids.pad,
        use_cache=False,  # training keeps no KV cache; the export turns it on (repro.train.checkpoint)
    )
    cfg._attn_implementation = ATTN_IMPLEMENTATION
    return cfg


def build_model(spec: ModelSpec, ids: TokenIds, seed: int):
    """A freshly initialised SmolLM3ForCausalLM in fp32, weights drawn from torch seeded by `seed`."""
    from transformers import SmolLM3ForCausalLM

    torch.manual_seed(seed)
    return SmolLM3ForCausalLM(smollm3_config(spec, ids)).float()


# Config fields that define the architecture (what a later phase must agree on). RoPE theta
# and max_position_embeddings are left out: a long-context phase changes them on purpose
# (SmolLM3 4k -> 32k -> 64k, theta 5e4 -> 2e6 -> 5e6; FACTS 3.10), and neither is a weight.
ARCH_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "rms_norm_eps",
    "no_rope_layers", "tie_word_embeddings", "attention_bias", "mlp_bias",
)


def architecture_diff(actual, expected) -> list[str]:
    """Fields where two configs disagree on the architecture, as readable lines."""
    diffs = []
    for f in ARCH_FIELDS:
        a, e = getattr(actual, f, None), getattr(expected, f, None)
        if a != e:
            diffs.append(f"{f}: checkpoint has {a!r}, this phase's spec gives {e!r}")
    return diffs


def load_model(path, spec: ModelSpec, ids: TokenIds):
    """A checkpoint saved by an earlier phase, checked against this phase's spec, with this
    phase's RoPE theta and context length (the weights do not depend on either)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    found = AutoConfig.from_pretrained(path, trust_remote_code=False)
    expected = smollm3_config(spec, ids)
    diffs = architecture_diff(found, expected)
    if diffs:
        raise ValueError(
            f"checkpoint {path} does not match the model this phase expects:\n  "
            + "\n  ".join(diffs)
            + "\nA curriculum phase continues the previous phase's model: keep `model` and the "
            "tokenizer the same across an experiment's `training.stages`."
        )
    model = AutoModelForCausalLM.from_pretrained(path, config=expected, dtype=torch.float32,
                                                 attn_implementation=ATTN_IMPLEMENTATION,
                                                 trust_remote_code=False)
    return model


def inference_rope(spec: ModelSpec) -> dict | None:
    """The exported config.json's `rope_parameters` and `max_position_embeddings` under the
    spec's inference-time YaRN scaling, or None without it (training used plain RoPE;
    SmolLM3 serves 128k with YaRN x2 over its 64k training; FACTS 3.10)."""
    yarn = spec.inference_yarn
    if yarn is None:
        return None
    original = yarn.original_max_position_embeddings or spec.max_position_embeddings
    return {
        "rope_parameters": {"rope_type": "yarn", "rope_theta": float(spec.rope_theta),
                            "factor": float(yarn.factor),
                            "original_max_position_embeddings": original},
        "max_position_embeddings": int(original * yarn.factor),
    }


def export_inference_config(folder, spec: ModelSpec) -> None:
    """Write `inference_rope(spec)` into an exported config.json (nothing without YaRN)."""
    update = inference_rope(spec)
    if update is None:
        return
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(update)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(total, non-embedding) parameter counts; tied weights count once, and the
    non-embedding count leaves out the token embedding and an untied LM head (Kaplan et al.)."""
    seen, total, emb = set(), 0, 0
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if "embed_tokens" in name or name.startswith("lm_head"):
            emb += p.numel()
    return total, total - emb
