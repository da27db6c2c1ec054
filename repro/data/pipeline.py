"""Run a dataset's curation steps as datatrove passes on the executor the spec chose.

Steps run in the order the spec lists them, laid out as in datatrove's examples/fineweb.py:
per-document steps run in one pass per stretch of steps; a global step (`minhash`,
`exact_dedup`) ends the stretch, whose output is written to a scratch folder; the dedup
passes run over that folder (all tasks' documents together, so duplicates are found across
tasks), and the next stretch starts by reading the folder back through the dedup filter.
Every intermediate folder is canonically sharded (repro.data.shards), and a last pass
rewrites kept and removed documents as one file per shard, sorted by id: outputs depend on
the steps and `shards`, never on the executor or its task count. Scratch folders and
datatrove's logs live in `work`, outside the outputs (they hold timings and paths).

Outputs in `out` (the layout is repro.data.layout's):
  `data/<shard>.jsonl`                  kept documents, sorted by id, each with its size and
                                        quality signals in its metadata (repro.data.signals)
  `removed/<nn>_<kind>/<shard>.jsonl`   documents each filtering step removed
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from repro.data.executors import PassRunner
from repro.data.funnel import Funnel, StepCounts, Tally, removal_reasons, tally_counts
from repro.data.layout import KEPT_DIR, REMOVED_DIR, removed_dir
from repro.data.readers import reader_skips, source_reader
from repro.data.shards import CanonicalShardReader, Canonicalize, ShardedJsonlWriter
from repro.data.signals import QualitySignals
from repro.data.steps import (
    DEFAULT_REASON,
    FILTER_KINDS,
    GLOBAL_KINDS,
    DropMetadata,
    exact_dedup_config,
    minhash_config,
    per_document_step,
)
from repro.spec import schema as S

def step_label(index: int, step: S.CurationStep) -> str:
    """`<nn>_<kind>`, 1-based: names the step in metrics and under removed/."""
    return f"{index:02d}_{step.kind}"


@dataclass
class _Entry:
    label: str
    kind: str
    block: PipelineStep


class Curation:
    """One dataset's curation: `run()` fills `out` and returns the funnel."""

    def __init__(self, dataset: str, source: S.Source, steps: list[S.CurationStep],
                 executor: S.ExecutorSpec, raw: Path | None, out: Path, work: Path,
                 shards: int = 1):
        self.dataset = dataset
        self.source = source
        self.steps = steps
        self.tasks = executor.tasks
        self.shards = shards
        self.raw = raw
        self.out = Path(out)
        self.work = Path(work)
        self.executor = PassRunner(executor, self.work, dataset)
        self.funnel = Funnel(dataset)
        self._prev = (0, 0)  # (docs, chars) reaching the next step
        self._removed: list[str] = []  # labels of steps with an exclusion writer

    # ------------------------------------------------------------------ helpers

    def _removed_dir(self, label: str) -> Path:
        return self.work / REMOVED_DIR / label

    def _exclusion_writer(self, label: str, kind: str):
        if kind not in FILTER_KINDS:
            return None
        self._removed.append(label)
        return ShardedJsonlWriter(self._removed_dir(label), self.shards)

    def _run_stretch(self, head: list[PipelineStep], entries: list[_Entry], dest: Path,
                     first: bool, last: bool = False) -> None:
        """Run head -> (step, tally)* -> writer(dest) and record the steps' counts. The first
        stretch reads the source with the executor's tasks; later ones read canonical shards.
        The last one adds the kept documents' signals before writing them."""
        pipeline = list(head)
        if first:
            pipeline.append(Tally("input"))
        start = len(pipeline)
        for e in entries:
            pipeline += [e.block, Tally(e.label)]
        if last:  # word statistics for prose only (repro.data.signals)
            prose = not any(getattr(step, "kind", None) == "code_quality" for step in self.steps)
            pipeline.append(QualitySignals(self.work / "signals", words=prose))
        pipeline.append(ShardedJsonlWriter(dest, self.shards))
        stats: PipelineStats = self.executor.run(pipeline, self.tasks if first else self.shards)
        if first:
            self._prev = tally_counts(stats.stats[start - 1])
            self.funnel.docs_in, self.funnel.chars_in = self._prev
            self.funnel.read_skips = reader_skips(stats.stats[0])
        for j, e in enumerate(entries):
            block_stats, tally = stats.stats[start + 2 * j], stats.stats[start + 2 * j + 1]
            docs, chars = tally_counts(tally)
            removed = self._prev[0] - docs
            self.funnel.add(e.label, StepCounts(
                docs_in=self._prev[0], docs_out=docs, chars_out=chars,
                removed=removal_reasons(block_stats, removed, DEFAULT_REASON.get(e.kind, "filtered")),
            ))
            self._prev = (docs, chars)

    def _minhash_filter(self, step: S.MinhashStep, label: str, segment: Path) -> PipelineStep:
        """Signatures -> buckets -> clusters over `segment`; returns the filter block."""
        from datatrove.pipeline.dedup.minhash import (
            MinhashDedupBuckets,
            MinhashDedupCluster,
            MinhashDedupFilter,
            MinhashDedupSignature,
        )

        config = minhash_config(step)
        base = self.work / label
        self.executor.run([CanonicalShardReader(segment, self.shards),
                           MinhashDedupSignature(output_folder=str(base / "signatures"),
                                                 config=config)], self.shards)
        # datatrove's bucket stage runs one task per bucket (tasks must be a multiple)
        self.executor.run([MinhashDedupBuckets(input_folder=str(base / "signatures"),
                                               output_folder=str(base / "buckets"),
                                               config=config)], config.num_buckets)
        self.executor.run([MinhashDedupCluster(input_folder=str(base / "buckets"),
                                               output_folder=str(base / "remove"),
                                               config=config)], 1)
        return MinhashDedupFilter(input_folder=str(base / "remove"),
                                  exclusion_writer=self._exclusion_writer(label, step.kind))

    def _exact_dedup_filter(self, step: S.ExactDedupStep, label: str, segment: Path) -> PipelineStep:
        """Hashes of normalised text -> duplicates over `segment`; returns the filter block.
        datatrove keeps one document per hash, chosen by its merge order over the tasks'
        signature files: fixed for a given input and task count."""
        from datatrove.pipeline.dedup.exact_dedup import (
            ExactDedupFilter,
            ExactDedupSignature,
            ExactFindDedups,
        )

        config = exact_dedup_config(step)
        base = self.work / label
        self.executor.run([CanonicalShardReader(segment, self.shards),
                           ExactDedupSignature(output_folder=str(base / "signatures"),
                                               config=config, finder_workers=1)], self.shards)
        self.executor.run([ExactFindDedups(data_folder=str(base / "signatures"),
                                           output_folder=str(base / "dups"), config=config)], 1)
        return ExactDedupFilter(data_folder=str(base / "dups"), config=config,
                                exclusion_writer=self._exclusion_writer(label, step.kind))

    # --------------------------------------------------------------------- run

    def run(self) -> Funnel:
        head: list[PipelineStep] = [source_reader(self.source, self.raw), DropMetadata()]
        first = True
        entries: list[_Entry] = []
        for index, step in enumerate(self.steps, 1):
            label = step_label(index, step)
            if step.kind not in GLOBAL_KINDS:
                block = per_document_step(step, self._exclusion_writer(label, step.kind))
                entries.append(_Entry(label, step.kind, block))
                continue
            segment = self.work / f"segment_{index:02d}"
            self._run_stretch(head, entries, segment, first)
            first = False
            if isinstance(step, S.MinhashStep):
                block = self._minhash_filter(step, label, segment)
            else:
                block = self._exact_dedup_filter(step, label, segment)
            head = [CanonicalShardReader(segment, self.shards)]
            entries = [_Entry(label, step.kind, block)]
        kept = self.work / "kept"
        self._run_stretch(head, entries, kept, first, last=True)
        # data/ exists even when nothing was kept: readers tell "empty" from an older layout
        (self.out / KEPT_DIR).mkdir(parents=True, exist_ok=True)
        jobs = [(kept, self.out / KEPT_DIR)] + [
            (self._removed_dir(label), removed_dir(self.out, label)) for label in self._removed]
        self.executor.run([Canonicalize(jobs, self.shards)], self.shards)
        return self.funnel
