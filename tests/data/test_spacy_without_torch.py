"""repro.data.spacy_without_torch: spaCy imported without torch tokenizes as a plain import
does, and leaves torch importable afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TEXT = ("The quick brown fox's den -- 3.5 km away -- isn't there; e-mail: fox@den.org "
        "(see https://example.org/a?b=c). \"Don't\" panic, U.S. readers: 1,000 fish.")

_TOKENIZE = f"""
import json, sys
FIRST
import thinc.compat
from datatrove.utils.word_tokenizers import load_word_tokenizer
tok = load_word_tokenizer("en")
had_torch = "torch" in sys.modules
import torch  # importable afterwards, whatever came first
print(json.dumps({{"tokens": tok.word_tokenize({TEXT!r}),
                  "sentences": tok.sent_tokenize({TEXT!r}),
                  "thinc_has_torch": thinc.compat.has_torch, "had_torch": had_torch,
                  "torch_works": float(torch.ones(2).sum())}}))
"""


def _tokenize(first: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _TOKENIZE.replace("FIRST", first)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_tokens_match_a_plain_import_and_torch_stays_importable():
    ours = _tokenize("import repro.data.spacy_without_torch")
    plain = _tokenize("import torch, spacy")
    assert ours["thinc_has_torch"] is False and ours["had_torch"] is False
    assert plain["thinc_has_torch"] is True
    assert len(ours["tokens"]) > 20
    assert (ours["tokens"], ours["sentences"]) == (plain["tokens"], plain["sentences"])
    assert ours["torch_works"] == plain["torch_works"] == 2.0


def test_curation_workers_import_it_before_any_step_module(monkeypatch):
    """The forkserver every curation worker is forked from imports it before the pass's step
    modules, any of which could import spaCy (or torch) the usual way."""
    import multiprocess.forkserver
    from datatrove.pipeline.filters import GopherQualityFilter

    from repro.data.executors import _preload_forkserver

    server = multiprocess.forkserver._forkserver
    monkeypatch.setattr(server, "_preload_modules", list(server._preload_modules))
    _preload_forkserver([GopherQualityFilter()])
    modules = server._preload_modules
    assert modules[0] == "__main__" and "spacy" not in modules
    assert (modules.index("repro.data.spacy_without_torch")
            < modules.index(GopherQualityFilter.__module__))
