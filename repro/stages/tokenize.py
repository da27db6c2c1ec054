"""Stage `tokenize`: one dataset's training documents -> packed token shards.

Input `docs` is a folder holding `train.jsonl`: the decontaminate stage's output, or the
split's when decontamination is off.

datatrove's DocumentTokenizer does the work (HF `tokenizers` batch encoding, EOS appended to
every document, document order shuffled with a seeded numpy permutation), so the shards use
datatrove's format, readable by nanotron/datatrove loaders as well as by repro.train.data:

  train_00000_00000_doc_shuffled.ds        tokens, little-endian uint16 (uint32 if vocab > 65536)
  train_00000_00000_doc_shuffled.ds.index  uint64 cumulative document ends, in tokens
  meta.json                                {format, files, dtype, vocab_size, num_tokens,
                                            num_docs, eos_id, eos_token}

We run the two pipeline steps directly rather than through an executor: an executor writes
logs and stats with timestamps and hostnames, which would break byte-identical outputs, and
one task over one file needs no scheduling. datatrove's own `.metadata` file is off because
it records the tokenizer's path.

Document boundaries are kept twice: the `.index` file lists every document's end, and EOS
appears exactly once per document, at its end. Text that spells a special token (a document
quoting "<|endoftext|>") is encoded as ordinary text, not as the special token, so no
document holds a stray EOS (HF tokenizers match special tokens inside text by default).

datatrove's reader skips documents with empty text (they would be a lone EOS).

Metrics: docs, tokens (in the shards, one EOS per document included), text_tokens (tokens
minus EOS), bytes (UTF-8 text), bytes_per_token (text bytes per text token: the tokenizer's
compression).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Iterator

from datatrove.pipeline.tokens import DocumentTokenizer

from repro.data.special_tokens import text_only
from repro.stages.base import StageIO, atomic_dir, dumps_json, write_json
from repro.stages.configs import TokenizeConfig
from repro.stages.kind import DATA_PARAMS, ENV, METRICS, StageKind, data

SAVE_FILENAME = "train"
TRAIN_FILE = "train.jsonl"


class TextOnlyDocumentTokenizer(DocumentTokenizer):
    """datatrove's DocumentTokenizer whose tokenizer treats special-token text as text."""

    @cached_property
    def tokenizer(self):
        return text_only(DocumentTokenizer.tokenizer.func(self))


def _eos_token(tokenizer_dir: Path) -> str:
    """The eos token string recorded by save_pretrained (string or AddedToken dict)."""
    cfg = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    eos = cfg.get("eos_token")
    if isinstance(eos, dict):
        eos = eos.get("content")
    if not eos:
        raise ValueError(
            f"{tokenizer_dir}/tokenizer_config.json names no eos_token; documents need an "
            "end-of-document token: use a tokenizer with one"
        )
    return eos


class _Counted:
    """Pass documents through, counting documents and UTF-8 bytes."""

    def __init__(self, docs: Iterator) -> None:
        self.docs, self.n, self.bytes = docs, 0, 0

    def __iter__(self):
        for doc in self.docs:
            self.n += 1
            self.bytes += len(doc.text.encode("utf-8"))
            yield doc


def run(cfg: TokenizeConfig, io: StageIO) -> None:
    import numpy as np
    from datatrove.pipeline.readers import JsonlReader

    docs, tok_dir = io.input("docs"), io.input("tokenizer")
    eos_token = _eos_token(tok_dir)
    with atomic_dir(io.output("tokens")) as tmp:
        reader = JsonlReader(str(docs), glob_pattern=TRAIN_FILE, text_key="text", id_key="id",
                             doc_progress=True)
        writer = TextOnlyDocumentTokenizer(
            output_folder=str(tmp), tokenizer_name_or_path=str(tok_dir / "tokenizer.json"),
            eos_token=eos_token, save_filename=SAVE_FILENAME, save_final_metadata=False,
            seed=cfg.seed,
        )
        counted = _Counted(reader.run(None, rank=0, world_size=1))
        writer.run(iter(counted), rank=0, world_size=1)
        if counted.n == 0:
            raise ValueError(f"dataset {cfg.dataset}: {docs}/{TRAIN_FILE} holds no documents to "
                             "tokenize (did decontamination or curation remove them all?)")
        files = sorted(p.name for p in tmp.glob("*.ds"))
        dtype = "uint32" if writer.token_size == 4 else "uint16"
        num_tokens = sum((tmp / f).stat().st_size for f in files) // writer.token_size
        num_docs = sum((tmp / f"{f}.index").stat().st_size for f in files) // 8
        assert num_docs == counted.n, (num_docs, counted.n)
        vocab_size = writer.tokenizer.get_vocab_size()
        eos_id = writer.tokenizer.token_to_id(eos_token)
        # Each shard must end on a document end (datatrove writes whole documents).
        for f in files:
            ends = np.fromfile(tmp / f"{f}.index", dtype="<u8")
            assert ends[-1] * writer.token_size == (tmp / f).stat().st_size, f
        meta = {
            "format": "datatrove-ds",
            "files": files,
            "dtype": dtype,
            "vocab_size": vocab_size,
            "num_tokens": int(num_tokens),
            "num_docs": int(num_docs),
            "eos_id": eos_id,
            "eos_token": eos_token,
        }
        (tmp / "meta.json").write_text(dumps_json(meta), encoding="utf-8")
    text_tokens = num_tokens - num_docs
    write_json(io.output("metrics"), {
        "dataset": cfg.dataset,
        "docs": int(num_docs),
        "tokens": int(num_tokens),
        "text_tokens": int(text_tokens),
        "bytes": counted.bytes,
        "bytes_per_token": round(counted.bytes / text_tokens, 6) if text_tokens else 0.0,
    })


KIND = StageKind(
    config=TokenizeConfig,
    outputs={"tokens": data("data/tokens"), "metrics": METRICS, "env": ENV},
    run=run,
    params_file=DATA_PARAMS,
)
