"""Curation throughput, measured side by side in one run (shared PERF.md).

    python -m bench.curation            # or: python bench/curation.py [--pages N --repeats R]

1. Web chain, FineWeb defaults with the language step aside (FACTS 1.1-1.12, per-document
   steps only): (a) ours, each step built by `repro.data.steps.per_document_step` from the
   schema defaults, vs (b) the same chain written directly with datatrove's classes. Both run
   as a datatrove pipeline (LocalPipelineExecutor, one task = one core) on a fixture WARC of
   pydoc pages; repeats alternate a/b, b/a, ... so machine noise hits both. Goal: ratio >= 0.95.
   Each run includes the task's start-up (URLFilter loads its blocklists, ~3 s here), the
   same code in both chains; a FineWeb task reads a whole WARC file and amortises it.
   pydoc pages are small (~2 KB of HTML) next to web pages, so docs/s run above the anchors.
2. HTML extraction alone on the same pages: trafilatura (precision mode) vs resiliparse,
   in-process (no sandbox), docs/s/core (PERF.md anchors: ~32-43 and ~250 docs/s).
3. MinHash signatures with the FineWeb configuration (`repro.data.steps.minhash_config`):
   MB/s per core and GB per core-hour, against FineWeb's ~3 GB per task-hour anchor.
4. HF tokenizers byte-level BPE (trained here on the extracted text with
   `repro.stages.tokenizer.train_bpe`): tokens/s on one core (one `encode` at a time).

The chain ratio is printed last. Absolute numbers depend on the machine; compare ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/curation.py` from anywhere
    sys.path.insert(0, str(REPO))

from datatrove.pipeline.base import PipelineStep  # noqa: E402

FINEWEB_ANCHOR_GB_PER_TASK_HOUR = 3.0
"""FineWeb MinHash signature throughput (shared PERF.md)."""


class Count(PipelineStep):
    """Counts what reaches the end of a pipeline (the same block ends both chains)."""

    name = "count"
    type = "📊 - STATS"

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            self.stat_update("kept")
            yield doc


def fineweb_steps():
    """Schema defaults of the FineWeb per-document steps, language aside (FACTS 1.1)."""
    from repro.spec import schema as S

    return [S.UrlFilterStep(), S.TrafilaturaStep(), S.GopherRepetitionStep(),
            S.GopherQualityStep(), S.C4QualityStep(), S.FineWebQualityStep(), S.PIIStep()]


def offline(url_filter):
    """datatrove's URLFilter would first try to download the public suffix list (network;
    ~5 s timeout here, shared OFFLINE.md): give it tldextract's bundled snapshot instead, as
    our OfflineURLFilter does, so neither chain waits on the network."""
    from tldextract import TLDExtract

    url_filter.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
    return url_filter


def our_chain(warc_dir: Path) -> list[PipelineStep]:
    from repro.data.readers import source_reader
    from repro.data.steps import DropMetadata, per_document_step
    from repro.spec import schema as S

    reader = source_reader(S.WarcSource(path=str(warc_dir)), raw=None, progress=False)
    return [reader, DropMetadata()] + [per_document_step(s, None) for s in fineweb_steps()] + [Count()]


def reference_chain(warc_dir: Path) -> list[PipelineStep]:
    """FineWeb's chain as in datatrove's examples/fineweb.py (FACTS 1.1), language aside."""
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import WarcReader

    return [WarcReader(str(warc_dir), glob_pattern="*.warc*"), offline(URLFilter()),
            Trafilatura(favour_precision=True, timeout=1), GopherRepetitionFilter(),
            GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
            FineWebQualityFilter(), PIIFormatter(), Count()]


def run_pipeline(pipeline: list[PipelineStep], logs: Path) -> tuple[float, int, int]:
    """(seconds, docs read, docs kept) of one single-task local run (its log and stats
    printout captured: they would bury the table)."""
    from datatrove.executor import LocalPipelineExecutor

    executor = LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(logs),
                                     skip_completed=False)
    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        stats = executor.run()
    seconds = time.perf_counter() - start
    read = stats.stats[0].stats["documents"].total
    kept = stats.stats[-1].stats.get("kept")
    return seconds, read, int(kept.total if kept else 0)


def build_corpus(folder: Path, pages: int, copies: int = 1) -> list[str]:
    """`pages` pydoc pages, each `copies` times under its own URL, written to
    folder/pydoc.warc; returns the pages' HTML (one copy)."""
    from dataclasses import replace

    from repro.data.pydoc_web import iter_pages
    from repro.data.warc import write_warc

    folder.mkdir(parents=True, exist_ok=True)
    corpus = list(iter_pages(max_docs=pages))
    records = [replace(p, url=f"{p.url}?copy={c}") for c in range(copies) for p in corpus]
    write_warc(records, folder / "pydoc.warc", progress=False)
    return [p.html for p in corpus]


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Run each callable `repeats` times, alternating the order every round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(fns[name]())
    return times


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description="curation throughput: ours vs datatrove")
    parser.add_argument("--pages", type=int, default=300, help="pydoc pages in the fixture WARC")
    parser.add_argument("--copies", type=int, default=2,
                        help="copies of each page in the chains' WARC (amortises start-up)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each chain (interleaved)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    from datatrove.utils.logging import logger

    logger.remove()  # datatrove's logs would bury the table
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)

    tmp = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    t0 = time.perf_counter()
    htmls = build_corpus(tmp / "warc", args.pages, args.copies)
    html_mb = sum(len(h.encode()) for h in htmls) / 1e6
    print(f"fixture: {len(htmls)} pydoc pages x {args.copies} copies in the WARC, "
          f"{html_mb:.1f} MB of HTML per copy "
          f"({time.perf_counter() - t0:.1f} s to build); cpu_count={os.cpu_count()}; "
          f"Python {sys.version.split()[0]}")

    # ---- 2. extractors alone (also warms both libraries up before the chains run)
    from datatrove.pipeline.extractors import Trafilatura

    from repro.data.extractors import ResiliparseExtractor

    traf, resi = Trafilatura(favour_precision=True, timeout=1), ResiliparseExtractor()
    texts = [resi.extract(h) for h in htmls]
    traf.extract(htmls[0])

    def extract_all(extractor):
        def go():
            start = time.perf_counter()
            for h in htmls:
                extractor.extract(h)
            return time.perf_counter() - start
        return go

    ext = interleaved({"trafilatura": extract_all(traf), "resiliparse": extract_all(resi)},
                      args.repeats)
    traf_rate = len(htmls) / statistics.median(ext["trafilatura"])
    resi_rate = len(htmls) / statistics.median(ext["resiliparse"])

    # ---- 3. MinHash signatures, FineWeb configuration
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    from repro.data.steps import minhash_config
    from repro.spec import schema as S

    config = minhash_config(S.MinhashStep())
    copies = 4  # enough text for a measurable run; copies get their own ids
    docs = [Document(text=t, id=f"{c}-{i}") for c in range(copies) for i, t in enumerate(texts) if t]
    text_mb = sum(len(d.text.encode()) for d in docs) / 1e6
    runs = iter(range(10**6))
    # warm-up: datatrove loads its spaCy word tokenizer on first use
    MinhashDedupSignature(output_folder=str(tmp / "sig-warm"), config=config).run(iter(docs[:5]))

    def signatures():
        out = tmp / f"sig-{next(runs)}"
        block = MinhashDedupSignature(output_folder=str(out), config=config)
        start = time.perf_counter()
        block.run(iter(docs), rank=0, world_size=1)
        return time.perf_counter() - start

    sig_s = statistics.median(interleaved({"minhash": signatures}, args.repeats)["minhash"])
    sig_mb_s = text_mb / sig_s

    # ---- 4. tokenizer
    from repro.stages.tokenizer import train_bpe

    tok = train_bpe(iter(texts), vocab_size=8192, min_frequency=2,
                    special_tokens=["<|endoftext|>", "<|pad|>"])
    n_tokens = sum(len(tok.encode(t).ids) for t in texts)

    def encode():
        start = time.perf_counter()
        for t in texts:
            tok.encode(t)
        return time.perf_counter() - start

    tok_rate = n_tokens / statistics.median(interleaved({"encode": encode}, args.repeats)["encode"])

    # ---- 1. the chains, interleaved
    warc = tmp / "warc"
    results: dict[str, list[tuple[float, int, int]]] = {"ours": [], "datatrove": []}
    counter = iter(range(10**6))

    def chain(name, build, folder, into):
        def go():
            seconds, read, kept = run_pipeline(build(folder), tmp / "logs" / f"{name}-{next(counter)}")
            into[name].append((seconds, read, kept))
            return seconds
        return go

    interleaved({"ours": chain("ours", our_chain, warc, results),
                 "datatrove": chain("datatrove", reference_chain, warc, results)}, args.repeats)
    kept = {name: {r[2] for r in runs_} for name, runs_ in results.items()}
    read = results["ours"][0][1]
    median = {name: statistics.median(r[0] for r in runs_) for name, runs_ in results.items()}
    rate = {name: read / median[name] for name in results}

    print()
    print(f"{'measure':50} {'value':>12}  note")
    print(f"{'trafilatura extract (precision), docs/s/core':50} {traf_rate:12.1f}  anchor ~32-43")
    print(f"{'resiliparse extract, docs/s/core':50} {resi_rate:12.1f}  anchor ~250; "
          f"{resi_rate / traf_rate:.1f}x trafilatura")
    print(f"{'MinHash signatures (5-grams, 14x8, 64-bit), MB/s/core':50} {sig_mb_s:12.2f}  "
          f"{text_mb:.1f} MB of extracted text")
    gb_h = sig_mb_s * 3600 / 1000
    print(f"{'MinHash signatures, GB/core-hour':50} {gb_h:12.1f}  "
          f"{gb_h / FINEWEB_ANCHOR_GB_PER_TASK_HOUR:.1f}x FineWeb's ~3 GB/task-hour")
    print(f"{'BPE tokenizer (8192 vocab) tokens/s/core':50} {tok_rate:12,.0f}  anchor ~0.5-1 M; "
          f"{n_tokens:,} tokens")
    for name in ("ours", "datatrove"):
        secs = ", ".join(f"{r[0]:.2f}" for r in results[name])
        print(f"{'web chain ' + name + ', docs/s/core':50} {rate[name]:12.1f}  "
              f"{read} docs in, kept {sorted(kept[name])}; runs (s): {secs}")

    if kept["ours"] != kept["datatrove"]:
        print("WARNING: the chains kept different numbers of documents")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"total bench time {time.perf_counter() - t0:.0f} s")
    ratio = rate["ours"] / rate["datatrove"]
    print(f"ratio ours/datatrove web chain docs/s: {ratio:.3f} (goal >= 0.95)")
    return ratio


if __name__ == "__main__":
    main()
