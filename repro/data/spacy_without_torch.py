"""Import spaCy without thinc importing torch: 1.9 s instead of 4.4 s (loaded 2-core host).

datatrove's English word tokenizer (Gopher filters, MinHash signatures, n-gram
decontamination) is spaCy's rule-based tokenizer, and `import spacy` imports thinc, whose
`thinc.compat` imports torch when it is installed, to offer its PyTorch model wrappers.
Tokenizing never uses them, but every curate and decontaminate process (and the forkserver
their pools fork from) paid for torch's import. thinc has no switch for it; it catches the
ImportError and records `has_torch = False`. So while spaCy is first imported, `torch` is
marked unimportable (a None entry in sys.modules, Python's documented way to make an
import raise ImportError), and the entry is removed right after: a later `import torch` in
the process works as usual, only thinc keeps `has_torch = False`. Where torch or spaCy is
already imported (tests, a process that needs torch anyway) this is a plain `import spacy`.
The tokens are the same: the rule-based tokenizer has no torch path
(tests/data/test_spacy_without_torch.py compares them with a plain import's).
"""

from __future__ import annotations

import sys

if "spacy" not in sys.modules and "torch" not in sys.modules:
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
    try:
        import spacy  # noqa: F401
    finally:
        del sys.modules["torch"]
else:
    import spacy  # noqa: F401
