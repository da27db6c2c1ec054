"""Bad input: each mistake gives one clear, located error and exit code 2, no traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import main

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _base(tmp_path: Path) -> Path:
    """A valid spec to derive broken ones from (copy of the CI spec's parent chain)."""
    text = (REPO / "specs/qs-nope.yaml").read_text()
    return _write(tmp_path, "base.yaml", text.replace("report:\n", "report_unused:\n", 1)
                  .split("report_unused:")[0])


CASES = [
    ("malformed YAML", "model: {hidden_size: 64\n", "YAML syntax error", None),
    ("unknown key", "model:\n  hiden_size: 64\n", "did you mean 'hidden_size'", 2),
    ("wrong type", "model:\n  num_layers: many\n", "model.num_layers", 2),
    ("missing dataset", "training:\n  stages:\n    - {name: a, tokens: 819200, mixture: {wbe: 1.0}}\n",
     "'wbe', which is not declared", None),
    ("mixture sum", "training:\n  stages:\n    - {name: a, tokens: 819200, mixture: {web: 0.5, code: 0.4}}\n",
     "sum to 0.9", 3),
    ("kv heads", "model:\n  num_heads: 4\n  num_kv_heads: 3\n", "does not divide num_heads", 3),
    ("zero tokens", "training:\n  stages:\n    - {name: a, tokens: 0, mixture: {web: 1.0}}\n",
     "training.stages[0].tokens", 3),
    ("duplicate key", "model:\n  num_layers: 2\n  num_layers: 3\n", "duplicate key", 3),
    ("python tag", "model: !!python/object:os.system {}\n", "not allowed", 1),
    ("bad step", "datasets:\n  web:\n    source: {kind: builtin, name: pydoc_web}\n    steps:\n      - kind: magic\n",
     "datasets.web.steps[0]", 5),
]


@pytest.mark.parametrize("label,override,fragment,line", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_gives_located_error(tmp_path, label, override, fragment, line):
    _base(tmp_path)
    spec = _write(tmp_path, "bad.yaml", "extends: base.yaml\n" + override)
    result = CliRunner().invoke(main, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert "bad.yaml" in result.output or "base.yaml" in result.output
    if line is not None:
        # Our override starts on line 2 of bad.yaml (after `extends:`).
        assert f"bad.yaml:{line + 1}:" in result.output


def test_extends_cycle(tmp_path):
    _write(tmp_path, "a.yaml", "extends: b.yaml\nschema_version: 1\n")
    _write(tmp_path, "b.yaml", "extends: a.yaml\n")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "a.yaml")])
    assert result.exit_code == 2
    assert "extends cycle" in result.output and "Traceback" not in result.output


def test_missing_schema_version(tmp_path):
    spec = _write(tmp_path, "s.yaml", "experiment: {name: x}\n")
    result = CliRunner().invoke(main, ["validate", str(spec)])
    assert result.exit_code == 2
    assert "schema_version" in result.output and "fix: add `schema_version: 1`" in result.output


def test_missing_base_file(tmp_path):
    spec = _write(tmp_path, "s.yaml", "extends: nowhere.yaml\n")
    result = CliRunner().invoke(main, ["validate", str(spec)])
    assert result.exit_code == 2 and "base spec 'nowhere.yaml' not found" in result.output


def test_extends_replaces_lists_and_merges_maps(tmp_path):
    _base(tmp_path)
    spec = _write(tmp_path, "child.yaml", """
        extends: base.yaml
        experiment: {name: child}
        datasets:
          web:
            steps: [{kind: trafilatura}]
        """)
    from repro.spec.load import load_spec

    s = load_spec(spec)
    assert s.name == "child" and s.experiment.description  # description inherited
    assert [st.kind for st in s.datasets["web"].steps] == ["trafilatura"]
    assert s.datasets["web"].source.name == "pydoc_web"
