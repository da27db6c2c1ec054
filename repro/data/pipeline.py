"""Run a dataset's curation steps as datatrove pipelines on the local executor.

Steps run in the order the spec lists them, laid out as in datatrove's examples/fineweb.py:
per-document steps run in one pipeline per stretch of steps; a global step (`minhash`,
`exact_dedup`) ends the stretch, whose output is written to a scratch folder; the dedup
passes run over that folder (all tasks' documents together, so duplicates are found across
tasks), and the next stretch starts by reading the folder back through the dedup filter. Scratch folders and datatrove's
logs live in `work`, outside the outputs, so that nothing run-dependent reaches them.

Outputs in `out`:
  `<rank>.jsonl`              kept documents (JsonlWriter, uncompressed: gzip stores mtimes)
  `removed/<nn>_<kind>/<rank>.jsonl`  documents each filtering step removed
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from repro.data.funnel import Funnel, StepCounts, Tally, removal_reasons, tally_counts
from repro.data.readers import segment_reader, source_reader
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

REMOVED_DIR = "removed"
"""Subfolder of the docs output holding removed documents, one folder per step."""

OUTPUT_FILENAME = "${rank}.jsonl"


def step_label(index: int, step: S.CurationStep) -> str:
    """`<nn>_<kind>`, 1-based: names the step in metrics and under removed/."""
    return f"{index:02d}_{step.kind}"


def _jsonl_writer(folder: Path):
    from datatrove.pipeline.writers import JsonlWriter

    # compression=None: datatrove's default gzip writes a timestamp into every file
    return JsonlWriter(str(folder), output_filename=OUTPUT_FILENAME, compression=None)


@dataclass
class _Entry:
    label: str
    kind: str
    block: PipelineStep


class _Executor:
    """Runs pipelines with datatrove's LocalPipelineExecutor, logs under `work/logs`."""

    def __init__(self, spec: S.ExecutorSpec, work: Path):
        self.spec = spec
        self.work = work
        self.runs = 0

    def run(self, pipeline: list[PipelineStep], tasks: int) -> PipelineStats:
        from datatrove.executor import LocalPipelineExecutor

        self.runs += 1
        executor = LocalPipelineExecutor(
            pipeline,
            tasks=tasks,
            workers=min(self.spec.workers, tasks),
            logging_dir=str(self.work / "logs" / f"{self.runs:02d}"),
            skip_completed=False,  # every run starts from nothing: outputs must be complete
        )
        return executor.run()


class Curation:
    """One dataset's curation: `run()` fills `out` and returns the funnel."""

    def __init__(self, dataset: str, source: S.Source, steps: list[S.CurationStep],
                 executor: S.ExecutorSpec, raw: Path | None, out: Path, work: Path):
        self.dataset = dataset
        self.source = source
        self.steps = steps
        self.tasks = executor.tasks
        self.raw = raw
        self.out = Path(out)
        self.work = Path(work)
        self.executor = _Executor(executor, self.work)
        self.funnel = Funnel(dataset)
        self._prev = (0, 0)  # (docs, chars) reaching the next step

    # ------------------------------------------------------------------ helpers

    def _exclusion_writer(self, label: str, kind: str):
        if kind not in FILTER_KINDS:
            return None
        return _jsonl_writer(self.out / REMOVED_DIR / label)

    def _run_stretch(self, head: list[PipelineStep], entries: list[_Entry], dest: Path,
                     input_tally: bool) -> None:
        """Run head -> (step, tally)* -> writer(dest) and record the steps' counts."""
        pipeline = list(head)
        if input_tally:
            pipeline.append(Tally("input"))
        first = len(pipeline)
        for e in entries:
            pipeline += [e.block, Tally(e.label)]
        pipeline.append(_jsonl_writer(dest))
        stats = self.executor.run(pipeline, self.tasks)
        if input_tally:
            self._prev = tally_counts(stats.stats[first - 1])
            self.funnel.docs_in, self.funnel.chars_in = self._prev
        for j, e in enumerate(entries):
            block_stats, tally = stats.stats[first + 2 * j], stats.stats[first + 2 * j + 1]
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
        self.executor.run([segment_reader(segment),
                           MinhashDedupSignature(output_folder=str(base / "signatures"),
                                                 config=config)], self.tasks)
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

        config = exact_dedup_config()
        base = self.work / label
        self.executor.run([segment_reader(segment),
                           ExactDedupSignature(output_folder=str(base / "signatures"),
                                               config=config, finder_workers=1)], self.tasks)
        self.executor.run([ExactFindDedups(data_folder=str(base / "signatures"),
                                           output_folder=str(base / "dups"), config=config)], 1)
        return ExactDedupFilter(data_folder=str(base / "dups"), config=config,
                                exclusion_writer=self._exclusion_writer(label, step.kind))

    # --------------------------------------------------------------------- run

    def run(self) -> Funnel:
        head: list[PipelineStep] = [source_reader(self.source, self.raw), DropMetadata()]
        first_stretch = True
        entries: list[_Entry] = []
        for index, step in enumerate(self.steps, 1):
            label = step_label(index, step)
            if step.kind not in GLOBAL_KINDS:
                block = per_document_step(step, self._exclusion_writer(label, step.kind))
                entries.append(_Entry(label, step.kind, block))
                continue
            segment = self.work / f"segment_{index:02d}"
            self._run_stretch(head, entries, segment, input_tally=first_stretch)
            first_stretch = False
            if isinstance(step, S.MinhashStep):
                block = self._minhash_filter(step, label, segment)
            else:
                block = self._exact_dedup_filter(step, label, segment)
            head = [segment_reader(segment)]
            entries = [_Entry(label, step.kind, block)]
        self._run_stretch(head, entries, self.out, input_tally=first_stretch)
        return self.funnel
