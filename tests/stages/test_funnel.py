"""funnel stage: one metrics file per dataset with documents, characters and tokens through
curation, the held-out split and decontamination; tokens agree with the token shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.spec.schema import TrainBPETokenizer
from repro.stages import funnel, tokenize, tokenizer
from repro.stages.base import StageIO, write_json
from repro.stages.configs import FunnelConfig, TokenizeConfig, TokenizerConfig

TRAIN = {"t1": "alpha beta gamma delta", "t2": "the of and to in return def",
         "t3": "gamma gamma gamma <|endoftext|>", "t4": "delta the of"}
HELDOUT = {"h1": "alpha and beta"}
LANG_REMOVED = {"r1": "le chat est sur la table", "r2": "der Hund"}
DECONT_REMOVED = {"t2": "repro_bpb_web"}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_inputs(tmp: Path, decont: bool = True) -> dict[str, Path]:
    curated = tmp / "curated"
    kept = {**TRAIN, **HELDOUT}
    _jsonl(curated / "data" / "00000.jsonl", [{"text": t, "id": i, "metadata": {}} for i, t in kept.items()])
    _jsonl(curated / "removed" / "02_language" / "00000.jsonl",
           [{"text": t, "id": i, "metadata": {"filter_reason": "other_language"}}
            for i, t in LANG_REMOVED.items()])
    chars = sum(len(t) for t in kept.values())
    write_json(tmp / "curate.json", {
        "dataset": "web", "docs_in": 7, "chars_in": 999, "docs_out": 5, "chars_out": chars,
        "steps": {
            # an extractor that lost a document: nothing written, tokens unknown
            "01_trafilatura": {"docs_in": 8, "docs_out": 7, "chars_out": 500, "removed": {"timeout": 1}},
            "02_language": {"docs_in": 7, "docs_out": 5, "chars_out": chars,
                            "removed": {"other_language": 2}},
            "03_pii": {"docs_in": 5, "docs_out": 5, "chars_out": chars, "removed": {}},
        }})
    split = tmp / "split"
    _jsonl(split / "train.jsonl", [{"id": i, "text": t} for i, t in TRAIN.items()])
    _jsonl(split / "heldout.jsonl", [{"id": i, "text": t} for i, t in HELDOUT.items()])
    tokenizer.run(TokenizerConfig(tokenizer=TrainBPETokenizer(vocab_size=280), datasets=["web"]),
                  StageIO("tok", {"train:web": split}, {"tokenizer": tmp / "tok"}))
    ins = {"curated": curated, "curate_metrics": tmp / "curate.json", "split": split,
           "tokenizer": tmp / "tok"}
    if decont:
        dec = tmp / "decont"
        _jsonl(dec / "train.jsonl", [{"id": i, "text": t} for i, t in TRAIN.items()
                                     if i not in DECONT_REMOVED])
        _jsonl(dec / "removed.jsonl", [{"id": i, "text": TRAIN[i], "task": task, "ngram": "x"}
                                       for i, task in DECONT_REMOVED.items()])
        ins["decontaminated"] = dec
    return ins


def _tokens(tok_dir: Path, texts) -> int:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    tok.encode_special_tokens = True  # as the shards: special-token text is text
    return sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)


def run_funnel(tmp: Path, ins: dict[str, Path]) -> dict:
    funnel.run(FunnelConfig(dataset="web"), StageIO("funnel-web", ins, {"metrics": tmp / "f.json"}))
    return json.loads((tmp / "f.json").read_text())


def test_funnel_counts_every_step_in_tokens(tmp_path):
    ins = make_inputs(tmp_path)
    f = run_funnel(tmp_path, ins)
    tok = tmp_path / "tok"
    steps = f["curation"]["steps"]
    assert steps["01_trafilatura"]["tokens_removed"] is None  # removed, but nothing to count
    assert steps["02_language"]["tokens_removed"] == _tokens(tok, LANG_REMOVED.values())
    assert steps["03_pii"]["tokens_removed"] == 0
    kept_tokens = _tokens(tok, [*TRAIN.values(), *HELDOUT.values()])
    assert f["curation"]["tokens_out"] == kept_tokens
    assert steps["03_pii"]["tokens_out"] == kept_tokens
    assert steps["02_language"]["tokens_out"] == kept_tokens
    assert steps["01_trafilatura"]["tokens_out"] == kept_tokens + steps["02_language"]["tokens_removed"]
    assert steps["02_language"]["removed"] == {"other_language": 2}  # curate's counts kept
    assert f["heldout"] == {"docs": 1, "chars": len(HELDOUT["h1"]),
                            "tokens": _tokens(tok, HELDOUT.values())}
    dec = f["decontamination"]
    assert (dec["docs_in"], dec["docs_out"]) == (4, 3)
    assert dec["removed"] == {"repro_bpb_web": 1}
    assert dec["tokens_removed"] == {"repro_bpb_web": _tokens(tok, [TRAIN["t2"]])}
    kept = [t for i, t in TRAIN.items() if i not in DECONT_REMOVED]
    assert f["training"] == {"docs": 3, "chars": sum(map(len, kept)), "tokens": _tokens(tok, kept)}
    assert dec["tokens_out"] == f["training"]["tokens"]


def test_training_tokens_match_the_shards(tmp_path):
    """The funnel's last row and the tokenize stage count the same tokens (shards add EOS)."""
    ins = make_inputs(tmp_path)
    f = run_funnel(tmp_path, ins)
    tokenize.run(TokenizeConfig(dataset="web", seed=0),
                 StageIO("tz", {"docs": ins["decontaminated"], "tokenizer": ins["tokenizer"]},
                         {"tokens": tmp_path / "shards", "metrics": tmp_path / "tz.json"}))
    tz = json.loads((tmp_path / "tz.json").read_text())
    assert tz["text_tokens"] == f["training"]["tokens"]
    assert tz["tokens"] == f["training"]["tokens"] + f["training"]["docs"]


def test_without_decontamination_training_is_the_split(tmp_path):
    f = run_funnel(tmp_path, make_inputs(tmp_path, decont=False))
    assert "decontamination" not in f
    assert f["training"]["docs"] == len(TRAIN)
    assert f["training"]["tokens"] + f["heldout"]["tokens"] == f["curation"]["tokens_out"]


def test_inputs_from_different_runs_are_refused(tmp_path):
    ins = make_inputs(tmp_path)
    _jsonl(ins["split"] / "heldout.jsonl", [{"id": "h1", "text": "a"}, {"id": "h9", "text": "b"}])
    with pytest.raises(ValueError, match="different runs"):
        run_funnel(tmp_path, ins)
    assert not (tmp_path / "f.json").exists()
