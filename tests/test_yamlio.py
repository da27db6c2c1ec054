"""repro.yamlio reads generated YAML as yaml.safe_load does, with libyaml where installed."""

from __future__ import annotations

import pytest
import yaml

from repro import yamlio

TEXT = ("train-x:\n  lr: 1.0e-3\n  steps: 20\n  seed: 0\n  names: [a, 'b: c', null, true]\n"
        "  when: 2024-01-01\n  nested: {k: [1, 2.5, ~]}\n")


def test_reads_what_safe_load_reads() -> None:
    assert yamlio.safe_load(TEXT) == yaml.safe_load(TEXT)
    assert yamlio.safe_load("") is None


def test_refuses_tags_as_safe_load_does() -> None:
    with pytest.raises(yaml.YAMLError):
        yamlio.safe_load("x: !!python/object/apply:os.system ['true']\n")


def test_uses_libyaml_when_installed() -> None:
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML built without libyaml")
    assert yamlio._SafeLoader is yaml.CSafeLoader
