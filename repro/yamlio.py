"""Reading the YAML files repro and DVC generate (params.yaml, dvc.yaml, dvc.lock).

They are plain data written by `repro compile` or DVC, but a pipeline's params.yaml runs to
megabytes, and every `repro stage` reads it before doing anything: PyYAML's pure-Python
parser reads ~0.1 MB/s, libyaml's (the same safe constructor, in C) about 5x faster. Spec
files go through repro.spec.load instead, which also locates every value and refuses tags.
"""

from __future__ import annotations

from typing import Any

import yaml

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed


def safe_load(text: str) -> Any:
    """`yaml.safe_load(text)`, with libyaml's parser when it is installed."""
    loader = _SafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
