"""The vocabulary size a spec's model will have, without the network: a trained BPE's is in
the spec; a local pretrained tokenizer is read from its tokenizer.json; a hub tokenizer is
looked up among the few the reference specs use, whose sizes FACTS records. Read by the
compiler (a ladder's parameter counts) and the planner, so it lives below both."""

from __future__ import annotations

from pathlib import Path

from repro.spec import schema as S

KNOWN_HUB_VOCAB = {
    "HuggingFaceTB/SmolLM3-3B": 128256,   # Llama-3.2 tokenizer (FACTS 3.1)
    "openai-community/gpt2": 50257,       # GPT-2 vocabulary (FACTS 4.1)
    "gpt2": 50257,
}


def vocab_size(tokenizer: S.TokenizerSpec, root: Path = Path(".")) -> tuple[int | None, str]:
    """(vocabulary size or None, where it comes from)."""
    if isinstance(tokenizer, S.TrainBPETokenizer):
        return tokenizer.vocab_size, "tokenizer.vocab_size"
    name = tokenizer.name_or_path
    local = root / name
    if name.startswith((".", "/")) and (local / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        n = Tokenizer.from_file(str(local / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
        return n, f"{local / 'tokenizer.json'}"
    if name in KNOWN_HUB_VOCAB:
        return KNOWN_HUB_VOCAB[name], f"{name} (FACTS)"
    return None, f"{name}: vocabulary size unknown offline"
