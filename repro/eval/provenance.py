"""What identifies an evaluated checkpoint, how to reproduce its scores, and chance-level
scores that depend on it."""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from pathlib import Path
from typing import Any, Iterable, Mapping

TOKENS_SEEN_KEYS = ("tokens_seen", "tokens_total", "num_input_tokens_seen", "total_tokens",
                    "tokens")
"""Keys of trainer_state.json tried in order for the cumulative training tokens: ours
first, then HF Trainer's `num_input_tokens_seen`, then plausible alternatives."""


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_sha256(checkpoint: Path) -> str:
    """sha256 of model.safetensors; for a sharded save, of the index and shards in order
    (hash of `name sha256` lines)."""
    checkpoint = Path(checkpoint)
    single = checkpoint / "model.safetensors"
    if single.exists():
        return _sha256_file(single)
    index = checkpoint / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        lines = "".join(f"{name} {_sha256_file(checkpoint / name)}\n"
                        for name in ["model.safetensors.index.json", *shards])
        return hashlib.sha256(lines.encode()).hexdigest()
    raise FileNotFoundError(f"{checkpoint} holds no model.safetensors(.index.json); "
                            "input `checkpoint` must be a save_pretrained folder")


def trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's trainer_state.json, or {} if it is missing or unreadable (a
    checkpoint from elsewhere is still evaluable)."""
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def tokens_seen(state: dict[str, Any]) -> tuple[int | None, str | None]:
    """Cumulative training tokens and the trainer_state key they were read from;
    (None, None) if no known key holds a count."""
    for key in TOKENS_SEEN_KEYS:
        if _count(state.get(key)):
            return state[key], key
    return None, None


def training_seq_len(state: dict[str, Any]) -> int | None:
    """Sequence length the checkpoint was trained at (the train stage's `seq_len`)."""
    value = state.get("seq_len")
    return value if _count(value) and value > 0 else None


def uniform_rolling_baseline(tokenizer: Any, vocab_size: int, texts: Iterable[str],
                             byte_counts: Iterable[int],
                             word_counts: Iterable[int]) -> dict[str, float]:
    """Scores of a model that spreads probability uniformly over its `vocab_size` outputs,
    measured as lm-eval measures a rolling-loglikelihood task: every token of the document,
    encoded without special tokens, is predicted once. It depends on the tokenizer (better
    compression -> fewer tokens -> fewer bits), so it is the chance level of *this* model."""
    # verbose=False: a whole document is longer than the model's window by design (lm-eval
    # scores it in windows), which the tokenizer would otherwise warn about as an error
    n_tokens = sum(len(tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"])
                   for t in texts)
    n_bytes, n_words = sum(byte_counts), sum(word_counts)
    nats = n_tokens * math.log(vocab_size)
    out = {}
    if n_bytes:
        bpb = nats / n_bytes / math.log(2)
        out |= {"bits_per_byte": bpb, "byte_perplexity": 2.0 ** bpb}
    if n_words and nats / n_words < 700:  # beyond that exp() overflows a float
        out["word_perplexity"] = math.exp(nats / n_words)
    return out


def portable_path(path: Path | str, placeholder: str) -> str:
    """`path` as a command run from the repository root can use it: as given when relative
    (DVC passes stage inputs relative to the root), relative to the working directory when
    under it, else `placeholder` (an absolute path elsewhere is machine-specific and must
    not reach an output)."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return placeholder


def lm_eval_command(model: str, model_args: Mapping[str, Any], task: str, *,
                    include_path: str | None, num_fewshot: int, batch_size: int | str,
                    device: str, seed: int, limit: int | None,
                    num_processes: int = 1) -> str:
    """The `lm_eval` command line that scores `task` as the evaluate stage did: same model
    arguments (the window `max_length` = the training seq_len, the dtype), task files
    (`include_path`: the evaltasks folder holding `<task>.yaml`; None for lm-eval's own
    tasks), few-shot count, batch size, device, seeds and document cap. `model_args` holds
    strings, numbers and booleans, with `pretrained` already made portable (portable_path).
    tests/eval/test_lm_eval_cli.py runs it and gets the stage's numbers exactly. The stage
    scores all its tasks in one lm-eval call, which batches their requests together; a
    float32 CPU run gives the same numbers task by task (that test), other kernels may
    differ in the last digits."""
    args = ",".join(f"{k}={v}" for k, v in model_args.items()
                    if k != "trust_remote_code" or v)  # off is lm-eval's default
    cmd = (["accelerate", "launch", "--num_processes", str(num_processes), "-m", "lm_eval"]
           if num_processes > 1 else ["lm_eval"])
    cmd += ["--model", model, "--model_args", args]
    if include_path is not None:
        cmd += ["--include_path", include_path]
    cmd += ["--tasks", task, "--num_fewshot", str(num_fewshot), "--batch_size", str(batch_size),
            "--device", device, "--seed", str(seed)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    return shlex.join(cmd)
