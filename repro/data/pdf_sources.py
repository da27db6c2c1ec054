"""PDF documents before extraction, and a WARC reader that yields them.

A PDF document follows the issue-3 document contract: empty text, the file's bytes in
`media[0].media_bytes`, `url` and `content_type` in the metadata; `repro.data.pdf`'s
`PdfExtractor` turns it into text. `PdfWarcReader` selects PDFs from WARC response records
by MIME type, as FinePDFs selects them from Common Crawl (FACTS 2.2).
"""

from __future__ import annotations

from typing import IO, Callable, Literal

from datatrove.data import Document, DocumentsPipeline, Media, MediaType
from datatrove.io import DataFileLike, DataFolderLike
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.utils.logging import logger

PDF_MIME_TYPES = frozenset({"application/pdf", "application/x-pdf"})
"""MIME types read as PDF (`application/x-pdf` is a common pre-registration alias)."""


def pdf_document(data: bytes, doc_id: str, url: str) -> Document:
    """A PDF document as the curation chain expects it before `pdf_extract`."""
    return Document(
        text="",
        id=doc_id,
        media=[Media(id=doc_id, type=MediaType.DOCUMENT, url=url, media_bytes=data)],
        metadata={"url": url, "content_type": "application/pdf"},
    )


def mime_type(header: str | None) -> str | None:
    """`application/PDF; qs=0.9` -> `application/pdf`."""
    if not header:
        return None
    return header.split(";", 1)[0].strip().lower() or None


def record_mime(record) -> str | None:
    """MIME type a WARC record's payload was served with: the HTTP `Content-Type` of a
    `response`, the WARC `Content-Type` of a `resource` record (a file stored as is), else
    the crawler's `WARC-Identified-Payload-Type`."""
    if record.rec_type == "response":
        served = record.http_headers.get_header("Content-Type") if record.http_headers else None
    elif record.rec_type == "resource":
        served = record.rec_headers.get_header("Content-Type")
    else:
        return None
    return mime_type(served) or mime_type(record.rec_headers.get_header("WARC-Identified-Payload-Type"))


class _CountingReader:
    """File wrapper that counts the bytes handed to warcio and remembers a read error.

    warcio ends iteration silently when a file stops inside a record header (EOFError is
    its end-of-file signal, and a truncated gzip stream raises it too): comparing the bytes
    read with the end of the last complete record, and keeping the error, tells a truncated
    file from a complete one."""

    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.count = 0
        self.error: BaseException | None = None

    def tell(self) -> int:
        return self.count

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.fh.read(size)
        except BaseException as e:
            self.error = e
            raise
        self.count += len(data)
        return data


class PdfWarcReader(BaseDiskReader):
    """Read PDF files from WARC `response` (and `resource`) records whose MIME type is PDF.

    One document per record: id = `WARC-Record-ID`, url = `WARC-Target-URI`. Records of other
    MIME types are not documents of the PDF chain and are skipped silently. Records that the
    crawler cut short (`WARC-Truncated`; Common Crawl truncated payloads at 1 MB, FACTS 2.2)
    are counted as `skipped_truncated_pdf`: FinePDFs re-fetches them from the live web,
    which this offline reader cannot; records with an empty payload as `skipped_empty_file`. A file that ends inside a record or fails to parse is
    counted once as `skipped_corrupt_warc`; the records read before the damage are kept and
    the task goes on with the next file.

    Arguments are those of datatrove's WarcReader.
    """

    name = "🕷 Warc PDF"
    _requires_dependencies = ["warcio"]

    def __init__(
        self,
        data_folder: DataFolderLike,
        paths_file: DataFileLike | None = None,
        compression: Literal["infer", "gzip", "zstd"] | None = "infer",
        limit: int = -1,
        skip: int = 0,
        file_progress: bool = False,
        doc_progress: bool = False,
        adapter: Callable = None,
        text_key: str = "text",
        id_key: str = "id",
        default_metadata: dict = None,
        recursive: bool = True,
        glob_pattern: str | None = None,
        shuffle_files: bool = False,
    ):
        self.compression = compression
        super().__init__(
            data_folder,
            paths_file,
            limit,
            skip,
            file_progress,
            doc_progress,
            adapter,
            text_key,
            id_key,
            default_metadata,
            recursive,
            glob_pattern,
            shuffle_files,
        )

    def get_document_from_dict(self, data: dict, source_file: str, id_in_file: int | str):
        """datatrove's version drops documents without text; a PDF document has none before
        extraction, so it is kept when it carries bytes."""
        parsed = self.adapter(data, source_file, id_in_file)
        media = [m if isinstance(m, Media) else Media(**m) for m in parsed.get("media") or []]
        if not any(m.media_bytes for m in media):
            return None
        document = Document(text=parsed.get("text") or "", id=parsed["id"], media=media,
                            metadata=parsed.get("metadata", {}))
        if self.default_metadata:
            document.metadata = self.default_metadata | document.metadata
        if self.add_file_path:
            document.metadata.setdefault("file_path", self.data_folder.resolve_paths(source_file))
        return document

    def read_file(self, filepath: str) -> DocumentsPipeline:
        from warcio.archiveiterator import ArchiveIterator

        with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
            stream = _CountingReader(f)
            problem = None
            complete_to = 0  # stream offset where the last complete record (and its padding) ends
            try:
                records = ArchiveIterator(stream)
                for ri, record in enumerate(records):
                    if record.format != "warc" or record.rec_headers.get_header("Content-Length") is None:
                        problem = "not a WARC record (or a cut-off record header)"
                        break
                    document = None
                    if record_mime(record) in PDF_MIME_TYPES:
                        with self.track_time():
                            document, problem = self._pdf_record(record, filepath, ri)
                        if problem:
                            break
                    records.read_to_end()
                    complete_to = records.offset
                    if document:
                        yield document
                if problem is None and stream.error is not None:
                    problem = f"read error {stream.error!r}"
                if problem is None and stream.count > complete_to:
                    problem = "file ends inside a record header"
            except Exception as e:  # noqa: BLE001 - a damaged file must not end the task
                problem = f"{type(e).__name__}: {e}"
            if problem is not None:
                self.stat_update("skipped_corrupt_warc")
                logger.warning(f"Corrupt or truncated WARC file {filepath}: {problem}; "
                               "records after the damage are lost, going on")

    def _pdf_record(self, record, filepath: str, ri: int) -> tuple[Document | None, str | None]:
        """(document or None, problem with the file or None) for one PDF record."""
        body = record.content_stream().read()
        if record.raw_stream.limit > 0:  # fewer bytes than Content-Length: the file ends here
            return None, "file ends inside a record"
        if record.rec_headers.get_header("WARC-Truncated"):
            self.stat_update("skipped_truncated_pdf")
            return None, None
        if not body:  # a PDF of zero bytes: counted, as FilesReader counts an empty file
            self.stat_update("skipped_empty_file")
            return None, None
        doc_id = record.rec_headers.get_header("WARC-Record-ID")
        url = record.rec_headers.get_header("WARC-Target-URI")
        document = self.get_document_from_dict(
            {"text": "", "id": doc_id, "media": [pdf_document(body, doc_id, url).media[0]],
             "url": url, "content_type": "application/pdf"},
            filepath, ri)
        return document, None
