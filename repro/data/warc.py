"""Write HTML pages as a deterministic, uncompressed WARC file (warcio).

warcio fills WARC-Date with the current time and WARC-Record-ID with a random UUID unless
they are given, so both are fixed here: one date for the whole corpus and a record id
derived from the page URL. Digests and lengths warcio computes from the bytes themselves.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Iterable

from repro.data.pydoc_web import Page

WARC_DATE = "2024-01-01T00:00:00Z"
"""Fixed crawl date of every record (a date from the wall clock would change each run)."""


def record_id(url: str) -> str:
    """`<urn:uuid:...>` from the SHA-256 of the URL: stable and unique per URL."""
    digest = hashlib.sha256(url.encode("utf-8")).digest()
    return f"<urn:uuid:{uuid.UUID(bytes=digest[:16], version=4)}>"


def write_warc(pages: Iterable[Page], path: Path, progress: bool = True) -> int:
    """Write one `response` record per page to `path`; returns the number of records."""
    from io import BytesIO

    from tqdm import tqdm
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    count = 0
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=False)
        for page in tqdm(pages, desc="pydoc pages", unit="page", disable=not progress):
            body = page.html.encode("utf-8")
            http_headers = StatusAndHeaders(
                "200 OK",
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
                protocol="HTTP/1.1",
            )
            record = writer.create_warc_record(
                page.url,
                "response",
                payload=BytesIO(body),
                http_headers=http_headers,
                warc_headers_dict={
                    "WARC-Date": WARC_DATE,
                    "WARC-Record-ID": record_id(page.url),
                    # lets readers skip MIME sniffing (datatrove's WarcReader honours it)
                    "WARC-Identified-Payload-Type": "text/html",
                },
            )
            writer.write_record(record)
            count += 1
    return count
