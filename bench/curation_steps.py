"""Per-step curation cost: seconds per document for every curation step kind, on the
builtin corpora, written as the measurement file `repro plan` reads.

    python -m bench.curation_steps                 # writes bench/results/curation_steps.json
    python -m bench.curation_steps --web-docs 100 --pdf-docs 30 --code-docs 100 --repeats 3

Each step is the block the curate stage builds (`repro.data.steps.per_document_step`, schema
defaults), run in this process on one core over documents already in memory, as one
datatrove task would (bench/curation.py compares whole chains with datatrove instead):

  corpus web   pydoc_web HTML pages: url_filter, trafilatura, resiliparse on the HTML; the
               text steps on trafilatura's output
  corpus pdf   pydoc_pdf files: pdf_extract on the bytes (image-only files are routed to OCR
               and set aside: routing cost only); the text steps on the extracted text
  corpus code  stdlib_code files: the text steps (code_quality among them)

Text steps: language, gopher_repetition, gopher_quality, c4_quality, fineweb_quality,
code_quality, pii, and the two global steps with all their passes (exact_dedup: signature,
find, filter; minhash: signature, 14 bucket tasks, cluster, filter), their files in a
temporary folder. Each block runs once to warm up (the difference between that run and the
steady ones is reported as `startup_s`: URLFilter's blocklists, lingua's models, spaCy's
word tokenizer), then `--repeats` times; the median is kept. Wall-clock seconds, since
datatrove's trafilatura runs in a sandbox child process whose CPU time this process does
not see. Not measured: the source reader, JSONL writes between passes, OCR when no
tesseract binary is installed (recorded as such). The machine is recorded in the file.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/curation_steps.py` from anywhere
    sys.path.insert(0, str(REPO))

DEFAULT_OUT = REPO / "bench" / "results" / "curation_steps.json"
TEXT_STEPS = ("language", "gopher_repetition", "gopher_quality", "c4_quality",
              "fineweb_quality", "code_quality", "pii", "exact_dedup", "minhash")
HTML_STEPS = ("url_filter", "trafilatura", "resiliparse")


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu_model": model, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": {p: _version(p) for p in
                         ("datatrove", "trafilatura", "resiliparse", "lingua-language-detector",
                          "pypdfium2", "torch")}}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def raw_documents(name: str, n: int, folder: Path) -> list:
    """The first `n` documents of a builtin corpus, as the curate stage's reader yields them."""
    from repro.data.readers import source_reader
    from repro.spec.schema import BuiltinSource
    from repro.stages.configs import SourceConfig
    from repro.stages.source import run as build_source
    from repro.stages.base import StageIO

    source = BuiltinSource(name=name, max_docs=n)
    build_source(SourceConfig(source=source), StageIO(f"bench-{name}", {}, {"corpus": folder}))
    return list(source_reader(source, folder, progress=False).run(None, 0, 1))


def doc_bytes(docs) -> int:
    """Text bytes plus attached media bytes (PDF files travel as `media_bytes`)."""
    return sum(len(d.text.encode()) + sum(len(m.media_bytes or b"") for m in d.media)
               for d in docs)


def timed(run, docs, repeats: int) -> tuple[float, float]:
    """(median steady seconds, startup seconds) of `run(copied docs)`; copies are made
    outside the timing (blocks mutate documents: PDF bytes are taken, text rewritten)."""
    def once() -> float:
        batch = copy.deepcopy(docs)
        start = time.perf_counter()
        run(batch)
        return time.perf_counter() - start

    first = once()
    steady = statistics.median(once() for _ in range(repeats))
    return steady, max(0.0, first - steady)


def drain(block, docs) -> list:
    return list(block.run(iter(docs), 0, 1))


def per_document(kind: str):
    from repro.data.steps import per_document_step
    from repro.spec import schema as S

    step = {"url_filter": S.UrlFilterStep, "trafilatura": S.TrafilaturaStep,
            "resiliparse": S.ResiliparseStep, "pdf_extract": S.PdfExtractStep,
            "language": S.LanguageStep, "gopher_repetition": S.GopherRepetitionStep,
            "gopher_quality": S.GopherQualityStep, "c4_quality": S.C4QualityStep,
            "fineweb_quality": S.FineWebQualityStep, "code_quality": S.CodeQualityStep,
            "pii": S.PIIStep}[kind]()
    block = per_document_step(step, None)
    return lambda docs: drain(block, docs)


def global_step(kind: str, tmp: Path):
    """All passes of exact_dedup or minhash over `docs`, one task each (minhash buckets:
    one task per bucket, as repro.data.pipeline runs them)."""
    from datatrove.pipeline.dedup import exact_dedup as E
    from datatrove.pipeline.dedup import minhash as M

    from repro.data.steps import exact_dedup_config, minhash_config
    from repro.spec import schema as S

    runs = iter(range(10**6))

    def run(docs):
        base = tmp / f"{kind}-{next(runs)}"
        if kind == "exact_dedup":
            config = exact_dedup_config(S.ExactDedupStep())
            E.ExactDedupSignature(str(base / "sig"), config=config).run(iter(docs), 0, 1)
            E.ExactFindDedups(str(base / "sig"), str(base / "dups"), config=config).run(None, 0, 1)
            drain(E.ExactDedupFilter(str(base / "dups"), config=config), docs)
            return
        config = minhash_config(S.MinhashStep())
        M.MinhashDedupSignature(str(base / "sig"), config=config).run(iter(docs), 0, 1)
        buckets = M.MinhashDedupBuckets(str(base / "sig"), str(base / "buckets"), config=config)
        for b in range(config.num_buckets):
            buckets.run(None, b, config.num_buckets)
        M.MinhashDedupCluster(str(base / "buckets"), str(base / "remove"), config=config).run(None, 0, 1)
        drain(M.MinhashDedupFilter(str(base / "remove")), docs)

    return run


def measure(name: str, kind: str, run, docs, repeats: int) -> dict:
    seconds, startup = timed(run, docs, repeats)
    n, mb = len(docs), doc_bytes(docs) / 1e6
    row = {"docs": n, "input_mb": round(mb, 4), "seconds_per_doc": seconds / n,
           "mb_per_s": mb / seconds if seconds else None, "startup_s": round(startup, 3)}
    print(f"{name:5} {kind:18} {n / seconds:10.1f} docs/s  {row['mb_per_s']:8.2f} MB/s  "
          f"startup {startup:5.2f} s  ({n} docs, {mb:.2f} MB)", flush=True)
    return row


def ocr_status() -> dict:
    if shutil.which("tesseract") is None:
        return {"measured": False, "reason": "no tesseract binary on this machine"}
    return {"measured": False, "reason": "OCR timing not implemented in this benchmark"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="per-step curation cost (repro plan input)")
    parser.add_argument("--web-docs", type=int, default=150)
    parser.add_argument("--pdf-docs", type=int, default=40)
    parser.add_argument("--code-docs", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT, help="where to write the results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # datatrove's per-pass progress bars
    import logging

    import torch
    from datatrove.utils.logging import logger

    from repro.train.flops import measure_peak_flops

    logger.remove()  # datatrove's per-block logs would bury the table
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-steps-"))
    corpora: dict[str, dict] = {}

    web = raw_documents("pydoc_web", args.web_docs, tmp / "web")
    corpora["web"] = {kind: measure("web", kind, per_document(kind), web, args.repeats)
                      for kind in HTML_STEPS}
    web_text = per_document("trafilatura")(copy.deepcopy(web))
    pdf = raw_documents("pydoc_pdf", args.pdf_docs, tmp / "pdf")
    corpora["pdf"] = {"pdf_extract": measure("pdf", "pdf_extract", per_document("pdf_extract"),
                                             pdf, args.repeats)}
    pdf_text = per_document("pdf_extract")(copy.deepcopy(pdf))
    code = raw_documents("stdlib_code", args.code_docs, tmp / "code")
    corpora["code"] = {}
    for name, docs in (("web", web_text), ("pdf", pdf_text), ("code", code)):
        docs = [d for d in docs if d.text]
        for kind in TEXT_STEPS:
            run = global_step(kind, tmp) if kind in ("exact_dedup", "minhash") else per_document(kind)
            corpora[name][kind] = measure(name, kind, run, docs, args.repeats)

    torch.set_num_threads(1)
    peak = measure_peak_flops(torch.float32, seconds=2.0, threads=1)
    print(f"fp32 matmul peak, one core: {peak / 1e9:.1f} GFLOP/s")
    result = {
        "generated_by": "python -m bench.curation_steps " + " ".join(argv or sys.argv[1:]),
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "units": "seconds_per_doc: wall-clock seconds per input document on one core, "
                 "steady state; startup_s: once per datatrove task",
        "cpu_fp32_peak_flops_per_core": peak,
        "corpora": corpora,
        "ocr": ocr_status(),
    }
    shutil.rmtree(tmp, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.json} in {time.perf_counter() - t0:.0f} s")
    return result


if __name__ == "__main__":
    main()
