"""Stage `tokenizer`: train a byte-level BPE tokenizer on curated training splits, or copy a
pretrained one, and save it as a Hugging Face tokenizer folder (`save_pretrained`).

Both kinds expose the same contract downstream: `tokenizer.json` (read by datatrove's
DocumentTokenizer in `tokenize`) plus the transformers files `train` and lm-eval load.
Trained tokenizers fix the special tokens: "<|endoftext|>" (id 0) is eos and bos, "<|pad|>"
(id 1) is pad, so the ids sit inside any vocabulary (shared OFFLINE.md: SmolLM3Config's
default ids 128000+ break small vocabularies).

Determinism: HF `tokenizers` BPE training (0.23) gave identical `tokenizer.json` bytes across
runs with parallelism on (2 rayon threads), off (TOKENIZERS_PARALLELISM=false, which the CLI
sets anyway) and RAYON_NUM_THREADS=1, on 20 MB of Python source; merges are chosen by
(count, pair) so ties do not depend on thread timing. tests/stages/test_tokenizer.py
checks two runs byte for byte, so nothing is forced here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from repro.stages.base import StageIO, atomic_dir
from repro.stages.configs import TokenizerConfig

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN]  # ids 0 and 1, in this order


def iter_texts(split_dirs: list[Path], max_docs: int | None) -> Iterator[str]:
    """Texts of each split's train.jsonl, dataset by dataset, at most max_docs each."""
    for d in split_dirs:
        with open(Path(d) / "train.jsonl", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if max_docs is not None and i >= max_docs:
                    break
                yield json.loads(line)["text"]


def train_bpe(texts: Iterator[str], vocab_size: int, min_frequency: int):
    """A byte-level BPE `tokenizers.Tokenizer` (GPT-2 style: no unknown token, 256 byte
    symbols always in the vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, f"special token {t!r} got id {tok.token_to_id(t)}, expected {i}"
    return tok


def wrap_fast(tok):
    """The transformers view of a trained tokenizer, with eos = bos and pad set."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )


def load_pretrained(name_or_path: str, revision: str | None):
    """AutoTokenizer from a local folder or the hub; offline, a hub name must be cached."""
    from transformers import AutoTokenizer

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        return AutoTokenizer.from_pretrained(name_or_path, revision=revision, local_files_only=offline)
    except (OSError, ValueError) as e:
        where = "the local folder" if Path(name_or_path).exists() else "the Hugging Face cache"
        raise RuntimeError(
            f"cannot load tokenizer {name_or_path!r} (revision {revision}) from {where}"
            + (" with network access off (HF_HUB_OFFLINE=1)" if offline else "")
            + f": {e}. Fix: point tokenizer.name_or_path at a local folder holding tokenizer.json, "
            f"or fetch it once where the hub is reachable (`hf download {name_or_path}`) so it "
            "is in the HF cache."
        ) from e


def run(cfg: TokenizerConfig, io: StageIO) -> None:
    spec = cfg.tokenizer
    out = io.output("tokenizer")
    if spec.kind == "train_bpe":
        splits = io.inputs_with_prefix("train")
        missing = [n for n in cfg.datasets if n not in splits]
        if missing:
            raise KeyError(f"tokenizer stage {io.name}: no input train:{missing[0]}; inputs: {sorted(io.inputs)}")
        texts = iter_texts([splits[n] for n in cfg.datasets], spec.max_docs_per_dataset)
        fast = wrap_fast(train_bpe(texts, spec.vocab_size, spec.min_frequency))
    else:
        # A local path arrives as the `pretrained` input (so DVC tracks it); a hub id does not.
        source = str(io.inputs.get("pretrained", spec.name_or_path))
        fast = load_pretrained(source, spec.revision)
    with atomic_dir(out) as tmp:
        fast.save_pretrained(str(tmp))
