"""The PDF chain end to end through repro.data.pipeline.Curation on the builtin pydoc_pdf
corpus: pdf_extract -> exact_dedup on PDF bytes -> language -> minhash (FACTS 2.3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.data import pydoc_pdf as PP
from repro.data.pipeline import Curation
from repro.spec import schema as S

N = 30  # 29 modules (3 of them image-only) + 1 copy


def curate(tmp_path: Path, name: str, raw: Path, tasks: int) -> tuple[Path, dict]:
    out, work = tmp_path / f"out-{name}", tmp_path / f"work-{name}"
    steps = [S.PdfExtractStep(), S.ExactDedupStep(content="pdf_bytes"), S.LanguageStep(), S.MinhashStep()]
    funnel = Curation("pdf", S.BuiltinSource(name="pydoc_pdf", max_docs=N), steps,
                      S.ExecutorSpec(tasks=tasks, workers=tasks), raw, out, work).run()
    return out, funnel.as_metrics()


def jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.open()]


@pytest.mark.slow
def test_pdf_chain_through_curation(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    assert PP.write_corpus(raw / "pydoc_pdf.warc", N, progress=False) == N
    files = list(PP.iter_pdfs(N))
    image_only = {f.url for f in files if f.image_only}
    copies = [f for f in files if f.duplicate_of]
    assert len(image_only) == 3 and len(copies) == 1

    out, metrics = curate(tmp_path, "a", raw, tasks=1)
    steps = metrics["steps"]
    assert metrics["docs_in"] == N
    assert steps["01_pdf_extract"]["removed"] == {"ocr_pending": 3}
    assert steps["02_exact_dedup"]["removed"] == {"duplicate": 1}

    # image-only PDFs set aside with where they came from; never with bytes
    pending = jsonl(out / "removed" / "01_pdf_extract")
    assert {d["metadata"]["url"] for d in pending} == image_only
    assert all(d["metadata"]["ocr_reason"] == "textless_pages" and not d.get("media") for d in pending)
    # one of the two byte-identical records is removed by the dedup on bytes
    dup = jsonl(out / "removed" / "02_exact_dedup")
    assert len(dup) == 1 and dup[0]["metadata"]["url"] in {copies[0].url, copies[0].duplicate_of}

    kept = jsonl(out / "data")
    assert len(kept) == metrics["docs_out"] > 0
    urls = [d["metadata"]["url"] for d in kept]
    assert not image_only & set(urls)
    assert len({d["metadata"]["pdf_sha256"] for d in kept}) == len(kept)
    for d in kept:
        assert d["text"] and not d.get("media")
        assert d["metadata"]["extractor"] == "pypdfium2" and d["metadata"]["language"] == "en"

    # outputs do not depend on the executor's task count
    out2, metrics2 = curate(tmp_path, "b", raw, tasks=2)
    assert metrics2 == metrics
    assert sorted(json.dumps(d, sort_keys=True) for d in jsonl(out2 / "data")) == \
        sorted(json.dumps(d, sort_keys=True) for d in kept)
