"""Every source kind read through `source_reader` on local data made by the tests."""

from __future__ import annotations

import gzip
import json
import typing
from pathlib import Path

import pytest
from datatrove.utils.stats import Stats

from repro.data.readers import RecordSharded, reader_skips, source_reader
from repro.data.source_check import SourceError
from repro.spec import schema as S


def read(reader, rank: int = 0, world_size: int = 1) -> list:
    return list(reader.run(None, rank, world_size))


def jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


# ------------------------------------------------------------------------- builtin


def test_builtin_pydoc_web_splits_records_across_tasks(tmp_path, write_warc, html_page):
    raw = tmp_path / "raw"
    records = [(f"https://docs.example/{i}.html", html_page(i), "text/html") for i in range(5)]
    records.insert(2, ("https://docs.example/style.css", b"body {color: red}", "text/css"))
    write_warc(raw / "pages.warc", records)
    source = S.BuiltinSource(name="pydoc_web")

    whole = read(source_reader(source, raw, progress=False))
    urls = [f"https://docs.example/{i}.html" for i in range(5)]
    assert [d.metadata["url"] for d in whole] == urls
    assert whole[0].text == html_page(0).decode()

    parts = [read(source_reader(source, raw, progress=False), rank, 2) for rank in range(2)]
    assert sorted(d.id for p in parts for d in p) == sorted(d.id for d in whole)
    assert {len(p) for p in parts} == {2, 3}


def test_builtin_stdlib_code_counts_skips_once_over_tasks(tmp_path):
    raw = tmp_path / "raw"
    rows = [{"id": f"m{i}.py", "text": f"x = {i}\n", "metadata": {"language": "python"}}
            for i in range(4)]
    jsonl(raw / "stdlib.jsonl", rows[:2] + ["{not json"] + rows[2:])
    source = S.BuiltinSource(name="stdlib_code")

    readers = [source_reader(source, raw, progress=False) for _ in range(2)]
    docs = [d for rank, r in enumerate(readers) for d in read(r, rank, 2)]
    assert sorted(d.id for d in docs) == [f"m{i}.py" for i in range(4)]
    assert docs[0].metadata["language"] == "python"
    # each task reads the whole file; only task 0 reports what it skipped
    assert [reader_skips(r.stats) for r in readers] == [{"invalid_json": 1}, {}]


def test_builtin_pydoc_pdf_yields_pdf_bytes(tmp_path, write_warc, make_pdf, html_page):
    raw = tmp_path / "raw"
    pdfs = [make_pdf(f"Manual page {i}.") for i in range(3)]
    records = [(f"https://docs.example/{i}.pdf", b, "application/pdf") for i, b in enumerate(pdfs)]
    records.append(("https://docs.example/index.html", html_page(9), "text/html"))
    write_warc(raw / "pdfs.warc", records)

    reader = source_reader(S.BuiltinSource(name="pydoc_pdf"), raw, progress=False)
    assert isinstance(reader, RecordSharded)
    docs = read(reader)
    assert [d.media[0].media_bytes for d in docs] == pdfs
    assert all(d.text == "" and d.metadata["content_type"] == "application/pdf" for d in docs)


def test_builtin_needs_raw():
    with pytest.raises(ValueError, match="raw"):
        source_reader(S.BuiltinSource(name="pydoc_web"), None)


# ---------------------------------------------------------------------------- warc


def test_warc_source_reads_plain_and_gzip_files(tmp_path, write_warc, html_page):
    folder = tmp_path / "crawl"
    write_warc(folder / "a.warc.gz", [(f"https://a.example/{i}", html_page(i), "text/html")
                                      for i in range(3)], gz=True)
    write_warc(folder / "b.warc", [("https://b.example/", html_page(7), "text/html")])
    write_warc(folder / "sub" / "c.warc", [("https://c.example/", html_page(8), "text/html")])
    (folder / "notes.txt").write_text("not a warc")

    docs = read(source_reader(S.WarcSource(path=str(folder)), None, progress=False))
    assert sorted(d.metadata["url"] for d in docs) == [
        "https://a.example/0", "https://a.example/1", "https://a.example/2", "https://b.example/"]
    assert all("file_path" not in d.metadata for d in docs)

    limited = read(source_reader(S.WarcSource(path=str(folder), limit=2), None, progress=False))
    assert len(limited) == 2
    nested = read(source_reader(S.WarcSource(path=str(folder), glob="**/*.warc"), None,
                                progress=False))
    assert sorted(d.metadata["url"] for d in nested) == ["https://b.example/",
                                                         "https://c.example/"]


def test_warc_source_content_selects_html_or_pdf(tmp_path, write_warc, make_pdf, html_page):
    folder = tmp_path / "crawl"
    pdf = make_pdf("A report.")
    write_warc(folder / "mixed.warc.gz", [("https://x.example/page", html_page(1), "text/html"),
                                          ("https://x.example/report.pdf", pdf, "application/pdf")],
               gz=True)
    html_docs = read(source_reader(S.WarcSource(path=str(folder)), None, progress=False))
    pdf_docs = read(source_reader(S.WarcSource(path=str(folder), content="pdf"), None,
                                  progress=False))
    assert [d.metadata["url"] for d in html_docs] == ["https://x.example/page"]
    assert [d.metadata["url"] for d in pdf_docs] == ["https://x.example/report.pdf"]
    assert pdf_docs[0].media[0].media_bytes == pdf


def test_warc_latin1_page_is_decoded_not_skipped(tmp_path, write_warc):
    body = ("<html><body><p>" + "Le café était très élégant à Genève. " * 30
            + "</p></body></html>").encode("latin-1")
    write_warc(tmp_path / "w" / "l.warc", [("https://fr.example/", body, "text/html")])
    reader = source_reader(S.WarcSource(path=str(tmp_path / "w")), None, progress=False)
    docs = read(reader)
    assert len(docs) == 1 and "élégant" in docs[0].text
    assert reader_skips(reader.stats) == {}


# --------------------------------------------------------------------- jsonl/parquet


def test_jsonl_source_keys_gzip_and_metadata(tmp_path):
    folder = tmp_path / "j"
    jsonl(folder / "part-0.jsonl.gz", [{"doc_id": "a", "body": "first", "lang": "en"},
                                       {"doc_id": "b", "body": "second", "lang": "fr"}], gz=True)
    jsonl(folder / "part-1.jsonl", [{"doc_id": "c", "body": "third"}])
    source = S.JsonlSource(path=str(folder), text_key="body", id_key="doc_id")
    reader = source_reader(source, None, progress=False)
    docs = read(reader)
    assert [(d.id, d.text) for d in docs] == [("a", "first"), ("b", "second"), ("c", "third")]
    assert docs[1].metadata == {"lang": "fr"}  # no absolute file path in outputs
    assert reader_skips(reader.stats) == {}
    # files are sharded across tasks
    assert [d.id for d in read(source_reader(source, None, False), 1, 2)] == ["c"]


def test_parquet_source_text_columns_and_bad_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "p"
    folder.mkdir()
    pq.write_table(pa.table({"key": ["k0", "k1", "k2"], "content": ["zero", "", "two"],
                             "score": [0.5, 0.1, 0.9]}), folder / "a.parquet")
    pq.write_table(pa.table({"key": ["k3", "k4"],
                             "content": pa.array([b"three", b"\xff\xfe bad"], pa.binary())}),
                   folder / "b.parquet")
    (folder / "c.parquet").write_bytes(b"PAR1 this is not parquet at all")
    reader = source_reader(S.ParquetSource(path=str(folder), text_key="content", id_key="key"),
                           None, progress=False)
    docs = read(reader)
    assert [(d.id, d.text) for d in docs] == [("k0", "zero"), ("k2", "two"), ("k3", "three")]
    assert docs[1].metadata["score"] == 0.9
    assert reader_skips(reader.stats) == {"corrupt_parquet": 1, "empty_text": 1,
                                          "invalid_utf8": 1}


# ------------------------------------------------------------------- hugging face


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_hf_dataset_source_reads_a_local_folder(tmp_path, fmt):
    """`datasets` loads a local folder of data files offline, so a hub dataset downloaded
    with `hf download --local-dir` is read by the same source kind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "hub-copy"
    rows = [{"id": f"r{i}", "text": f"row number {i}"} for i in range(5)]
    if fmt == "jsonl":
        jsonl(folder / "train.jsonl", rows)
    else:
        folder.mkdir()
        pq.write_table(pa.Table.from_pylist(rows), folder / "train.parquet")
    source = S.HFDatasetSource(repo=str(folder), split="train", limit=4)
    docs = read(source_reader(source, None, progress=False))
    assert [(d.id, d.text) for d in docs] == [(f"r{i}", f"row number {i}") for i in range(4)]
    assert docs[0].metadata == {"dataset": "hub-copy"}  # not the absolute path of the copy


def test_hf_dataset_offline_gives_one_clear_error():
    reader = source_reader(S.HFDatasetSource(repo="nobody-here/no-such-dataset"), None, False)
    with pytest.raises(SourceError) as err:
        read(reader)
    message = str(err.value)
    assert "nobody-here/no-such-dataset" in message and "--local-dir" in message


# --------------------------------------------------------------------------- misc


def test_reader_skips_reads_skipped_stats_only():
    stats = Stats("reader")
    stats["skipped_invalid_json"].update(1)
    stats["skipped_invalid_json"].update(1)
    stats["skipped_corrupt_gzip"].update(1)
    stats["documents"].update(7)
    assert reader_skips(stats) == {"corrupt_gzip": 1, "invalid_json": 2}
    assert list(reader_skips(stats)) == ["corrupt_gzip", "invalid_json"]


def test_unreadable_file_is_skipped_and_counted(tmp_path, monkeypatch):
    from datatrove.io import DataFolder

    folder = tmp_path / "j"
    jsonl(folder / "a.jsonl", [{"id": "a", "text": "fine"}])
    jsonl(folder / "b.jsonl", [{"id": "b", "text": "locked"}])
    real_open = DataFolder.open

    def open_(self, path, *args, **kwargs):
        if path.endswith("b.jsonl"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(self, path, *args, **kwargs)

    monkeypatch.setattr(DataFolder, "open", open_)
    reader = source_reader(S.JsonlSource(path=str(folder)), None, progress=False)
    assert [d.id for d in read(reader)] == ["a"]
    assert reader_skips(reader.stats) == {"unreadable_file": 1}


def test_every_source_kind_has_a_reader(tmp_path):
    kinds = {t.model_fields["kind"].default
             for t in typing.get_args(typing.get_args(S.Source)[0])}
    examples = {
        "builtin": S.BuiltinSource(name="pydoc_web"), "warc": S.WarcSource(path=str(tmp_path)),
        "jsonl": S.JsonlSource(path=str(tmp_path)), "parquet": S.ParquetSource(path=str(tmp_path)),
        "hf_dataset": S.HFDatasetSource(repo="a/b"), "files": S.FilesSource(path=str(tmp_path)),
    }
    assert set(examples) == kinds
    for source in examples.values():
        assert source_reader(source, tmp_path, progress=False) is not None
