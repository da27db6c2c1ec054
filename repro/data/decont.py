"""N-gram decontamination of training documents against evaluation tasks, with datatrove.

datatrove's n-gram decontamination (pipeline/decont/n_grams.py) does the work: an indexer
hashes the word n-grams of every task item (its gold answer, and with `find_overlap_ngrams`
the n-grams spanning the end of the prompt and the start of the answer, with
`find_query_ngrams` those inside the prompt), and a filter drops a training document as soon
as one of its n-grams is in the index, recording the n-gram and the task. Text is normalised
the datatrove way before tokenising into words (lower case, no punctuation, digits -> 0,
spaCy's blank English word tokenizer), so matches survive formatting differences.

What a task item is (the indexer takes `Document(text=<answer>, metadata={query, task})`):
  local `bpb` task     the whole held-out document is the answer, no prompt (it is scored
                       whole, so any of its n-grams in training data is contamination);
  local `cloze` task   the context is the prompt, the true next sentence the answer (the
                       distractors come from other held-out documents and are not indexed);
  standard lm-eval     `doc_to_text` is the prompt; the gold answer(s) by output type:
                       the correct choice(s) for multiple_choice, `doc_to_target` otherwise.
Standard tasks are loaded by name through lm-eval's TaskManager; offline, a task whose
dataset is not in the local Hugging Face cache fails with one error saying how to provide it.

When two tasks share an n-gram the removed document names the task whose index file sorts
last (datatrove keeps one task per hash); counts per task are therefore per first match.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from datatrove.data import Document
from datatrove.pipeline.decont.n_grams import (
    NGramsDecontConfig,
    NGramsDecontFilter,
    NGramsDecontIndexer,
)

from repro.data import spacy_without_torch  # noqa: F401  (before datatrove's word tokenizer imports spaCy: see the module)
from repro.eval.lm_eval_runner import TaskUnavailableError, load_tasks
from repro.eval.local_tasks import DATA_FILE, read_manifest
from repro.jsonl import iter_rows
from repro.spec.schema import DecontaminationSpec

INDEX_SUFFIX = ".index.hashes"
"""datatrove's index file name: `<task>.index.hashes`, one array of n-gram hashes per task."""


@dataclass(frozen=True)
class EvalItem:
    """One thing a model is scored on: a prompt (may be empty) and one gold answer."""

    task: str
    query: str
    answer: str


def datatrove_config(spec: DecontaminationSpec) -> NGramsDecontConfig:
    """datatrove's config from ours; normalisation and hashing keep datatrove's defaults."""
    return NGramsDecontConfig(n_grams=spec.n_grams, find_query_ngrams=spec.find_query_ngrams,
                              find_overlap_ngrams=spec.find_overlap_ngrams)


# ----------------------------------------------------------------------------- task items


def local_task_items(task_dir: Path) -> Iterator[EvalItem]:
    """Items of a local task built by the evaltasks stage (see repro.eval.local_tasks)."""
    manifest = read_manifest(task_dir)  # checks the data against its recorded sha256
    name, kind = manifest["name"], manifest["kind"]
    for row in iter_rows(Path(task_dir) / manifest.get("data_file", DATA_FILE)):
        if kind == "bpb":
            yield EvalItem(name, "", row["text"])
        elif kind in ("cloze", "code_cloze"):
            yield EvalItem(name, row["context"], row["choices"][row["label"]])
        else:
            raise ValueError(f"{task_dir}: unknown local task kind {kind!r}")


def _gold_answers(task: Any, doc: dict) -> list[str]:
    """The gold answer strings of one lm-eval document, by the task's output type."""
    target = task.doc_to_target(doc)
    if task.OUTPUT_TYPE == "multiple_choice":
        choices = task.doc_to_choice(doc)
        picks = target if isinstance(target, list) else [target]
        return [choices[p] if isinstance(p, int) else str(p) for p in picks]
    if isinstance(target, list):
        return [str(t) for t in target]
    return [str(target)]


def standard_task_items(names: list[str], task_manager: Any = None) -> Iterator[EvalItem]:
    """Items of standard lm-eval tasks (groups expand to their tasks), from the documents
    lm-eval scores (`eval_docs`: test split, else validation).

    Raises repro.eval.lm_eval_runner.TaskUnavailableError naming the task and how to provide
    its dataset when it cannot be loaded (offline and not in the HF datasets cache)."""
    if not names:
        return
    from lm_eval.api.group import Group
    from lm_eval.tasks import TaskManager

    tm = task_manager if task_manager is not None else TaskManager()
    for name in names:
        try:
            loaded = load_tasks(tm, [name], {name})
        except TaskUnavailableError as e:
            raise TaskUnavailableError(
                f"decontamination needs the documents of every evaluation task: {e}") from e
        leaves = [t for obj in loaded.objects
                  for t in (obj.get_all_tasks() if isinstance(obj, Group) else [obj])]
        for task in sorted(leaves, key=lambda t: t.task_name):
            for doc in task.eval_docs:
                query = task.doc_to_text(doc)
                query = query if isinstance(query, str) else ""
                for answer in _gold_answers(task, doc):
                    yield EvalItem(task.task_name, query, answer)


# ---------------------------------------------------------------------------- index


class DocumentNGramsIndexer(NGramsDecontIndexer):
    """datatrove's indexer restricted to its document-input path.

    NGramsDecontIndexer declares `_requires_dependencies = ["lighteval"]`, and its `run`
    imports lighteval unconditionally after reading the input documents, to resolve
    `lighteval_tasks` (None here). The document path itself (`compute_hashes` and the index
    files) uses only the word tokenizer and the hash function, so this subclass keeps those
    and drops lighteval: `run` reads documents only, and `__new__` skips PipelineStep's
    dependency check, which walks every class of the MRO, so overriding the attribute alone
    would not drop the requirement. Its own needs (spacy, xxhash) are checked when the word
    tokenizer and hash function are built in __init__.
    """

    max_items_per_ngram: int | None = None
    """See DecontaminationSpec.max_items_per_ngram (None: keep every n-gram)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> DocumentNGramsIndexer:
        return object.__new__(cls)

    def run(self, data: Iterable[Document] = None, rank: int = 0, world_size: int = 1) -> None:
        import numpy as np

        if world_size != 1:
            raise ValueError("decontamination index building requires a single worker")
        # per task: n-gram hash -> number of items holding it
        seen: dict[str, Counter[int]] = {}
        for doc in data or ():
            task = doc.metadata["task"]
            seen.setdefault(task, Counter()).update(
                set(self.compute_hashes(doc.text, doc.metadata.get("query"))))
            self.stat_update(f"items_{task}")
        limit = self.max_items_per_ngram
        hashes = {task: {h for h, n in counts.items() if limit is None or n <= limit}
                  for task, counts in seen.items()}
        self.ignored = {task: len(seen[task]) - len(h) for task, h in hashes.items()}
        self.counts = {task: len(h) for task, h in hashes.items()}
        for task, task_hashes in sorted(hashes.items()):
            # sorted: the index bytes are the same run to run (sets have no fixed order)
            array = np.array(sorted(task_hashes), dtype=self.config.hash_config.np_descr)
            with self.output_folder.open(f"{task.replace(' ', '_')}{INDEX_SUFFIX}", mode="wb") as f:
                f.write(array.tobytes())


def build_index(items: Iterable[EvalItem], spec: DecontaminationSpec, folder: Path,
                tasks: Iterable[str] = ()) -> dict[str, dict[str, int]]:
    """Write one index file per task into `folder`; returns {task: {items, ngrams}}.

    Tasks named in `tasks` but without items get an entry with zeros (so a task that
    contributes nothing shows up in the metrics instead of vanishing)."""
    indexer = DocumentNGramsIndexer(str(folder), config=datatrove_config(spec))
    indexer.max_items_per_ngram = spec.max_items_per_ngram
    items_per_task: Counter[str] = Counter()

    def documents() -> Iterator[Document]:
        for i, item in enumerate(items):
            items_per_task[item.task] += 1
            yield Document(text=item.answer, id=f"{item.task}/{i}",
                           metadata={"query": item.query, "task": item.task})

    indexer.run(documents())
    out = {t: {"items": 0, "ngrams": 0, "ngrams_ignored": 0} for t in tasks}
    for task, n in items_per_task.items():
        out[task] = {"items": n, "ngrams": indexer.counts.get(task, 0),
                     "ngrams_ignored": indexer.ignored.get(task, 0)}
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- filter


@dataclass(frozen=True)
class Match:
    """Why a training document was removed: the task and the (normalised) n-gram."""

    task: str
    ngram: str


def find_contaminated(docs: Iterable[dict], index_folder: Path,
                      spec: DecontaminationSpec) -> Iterator[tuple[dict, Match | None]]:
    """(document, match or None) for every `{"id", "text"}` document, in input order."""
    flt = NGramsDecontFilter(str(index_folder), config=datatrove_config(spec))
    for row in docs:
        doc = Document(text=row["text"], id=str(row["id"]))
        result = flt.filter(doc)
        kept = result if isinstance(result, bool) else result[0]
        yield row, (None if kept else Match(doc.metadata["contaminated_task"],
                                            doc.metadata["contaminated_ngram"]))
