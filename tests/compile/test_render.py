"""params.yaml is written in the form DVC writes it back (repro.compile.render
.dump_as_dvc_writes), so `dvc exp run -S` changes the line it sets and nothing else."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
from dvc.utils.serialize import modify_yaml

from repro import yamlio
from repro.compile.render import HEADER, dump_as_dvc_writes

REPO = Path(__file__).resolve().parents[2]
PARAMS = [REPO / "params.yaml", *sorted((REPO / "examples").glob("*/params.yaml"))]


def _changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0,
                                                  lineterm="")
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: str(p.relative_to(REPO)))
def test_dvcs_own_write_back_of_one_change_changes_one_line(params, tmp_path):
    copy = tmp_path / "params.yaml"
    shutil.copy(params, copy)
    before = copy.read_text()
    with modify_yaml(copy) as data:  # what `dvc exp run -S` does (dvc/repo/experiments/utils.py)
        pass
    assert copy.read_text() == before  # a fixed point of DVC's round trip
    section = next(s for s in data if s.startswith("train-"))
    with modify_yaml(copy) as data:
        data[section]["optimizer"]["lr"] = 0.00123
    after = copy.read_text()
    changed = _changed_lines(before, after)
    assert len(changed) == 2 and changed[0][1:].strip().startswith("lr: "), changed
    assert changed[1][1:].strip() == "lr: 0.00123"
    assert yamlio.safe_load(after)[section]["optimizer"]["lr"] == 0.00123


def test_values_that_yaml_versions_or_writers_spell_differently_round_trip(tmp_path):
    """None, long strings (ruamel folds at 80 columns), small floats, YAML 1.1 booleans,
    unicode and line breaks: written once, DVC's round trip leaves them as they are, and
    repro reads back the values written."""
    data = {"stage-x": {"none": None, "list": [1, None, "x"], "long": " ".join(["word"] * 40),
                        "path": "data/" + "x" * 120, "eps": 1e-08, "big": 1e22, "yes": "yes",
                        "off": "off", "num": "1e-08", "u": "café ☃", "nl": "a\nb", "empty": "",
                        "colon": "a: b", "nested": [{"a": 1, "b": None}], "flag": True}}
    path = tmp_path / "params.yaml"
    path.write_text(HEADER + dump_as_dvc_writes(data))
    text = path.read_text()
    with modify_yaml(path):
        pass
    assert path.read_text() == text
    assert yamlio.safe_load(text) == data
