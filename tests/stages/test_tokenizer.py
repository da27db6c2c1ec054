"""tokenizer stage: BPE training is deterministic, the spec's special tokens sit at ids
0..n-1 (first eos/bos, second pad), the document cap applies, and pretrained tokenizers load
from a folder or fail offline clearly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from repro.errors import ReproError
from repro.jsonl import JsonlError
from repro.spec.schema import PretrainedTokenizer, TrainBPETokenizer
from repro.stages.base import StageIO
from repro.stages.configs import TokenizerConfig
from repro.stages.tokenizer import iter_texts, run

WORDS = "the a cat dog sat on mat ran to house big small red blue and with of in é 東京 def return".split()


def make_split(folder: Path, seed: int, docs: int = 60) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.jsonl", "w", encoding="utf-8") as f:
        for i in range(docs):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 80)))
            f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    return folder


def train(tmp: Path, out: str, **spec) -> Path:
    web, code = make_split(tmp / "web", 1), make_split(tmp / "code", 2)
    cfg = TokenizerConfig(tokenizer=TrainBPETokenizer(vocab_size=300, **spec), datasets=["web", "code"])
    run(cfg, StageIO("tok", {"train:web": web, "train:code": code}, {"tokenizer": tmp / out}))
    return tmp / out


def test_bpe_is_deterministic_with_fixed_special_ids(tmp_path):
    from transformers import AutoTokenizer

    a, b = train(tmp_path, "a"), train(tmp_path, "b")
    names = sorted(p.name for p in a.iterdir())
    assert "tokenizer.json" in names and names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    tok = AutoTokenizer.from_pretrained(str(a))
    assert len(tok) == 300
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|pad|>"]) == [0, 1]
    assert (tok.eos_token_id, tok.bos_token_id, tok.pad_token_id) == (0, 0, 1)
    text = "the big cat é 東京\n  def return"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: lossless


def test_special_tokens_come_from_the_spec(tmp_path):
    from transformers import AutoTokenizer

    specials = ["<s_end>", "<s_pad>", "<fim_prefix>", "<fim_suffix>"]
    out = train(tmp_path, "custom", special_tokens=specials)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.convert_tokens_to_ids(specials) == [0, 1, 2, 3]
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == ("<s_end>", "<s_end>", "<s_pad>")
    assert (tok.eos_token_id, tok.bos_token_id, tok.pad_token_id) == (0, 0, 1)
    assert set(specials[2:]) <= set(tok.all_special_tokens)
    assert len(tok) == 300
    # the default pair gives a different tokenizer file (ids 0 and 1 hold other strings)
    default = train(tmp_path, "default")
    assert (out / "tokenizer.json").read_bytes() != (default / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("specials,vocab,match", [
    (["<a>", "<b>", "<a>"], 300, "repeats"),
    (["<a>", ""], 300, "empty string"),
    ([f"<t{i}>" for i in range(5)], 260, "at least 261"),
])
def test_bad_special_tokens_name_the_fix(tmp_path, specials, vocab, match):
    web = make_split(tmp_path / "web", 1)
    cfg = TokenizerConfig(tokenizer=TrainBPETokenizer(vocab_size=vocab, special_tokens=specials),
                          datasets=["web"])
    with pytest.raises(ValueError, match=match):
        run(cfg, StageIO("tok", {"train:web": web}, {"tokenizer": tmp_path / "t"}))
    assert not (tmp_path / "t").exists()


def test_max_docs_per_dataset_caps_each_dataset(tmp_path):
    capped = train(tmp_path, "capped", max_docs_per_dataset=10)
    # the same tokenizer comes from files truncated to their first 10 documents
    for name in ("web", "code"):
        lines = (tmp_path / name / "train.jsonl").read_text(encoding="utf-8").splitlines()[:10]
        make_split(tmp_path / f"t-{name}", 0, docs=0)
        (tmp_path / f"t-{name}" / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = TokenizerConfig(tokenizer=TrainBPETokenizer(vocab_size=300), datasets=["web", "code"])
    run(cfg, StageIO("tok", {"train:web": tmp_path / "t-web", "train:code": tmp_path / "t-code"},
                     {"tokenizer": tmp_path / "trunc"}))
    assert (capped / "tokenizer.json").read_bytes() == (tmp_path / "trunc" / "tokenizer.json").read_bytes()
    full = train(tmp_path, "full")
    assert (capped / "tokenizer.json").read_bytes() != (full / "tokenizer.json").read_bytes()


def test_max_docs_counts_documents_and_a_bad_line_is_located(tmp_path):
    """Read through repro.jsonl: a blank line is no document (it used to stop the stage),
    the reading stops at max_docs, so a later line is never parsed, and a bad line before it
    names its file and line."""
    (tmp_path / "a").mkdir()
    rows = [json.dumps({"id": i, "text": f"t{i}"}) for i in range(3)]
    (tmp_path / "a" / "train.jsonl").write_text(f"{rows[0]}\n\n{rows[1]}\n{rows[2]}\n{{bad\n")
    assert list(iter_texts([tmp_path / "a"], 2)) == ["t0", "t1"]
    assert list(iter_texts([tmp_path / "a"], 3)) == ["t0", "t1", "t2"]
    with pytest.raises(JsonlError, match=r"train\.jsonl:5: not JSON") as e:
        list(iter_texts([tmp_path / "a"], None))
    assert e.value.line == 5


def test_pretrained_from_local_folder(tmp_path):
    src = train(tmp_path, "src")
    cfg = TokenizerConfig(tokenizer=PretrainedTokenizer(name_or_path=str(src)), datasets=[])
    run(cfg, StageIO("tok", {"pretrained": src}, {"tokenizer": tmp_path / "copy"}))
    a = json.loads((src / "tokenizer.json").read_text())
    b = json.loads((tmp_path / "copy" / "tokenizer.json").read_text())
    assert a["model"]["merges"] == b["model"]["merges"] and a["added_tokens"] == b["added_tokens"]


def test_pretrained_hub_name_offline_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = TokenizerConfig(tokenizer=PretrainedTokenizer(name_or_path="no-such-org/no-such-tokenizer"), datasets=[])
    with pytest.raises(ReproError, match="cannot load tokenizer 'no-such-org/no-such-tokenizer'") as e:
        run(cfg, StageIO("tok", {}, {"tokenizer": tmp_path / "t"}))
    assert e.value.field == "tokenizer.name_or_path"
    assert "`hf download no-such-org/no-such-tokenizer`" in e.value.fix
    assert not (tmp_path / "t").exists()
