"""A corpus of malformed specs: each gives exit code 2, a located message naming the
problem, a `fix:` line for every issue, and no traceback.

Each case is one file, `bad.yaml`, written to a fresh folder beside `base.yaml` (a valid
spec: the quickstart baseline without its report), usually as an override of it
(`extends: base.yaml` on line 1, so an override's first line is line 2). `line` is the
line of bad.yaml (or of `where`) the error must point at. A few mistakes only show when
several specs are compiled together; those run through `repro compile` (COMPILE_CASES).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import main

REPO = Path(__file__).resolve().parents[2]
X = "extends: base.yaml\n"  # line 1 of every override


def _base_text() -> str:
    text = (REPO / "specs/qs-nope.yaml").read_text()
    return text.split("\nreport:\n")[0] + "\n"  # its report compares specs not compiled here


SCHEMA_LINE = _base_text().split("\n").index("schema_version: 1") + 1


@dataclass(frozen=True)
class Bad:
    label: str
    text: str | bytes
    fragment: str
    line: int | None = None
    files: dict[str, str] = field(default_factory=dict)
    where: str = "bad.yaml"


def _stage(mixture: str, tokens: int = 819200) -> str:
    return f"training:\n  stages:\n    - {{name: a, tokens: {tokens}, mixture: {mixture}}}\n"


def _extra_source(source: str) -> str:
    return f"datasets:\n  extra:\n    source: {source}\n"


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))

CASES = [
    # ---------------------------------------------------------------- YAML syntax
    Bad("unclosed flow mapping", X + "model: {hidden_size: 64\n", "YAML syntax error", 3),
    Bad("unclosed quote", X + 'experiment: {description: "oops}\n', "YAML syntax error", 3),
    Bad("inconsistent indentation", X + "model:\n  hidden_size: 64\n   num_layers: 2\n",
        "YAML syntax error", 4),
    Bad("value after value", X + "model: hidden_size: 64\n", "mapping values are not allowed", 2),
    Bad("stray bracket", X + "model: {hidden_size: 64}]\n", "YAML syntax error", 2),
    Bad("tab indentation", X + "model:\n\thidden_size: 64\n",
        "indent with spaces: YAML does not allow tabs", 3),
    # ---------------------------------------------------------------------- types
    Bad("word for integer", X + "model:\n  num_layers: many\n", "valid integer", 3),
    Bad("list for integer", X + "model:\n  num_heads: [4]\n", "model.num_heads", 3),
    Bad("scalar for section", X + "model: 64\n", "model: Input should be a valid dictionary", 2),
    Bad("mapping for stage list", X + "training:\n  stages: {name: a}\n",
        "training.stages: Input should be a valid list", 3),
    Bad("fraction for integer", X + "model:\n  num_layers: 2.5\n", "write a whole number", 3),
    Bad("word for float", X + "training:\n  optimizer: {kind: adamw, lr: fast}\n",
        "training.optimizer.lr: Input should be a valid number", 3),
    Bad("word for bool", X + "model:\n  tie_embeddings: maybe\n", "valid boolean", 3),
    Bad("date for text", X + "experiment:\n  description: 2024-01-01\n", "quote it", 3),
    Bad("yaml norway problem",
        X + "datasets:\n  web:\n    steps:\n      - kind: language\n        languages: [en, no]\n",
        "fix: YAML reads 'no' as the boolean false: quote it ('no')", 6),
    Bad("invalid date", X + "experiment:\n  description: 2024-13-45\n",
        "cannot be read as a YAML timestamp: month must be in 1..12", 3),
    Bad("infinite lr", X + "training:\n  optimizer: {kind: adamw, lr: .inf}\n",
        "write a finite number", 3),
    Bad("nan weight", X + _stage("{web: .nan}"), "finite number", 4),
    Bad("bad explicit int", X + "model:\n  hidden_size: !!int abc\n",
        "'abc' cannot be read as a YAML int", 3),
    Bad("explicit map tag on scalar", X + "model: !!map abc\n", "does not fit a single value", 2),
    Bad("lone surrogate escape", X + 'experiment: {description: "\\ud800"}\n',
        "lone surrogate", 2),
    # --------------------------------------------------------------- unknown keys
    Bad("top-level typo", X + "modle:\n  num_layers: 2\n", "did you mean 'model'", 2),
    Bad("section typo", X + "training:\n  optimiser: {kind: muon}\n",
        "did you mean 'optimizer'", 3),
    Bad("field typo", X + "model:\n  hiden_size: 64\n", "did you mean 'hidden_size'", 3),
    Bad("typo in union member",
        X + "datasets:\n  web:\n    source: {kind: builtin, name: pydoc_web, max_doc: 3}\n",
        "did you mean 'max_docs'", 4),
    Bad("typo in a curation step",
        X + "datasets:\n  code:\n    steps:\n      - {kind: minhash, n_gram: 5}\n",
        "did you mean 'n_grams'", 5),
    Bad("unknown key without near match", X + "model:\n  flux_capacitor: 1\n",
        "unknown key 'flux_capacitor'", 3),
    Bad("number as key", X + "1: x\n",
        "1: unknown key '1' (YAML reads it as the integer 1, not as text)", 2),
    Bad("number as dataset name",
        X + "datasets:\n  3: {source: {kind: builtin, name: pydoc_web}}\n",
        "datasets.3: key '3' is read by YAML as the integer 3, not as text", 3),
    # keys YAML reads as something other than text are shown as written, with the quoting fix
    Bad("boolean dataset key", X + "datasets:\n  on: {source: {kind: builtin, name: pydoc_web}}\n",
        "datasets.on: key 'on' is read by YAML as the boolean true, not as text\n"
        "    fix: quote it: 'on':", 3),
    Bad("null dataset key", X + "datasets:\n  ~: {source: {kind: builtin, name: pydoc_web}}\n",
        "datasets.~: key '~' is read by YAML as null (no value), not as text", 3),
    Bad("boolean language key",
        X + "datasets:\n  web:\n    steps:\n      - kind: language\n        languages: [en]\n"
            "        thresholds: {en: 0.5, no: 0.5}\n",
        "thresholds.no: key 'no' is read by YAML as the boolean false", 7),
    Bad("boolean key at top level", X + "yes: 1\n",
        "unknown key 'yes' (YAML reads it as the boolean true, not as text)", 2),
    Bad("boolean key under a bad field path",
        X + "datasets:\n  off:\n    source: {kind: builtin, name: pydoc_web, max_doc: 3}\n",
        "datasets.off", 3),
    Bad("two spellings of one boolean key", X + "model:\n  on: 1\n  true: 2\n",
        "duplicate key: 'true' and 'on' (line 3) are both read by YAML as the boolean true", 4),
    Bad("integer and boolean keys collide", X + "model:\n  1: a\n  true: b\n",
        "read by YAML as the boolean true and the integer 1, which count as one key", 4),
    Bad("bad dataset name", X + "datasets:\n  Web: {source: {kind: builtin, name: pydoc_web}}\n",
        "lowercase letters, digits", 3),
    Bad("unknown source kind", X + _extra_source("{kind: http, path: data}"),
        "does not match any of the expected tags", 4),
    Bad("source without kind", X + _extra_source("{path: data}"),
        "add `kind:` ('builtin' or 'warc'", 4),
    Bad("unknown curation step", X + "datasets:\n  web:\n    steps:\n      - kind: magic\n",
        "datasets.web.steps[0]", 5),
    Bad("unknown enum value", X + "training:\n  precision: fp8\n",
        "Input should be 'fp32' or 'bf16'", 3),
    Bad("unknown evaluation preset", X + "evaluation:\n  presets: [everything]\n",
        "unknown evaluation preset", 3),
    # ----------------------------------------------------------------- references
    Bad("undeclared dataset in mixture", X + _stage("{webb: 1.0}"),
        "'webb', which is not declared", 4),
    Bad("undeclared tokenizer dataset", X + "tokenizer:\n  datasets: [books]\n",
        "tokenizer.datasets names 'books', which is not declared", 3),
    Bad("undeclared local task dataset",
        X + "evaluation:\n  local_tasks: [{kind: bpb, dataset: books}]\n",
        "evaluation.local_tasks names dataset 'books'", 3),
    Bad("report baseline not compared",
        X + "report: {name: r, experiments: [qs-nope], baseline: qs-rope}\n",
        "report.baseline 'qs-rope' is not among the compared experiments", 2),
    Bad("missing extends file", "extends: nowhere.yaml\nschema_version: 1\n",
        "base spec 'nowhere.yaml' not found", 1),
    Bad("extends typo", "extends: bse.yaml\n", "did you mean 'base.yaml'", 1),
    Bad("teacher outside the workspace", X + "training:\n  distillation: {teacher: /etc}\n",
        "is outside the workspace", 3),
    # --------------------------------------------------------------------- ranges
    Bad("zero tokens", X + _stage("{web: 1.0}", tokens=0), "training.stages[0].tokens", 4),
    Bad("negative seed", X + "experiment:\n  seed: -1\n", "greater than or equal to 0", 3),
    Bad("zero lr", X + "training:\n  optimizer: {kind: adamw, lr: 0}\n", "greater than 0", 3),
    Bad("negative lr", X + "training:\n  optimizer: {kind: muon, lr: -0.02}\n",
        "training.optimizer.lr: Input should be greater than 0", 3),
    Bad("probability above one",
        X + "training:\n  distillation: {teacher: 'experiment:t', alpha: 1.5}\n",
        "less than or equal to 1", 3),
    Bad("beta above one", X + "training:\n  optimizer: {kind: adamw, betas: [0.9, 1.2]}\n",
        "training.optimizer.betas[1]", 3),
    Bad("three betas", X + "training:\n  optimizer: {kind: adamw, betas: [0.9, 0.9, 0.9]}\n",
        "at most 2 items", 3),
    Bad("heldout fraction one", X + "datasets:\n  web:\n    heldout: {fraction: 1.0}\n",
        "less than 1", 4),
    Bad("vocabulary too small", X + "tokenizer:\n  vocab_size: 100\n",
        "greater than or equal to 260", 3),
    Bad("mtp too deep", X + "training:\n  mtp: {depth: 9}\n", "less than or equal to 8", 3),
    Bad("negative few-shot", X + "evaluation:\n  num_fewshot: -1\n",
        "greater than or equal to 0", 3),
    Bad("zero max_epochs", X + "datasets:\n  web:\n    max_epochs: 0\n", "greater than 0", 4),
    Bad("batch not a multiple of seq_len", X + "training:\n  batch_tokens: 8000\n",
        "is not a multiple of", 3),
    Bad("sequence longer than context", X + "training:\n  seq_len: 1024\n  batch_tokens: 8192\n",
        "raise model.max_position_embeddings to at least 1024", where="base.yaml"),
    Bad("snapshot interval not a step multiple", X + "evaluation:\n  every_tokens: 1000\n",
        "not a multiple of training.batch_tokens", 3),
    Bad("heads do not divide width", X + "model:\n  hidden_size: 130\n",
        "not divisible by num_heads", 3),
    Bad("micro batch does not divide", X + "training:\n  micro_batch_size: 3\n",
        "micro_batch_size 3 does not divide", 3),
    # --------------------------------------------------------------------- cycles
    Bad("self extend", "extends: bad.yaml\nschema_version: 1\n",
        "extends cycle: bad.yaml -> bad.yaml", 1),
    Bad("two-file cycle", "extends: b.yaml\nschema_version: 1\n",
        "extends cycle: bad.yaml -> b.yaml -> bad.yaml", 1,
        files={"b.yaml": "extends: bad.yaml\n"}, where="b.yaml"),
    Bad("three-file cycle", "extends: b.yaml\n",
        "extends cycle: bad.yaml -> b.yaml -> c.yaml -> bad.yaml",
        2, files={"b.yaml": "extends: c.yaml\n", "c.yaml": "# the loop\nextends: bad.yaml\n"},
        where="c.yaml"),
    Bad("recursive alias", X + "experiment: &e {name: x, description: *e}\n",
        "recursive anchor", 2),
    # ---------------------------------------------------------------- mixtures
    Bad("weights under one", X + _stage("{web: 0.5, code: 0.4}"), "sum to 0.9", 4),
    Bad("weights over one", X + _stage("{web: 0.7, code: 0.7}"), "sum to 1.4, not 1", 4),
    Bad("negative weight", X + _stage("{web: 1.5, code: -0.5}"),
        "mixture.code: Input should be greater than 0", 4),
    Bad("zero weight", X + _stage("{web: 1.0, code: 0}"), "greater than 0", 4),
    Bad("empty mixture", X + _stage("{}"), "mixture is empty", 4),
    Bad("mixture as list", X + _stage("[web, code]"), "valid dictionary", 4),
    Bad("no stages", X + "training:\n  stages: []\n", "at least 1 item", 3),
    Bad("duplicate stage names",
        X + "training:\n  stages:\n    - {name: a, tokens: 819200, mixture: {web: 1.0}}\n"
            "    - {name: a, tokens: 819200, mixture: {web: 1.0}}\n",
        "stage names must be unique", 2),
    # ---------------------------------------------------------------------- paths
    Bad("empty source path", X + _extra_source("{kind: jsonl, path: ''}"), "the path is empty", 4),
    Bad("empty hub repo", X + _extra_source("{kind: hf_dataset, repo: ' '}"),
        "the path is empty", 4),
    Bad("path climbing out", X + _extra_source("{kind: jsonl, path: ../outside}"),
        "climbs out of the workspace", 4),
    Bad("absolute path outside", X + _extra_source("{kind: files, path: /etc}"),
        "is outside the workspace", 4),
    Bad("file URL outside", X + _extra_source("{kind: parquet, path: 'file:///etc'}"),
        "is outside the workspace", 4),
    Bad("credentials in URL", X + _extra_source("{kind: jsonl, path: 's3://me:secret@bucket/x'}"),
        "carries credentials", 4),
    Bad("absolute glob", X + _extra_source("{kind: jsonl, path: data, glob: '/etc/*'}"),
        "reaches outside the source folder", 4),
    Bad("task name is a file", X + "evaluation:\n  tasks: [evil.yaml]\n",
        "is not an lm-eval task name", 3),
    Bad("extends absolute path", "extends: /etc/passwd\n", "is an absolute path", 1),
    Bad("extends empty", "extends:\nschema_version: 1\n", "extends: is empty", 1),
    Bad("extends a folder", "extends: .\n", "is a folder", 1),
    Bad("extends not text", "extends: [base.yaml]\n", "must be a relative file path", 1),
    Bad("extends name too long", "extends: " + "a" * 5000 + ".yaml\n", "cannot be used", 1),
    # ------------------------------------------------------------ duplicate keys
    Bad("duplicate key", X + "model:\n  num_layers: 2\n  num_layers: 3\n", "duplicate key", 4),
    Bad("duplicate top-level key", X + "model: {}\ntraining: {}\nmodel: {}\n", "duplicate key", 4),
    Bad("duplicate key in flow mapping", X + _stage("{web: 0.5, web: 0.5}"), "duplicate key", 4),
    Bad("same value twice as bool", X + "model:\n  tie_embeddings: yes\n  tie_embeddings: no\n",
        "duplicate key", 4),
    Bad("duplicate curation step",
        X + "datasets:\n  code:\n    steps: [{kind: minhash}, {kind: minhash}]\n",
        "appear more than once", 3),
    # ---------------------------------------------------------------------- tags
    Bad("python object tag", X + "model: !!python/object:os.system {}\n",
        "YAML tag '!!python/object:os.system' is not allowed", 2),
    Bad("python apply tag", X + "model: !!python/object/apply:os.system [ls]\n", "not allowed", 2),
    Bad("python name tag on a key", X + "!!python/name:os.system : 1\n", "not allowed", 2),
    Bad("lm-eval function tag", X + "evaluation:\n  tasks: [!function tasks.build]\n",
        "YAML tag '!function' is not allowed", 3),
    Bad("custom tag", X + "model: !mytag {hidden_size: 64}\n", "'!mytag' is not allowed", 2),
    Bad("binary tag", X + "experiment: {description: !!binary aGVsbG8=}\n", "'!!binary'", 2),
    Bad("set tag", X + "experiment: !!set {a, b}\n", "'!!set' is not allowed", 2),
    Bad("merge key", X + "model:\n  <<: {hidden_size: 64}\n",
        "merge keys (`<<`) are not supported", 3),
    # ---------------------------------------------------- schema version and shape
    Bad("newer schema version", _base_text().replace("schema_version: 1", "schema_version: 2"),
        "upgrade repro", SCHEMA_LINE),
    Bad("quoted schema version", _base_text().replace("schema_version: 1", 'schema_version: "1"'),
        "the number, unquoted", SCHEMA_LINE),
    Bad("boolean schema version", _base_text().replace("schema_version: 1", "schema_version: true"),
        "schema_version is True", SCHEMA_LINE),
    Bad("missing schema version", "experiment: {name: x}\n",
        "add `schema_version: 1` at the top", 1),
    Bad("top level is a list", "- schema_version: 1\n- experiment: {name: x}\n",
        "a spec must be a mapping", 1),
    Bad("top level is a scalar", "hello\n", "a spec must be a mapping", 1),
    Bad("missing sections", "schema_version: 1\nexperiment: {name: x}\n",
        "datasets: Field required"),
    Bad("complex key", X + "? [a, b]\n: 1\n", "keys must be plain names", 2),
    # ------------------------------------------------------------------ the file
    Bad("empty file", "", "the file is empty", 1),
    Bad("only comments", "# nothing yet\n\n", "the file is empty", 1),
    Bad("binary file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text", 1),
    Bad("latin-1 text",
        "extends: base.yaml\nexperiment: {description: caf\xe9}\n".encode("latin-1"),
        "byte 0xe9 cannot be decoded", 2),
    Bad("utf-16 text", (X + "model: {num_layers: 2}\n").encode("utf-16"),
        "save the spec as UTF-8", 1),
    Bad("NUL character", X + "experiment: {description: a\x00b}\n", "U+0000 is not allowed", 2),
    Bad("billion laughs", X + LAUGHS, "more than 100000 values", 2),
    Bad("a hundred thousand values", X + "model:\n  x: [" + "a, " * 100_001 + "]\n",
        "the spec holds more than 100000 values", 3),
    Bad("deep nesting", X + "model: " + "[" * 80 + "]" * 80 + "\n", "nests more than 64 levels", 2),
    Bad("very deep nesting", X + "model: " + "[" * 5000 + "]" * 5000 + "\n",
        "nests more than 64 levels", 2),
    Bad("deep nesting on a later line", X + "model:\n  b: 1\n  a: " + "[" * 500 + "]" * 500 + "\n",
        "nests more", 4),
]


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _assert_actionable(output: str) -> None:
    """Exit output of a refused spec: no traceback, and every issue says how to fix it."""
    assert "Traceback" not in output, output
    found = re.search(r"^(\d+) problem\(s\); nothing was run\.$", output, re.MULTILINE)
    assert found, output
    assert output.count("\n    fix: ") == int(found.group(1)), output


def test_corpus_is_large_and_labels_unique():
    labels = [c.label for c in CASES]
    assert len(labels) == len(set(labels))
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_bad_spec(tmp_path, monkeypatch, case: Bad):
    monkeypatch.chdir(tmp_path)  # the workspace, and where locations are shown from
    _write(tmp_path, "base.yaml", _base_text())
    for name, text in case.files.items():
        _write(tmp_path, name, text)
    _write(tmp_path, "bad.yaml", case.text)
    result = CliRunner().invoke(main, ["validate", "bad.yaml"])
    assert result.exit_code == 2, result.output
    assert case.fragment in result.output, result.output
    _assert_actionable(result.output)
    if case.line is not None:
        assert f"{case.where}:{case.line}: " in result.output, result.output
    else:
        assert re.search(rf"^{re.escape(case.where)}(:\d+)?: ", result.output,
                         re.MULTILINE), result.output


@pytest.mark.parametrize("label,setup,fragment", [
    ("missing file", lambda d: None, "file not found"),
    ("a folder", lambda d: (d / "bad.yaml").mkdir(), "is a folder, not a spec file"),
    ("symlink loop", lambda d: ((d / "bad.yaml").symlink_to("loop.yaml"),
                                (d / "loop.yaml").symlink_to("bad.yaml")), "cannot read the file"),
])
def test_bad_spec_path(tmp_path, monkeypatch, label, setup, fragment):
    """The spec named on the command line is not a readable file."""
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    from repro.spec.load import SpecError, load_spec

    with pytest.raises(SpecError, match=re.escape(fragment)):
        load_spec(tmp_path / "bad.yaml")


def test_base_is_valid(tmp_path, monkeypatch):
    """The corpus tests the mistake, not the base: the base alone validates."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "base.yaml", _base_text())
    result = CliRunner().invoke(main, ["validate", "base.yaml"])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------- found at compile time


COMPILE_CASES = [
    # (label, {spec file under specs/: text}, expected fragment); the base is specs/common/
    # base.yaml, out of the compiled set (only the top-level *.yaml of --specs are)
    ("teacher experiment unknown",
     {"student.yaml": "extends: common/base.yaml\nexperiment: {name: student}\n"
                      "training: {distillation: {teacher: 'experiment:nobody'}}\n"},
     "distils from experiment 'nobody'"),
    ("teachers form a cycle",
     {"a.yaml": "extends: common/base.yaml\nexperiment: {name: a}\n"
                "training: {distillation: {teacher: 'experiment:b'}}\n",
      "b.yaml": "extends: common/base.yaml\nexperiment: {name: b}\n"
                "training: {distillation: {teacher: 'experiment:a'}}\n"},
     "distillation teachers form a cycle: a -> b -> a"),
    ("report compares unknown experiment",
     {"a.yaml": "extends: common/base.yaml\nexperiment: {name: a}\n"
                "report: {name: r, experiments: [a, ghost], baseline: a}\n"},
     "compares ['ghost'], which no compiled spec defines"),
    ("two reports with one name",
     {"a.yaml": "extends: common/base.yaml\nexperiment: {name: a}\n"
                "report: {name: r, experiments: [a], baseline: a}\n",
      "b.yaml": "extends: common/base.yaml\nexperiment: {name: b}\n"
                "report: {name: r, experiments: [b], baseline: b}\n"},
     "report name 'r' is also defined by experiment 'a'"),
    ("two experiments with one name",
     {"a.yaml": "extends: common/base.yaml\n", "b.yaml": "extends: common/base.yaml\n"},
     "experiment name 'qs-nope' is also used by"),
    ("one bad spec among good ones",
     {"a.yaml": "extends: common/base.yaml\nexperiment: {name: a}\n",
      "b.yaml": "extends: common/base.yaml\nexperiment: {name: b}\nmodel: {num_heads: 3}\n"},
     "not divisible by num_heads"),
]


@pytest.mark.parametrize("label,files,fragment", COMPILE_CASES, ids=[c[0] for c in COMPILE_CASES])
def test_bad_spec_set_at_compile(tmp_path, monkeypatch, label, files, fragment):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "specs/common/base.yaml", _base_text())
    for name, text in files.items():
        _write(tmp_path, f"specs/{name}", text)
    result = CliRunner().invoke(main, ["compile", "--specs", "specs", "--root", "out"])
    assert result.exit_code == 2, result.output
    assert fragment in result.output, result.output
    assert "Traceback" not in result.output
    assert "    fix: " in result.output, result.output  # every refusal says how to fix it
    assert not (tmp_path / "out" / "dvc.yaml").exists()


def test_mixture_beyond_max_epochs_at_compile(tmp_path, monkeypatch):
    """With token counts already measured, a mixture repeating a dataset more than its
    max_epochs is refused by `repro compile`, before anything trains."""
    from repro import paths
    from repro.compile.graph import OutputRef, compile_graph
    from repro.spec.load import load_specs

    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "specs/common/base.yaml", _base_text())
    spec = _write(tmp_path, "specs/a.yaml", "extends: common/base.yaml\nexperiment: {name: a}\n")
    graph = compile_graph(load_specs([spec]))
    trains = [s for s in graph.stages.values() if s.kind == "train"]
    assert trains
    for key, ref in (kv for t in trains for kv in t.inputs):
        if key.startswith("tokens:") and isinstance(ref, OutputRef):
            # 10k tokens of each dataset: the 655k-token stage draws web 0.6 -> ~39 epochs
            _write(tmp_path, f"out/{paths.stage_metrics(ref.stage_id)}",
                   json.dumps({"tokens": 10_000}))
    result = CliRunner().invoke(main, ["compile", "--specs", "specs", "--root", "out"])
    assert result.exit_code == 2, result.output
    assert "more than its max_epochs 4" in result.output
    _assert_actionable(result.output)
