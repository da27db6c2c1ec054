"""Write documents as a deterministic, uncompressed WARC file (warcio).

warcio fills WARC-Date with the current time and WARC-Record-ID with a random UUID unless
they are given, so both are fixed here: one date for the whole corpus and a record id
derived from the record's URL. Digests and lengths warcio computes from the bytes themselves.

`write_records` writes any (url, body, content type) records: HTML pages for `pydoc_web`,
PDF files for `pydoc_pdf` (FinePDFs reads PDFs from Common Crawl response records selected
by MIME type; FACTS 2.2). `write_warc` is the HTML-page front end.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from repro.data.pydoc_web import Page

WARC_DATE = "2024-01-01T00:00:00Z"
"""Fixed crawl date of every record (a date from the wall clock would change each run)."""


@dataclass(frozen=True)
class Record:
    """One HTTP response to store: the body and the MIME type it is served with."""

    url: str
    body: bytes
    content_type: str
    """HTTP `Content-Type` header value, e.g. `application/pdf`."""
    payload_type: str
    """`WARC-Identified-Payload-Type` (the MIME type without parameters): lets readers skip
    MIME sniffing (datatrove's WarcReader honours it)."""


def record_id(url: str) -> str:
    """`<urn:uuid:...>` from the SHA-256 of the URL: stable and unique per URL."""
    digest = hashlib.sha256(url.encode("utf-8")).digest()
    return f"<urn:uuid:{uuid.UUID(bytes=digest[:16], version=4)}>"


def write_records(records: Iterable[Record], path: Path, progress: bool = True,
                  desc: str = "records", unit: str = "record") -> int:
    """Write one `response` record per item to `path`; returns the number of records."""
    from io import BytesIO

    from tqdm import tqdm
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    count = 0
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=False)
        for rec in tqdm(records, desc=desc, unit=unit, disable=not progress):
            http_headers = StatusAndHeaders(
                "200 OK",
                [("Content-Type", rec.content_type), ("Content-Length", str(len(rec.body)))],
                protocol="HTTP/1.1",
            )
            record = writer.create_warc_record(
                rec.url,
                "response",
                payload=BytesIO(rec.body),
                http_headers=http_headers,
                warc_headers_dict={
                    "WARC-Date": WARC_DATE,
                    "WARC-Record-ID": record_id(rec.url),
                    "WARC-Identified-Payload-Type": rec.payload_type,
                },
            )
            writer.write_record(record)
            count += 1
    return count


def write_warc(pages: Iterable[Page], path: Path, progress: bool = True) -> int:
    """Write one HTML `response` record per page to `path`; returns the number of records."""
    records = (Record(page.url, page.html.encode("utf-8"), "text/html; charset=utf-8", "text/html")
               for page in pages)
    return write_records(records, path, progress=progress, desc="pydoc pages", unit="page")
