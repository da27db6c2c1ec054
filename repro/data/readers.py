"""Source spec -> datatrove reader, hardened against bad input.

Every reader here is a datatrove reader (so fsspec URLs, globbing, sharding by file across
tasks and `limit` work as in datatrove), subclassed so that unreadable input never crashes a
task: a corrupt gzip, a truncated WARC record, a malformed JSON line or invalid UTF-8 is
skipped, logged, and counted as the datatrove stat `skipped_<reason>` on the reader block;
`reader_skips` turns those stats into `{reason: count}` for the curation funnel. Web-scale
corpora always hold some broken records (Common Crawl itself truncates payloads; FACTS 2.2):
one bad file must cost that file, not the run.

Skip reasons (the `read_skipped` entry of the funnel):
  corrupt_gzip     a .gz that is not gzip or whose deflate data is damaged (rest of file lost)
  truncated_gzip   a .jsonl.gz that ends before its end marker (lines before it are kept)
  truncated_warc   a WARC (plain or .gz) that ends inside a record or its header
  invalid_warc     bytes that do not parse as a WARC record
  corrupt_parquet  a Parquet file or row group pyarrow cannot read
  invalid_json     a JSONL line that is not a JSON object (or whose text is not a string)
  invalid_utf8     text that is not UTF-8 (WARC pages: nor any charset cchardet detects;
                   JSONL: also a string escaping a lone surrogate, "\\ud800")
  empty_text       a record whose text field is missing or empty
  unreadable_file  a file that cannot be opened or read (permissions, I/O, network)
FilesReader adds `empty_file` and `binary_file` (repro.data.files_reader). The counting
itself (`SkipCounting`, `error_reason`, `reader_skips`) is in repro.data.skips, below this
module and files_reader, which both use it.

Remote sources are read through datatrove's `DataFolder` (fsspec): credentials come from
the environment (AWS_* variables, HF_TOKEN...) and are never passed as reader arguments, so
they appear neither in outputs nor in datatrove's serialised pipeline (`executor.json`).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader, ParquetReader, WarcReader
from datatrove.pipeline.readers.huggingface import HuggingFaceDatasetReader

from repro.data.files_reader import FilesReader
from repro.data.pdf_sources import PdfWarcReader
from repro.data.skips import SKIP_PREFIX, SkipCounting, error_reason, reader_skips
from repro.data.source_check import hub_error
from repro.spec import schema as S


class _GuardedStream:
    """File wrapper that turns a read error into end-of-file and remembers it.

    warcio's ArchiveIterator treats an EOFError from the stream as the end of the archive, so
    a truncated .warc.gz would end silently (and lose the whole buffered block); reading in
    small pieces keeps what came before the break, and `error` says why the stream ended.
    warcio also ends silently when a file stops inside a record's WARC headers: `count` and
    `tail` (the last bytes handed out) let the reader see unparsed bytes left at the end."""

    CHUNK = 8192
    TAIL = 1 << 16

    def __init__(self, raw):
        self.raw = raw
        # read1: at most one read of the underlying stream, so an error loses only that one
        # (a GzipFile's read() drops everything it gathered when the stream breaks)
        self._read = getattr(raw, "read1", None) or raw.read
        self.error: BaseException | None = None
        self.count = 0
        self.tail = b""

    def tell(self) -> int:
        return self.count

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            return b""
        parts: list[bytes] = []
        want = size if size is not None and size >= 0 else None
        got = 0
        while want is None or got < want:
            n = self.CHUNK if want is None else min(self.CHUNK, want - got)
            try:
                chunk = self._read(n)
            except Exception as e:  # noqa: BLE001 - any read error ends this file
                self.error = e
                break
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        data = b"".join(parts)
        self.count += len(data)
        self.tail = (self.tail + data)[-self.TAIL:]
        return data

    def unparsed_after(self, end: int) -> bool:
        """Whether anything but blank lines was handed out after offset `end`."""
        extra = self.count - end
        if extra <= 0:
            return False
        return extra > len(self.tail) or bool(self.tail[-extra:].strip())

    def header_cut_at_end(self, end: int) -> bool:
        """Whether the bytes after offset `end` run to the end of the file without the blank
        line that closes a WARC header: a header cut off by truncation, not a bad one."""
        extra = self.count - end
        if extra > len(self.tail) or self.read(1) or self.error is not None:
            return False
        return b"\r\n\r\n" not in self.tail[len(self.tail) - extra:].lstrip(b"\r\n")

    def close(self) -> None:
        pass


def _drain(record) -> bool:
    """Read what is left of a record; True when the file ended before the record did."""
    stream = record.raw_stream
    while stream.read(1 << 16):
        pass
    return getattr(stream, "limit", 0) > 0


def html_record(record) -> dict | str | None:
    """A WARC record -> document dict (as datatrove's `process_record`), a skip reason, or
    None for records that are not HTML responses (requests, metadata, other MIME types:
    not bad input, just not this chain's)."""
    import cchardet
    import magic

    if record.rec_type not in ("response", "conversion"):  # WET files use "conversion"
        return None
    allowed = {"text/html", "application/xhtml+xml"}
    if record.rec_type == "conversion":
        allowed.add("text/plain")
    mime = record.rec_headers.get("WARC-Identified-Payload-Type", None)
    if mime is not None and mime not in allowed:
        return None
    content = record.content_stream().read()
    if mime is None and magic.from_buffer(content[:8192], mime=True) not in allowed:
        return None  # older crawls carry no payload type: sniff it
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        charset = cchardet.detect(content)["encoding"]
        if not charset or charset.lower().replace("-", "") == "utf8":
            return "invalid_utf8"
        try:
            text = content.decode(charset)
        except (UnicodeDecodeError, LookupError):
            return "invalid_utf8"
    headers = record.rec_headers
    url = headers.get("WARC-Target-URI", None) or dict(headers.headers).get("uri")
    date = headers.get("WARC-Date", None) or dict(headers.headers).get("archive-date")
    return {"text": text, "id": headers.get("WARC-Record-ID", None) or url, "url": url,
            "date": date}


class RobustWarcReader(SkipCounting, WarcReader):
    """datatrove's WarcReader that skips what it cannot read: a corrupt or truncated gzip
    (`corrupt_gzip`, `truncated_warc`), a record cut short by the end of the file
    (`truncated_warc`), an unparseable record (`invalid_warc`), undecodable text
    (`invalid_utf8`). Records read before the break in a file are kept.

    `extract(record)` turns a record into a document dict, a skip reason, or None (not
    wanted); subclasses reading other payloads (PDF bytes) override it."""

    name = "🕷 Warc (robust)"

    def __init__(self, *args, add_file_path: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        # off by default: an absolute input path would make outputs depend on where inputs live
        self.add_file_path = add_file_path

    def extract(self, record) -> dict | str | None:
        return html_record(record)

    def read_file(self, filepath: str) -> DocumentsPipeline:
        from warcio.archiveiterator import ArchiveIterator

        try:
            raw = self.data_folder.open(filepath, "rb", compression=self.compression)
        except Exception as e:  # noqa: BLE001
            self.count_skip(error_reason(e), filepath, e)
            return
        with raw:
            stream = _GuardedStream(raw)
            records = ArchiveIterator(stream)
            end = 0  # where the last whole record ended, in the uncompressed stream
            for index in itertools.count():
                where = f"{filepath}#{index}"
                try:
                    record = next(records)
                except StopIteration:
                    if stream.error is not None or stream.unparsed_after(end):
                        self.count_skip(_break_reason(stream, end), where,
                                        stream.error or "file ends inside a record header")
                    return
                except Exception as e:  # noqa: BLE001 - warcio raises several kinds
                    self.count_skip(_break_reason(stream, end, e), where, stream.error or e)
                    return
                length = record.rec_headers.get_header("Content-Length") or ""
                if record.format.startswith("warc") and not length.strip().isdigit():
                    # warcio turns a header cut off by the end of the file into a record
                    # without a (whole) length; nothing after such a record can be found
                    problem = ValueError("record without a Content-Length")
                    self.count_skip(_break_reason(stream, end, problem), where, problem)
                    return
                with self.track_time():
                    try:
                        data = self.extract(record)
                        cut = _drain(record)
                    except Exception as e:  # noqa: BLE001 - a bad payload costs this record
                        data, cut = f"invalid_warc:{type(e).__name__}: {e}", _drain_quietly(record)
                    # a stream that broke with nothing buffered past this record broke inside
                    # it (possibly inside its header, which warcio then misreads)
                    cut = cut or (stream.error is not None and records.reader.rem_length() == 0)
                    if cut:
                        self.count_skip(_break_reason(stream, end), where,
                                        stream.error or "record cut short")
                        return
                    end = stream.count - records.reader.rem_length()
                    if data is None:
                        continue
                    if isinstance(data, str):
                        reason, _, detail = data.partition(":")
                        self.count_skip(reason, where, detail or record.rec_headers.get_header(
                            "WARC-Target-URI", ""))
                        continue
                    document = self.get_document_from_dict(data, filepath, index)
                if document is not None:
                    yield document


def _break_reason(stream: _GuardedStream, end: int, exc: BaseException | None = None) -> str:
    """Why a WARC file stopped early: its compressed stream broke, it was cut (inside a
    record or a header), it could not be read, or it holds bytes that are not WARC."""
    if stream.error is not None:
        reason = error_reason(stream.error)
        return "truncated_warc" if reason == "truncated_gzip" else reason
    if exc is None:
        return "truncated_warc"
    if isinstance(exc, OSError):
        return "unreadable_file"
    return "truncated_warc" if stream.header_cut_at_end(end) else "invalid_warc"


def _drain_quietly(record) -> bool:
    try:
        return _drain(record)
    except Exception:  # noqa: BLE001
        return True


class RobustJsonlReader(SkipCounting, JsonlReader):
    """datatrove's JsonlReader, line by line in binary: a line that is not UTF-8
    (`invalid_utf8`) or not a JSON object (`invalid_json`) is skipped and the next one read;
    a broken compressed stream ends the file (`corrupt_gzip`, `truncated_gzip`)."""

    name = "🐿 Jsonl (robust)"

    def read_file(self, filepath: str) -> DocumentsPipeline:
        import base64

        import orjson

        try:
            f = self.data_folder.open(filepath, "rb", compression=self.compression)
        except Exception as e:  # noqa: BLE001
            self.count_skip(error_reason(e), filepath, e)
            return
        with f:
            li = -1
            while True:
                try:
                    line = f.readline()
                except Exception as e:  # noqa: BLE001
                    self.count_skip(error_reason(e), filepath, e)
                    return
                if not line:
                    return
                li += 1
                if not line.strip():
                    continue
                where = f"{filepath}:{li + 1}"
                with self.track_time():
                    try:
                        data = orjson.loads(line)  # validates UTF-8 itself
                        if not isinstance(data, dict):
                            raise ValueError(f"a JSON {type(data).__name__}, not an object")
                        if not isinstance(data.get(self.text_key, ""), str):
                            raise ValueError(f"`{self.text_key}` is not a string")
                        for media in data.get("media", None) or []:
                            if media.get("media_bytes") is not None:
                                media["media_bytes"] = base64.decodebytes(
                                    media["media_bytes"].encode("ascii"))
                    except (ValueError, TypeError, AttributeError, KeyError) as e:
                        self.count_skip(_json_reason(line, e), where, e)
                        continue
                    document = self.get_document_from_dict(data, filepath, li)
                if document is not None:
                    yield document


def _json_reason(line: bytes, exc: BaseException | None = None) -> str:
    """`invalid_utf8` for a line that is not UTF-8, or whose strings escape a lone UTF-16
    surrogate (`"\\ud800"`: text no UTF-8 writer can encode; orjson refuses it); else
    `invalid_json`."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    if exc is not None and "surrogate" in str(exc):
        return "invalid_utf8"
    return "invalid_json"


class RobustParquetReader(SkipCounting, ParquetReader):
    """datatrove's ParquetReader: an unreadable file (`corrupt_parquet`, `unreadable_file`)
    or batch is skipped; a text column stored as bytes is decoded (`invalid_utf8` if not)."""

    name = "📒 Parquet (robust)"

    def __init__(self, *args, add_file_path: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        # off by default: an absolute input path would make outputs depend on where inputs live
        self.add_file_path = add_file_path

    def read_file(self, filepath: str) -> DocumentsPipeline:
        import pyarrow.parquet as pq

        try:
            f = self.data_folder.open(filepath, "rb")
        except Exception as e:  # noqa: BLE001
            self.count_skip(error_reason(e), filepath, e)
            return
        with f:
            try:
                pqf = pq.ParquetFile(f)
            except Exception as e:  # noqa: BLE001
                self.count_skip(error_reason(e), filepath, e)
                return
            with pqf:
                columns = None if self.read_metadata else [self.text_key, self.id_key]
                batches = pqf.iter_batches(batch_size=self.batch_size, columns=columns)
                li = 0
                while True:
                    try:
                        batch = next(batches)
                        rows = batch.to_pylist()
                    except StopIteration:
                        return
                    except Exception as e:  # noqa: BLE001
                        self.count_skip(error_reason(e), filepath, e)
                        return
                    documents = []
                    with self.track_time("batch"):
                        for row in rows:
                            text = row.get(self.text_key)
                            if isinstance(text, (bytes, bytearray)):
                                try:
                                    row[self.text_key] = bytes(text).decode("utf-8")
                                except UnicodeDecodeError as e:
                                    self.count_skip("invalid_utf8", f"{filepath}#{li}", e)
                                    li += 1
                                    continue
                            document = self.get_document_from_dict(row, filepath, li)
                            li += 1
                            if document is not None:
                                documents.append(document)
                    yield from documents


class HubDatasetReader(SkipCounting, HuggingFaceDatasetReader):
    """datatrove's HuggingFaceDatasetReader with one clear error when the dataset cannot be
    loaded (offline, unknown repo, missing split): the hub is only reached here, at run time,
    so this is where a missing dataset is reported (`repro.data.source_check` does not)."""

    name = "🤗 HuggingFace (checked)"

    def get_document_from_dict(self, data: dict, source_file: str, id_in_file: int | str):
        # a dataset copied to a local folder is labelled by the folder's name, not its
        # absolute path (which would make outputs depend on where the copy lives)
        labels = self.__dict__.setdefault("_labels", {})
        if source_file not in labels:
            local = Path(source_file)
            labels[source_file] = local.name if local.is_dir() else source_file
        return super().get_document_from_dict(data, labels[source_file], id_in_file)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        try:
            documents = super().run(None, rank, world_size)
            first = next(documents, None)
        except Exception as e:  # noqa: BLE001 - datasets raises many kinds
            raise hub_error(self.dataset, e) from e
        if first is not None:
            yield first
            yield from documents


class RecordSharded(PipelineStep):
    """Run a reader as one task and keep every `world_size`-th document from `rank` on.

    datatrove shards input by file; a builtin corpus is a single file, which would leave all
    tasks but one idle. Reading the (small) file in every task and interleaving records
    gives each task an equal, fixed share. The inner reader's skip counts are reported by
    task 0 only (every task reads the whole file, so each would count the same skips)."""

    type = "📖 - READER"
    name = "record-sharded"

    def __init__(self, reader: PipelineStep):
        self.reader = reader  # before super().__init__(), which calls __repr__
        super().__init__()

    def __repr__(self) -> str:
        return f"{self.type}: {self.name} {self.reader.name}"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        try:
            for i, doc in enumerate(self.reader.run(data, 0, 1)):
                if i % world_size == rank:
                    yield doc
        finally:
            if rank == 0:
                for key, metric in self.reader.stats.stats.items():
                    if key.startswith(SKIP_PREFIX):
                        self.stats.stats[key] += metric


def _warc_reader(path: str, glob: str | None, content: str, progress: bool,
                 **kwargs) -> PipelineStep:
    if content == "pdf":
        reader = PdfWarcReader(path, glob_pattern=glob, doc_progress=progress, **kwargs)
        reader.add_file_path = False  # as the other readers: no input location in documents
        return reader
    return RobustWarcReader(path, glob_pattern=glob, doc_progress=progress, **kwargs)


def source_reader(source: S.Source, raw: Path | None, progress: bool = True) -> PipelineStep:
    """The reader of a dataset's raw documents. Builtin corpora are read from the source
    stage's output folder `raw`; every other kind from its own path (local or fsspec URL)
    or hub id. The reader block's stats carry `skipped_<reason>` counts (`reader_skips`)."""
    if isinstance(source, S.BuiltinSource):
        if raw is None:
            raise ValueError("builtin sources are read from the `raw` input, which is missing")
        if source.name in ("pydoc_web", "pydoc_pdf"):
            content = "pdf" if source.name == "pydoc_pdf" else "html"
            inner = _warc_reader(str(raw), "*.warc", content, progress, compression=None,
                                 recursive=False)
        else:
            inner = RobustJsonlReader(str(raw), glob_pattern="*.jsonl", compression=None,
                                      doc_progress=progress, recursive=False,
                                      add_file_path=False)
        return RecordSharded(inner)
    if isinstance(source, S.WarcSource):
        return _warc_reader(source.path, source.glob, source.content, progress,
                            limit=source.limit)
    if isinstance(source, S.JsonlSource):
        return RobustJsonlReader(source.path, glob_pattern=source.glob, limit=source.limit,
                                 text_key=source.text_key, id_key=source.id_key,
                                 doc_progress=progress, add_file_path=False)
    if isinstance(source, S.ParquetSource):
        return RobustParquetReader(source.path, glob_pattern=source.glob, limit=source.limit,
                                   text_key=source.text_key, id_key=source.id_key,
                                   doc_progress=progress)
    if isinstance(source, S.HFDatasetSource):
        # never run a dataset's loading script (datasets >= 4 has dropped them; older
        # versions would run one only with trust_remote_code=True)
        options = {"split": source.split, "trust_remote_code": False}
        if source.subset:
            options["name"] = source.subset
        return HubDatasetReader(source.repo, dataset_options=options, streaming=True,
                                limit=source.limit, text_key=source.text_key,
                                doc_progress=progress)
    if isinstance(source, S.FilesSource):
        return FilesReader(source.path, glob_pattern=source.glob, fmt=source.format,
                           limit=source.limit, doc_progress=progress)
    raise ValueError(f"unknown source kind {source.kind!r}")  # pragma: no cover


__all__ = [
    "HubDatasetReader", "RecordSharded", "RobustJsonlReader", "RobustParquetReader",
    "RobustWarcReader", "SkipCounting", "error_reason", "html_record", "reader_skips",
    "source_reader",
]
