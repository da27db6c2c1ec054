"""tokenize stage: shards keep document boundaries (index = documents, EOS at every end and
nowhere else, even for text spelling a special token), hold exactly the documents of the
input, and are byte-identical across runs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from repro.spec.schema import TrainBPETokenizer
from repro.stages import tokenize, tokenizer
from repro.stages.base import StageIO
from repro.stages.configs import TokenizeConfig, TokenizerConfig

WORDS = "alpha beta gamma delta the of and to in é 東京 return def".split()


def make_split(folder: Path, docs: int = 40) -> list[str]:
    rng = random.Random(7)
    folder.mkdir(parents=True, exist_ok=True)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) for _ in range(docs)]
    texts[3] = ""  # datatrove's reader skips empty documents
    texts[5] = "a document quoting <|endoftext|> and <|pad|> as text"
    with open(folder / "train.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"d{i}", "text": t}) + "\n")
    return texts


def setup(tmp: Path) -> list[str]:
    texts = make_split(tmp / "split")
    tokenizer.run(TokenizerConfig(tokenizer=TrainBPETokenizer(vocab_size=280), datasets=["d"]),
                  StageIO("tok", {"train:d": tmp / "split"}, {"tokenizer": tmp / "tok"}))
    return texts


def tokenize_to(tmp: Path, name: str, seed: int = 0) -> tuple[Path, Path]:
    out, metrics = tmp / name, tmp / "metrics" / f"{name}.json"
    tokenize.run(TokenizeConfig(dataset="d", seed=seed),
                 StageIO("tz", {"docs": tmp / "split", "tokenizer": tmp / "tok"},
                         {"tokens": out, "metrics": metrics}))
    return out, metrics


def test_shards_keep_document_boundaries(tmp_path):
    from tokenizers import Tokenizer

    texts = [t for t in setup(tmp_path) if t]
    out, metrics_path = tokenize_to(tmp_path, "tokens")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 280 and meta["eos_id"] == 0
    assert meta["num_docs"] == len(texts)
    [f] = meta["files"]
    tokens = np.fromfile(out / f, dtype="<u2")
    ends = np.fromfile(out / f"{f}.index", dtype="<u8").astype(np.int64)
    assert len(tokens) == meta["num_tokens"] == ends[-1] and len(ends) == len(texts)
    assert (tokens[ends - 1] == 0).all()  # EOS closes every document
    assert (tokens == 0).sum() == len(texts)  # and appears nowhere else, even in texts[5]
    assert (tokens == 1).sum() == 0  # no pad either
    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    starts = np.concatenate([[0], ends[:-1]])
    decoded = [tok.decode(tokens[s:e - 1].tolist()) for s, e in zip(starts, ends)]
    assert sorted(decoded) == sorted(texts)  # the same documents, shuffled
    assert decoded != texts
    m = json.loads(metrics_path.read_text())
    n_bytes = sum(len(t.encode()) for t in texts)
    assert (m["docs"], m["tokens"], m["bytes"]) == (len(texts), len(tokens), n_bytes)
    assert m["text_tokens"] == len(tokens) - len(texts)
    assert abs(m["bytes_per_token"] - n_bytes / (len(tokens) - len(texts))) < 1e-5


def test_tokenize_is_deterministic_and_seeded(tmp_path):
    setup(tmp_path)
    a, ma = tokenize_to(tmp_path, "a")
    b, mb = tokenize_to(tmp_path, "b")
    c, _ = tokenize_to(tmp_path, "c", seed=1)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    assert ma.read_bytes() == mb.read_bytes()
    f = json.loads((a / "meta.json").read_text())["files"][0]
    assert (a / f).read_bytes() != (c / f).read_bytes()  # another seed, another document order


def test_boundaries_come_back_from_the_index_alone(tmp_path):
    """Each document's tokens are recoverable from the .index file (not only from EOS), and
    decode to exactly one source document, each used once."""
    from tokenizers import Tokenizer

    texts = [t for t in setup(tmp_path) if t]
    out, _ = tokenize_to(tmp_path, "tokens")
    meta = json.loads((out / "meta.json").read_text())
    [f] = meta["files"]
    tokens = np.fromfile(out / f, dtype="<u2")
    ends = np.fromfile(out / f"{f}.index", dtype="<u8").astype(np.int64)
    assert (np.diff(ends) > 0).all() and ends[-1] == len(tokens)
    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    tok.encode_special_tokens = True
    lengths = {t: len(tok.encode(t, add_special_tokens=False).ids) + 1 for t in texts}
    starts = np.concatenate([[0], ends[:-1]])
    remaining = list(texts)
    for s, e in zip(starts, ends):
        doc = tok.decode(tokens[s:e - 1].tolist(), skip_special_tokens=False)
        assert lengths[doc] == e - s
        remaining.remove(doc)
    assert remaining == []
