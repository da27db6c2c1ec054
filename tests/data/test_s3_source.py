"""Sources on S3, through a loopback S3 server (moto): the same documents as a local read.

The endpoint and the (fake) credentials come from the environment only, as a user's would:
`AWS_ENDPOINT_URL` is honoured by botocore, hence by aiobotocore and s3fs, so datatrove's
`DataFolder("s3://...")` needs no storage options, and nothing secret is ever a reader
argument (datatrove writes reader arguments into its logs)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from repro.data.readers import reader_skips, source_reader
from repro.data.source_check import SourceError, check_source
from repro.spec import schema as S

BUCKET = "repro-test-bucket"
KEY_ID = "AKIAREPROTESTKEY0042"
SECRET = "reproTestSecret/DoNotLeak+0123456789abcd"


def _build_tree(root: Path, make_pdf, html_page, write_warc) -> None:
    write_warc(root / "warc" / "a.warc.gz", [(f"https://a.example/{i}", html_page(i), "text/html")
                                             for i in range(3)], gz=True)
    write_warc(root / "warc" / "b.warc", [("https://b.example/", html_page(5), "text/html")])
    write_warc(root / "pdfwarc" / "p.warc.gz",
               [("https://p.example/r.pdf", make_pdf("Report."), "application/pdf")], gz=True)
    rows = [{"id": f"d{i}", "text": f"Document {i % 4} says hello.", "lang": "en"}
            for i in range(6)]  # d4, d5 repeat the texts of d0, d1
    (root / "jsonl").mkdir(parents=True)
    lines = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (root / "jsonl" / "part-0.jsonl.gz").write_bytes(gzip.compress(lines, mtime=0))

    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "parquet").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), root / "parquet" / "rows.parquet")
    files = {"files/index.html": html_page(7), "files/src/mod.py": b"def f():\n    return 1\n",
             "files/docs/readme.txt": b"Read me.\n", "files/docs/manual.pdf": make_pdf("Manual."),
             "files/empty.txt": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


@pytest.fixture(scope="module")
def s3_root(tmp_path_factory, make_pdf, html_page, write_warc):
    """A moto S3 server on 127.0.0.1 holding the same tree as a local folder; yields the
    local folder. The environment points boto/s3fs at the server while the module runs."""
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
                            "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                            "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(name, raising=False)
        s3fs.S3FileSystem.clear_instance_cache()  # an instance made earlier knows no endpoint
        try:
            root = tmp_path_factory.mktemp("s3-mirror")
            _build_tree(root, make_pdf, html_page, write_warc)
            client = boto3.client("s3")
            client.create_bucket(Bucket=BUCKET)
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                client.put_object(Bucket=BUCKET, Key=path.relative_to(root).as_posix(),
                                  Body=path.read_bytes())
            yield root
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


def _docs(source) -> list[tuple]:
    reader = source_reader(source, None, progress=False)
    docs = list(reader.run(None, 0, 1))
    return [(d.id, d.text, d.metadata, [m.media_bytes for m in d.media]) for d in docs], reader


def _remote(source, prefix: str):
    return source.model_copy(update={"path": f"s3://{BUCKET}/{prefix}"})


@pytest.mark.parametrize("source, prefix, count", [
    (S.WarcSource(path="warc"), "warc", 4),
    (S.WarcSource(path="pdfwarc", content="pdf"), "pdfwarc", 1),
    (S.JsonlSource(path="jsonl"), "jsonl", 6),
    (S.ParquetSource(path="parquet"), "parquet", 6),
    (S.FilesSource(path="files"), "files", 4),
])
def test_s3_source_reads_the_same_documents_as_local(s3_root, source, prefix, count):
    local = source.model_copy(update={"path": str(s3_root / prefix)})
    remote = _remote(source, prefix)
    check_source(remote)
    local_docs, _ = _docs(local)
    remote_docs, reader = _docs(remote)
    assert len(local_docs) == count
    assert remote_docs == local_docs
    expected_skips = {"empty_file": 1} if source.kind == "files" else {}
    assert reader_skips(reader.stats) == expected_skips


def test_s3_source_check_names_the_url(s3_root):
    with pytest.raises(SourceError, match=f"s3://{BUCKET}/nothing-here"):
        check_source(S.JsonlSource(path=f"s3://{BUCKET}/nothing-here"))
    with pytest.raises(SourceError, match=r"glob '\*\.parquet' matches no file"):
        check_source(S.ParquetSource(path=f"s3://{BUCKET}/jsonl"))
    with pytest.raises(SourceError, match="s3://no-such-bucket-here/x.*S3 credentials"):
        check_source(S.WarcSource(path="s3://no-such-bucket-here/x"))


def test_curation_over_s3_jsonl_without_leaking_credentials(s3_root, tmp_path):
    from repro.data.pipeline import Curation

    out, work = tmp_path / "out", tmp_path / "work"
    funnel = Curation("web", S.JsonlSource(path=f"s3://{BUCKET}/jsonl"), [S.ExactDedupStep()],
                      S.ExecutorSpec(), None, out, work).run()
    metrics = funnel.as_metrics()
    assert metrics["docs_in"] == 6 and metrics["docs_out"] == 4
    assert metrics["steps"]["01_exact_dedup"]["removed"] == {"duplicate": 2}
    kept = [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.open()]
    assert sorted(d["id"] for d in kept) == ["d0", "d1", "d2", "d3"]

    written = [p for folder in (out, work) for p in folder.rglob("*") if p.is_file()]
    assert written
    for path in written:
        data = path.read_bytes()
        assert KEY_ID.encode() not in data and SECRET.encode() not in data, path
