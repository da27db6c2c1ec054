"""Knowledge distillation: the loss, the teacher, and the on-disk cache of sparse teacher targets.

Loss (Hinton et al. 2015; FACTS 7.1), token mean over positions whose target is not -100:

    loss = alpha * T^2 * KL(p_T || p_S) + (1 - alpha) * CE(targets, student)

p_T = softmax(z_T / T), p_S = softmax(z_S / T); the CE term uses the student at T = 1.
Forward KL weights the student's errors by the teacher's probabilities, and T^2 keeps the
soft term's gradient scale independent of T (FACTS 7.1). The teacher's side is always
detached: gradients reach the student only.

Teacher targets come in two shapes:
  * dense: the teacher's full logits, run alongside the student (`logits: full`).
  * sparse: (indices, probs) of shape (batch, seq, k), a distribution q on k tokens per
    position (zero elsewhere), computed once by `write_teacher_cache` and read from disk:
      - `top_k`: the k largest probabilities of p_T, renormalised to sum 1. Cheap and
        deterministic but a biased estimate of p_T (the tail mass is moved onto the head),
        which costs quality and calibration (FACTS 7.7).
      - `sampled`: k draws from p_T with replacement, q = counts / k (Gemma 3 "sample 256
        logits per token", FACTS 7.3; random-sampling KD, FACTS 7.7). E[q] = p_T, so the
        loss's gradient is an unbiased estimate of the full-distribution one.
    With a sparse q the distillation term is KL(q || p_S) = -sum_j q_j log p_S(idx_j) - H(q):
    the cross entropy to the student on the support (p_S is the student's full-vocabulary
    softmax, not renormalised on the support) minus q's own entropy. H(q) does not depend on
    the student, so it changes no gradient; it is subtracted so the logged value is a true KL
    (>= 0, and exactly the dense KL when the support is the whole vocabulary). For `sampled`
    the logged KL is a biased estimate of KL(p_T || p_S) (E[H(q)] < H(p_T)); the gradient is not.

A sampled target has a fixed width k but fewer distinct tokens: each distinct token sits once
with its frequency and the remaining slots repeat a drawn token with probability 0, so every
consumer may treat (indices, probs) as a plain distribution (sum 1, no double counting).

Doc masking: when the student trains with intra-document attention and per-document
positions, the teacher must see the same thing, or its targets describe a different context.
`document_position_ids` gives positions that restart after each EOS; transformers turns
position ids whose run restarts into a block-diagonal ("packed sequence") causal mask when no
attention mask and no KV cache are given (transformers.masking_utils.find_packed_sequence_indices),
so teacher forwards here pass use_cache=False and no attention mask.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from repro.train.positions import document_position_ids  # noqa: F401  (re-exported)
import torch.nn.functional as F

from repro.model.attention import kind_of, set_attention
from repro.train.data import TokenShards

CACHE_FORMAT = 1
IGNORE_INDEX = -100
# Probabilities are stored as float16 (half the disk of float32). Casting breaks the sum to 1
# by up to ~k * 2^-12 relative, so `TeacherCache` renormalises in float32 when reading.
# Sampled probabilities counts/k are exact in float16 when k is a power of two (256, ...).
PROBS_DTYPE = np.float16
INDICES_DTYPE = np.int32


# ------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class TeacherTargets:
    """What the student is distilled towards: `logits` (dense, batch x seq x vocab) or
    `indices` + `probs` (sparse, batch x seq x k, probs already at the loss's temperature)."""

    logits: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    probs: torch.Tensor | None = None

    def __post_init__(self) -> None:
        dense = self.logits is not None
        sparse = self.indices is not None or self.probs is not None
        if dense == sparse:
            raise ValueError("TeacherTargets needs either logits (dense) or indices and probs (sparse)")
        if sparse and (self.indices is None or self.probs is None):
            raise ValueError("sparse TeacherTargets needs both indices and probs")
        if sparse and self.indices.shape != self.probs.shape:
            raise ValueError(f"sparse teacher indices {tuple(self.indices.shape)} and probs "
                             f"{tuple(self.probs.shape)} differ in shape")

    @classmethod
    def dense(cls, logits: torch.Tensor) -> TeacherTargets:
        return cls(logits=logits)

    @classmethod
    def sparse(cls, indices: torch.Tensor, probs: torch.Tensor) -> TeacherTargets:
        return cls(indices=indices, probs=probs)

    @property
    def is_dense(self) -> bool:
        return self.logits is not None


def sparse_targets(
    teacher_logits: torch.Tensor,
    mode: Literal["top_k", "sampled"],
    k: int,
    temperature: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse targets (indices int64, probs float32), each (..., k), from logits (..., vocab).

    top_k: the k most probable tokens of softmax(z / T), renormalised (biased; FACTS 7.7).
    sampled: k draws from softmax(z / T) with replacement from `generator`; probs are the
    empirical frequencies counts / k (unbiased; FACTS 7.3, 7.7). Distinct tokens come in
    ascending id order; the slots left over repeat a drawn token with probability 0.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    lead, vocab = teacher_logits.shape[:-1], teacher_logits.shape[-1]
    with torch.no_grad():
        p = torch.softmax(teacher_logits.detach().float().reshape(-1, vocab) / temperature, dim=-1)
        if mode == "top_k":
            if k > vocab:
                raise ValueError(f"top_k keeps k={k} tokens but the vocabulary has only {vocab}; lower k")
            probs, indices = torch.topk(p, k, dim=-1)
            probs = probs / probs.sum(-1, keepdim=True)
        elif mode == "sampled":
            if generator is None:
                raise ValueError("sampled targets need a seeded torch.Generator (reproducible draws)")
            draws = torch.multinomial(p, k, replacement=True, generator=generator)  # (n, k)
            indices, _ = torch.sort(draws, dim=-1)
            counts = torch.zeros_like(p).scatter_add_(1, indices, torch.ones_like(indices, dtype=p.dtype))
            first = torch.ones_like(indices, dtype=torch.bool)
            first[:, 1:] = indices[:, 1:] != indices[:, :-1]  # first slot of each distinct token
            probs = torch.where(first, counts.gather(1, indices) / k, torch.zeros((), dtype=p.dtype))
        else:
            raise ValueError(f"unknown sparse target mode {mode!r}; use top_k or sampled")
    return indices.reshape(*lead, k).long(), probs.reshape(*lead, k)


# ---------------------------------------------------------------------------------- loss


def kd_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher: TeacherTargets,
    alpha: float,
    temperature: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """alpha * T^2 * KL(p_T || p_S) + (1 - alpha) * CE, token mean over targets != -100
    (FACTS 7.1). student_logits (batch, seq, vocab), targets (batch, seq).

    Returns (loss, parts) with parts["ce"] (CE at T = 1) and parts["kl"] (the KL at
    temperature T, without the T^2 factor), both detached, for logging."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape[:-1] != targets.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} do not match targets "
                         f"{tuple(targets.shape)}")
    vocab = student_logits.size(-1)
    z_s = student_logits.float()  # log-softmax in fp32 even under bf16 autocast
    mask = targets != IGNORE_INDEX
    n = mask.sum()

    log_p_s = F.log_softmax(z_s / temperature, dim=-1)  # (batch, seq, vocab)
    if teacher.is_dense:
        z_t = teacher.logits.detach().to(z_s.device, torch.float32)
        if z_t.shape != z_s.shape:
            raise ValueError(f"teacher logits {tuple(z_t.shape)} and student logits "
                             f"{tuple(z_s.shape)} differ: the teacher must share the student's "
                             "vocabulary and see the same windows")
        log_p_t = F.log_softmax(z_t / temperature, dim=-1)
        p_t = log_p_t.exp()
        # where(): a teacher probability of exactly 0 (e.g. a -inf logit) contributes 0, not NaN.
        kl_tok = torch.where(p_t > 0, p_t * (log_p_t - log_p_s), torch.zeros((), device=z_s.device)).sum(-1)
    else:
        idx = teacher.indices.detach().to(z_s.device, torch.long)  # a cache reads onto the CPU
        q = teacher.probs.detach().to(z_s.device, torch.float32)
        if idx.shape[:-1] != targets.shape:
            raise ValueError(f"sparse teacher targets {tuple(idx.shape)} do not match the batch "
                             f"{tuple(targets.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
            raise ValueError(f"sparse teacher indices fall outside the student's vocabulary "
                             f"(size {vocab}): the teacher must share the student's tokenizer")
        # KL(q || p_S) on q's support = -sum q log p_S(idx) - H(q) (module docstring).
        kl_tok = (torch.special.xlogy(q, q) - q * log_p_s.gather(-1, idx)).sum(-1)
    # where(), not a product: an ignored position's value (even NaN from padding) must not leak.
    kl = torch.where(mask, kl_tok, torch.zeros((), device=z_s.device)).sum() / n.clamp(min=1)

    if n > 0:
        ce = F.cross_entropy(z_s.reshape(-1, vocab), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    else:  # every position ignored: F.cross_entropy would give NaN
        ce = z_s.sum() * 0.0
    loss = alpha * temperature**2 * kl + (1.0 - alpha) * ce
    return loss, {"ce": ce.detach(), "kl": kl.detach()}


# ------------------------------------------------------------------------------ teacher

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def _looks_like_path(ref: str) -> bool:
    """A ref that cannot be a hub repo id (`name` or `org/name`) must be a local folder."""
    return (ref.startswith(("/", "./", "../", "~", ".")) or "\\" in ref or ref.endswith("/")
            or not _HUB_ID.match(ref))


def _vocab_size(config) -> int | None:
    size = getattr(config, "vocab_size", None)
    if size is None and hasattr(config, "get_text_config"):
        size = getattr(config.get_text_config(), "vocab_size", None)
    return size


def load_teacher(ref: str, student_vocab_size: int, *, trust_remote_code: bool = False):
    """A frozen fp32 teacher (eval mode, requires_grad False) from a local checkpoint folder
    or a hub model name, after checking its vocabulary matches the student's.

    The vocabulary is read from the config before any weights load, so a mismatch fails
    before training starts. An existing folder is always local; a ref that cannot be a hub id
    (absolute, ./, ~, more than one /) is a local folder that must exist; else a hub name."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if ref.startswith("experiment:"):
        raise ValueError(f"teacher {ref!r} names a pipeline experiment: pass the path of its final "
                         "checkpoint (the stage's `teacher` input) to load_teacher")
    path = Path(ref).expanduser()
    local = path.exists()
    if not local and _looks_like_path(ref):
        raise FileNotFoundError(
            f"teacher checkpoint folder {path} does not exist: train the teacher experiment first "
            "(`dvc repro` builds it when the spec names it as `experiment:<name>`), or give the "
            "path of an existing checkpoint folder or a hub model name"
        )
    if local and not path.is_dir():
        raise FileNotFoundError(f"teacher {path} is a file, not a checkpoint folder; give the folder "
                                "holding config.json and the weights")
    source = str(path) if local else ref
    if trust_remote_code:
        warnings.warn(f"distillation.trust_remote_code is on: loading teacher {source} will run "
                      "Python code shipped with the model", UserWarning, stacklevel=2)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as e:
        where = f"folder {source}" if local else f"hub model {source!r} (online or in the local cache)"
        raise OSError(f"could not read the teacher's config from {where}: {e}. Give a checkpoint "
                      "folder holding config.json, or download the hub model first") from e
    teacher_vocab = _vocab_size(config)
    if teacher_vocab != student_vocab_size:
        raise ValueError(
            f"teacher {source} has a vocabulary of {teacher_vocab} tokens but the student's has "
            f"{student_vocab_size}: distillation matches the two distributions token id by token "
            "id, so use a teacher trained with the same tokenizer as the student (e.g. another "
            "experiment of this pipeline with the same `tokenizer`)"
        )
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32,
                                                 trust_remote_code=trust_remote_code)
    model.eval()
    model.requires_grad_(False)
    return model


def teacher_attention(teacher, kind: str) -> str:
    """Switch the teacher to the student's attention path `kind` (repro.model.attention) when
    that computes the same function for it, and return the kind it runs. The flex/flash paths
    implement causal document masking only, so a teacher with sliding-window layers or a logit
    softcap (or one transformers cannot switch, e.g. no flash support) stays on sdpa, which
    builds its masks from the position ids as before: correct, only slower."""
    if kind == "sdpa":
        set_attention(teacher, "sdpa")
        return "sdpa"
    cfg = teacher.config
    sliding = any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])) or (
        getattr(cfg, "sliding_window", None) is not None and getattr(cfg, "use_sliding_window", True))
    if sliding or getattr(cfg, "attn_logit_softcapping", None) is not None:
        return "sdpa"
    try:
        set_attention(teacher, kind)
    except (ValueError, ImportError) as e:
        warnings.warn(f"teacher keeps sdpa attention: {e}", stacklevel=2)
        set_attention(teacher, "sdpa")
        return "sdpa"
    return kind


def teacher_logits(teacher, inputs: torch.Tensor, position_ids: torch.Tensor | None = None,
                   attention=None) -> torch.Tensor:
    """The teacher's fp32 logits (batch, seq, vocab), without autograd. use_cache=False and
    no attention mask: then transformers derives the per-document mask from position_ids.
    `attention` (repro.model.attention.AttentionInputs of the student's micro batch) is used
    when the teacher runs the same path (teacher_attention): the same BlockMask or the same
    flattened batch and cu_seqlens, built once for both models."""
    device = next(teacher.parameters()).device
    if attention is not None and attention.kind != "sdpa" and kind_of(teacher) == attention.kind:
        with torch.no_grad():
            out = teacher(input_ids=attention.input_ids.to(device), use_cache=False, **attention.kwargs)
        return attention.unflatten(out.logits).float()
    kwargs = {"input_ids": inputs.to(device), "use_cache": False}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids.to(device)
    with torch.no_grad():  # not inference_mode: the result may enter the student's graph as a constant
        return teacher(**kwargs).logits.float()


def teacher_fingerprint(teacher) -> str:
    """sha256 of the teacher's safetensors files when it was loaded from a local folder that
    holds them ("safetensors:<hex>"), else of its weights in memory ("weights:<hex>")."""
    h = hashlib.sha256()
    folder = Path(getattr(teacher, "name_or_path", "") or getattr(teacher.config, "_name_or_path", "") or ".")
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() and str(folder) != "." else []
    if files:
        for f in files:
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return "safetensors:" + h.hexdigest()
    for name, t in sorted(teacher.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return "weights:" + h.hexdigest()


# -------------------------------------------------------------------------------- cache


def window_generator_seed(seed: int, window: int) -> int:
    """The seed of window `window`'s generator: a function of (seed, window) only, so the
    cache does not depend on batch size or on which windows are computed together."""
    return int(np.random.SeedSequence([seed, window]).generate_state(1, dtype=np.uint64)[0])


def write_teacher_cache(
    teacher,
    shards: TokenShards,
    out_dir,
    mode: Literal["top_k", "sampled"],
    k: int,
    temperature: float,
    seed: int,
    batch_size: int,
    doc_masking: bool,
    progress: bool = False,
) -> dict:
    """Sparse teacher targets for every window of `shards`, written to `out_dir`:

      indices.npy  (num_windows, seq_len, k) int32    token ids
      probs.npy    (num_windows, seq_len, k) float16  probabilities at `temperature`
      meta.json    mode, k, temperature, seed, seq_len, num_windows, vocab_size,
                   doc_masking, eos_id, teacher_fingerprint, dtypes

    Row t of window i is the target for the student's prediction after input position t
    (window[:-1]). meta.json is written last, so a folder without it is incomplete. Returns
    the meta dict."""
    if mode not in ("top_k", "sampled"):
        raise ValueError(f"teacher cache mode must be top_k or sampled, got {mode!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    vocab = _vocab_size(teacher.config)
    if shards.vocab_size > vocab:
        raise ValueError(f"the tokens were made with a {shards.vocab_size}-token vocabulary, larger "
                         f"than the teacher's {vocab}: use a teacher trained with the same tokenizer")
    if mode == "top_k" and k > vocab:
        raise ValueError(f"top_k keeps k={k} tokens but the teacher's vocabulary has only {vocab}; lower k")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)
    n, seq_len = shards.num_windows, shards.seq_len
    indices = np.lib.format.open_memmap(out / "indices.npy", mode="w+", dtype=INDICES_DTYPE, shape=(n, seq_len, k))
    probs = np.lib.format.open_memmap(out / "probs.npy", mode="w+", dtype=PROBS_DTYPE, shape=(n, seq_len, k))
    teacher.eval()
    device = next(teacher.parameters()).device
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="teacher logits", unit="batch")
    for start in starts:
        ids = list(range(start, min(start + batch_size, n)))
        inputs = torch.from_numpy(np.stack([shards.window(i)[:-1] for i in ids]))
        pos = document_position_ids(inputs, shards.eos_id) if doc_masking else None
        logits = teacher_logits(teacher, inputs, pos)
        for row, i in enumerate(ids):
            gen = None
            if mode == "sampled":
                gen = torch.Generator(device=device)
                gen.manual_seed(window_generator_seed(seed, i))
            idx, pr = sparse_targets(logits[row], mode, k, temperature, gen)
            indices[i] = idx.cpu().numpy().astype(INDICES_DTYPE)
            probs[i] = pr.cpu().numpy().astype(PROBS_DTYPE)
    indices.flush()
    probs.flush()
    del indices, probs
    meta = {
        "format": CACHE_FORMAT, "mode": mode, "k": k, "temperature": float(temperature), "seed": seed,
        "seq_len": seq_len, "num_windows": n, "vocab_size": vocab, "doc_masking": bool(doc_masking),
        "eos_id": shards.eos_id, "teacher_fingerprint": teacher_fingerprint(teacher),
        "indices_dtype": np.dtype(INDICES_DTYPE).name, "probs_dtype": np.dtype(PROBS_DTYPE).name,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta


class TeacherCache:
    """A `write_teacher_cache` folder, read through memmaps."""

    def __init__(self, out_dir) -> None:
        self.dir = Path(out_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} is missing: {self.dir} is not a finished teacher "
                                    "logits cache; run the teacher-logits stage (again)")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self._indices = np.load(self.dir / "indices.npy", mmap_mode="r")
        self._probs = np.load(self.dir / "probs.npy", mmap_mode="r")
        shape = (self.meta["num_windows"], self.meta["seq_len"], self.meta["k"])
        if self._indices.shape != shape or self._probs.shape != shape:
            raise ValueError(f"teacher cache {self.dir}: arrays {self._indices.shape} / {self._probs.shape} "
                             f"do not match meta.json {shape}; rerun the teacher-logits stage")

    @property
    def num_windows(self) -> int:
        return int(self.meta["num_windows"])

    def check(self, *, mode: str, k: int, temperature: float, seq_len: int,
              num_windows: int | None = None, doc_masking: bool | None = None) -> None:
        """Raise ValueError if the cache was made with other settings than the student uses."""
        want = {"mode": mode, "k": k, "temperature": float(temperature), "seq_len": seq_len}
        if num_windows is not None:
            want["num_windows"] = num_windows
        if doc_masking is not None:
            want["doc_masking"] = doc_masking
        diffs = [f"{key}: cache has {self.meta.get(key)!r}, expected {v!r}"
                 for key, v in want.items() if self.meta.get(key) != v]
        if diffs:
            raise ValueError(f"teacher cache {self.dir} was made with other settings:\n  "
                             + "\n  ".join(diffs) + "\nrerun the teacher-logits stage")

    def targets(self, window_indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices int64, probs float32), each (len(window_indices), seq_len, k), probs
        renormalised to sum 1 per position (float16 storage rounds the sum)."""
        w = np.asarray(window_indices, dtype=np.int64)
        if w.size and (w.min() < 0 or w.max() >= self.num_windows):
            raise IndexError(f"window indices must lie in [0, {self.num_windows}) for teacher cache {self.dir}")
        idx = torch.from_numpy(np.asarray(self._indices[w], dtype=np.int64))
        pr = torch.from_numpy(np.asarray(self._probs[w], dtype=np.float32))
        return idx, pr / pr.sum(-1, keepdim=True)
