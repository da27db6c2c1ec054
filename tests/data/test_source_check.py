"""check_source: a source that cannot be read at all fails early, naming the path and fix."""

from __future__ import annotations

import pytest

from repro.data.source_check import SourceError, check_source, hub_error, redact
from repro.spec import schema as S


def test_readable_sources_pass(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "pages.warc").write_bytes(b"WARC/1.0\r\n")
    check_source(S.JsonlSource(path=str(tmp_path)))
    check_source(S.FilesSource(path=str(tmp_path)))
    check_source(S.BuiltinSource(name="pydoc_web"), tmp_path / "raw")
    check_source(S.HFDatasetSource(repo="any/repo"))  # checked by its reader


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(SourceError, match=f"'{missing}' does not exist"):
        check_source(S.WarcSource(path=str(missing)))
    assert issubclass(SourceError, ValueError)


def test_glob_matching_nothing(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(SourceError, match=r"glob '\*\.jsonl\*' matches no file; fix `glob`"):
        check_source(S.JsonlSource(path=str(tmp_path)))


def test_path_to_a_file(tmp_path):
    f = tmp_path / "data.parquet"
    f.write_bytes(b"PAR1")
    with pytest.raises(SourceError, match="is a file, not a folder.*'data.parquet'"):
        check_source(S.ParquetSource(path=str(f)))


def test_builtin_without_raw_or_files(tmp_path):
    with pytest.raises(SourceError, match="run the source stage first"):
        check_source(S.BuiltinSource(name="stdlib_code"), None)
    with pytest.raises(SourceError, match=r"glob '\*\.jsonl' matches no file"):
        check_source(S.BuiltinSource(name="stdlib_code"), tmp_path)


def test_unopenable_first_file(tmp_path, monkeypatch):
    from datatrove.io import DataFolder

    (tmp_path / "a.warc").write_bytes(b"WARC/1.0\r\n")

    def denied(self, path, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(DataFolder, "open", denied)
    with pytest.raises(SourceError, match="cannot open 'a.warc'.*PermissionError"):
        check_source(S.WarcSource(path=str(tmp_path)))


def test_credentials_in_urls_are_hidden():
    assert redact("s3://AKIA123:s3cr3t@bucket/prefix") == "s3://***@bucket/prefix"
    assert redact("/local/path") == "/local/path"
    err = hub_error("org/ds", RuntimeError("cannot reach https://user:t0ken@hub.example/api"))
    assert "t0ken" not in str(err) and "cannot reach https://***@hub.example" in str(err)
    assert "'org/ds'" in str(err)
