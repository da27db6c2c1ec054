"""Special-token strings inside text are text.

HF tokenizers match special tokens inside text by default, so a document quoting
"<|endoftext|>" would get a stray EOS in the middle. The tokenize stage (token shards) and
the token funnel (token counts) both encode with this setting, so their counts agree.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def text_only(tokenizer: T) -> T:
    """Make a `tokenizers.Tokenizer` encode special-token strings found in text as plain
    text (the post-processor still appends the real EOS by id)."""
    tokenizer.encode_special_tokens = True  # type: ignore[attr-defined]
    return tokenizer
