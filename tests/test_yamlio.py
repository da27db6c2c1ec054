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


def test_reads_scalars_as_yaml_1_2_does_as_dvc_reads_them() -> None:
    """DVC (ruamel, YAML 1.2) writes `1e-08` in dvc.lock and, after `dvc exp run -S`, in
    params.yaml; YAML 1.1 (PyYAML) would read a string, and `yes`/`off` as booleans."""
    from ruamel.yaml import YAML

    text = ("eps: 1e-08\nbig: 1e+20\nlr: 1.0e-3\nneg: -2.5\ninf: .inf\nnan: .nan\nn: 010\n"
            "octal: 0o17\nhex: 0x1f\nunder: 1_000\nsexa: 1:20\nyes: yes\noff: off\nt: true\n"
            "f: False\nnull: ~\nempty:\nwhen: 2024-01-01\nword: 1e-08x\ndot: .\nneg_hex: -0x1f\n"
            "u_float: 1_0.5\n")
    ours, dvc = yamlio.safe_load(text), YAML(typ="safe", pure=True).load(text)
    assert ours["eps"] == 1e-08 and ours["yes"] == "yes" and ours["under"] == 1000
    assert ours["n"] == 10 and ours["sexa"] == "1:20" and ours["octal"] == 15
    nan = ours.pop("nan")
    assert nan != nan and dvc.pop("nan") != dvc["inf"]
    assert ours == dvc
