"""Bad input: each mistake gives one clear, located error and exit code 2, no traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from repro.cli import main
from repro.spec import load as load_module
from repro.spec.load import MAX_EXTENDS, MAX_SPEC_BYTES, SpecError, load_spec

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
    s = load_spec(spec)
    assert s.name == "child" and s.experiment.description  # description inherited
    assert [st.kind for st in s.datasets["web"].steps] == ["trafilatura"]
    assert s.datasets["web"].source.name == "pydoc_web"


# ------------------------------------------------------------------ what is read at all


@contextlib.contextmanager
def _deadline(seconds: int = 20):
    """Fail instead of hanging if a read blocks (a FIFO waits for a writer forever)."""
    def expire(*_):
        raise TimeoutError(f"still reading after {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _refused(path: Path, *fragments: str) -> str:
    with _deadline():
        result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert "    fix: " in result.output and "Traceback" not in result.output
    return result.output


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_character_device_is_refused_before_reading(tmp_path):
    """/dev/zero never ends: read, it would fill memory."""
    _refused(Path("/dev/zero"), "/dev/zero: <spec>: is a character device, not a regular file",
             "fix: name a spec file")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    _refused(tmp_path / "zero.yaml", "is a character device",
             "(the symlink leads to '/dev/zero')")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    _refused(tmp_path / "pipe.yaml", "is a named pipe (FIFO), not a regular file")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "pipe.yaml")
    _refused(tmp_path / "link.yaml", "is a named pipe (FIFO)")
    (tmp_path / "child.yaml").write_text("extends: pipe.yaml\n")  # a base is read the same way
    _refused(tmp_path / "child.yaml", "pipe.yaml: <spec>: is a named pipe (FIFO)")


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:  # sparse: MAX_SPEC_BYTES + 1 bytes without writing them
        f.truncate(MAX_SPEC_BYTES + 1)
    read = []
    monkeypatch.setattr(os, "open", lambda *a, **k: read.append(a) or (_ for _ in ()).throw(
        AssertionError("opened")))
    with pytest.raises(SpecError, match=r"a spec file may be at most 10 MB \(10000000 bytes\)"):
        load_spec(big)
    assert not read


def test_a_file_that_grows_while_read_is_still_bounded(tmp_path, monkeypatch):
    """The size is checked before reading, and the read itself stops at the limit + 1 byte,
    so a file that grows after the check (a log, a file being written) stays bounded."""
    monkeypatch.setattr(load_module, "MAX_SPEC_BYTES", 100)
    spec = tmp_path / "growing.yaml"
    spec.write_text("# x\n" * 10)
    real_stat = os.stat

    def stat_before_growth(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if sys._getframe(1).f_code.co_name == "read_spec_bytes":
            spec.write_text("# x\n" * 1000)  # grows to 4000 bytes right after the check
        return st

    monkeypatch.setattr(os, "stat", stat_before_growth)
    with pytest.raises(SpecError, match=r"grew past .* MB; a spec file may be at most"):
        load_spec(spec)


def test_large_but_legal_spec_is_accepted(tmp_path, monkeypatch):
    """A 5 MB description (bad-specs case 62) is far below the limit: it validates."""
    monkeypatch.chdir(tmp_path)
    base = (REPO / "specs/qs-nope.yaml").read_text().split("\nreport:\n")[0] + "\n"
    text = base.replace("  description: ", "  description: " + "x" * 5_000_000 + " ", 1)
    (tmp_path / "s.yaml").write_text("# a comment line\n" * 1000 + text)
    assert len(load_spec(tmp_path / "s.yaml").experiment.description) > 5_000_000


# -------------------------------------------------------------------------------- extends


def test_extends_url_is_refused_plainly_without_its_credentials(tmp_path):
    for url in ("s3://AKIAEXAMPLE:s3cr3t@bucket/base.yaml",
                "https://example.com/base.yaml?token=s3cr3t",
                "https://user:s3cr3t@example.com/base.yaml", "file:///etc/passwd"):
        spec = _write(tmp_path, "s.yaml", f"extends: '{url}'\n")
        out = _refused(spec, "s.yaml:1: extends: ", "is a URL; URLs are not supported in "
                       "`extends:`", "fix: download the base spec, commit it in the workspace")
        assert "s3cr3t" not in out


def test_extends_outside_the_workspace_is_refused_without_reading(tmp_path, monkeypatch):
    """A base must lie in the workspace (the current directory) or the spec's own folder,
    like every other path a spec names; one outside is never opened."""
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    monkeypatch.chdir(work)
    opened = []
    real_read = load_module.read_spec_bytes
    monkeypatch.setattr(load_module, "read_spec_bytes",
                        lambda path, display: opened.append(Path(path)) or real_read(path, display))
    up = "../" * (len(work.parts) + 2)
    spec = _write(work / "specs", "s.yaml", f"extends: {up}etc/passwd\n")
    with pytest.raises(SpecError, match=r"resolves to '/etc/passwd', outside the workspace"):
        load_spec(spec)
    assert opened == [spec]
    (work / "specs/link.yaml").symlink_to("/etc/passwd")  # the real location counts
    spec = _write(work / "specs", "s.yaml", "extends: link.yaml\n")
    with pytest.raises(SpecError, match=r"'link.yaml' resolves to '/etc/passwd'"):
        load_spec(spec)
    _write(tmp_path, "outside.yaml", "schema_version: 1\n")  # next to the workspace
    spec = _write(work / "specs", "s.yaml", "extends: ../../outside.yaml\n")
    with pytest.raises(SpecError, match=r"outside the workspace"):
        load_spec(spec)
    assert all(p.parent == work / "specs" for p in opened)


def test_extends_within_the_workspace_or_the_specs_folder(tmp_path, monkeypatch):
    """`..` that stays inside is fine (specs/ci/tiny.yaml extends ../qs-nope.yaml); so is a
    base beside a spec validated from elsewhere (the spec's own folder)."""
    work = tmp_path / "work"
    (work / "specs/ci").mkdir(parents=True)
    _write(work / "specs", "base.yaml", "schema_version: 1\nexperiment: {name: b}\n")
    _write(work / "specs/ci", "s.yaml", "extends: ../base.yaml\nexperiment: {seed: 3}\n")
    monkeypatch.chdir(work)
    assert load_module.load_raw(Path("specs/ci/s.yaml")).data["experiment"] == {
        "name": "b", "seed": 3}
    monkeypatch.chdir(tmp_path)  # the workspace is now tmp_path; specs/ci/s.yaml is inside
    assert load_module.load_raw(work / "specs/ci/s.yaml").data["experiment"]["name"] == "b"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the base lies outside the cwd but in the spec's folder tree
    _write(work / "specs/ci", "t.yaml", "extends: sub/base.yaml\n")
    (work / "specs/ci/sub").mkdir()
    _write(work / "specs/ci/sub", "base.yaml", "schema_version: 1\n")
    assert load_module.load_raw(work / "specs/ci/t.yaml").data == {"schema_version": 1}
    with pytest.raises(SpecError, match="outside the workspace"):  # climbing out of both
        load_module.load_raw(work / "specs/ci/s.yaml")


def test_long_extends_chain_blames_the_file_that_crosses_the_limit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = MAX_EXTENDS + 4
    for i in range(n):
        _write(tmp_path, f"c{i}.yaml", f"# link {i}\nextends: c{i + 1}.yaml\n")
    _write(tmp_path, f"c{n}.yaml", "schema_version: 1\n")
    monkeypatch.setattr(sys, "getrecursionlimit", lambda: 50)  # not what stops it
    with pytest.raises(SpecError) as e:
        load_spec(tmp_path / "c0.yaml")
    (issue,) = e.value.issues
    last = MAX_EXTENDS - 1  # the 16th file would add a 17th
    assert (issue.file, issue.line, issue.field) == (f"c{last}.yaml", 2, "extends")
    assert issue.message == (f"the extends chain is longer than {MAX_EXTENDS} files: "
                             + " -> ".join(f"c{i}.yaml" for i in range(MAX_EXTENDS + 1)))
    assert "nested too deeply" not in str(e.value) and issue.fix
    # a chain of exactly MAX_EXTENDS files loads
    _write(tmp_path, f"c{last}.yaml", "schema_version: 1\n")
    assert load_module.load_raw(tmp_path / "c0.yaml").data == {"schema_version": 1}


# ------------------------------------------------------------------ messages as written


def test_a_value_holding_a_semicolon_stays_in_the_message(tmp_path):
    """A validator's problem and fix travel as data (FieldError): a user's value holding
    `; ` is never cut into a message and a fix."""
    _base(tmp_path)
    spec = _write(tmp_path, "bad.yaml", "extends: base.yaml\nexperiment:\n"
                  "  description: 'a; b ${c}; d'\n")
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    (issue,) = e.value.issues
    assert (Path(issue.file).name, issue.line, issue.field) == ("bad.yaml", 3,
                                                                 "experiment.description")
    assert issue.message.startswith("description 'a; b ${c}; d' holds `${`")
    assert issue.fix.startswith("remove the `${`")


def test_a_plain_value_error_keeps_its_whole_message():
    """A validator outside repro.spec raising a plain ValueError: its message whole, and
    the generic fix (nothing splits its text)."""
    from pydantic import BaseModel, ValidationError, field_validator

    class Plain(BaseModel):
        x: int

        @field_validator("x")
        @classmethod
        def _odd(cls, v: int) -> int:
            raise ValueError("x is even; make it odd")

    try:
        Plain(x=2)
    except ValidationError as err:
        (issue,) = load_module.validation_issues(err, {"x": 2}, {}, "p.yaml", Plain)
    assert (issue.field, issue.message) == ("x", "x is even; make it odd")
    assert issue.fix == "see the field's documentation in repro/spec/schema.py"


def test_keys_are_shown_as_written():
    assert load_module._dotted(("datasets", True, "source"), {("datasets", True): "on"}) == (
        "datasets.on.source")
    assert load_module._dotted(("a", 0, "b")) == "a[0].b"  # a list index
    # without the source text, the data tells a mapping key from a list index
    assert load_module._dotted(("m", 1), None, {"m": {1: "x"}}) == "m.1"
    assert load_module._dotted(("m", None, False), None, {"m": {None: {False: 1}}}) == (
        "m.null.false")


def test_long_values_are_redacted_before_they_are_cut(tmp_path):
    """A message shows at most ~60 characters of a value; the credential in a long URL is
    redacted first (cut first, the `@` marking it could fall off and the secret show)."""
    secret = "S" * 80
    _base(tmp_path)
    for override in (f"model:\n  num_layers: 's3://key:{secret}@bucket/x'\n",
                     f"model:\n  num_layers: !!int 's3://key:{secret}@bucket/x'\n",
                     f"experiment:\n  description: !!float 'https://h/x?token={secret}'\n"):
        spec = _write(tmp_path, "bad.yaml", "extends: base.yaml\n" + override)
        out = _refused(spec, "bad.yaml:3: ")
        assert "SSSS" not in out, out


@pytest.mark.skipif(load_module._FastDepthLimitedLoader is None, reason="PyYAML without libyaml")
def test_syntax_error_in_a_huge_spec_keeps_libyamls_verdict(tmp_path, monkeypatch):
    """Above _REPARSE_CHARS, a syntax error found by libyaml is reported as libyaml words it
    (re-reading 10 MB in pure Python takes seconds), still with its line and the tab fix."""
    monkeypatch.setattr(load_module, "_REPARSE_CHARS", 10)
    calls = []
    monkeypatch.setattr(load_module._DepthLimitedLoader, "__init__",
                        lambda self, text: calls.append(text)
                        or yaml.SafeLoader.__init__(self, text))
    for text, line, fragment in [
            ("# c\n" * 30 + "schema_version: 1\na: b: c\n", 32, "mapping values are not allowed"),
            ("# c\n" * 30 + "a:\n\tb: c\n", 32, "fix: indent with spaces")]:
        spec = _write(tmp_path, "s.yaml", "")
        spec.write_text(text)
        with pytest.raises(SpecError) as e:
            load_spec(spec)
        assert (e.value.issues[0].line, "YAML syntax error") == (
            line, e.value.issues[0].message[:17]), str(e.value)
        assert fragment in str(e.value)
    assert not calls  # PyYAML's parser never ran


def test_at_most_max_issues_are_listed(tmp_path):
    """A long list of wrong values gives the first MAX_ISSUES problems and a count of the
    rest, not one line per value."""
    _base(tmp_path)
    n = load_module.MAX_ISSUES + 30
    spec = _write(tmp_path, "bad.yaml", "extends: base.yaml\ndatasets:\n  web:\n    steps:\n"
                  f"      - {{kind: language, languages: [{', '.join(['1'] * n)}]}}\n")
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    issues = e.value.issues
    assert len(issues) == load_module.MAX_ISSUES + 1
    assert issues[-2].field.endswith(f"languages[{load_module.MAX_ISSUES - 1}]")
    assert issues[-1].message == "30 more problem(s) not listed" and issues[-1].fix


def test_huge_values_are_cut_in_messages_and_redaction_stays_linear(tmp_path):
    """A message quoting a value of megabytes shows its first MAX_SHOWN_CHARS characters
    (credentials redacted before the cut), and finding URLs in it takes linear time (the
    URL pattern was tried from every letter of a long word: minutes for 9 MB)."""
    import time

    from repro.cli import MAX_SHOWN_CHARS, render_error
    from repro.errors import ReproError
    from repro.spec.safety import redact_text

    start = time.monotonic()
    assert redact_text("y" * 2_000_000) == "y" * 2_000_000
    assert time.monotonic() - start < 5  # quadratic: about 40 minutes
    rendered = render_error(ReproError("value " + "s3://k:SECRET@b/" + "y" * 10**6,
                                       field="a.b", fix="fix it", file="s.yaml", line=3))
    assert len(rendered) < 2 * MAX_SHOWN_CHARS and "SECRET" not in rendered
    assert rendered.endswith("more characters)\n    fix: fix it")
    _base(tmp_path)
    spec = _write(tmp_path, "bad.yaml", "extends: base.yaml\nexperiment:\n  name: "
                  + "n" * 100_000 + "\n")
    out = _refused(spec, "bad.yaml:3: experiment.name: String should have at most 64 "
                   "characters", "fix: shorten it to at most 64 characters")
    assert len(out) < 3 * MAX_SHOWN_CHARS


def test_extends_within_a_workspace_set_by_the_caller(tmp_path, monkeypatch):
    """`repro compile --root` and `repro sweep` validate against their root (where the
    stages run): a base in it is found even when repro runs elsewhere."""
    from repro.spec.safety import workspace

    root = tmp_path / "root"
    (root / "specs").mkdir(parents=True)
    _write(root, "base.yaml", "schema_version: 1\n")
    _write(root / "specs", "s.yaml", "extends: ../base.yaml\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(SpecError, match="outside the workspace \\(the current directory\\)"):
        load_module.load_raw(root / "specs/s.yaml")
    with workspace(root):
        assert load_module.load_raw(root / "specs/s.yaml").data == {"schema_version": 1}
        _write(root / "specs", "s.yaml", "extends: ../../outside.yaml\n")
        _write(tmp_path, "outside.yaml", "schema_version: 1\n")
        with pytest.raises(SpecError, match="outside the workspace '.*root' and the current "
                                            "directory '.*elsewhere' and the folder of the spec"):
            load_module.load_raw(root / "specs/s.yaml")
