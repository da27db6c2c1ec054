"""Curation CPU-hours of one dataset: documents reaching each step × that step's measured
seconds per document (bench/curation_steps.py), plus each step's start-up once per task.

Documents come, best first, from: the committed metrics of this very curate stage (the
funnel: documents entering every step); for builtin corpora, the corpus size a committed run
measured (capped by `max_docs`), or `max_docs` itself as an upper bound; for a local folder
of files (one document each) the matching files, counted; for other sources a `limit` as an
upper bound; otherwise they are unknown and only the cost per million
documents is given. Without a funnel every step is charged for every document (an upper
bound: filters only remove). Costs were measured on the builtin corpora (pydoc pages are
~2 kB of HTML, smaller than Common Crawl pages, whose trafilatura rate PERF.md puts at
~32-43 docs/s/core), so for other sources they are the same-kind corpus's cost per document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from repro.plan.measured import BuiltinRuns
from repro.plan.quantity import Q, total
from repro.spec import schema as S

EXTRACTORS = frozenset({"trafilatura", "resiliparse", "pdf_extract"})
_BUILTIN_CORPUS = {"pydoc_web": "web", "pydoc_pdf": "pdf", "stdlib_code": "code"}


@dataclass(frozen=True)
class StepCost:
    label: str
    """`<nn>_<kind>`, as in the funnel metrics."""
    kind: str
    docs: Q
    """Documents entering the step."""
    seconds_per_doc: float | None
    """Measured steady-state wall seconds per document on one core (None: not measured)."""
    cpu_hours: Q
    """docs × seconds_per_doc + start-up × tasks, in core-hours."""
    per_million_docs_hours: float | None
    """Core-hours per million documents entering the step (start-up left out)."""
    note: str = ""


@dataclass(frozen=True)
class DatasetCuration:
    name: str
    source: str
    docs_in: Q
    kept_docs: Q
    steps: list[StepCost]
    cpu_hours: Q
    raw_bytes: Q
    """Bytes the source yields (builtin corpora are written to disk by a source stage)."""
    extracted_bytes: Q
    """Text bytes after extraction: the curated folder holds kept and removed documents."""
    kept_bytes: Q
    """Text bytes of the kept documents."""
    notes: list[str] = field(default_factory=list)


def corpus_kind(source: S.Source) -> str:
    """Which benchmark corpus stands in for this source's documents."""
    if isinstance(source, S.BuiltinSource):
        return _BUILTIN_CORPUS[source.name]
    if getattr(source, "content", None) == "pdf" or getattr(source, "format", None) == "pdf":
        return "pdf"
    if getattr(source, "format", None) == "code":
        return "code"
    return "web"


def describe(source: S.Source) -> str:
    if isinstance(source, S.BuiltinSource):
        return f"builtin {source.name}" + (f" (max_docs {source.max_docs})" if source.max_docs else "")
    if isinstance(source, S.HFDatasetSource):
        return f"hf_dataset {source.repo}" + (f" [{source.subset}]" if source.subset else "")
    return f"{source.kind} {source.path}"


def source_docs(source: S.Source, executor: S.ExecutorSpec, runs: BuiltinRuns,
                root: Path = Path(".")) -> Q:
    """Documents the source yields, from what the spec and committed runs say (and, for a
    local folder of files, one document per file: counting them is cheap)."""
    if isinstance(source, S.BuiltinSource):
        cap = source.max_docs
        size = runs.corpus_size(source.name)
        if size is not None:
            n, where = size
            return Q.estimate(min(n, cap) if cap else n,
                             f"{source.name} has {n} documents on the Python that wrote {where}")
        read = runs.largest_read(source.name)
        if cap and read and read[0] >= cap:
            return Q.estimate(cap, f"max_docs; {read[1]} read {read[0]} from this corpus")
        if cap:
            return Q.at_most(cap, "max_docs (no committed run shows the corpus size)")
        return Q.unknown(f"{source.name}: no committed run has read it whole")
    limit = getattr(source, "limit", -1)
    folder = root / source.path if isinstance(source, S.FilesSource) else None
    if folder is not None and "://" not in source.path and folder.is_dir():
        n = sum(1 for p in folder.glob(source.glob) if p.is_file())
        cap = limit * executor.tasks if limit > 0 else n
        return Q.exact(min(n, cap), f"{n} files match {source.path}/{source.glob}")
    if limit > 0:
        per_task = not isinstance(source, S.HFDatasetSource)
        cap = limit * executor.tasks if per_task else limit
        how = f"limit {limit} x {executor.tasks} tasks" if per_task else f"limit {limit}"
        return Q.at_most(cap, how)
    return Q.unknown("the spec declares no document count for this source")


def _step_cost(costs: dict | None, corpus: str, kind: str) -> tuple[dict | None, str]:
    if costs is None:
        return None, "no measurement file: run `python -m bench.curation_steps`"
    corpora = costs.get("corpora", {})
    row = corpora.get(corpus, {}).get(kind)
    if row is not None:
        return row, ""
    for other in ("web", "pdf", "code"):  # e.g. url_filter is measured on web pages only
        row = corpora.get(other, {}).get(kind)
        if row is not None:
            return row, f"cost measured on the {other} corpus"
    return None, "not measured by bench/curation_steps.py"


def _funnel_docs(metrics: dict | None, label: str) -> Q | None:
    step = (metrics or {}).get("steps", {}).get(label)
    return None if step is None else Q.exact(step["docs_in"], "committed funnel")


def plan_dataset(name: str, ds: S.DatasetSpec, metrics: dict | None, metrics_file: str,
                 runs: BuiltinRuns, costs: dict | None, root: Path = Path(".")) -> DatasetCuration:
    """Curation plan of one dataset; `metrics` are this curate stage's committed metrics."""
    corpus = corpus_kind(ds.source)
    notes: list[str] = []
    if metrics is not None:
        docs_in = Q.exact(metrics["docs_in"], f"measured: {metrics_file}")
    else:
        docs_in = source_docs(ds.source, ds.executor, runs, root)
    tasks = ds.executor.tasks
    steps: list[StepCost] = []
    for i, step in enumerate(ds.steps, 1):
        label = f"{i:02d}_{step.kind}"
        docs = _funnel_docs(metrics, label)
        if docs is None:  # every document charged at every step: an upper bound after filters
            docs = docs_in if i == 1 else Q(0.0, docs_in.high, docs_in.approx, "at most docs_in")
        row, note = _step_cost(costs, corpus, step.kind)
        if isinstance(step, S.PdfExtractStep) and step.ocr_backend != "none":
            ocr = (costs or {}).get("ocr", {})
            note = (note + "; " if note else "") + f"OCR not included ({ocr.get('reason', 'not measured')})"
        if row is None:
            steps.append(StepCost(label, step.kind, docs, None, Q.unknown(note), None, note))
            continue
        spd = float(row["seconds_per_doc"])
        startup = Q.estimate(row.get("startup_s", 0.0) * tasks / 3600)  # once per datatrove task
        hours = docs.scale(spd / 3600, approx=True) + startup
        steps.append(StepCost(label, step.kind, docs, spd, hours.with_basis(note or "measured"),
                              spd * 1e6 / 3600, note))
    if not ds.steps:
        notes.append(f"{name}: no curation steps (read as curated), nothing to run")
    elif not docs_in.known:
        notes.append(f"{name}: document count {'unknown' if docs_in.high == float('inf') else 'bounded'}"
                     f" ({docs_in.basis}); per-million-document costs are given per step, and "
                     f"each step's start-up is charged once per task ({tasks} tasks)")
    raw, extracted, kept = _bytes(ds, metrics, docs_in, runs, costs, corpus)
    kept_docs = (Q.exact(metrics["docs_out"], "committed funnel") if metrics is not None
                 else Q(0.0, docs_in.high, docs_in.approx, "at most docs_in"))
    return DatasetCuration(name, describe(ds.source), docs_in, kept_docs, steps,
                           total(s.cpu_hours for s in steps), raw, extracted, kept, notes)


def _bytes(ds: S.DatasetSpec, metrics: dict | None, docs_in: Q, runs: BuiltinRuns,
           costs: dict | None, corpus: str) -> tuple[Q, Q, Q]:
    """(raw, extracted, kept) bytes, counting one byte per character (UTF-8, mostly ASCII)."""
    kinds = [s.kind for s in ds.steps]
    extractor = next((f"{i:02d}_{k}" for i, k in enumerate(kinds, 1) if k in EXTRACTORS), None)
    if metrics is not None:
        where = "committed funnel (characters)"
        out = metrics["steps"][extractor]["chars_out"] if extractor else metrics["chars_in"]
        raw = metrics["chars_in"] or _bench_raw_per_doc(costs, corpus) * metrics["docs_in"]
        local = isinstance(ds.source, S.BuiltinSource)
        return (Q.estimate(raw, where) if local else Q.exact(0, "read where it lives, not stored"),
                Q.estimate(out, where), Q.estimate(metrics["chars_out"], where))
    if not isinstance(ds.source, S.BuiltinSource):
        unknown = Q.unknown("source size unknown")
        return Q.exact(0, "read where it lives, not stored"), unknown, unknown
    same = runs.runs.get(ds.source.name, [])
    if not same:
        unknown = Q.unknown("no committed run of this corpus")
        return unknown, unknown, unknown
    m = same[0].metrics
    n = max(m["docs_in"], 1)
    raw_per_doc = m["chars_in"] / n or _bench_raw_per_doc(costs, corpus)
    labels = list(m.get("steps", {}))
    first = next((lab for lab in labels if lab.split("_", 1)[1] in EXTRACTORS), None)
    text_per_doc = (m["steps"][first]["chars_out"] if first else m["chars_in"]) / n
    where = f"per-document size from {same[0].metrics_file}"
    text = docs_in.scale(text_per_doc, approx=True, basis=where)
    upper = Q(0.0, text.high, True, where + " (upper bound: filters only remove)")
    return docs_in.scale(raw_per_doc, approx=True, basis=where), text, upper


def _bench_raw_per_doc(costs: dict | None, corpus: str) -> float:
    """Mean input bytes per document of the benchmark's corpus (PDF files are bytes, not
    characters, so the funnel's chars_in is 0 for them)."""
    row = (costs or {}).get("corpora", {}).get(corpus, {}).get("pdf_extract")
    return row["input_mb"] * 1e6 / row["docs"] if row else 0.0
