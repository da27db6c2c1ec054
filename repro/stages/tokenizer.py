"""Stage `tokenizer`: train a byte-level BPE tokenizer on curated training splits, or copy a
pretrained one, and save it as a Hugging Face tokenizer folder (`save_pretrained`).

Both kinds expose the same contract downstream: `tokenizer.json` (read by datatrove's
DocumentTokenizer in `tokenize`) plus the transformers files `train` and lm-eval load.
Trained tokenizers take their special tokens from the spec (`special_tokens`), with ids
0..n-1 in the spec's order: the first is eos and bos (SmolLM3's tokenizer has no separate
BOS; FACTS 2.7), the second pad, any others are extra special tokens. Low ids sit inside any
vocabulary (shared OFFLINE.md: SmolLM3Config's default ids 128000+ break small ones).

The tokenizer trains on the datasets' training splits as the split stage writes them, before
decontamination: what an evaluation task removes is a few documents, and a tokenizer that
does not depend on the evaluation tasks is shared by experiments that evaluate differently.

Determinism: HF `tokenizers` BPE training (0.23) gave identical `tokenizer.json` bytes across
runs with parallelism on (2 rayon threads), off (TOKENIZERS_PARALLELISM=false, which the CLI
sets anyway) and RAYON_NUM_THREADS=1, on 20 MB of Python source; merges are chosen by
(count, pair) so ties do not depend on thread timing. tests/stages/test_tokenizer.py
checks two runs byte for byte, so nothing is forced here.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterator

from repro.errors import ReproError
from repro.jsonl import iter_rows
from repro.stages.base import StageIO, atomic_dir
from repro.stages.configs import TokenizerConfig
from repro.stages.kind import DATA_PARAMS, ENV, StageKind, data

BYTE_SYMBOLS = 256
"""Byte-level BPE always holds the 256 byte symbols besides the special tokens."""


def iter_texts(split_dirs: list[Path], max_docs: int | None) -> Iterator[str]:
    """Texts of each split's train.jsonl, dataset by dataset, at most max_docs documents
    each (blank lines are not documents: repro.jsonl skips them; the split writes none)."""
    for d in split_dirs:
        rows = iter_rows(Path(d) / "train.jsonl")
        yield from (row["text"] for row in itertools.islice(rows, max_docs))


def check_special_tokens(special_tokens: list[str], vocab_size: int) -> None:
    """Fail with the fix when the special tokens cannot get ids 0..n-1 in order."""
    dupes = sorted({t for t in special_tokens if special_tokens.count(t) > 1})
    if dupes:
        raise ValueError(f"tokenizer.special_tokens repeats {dupes}; list each token once")
    if any(not t for t in special_tokens):
        raise ValueError("tokenizer.special_tokens holds an empty string; remove it")
    if len(special_tokens) + BYTE_SYMBOLS > vocab_size:
        raise ValueError(
            f"tokenizer.vocab_size {vocab_size} cannot hold {len(special_tokens)} special tokens "
            f"and the {BYTE_SYMBOLS} byte symbols; raise vocab_size to at least "
            f"{len(special_tokens) + BYTE_SYMBOLS} or list fewer special_tokens")


def train_bpe(texts: Iterator[str], vocab_size: int, min_frequency: int,
              special_tokens: list[str]):
    """A byte-level BPE `tokenizers.Tokenizer` (GPT-2 style: no unknown token, 256 byte
    symbols always in the vocabulary), special tokens at ids 0..n-1 in the given order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    check_special_tokens(special_tokens, vocab_size)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, t in enumerate(special_tokens):
        assert tok.token_to_id(t) == i, f"special token {t!r} got id {tok.token_to_id(t)}, expected {i}"
    return tok


def wrap_fast(tok, special_tokens: list[str]):
    """The transformers view of a trained tokenizer: the first special token is eos and bos,
    the second pad, the rest extra special tokens."""
    from transformers import PreTrainedTokenizerFast

    eos, pad, *extra = special_tokens
    # extra_special_tokens only when there are some: an empty list would still be written
    # to tokenizer_config.json and change the bytes of every two-token tokenizer
    more = {"extra_special_tokens": list(extra)} if extra else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=eos, eos_token=eos, pad_token=pad, **more)


def load_pretrained(name_or_path: str, revision: str | None):
    """AutoTokenizer from a local folder or the hub; offline, a hub name must be cached."""
    from transformers import AutoTokenizer

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        # never run code shipped with a hub tokenizer (repro.spec.safety)
        return AutoTokenizer.from_pretrained(name_or_path, revision=revision,
                                             local_files_only=offline, trust_remote_code=False)
    except (OSError, ValueError) as e:
        where = "the local folder" if Path(name_or_path).exists() else "the Hugging Face cache"
        raise ReproError(
            f"cannot load tokenizer {name_or_path!r} (revision {revision}) from {where}"
            + (" with network access off (HF_HUB_OFFLINE=1)" if offline else "") + f": {e}",
            field="tokenizer.name_or_path",
            fix="point tokenizer.name_or_path at a local folder holding tokenizer.json, or fetch "
                f"it once where the hub is reachable (`hf download {name_or_path}`) so it is in "
                "the HF cache",
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
        tokens = list(spec.special_tokens)
        fast = wrap_fast(train_bpe(texts, spec.vocab_size, spec.min_frequency, tokens), tokens)
    else:
        # A local path arrives as the `pretrained` input (so DVC tracks it); a hub id does not.
        source = str(io.inputs.get("pretrained", spec.name_or_path))
        fast = load_pretrained(source, spec.revision)
    with atomic_dir(out) as tmp:
        fast.save_pretrained(str(tmp))


KIND = StageKind(
    config=TokenizerConfig,
    outputs={"tokenizer": data("artifacts/tokenizer"), "env": ENV},
    run=run,
    params_file=DATA_PARAMS,
)
