"""Local lm-eval tasks built from a dataset's held-out documents.

Two kinds, both plain data (a JSONL file plus a manifest) that `repro.eval.lm_eval_runner`
turns into lm-eval task YAMLs at evaluation time:

- `bpb`: whole held-out documents scored by rolling loglikelihood, like lm-eval's
  `wikitext` task (word/byte perplexity, bits per byte). Bits per byte does not depend on the
  tokenizer, so models with different vocabularies stay comparable.
- `cloze`: a few sentences of context and the true next sentence among distractors taken
  from *other* held-out documents (multiple choice, acc / acc_norm), in the spirit of the
  cloze formulation SmolLM3 and FineWeb use for early-signal tasks (FACTS 4.3, 4.5).

Every choice is seeded and made over documents sorted by id, so the same held-out split and
seed give byte-identical task data.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from repro.spec.schema import LocalTaskSpec

TASK_FORMAT_VERSION = 1
"""Version of the task data format and prompt; goes into the lm-eval task `version`, so a
change here must bump it (results of different versions are not comparable)."""

DATA_FILE = "data.jsonl"
MANIFEST_FILE = "task.json"

# Cloze construction bounds. A "unit" is a sentence inside one line, so code datasets get
# one statement-ish line per unit and prose gets sentences.
MIN_UNIT_CHARS = 20
"""Shorter sentences (headings, fragments) are neither asked nor used as distractors."""
MAX_UNIT_CHARS = 250
"""Longer sentences are skipped as answers: they dominate the loglikelihood sums."""
MIN_UNIT_WORDS = 3
MAX_CONTEXT_UNITS = 3
"""Context = up to this many sentences right before the answer."""
MAX_CONTEXT_CHARS = 600
"""Bound on the context length (characters), so questions fit small models' windows."""

OUTPUT_TYPES = {"bpb": "loglikelihood_rolling", "cloze": "multiple_choice"}
METRICS = {"bpb": ["word_perplexity", "byte_perplexity", "bits_per_byte"],
           "cloze": ["acc", "acc_norm"]}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class Doc:
    id: str
    text: str


@dataclass(frozen=True)
class Unit:
    """A sentence of a document and where it sits in the document text."""

    start: int
    end: int
    text: str


def read_heldout(path: Path) -> list[Doc]:
    """Held-out documents (`{"id", "text"}` lines), sorted by id, empty ones dropped."""
    docs: dict[str, Doc] = {}
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                doc = Doc(str(row["id"]), row["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: not a held-out row {{\"id\", \"text\"}}: {e}")
            if doc.text.strip():
                docs[doc.id] = doc
    return [docs[k] for k in sorted(docs)]


def task_rng(seed: int, task: LocalTaskSpec) -> random.Random:
    """A generator private to this task: two tasks on the same dataset draw independently."""
    digest = hashlib.sha256(f"{seed}/{task.task_name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# --------------------------------------------------------------------------------- bpb


def build_bpb_rows(docs: Sequence[Doc], max_docs: int, rng: random.Random) -> list[dict]:
    """Up to `max_docs` documents, chosen at random, kept in id order."""
    if not docs:
        raise ValueError("the held-out split has no documents; raise heldout.fraction/max_docs")
    chosen = sorted(rng.sample(range(len(docs)), min(max_docs, len(docs))))
    return [{"id": docs[i].id, "text": docs[i].text} for i in chosen]


# ------------------------------------------------------------------------------- cloze


def split_units(text: str) -> list[Unit]:
    """Sentences of `text`, never crossing a line break, with their character spans."""
    units: list[Unit] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        start = 0
        body = line.rstrip("\r\n")
        pieces = _SENTENCE_END.split(body)
        for piece in pieces:
            i = body.index(piece, start)
            start = i + len(piece)
            stripped = piece.strip()
            if stripped:
                lead = len(piece) - len(piece.lstrip())
                units.append(Unit(pos + i + lead, pos + i + lead + len(stripped), stripped))
        pos += len(line)
    return units


def _answerable(unit: Unit) -> bool:
    return (MIN_UNIT_CHARS <= len(unit.text) <= MAX_UNIT_CHARS
            and len(unit.text.split()) >= MIN_UNIT_WORDS
            and _LETTER.search(unit.text) is not None)


def _context(doc: Doc, units: list[Unit], i: int) -> str | None:
    """The longest run of up to MAX_CONTEXT_UNITS sentences before unit i that fits
    MAX_CONTEXT_CHARS, as it appears in the document (line breaks kept)."""
    for k in range(min(MAX_CONTEXT_UNITS, i), 0, -1):
        start, end = units[i - k].start, units[i - 1].end
        if end - start <= MAX_CONTEXT_CHARS:
            return doc.text[start:end]
    return None


def build_cloze_rows(docs: Sequence[Doc], max_questions: int, num_choices: int,
                     rng: random.Random) -> list[dict]:
    """Next-sentence questions: context, the true next sentence and `num_choices - 1`
    distractor sentences drawn from other documents; the answer's position is random.

    Questions are spread over documents round-robin (documents and their candidate
    positions in random order), so a few long documents cannot fill the task.
    """
    if len(docs) < 2:
        raise ValueError(
            f"a cloze task needs at least 2 held-out documents (distractors come from other "
            f"documents), got {len(docs)}; raise the dataset's heldout.fraction/max_docs")
    doc_units = [split_units(d.text) for d in docs]
    # Distractor pool: every answerable sentence, deduplicated by text. A sentence that also
    # occurs in the question's own document is never used (it could be a second true answer).
    pool = sorted({u.text for units in doc_units for u in units if _answerable(u)})

    candidates: list[list[tuple[int, str]]] = []
    for d, units in enumerate(doc_units):
        cands = []
        for i, u in enumerate(units):
            if i and _answerable(u):
                ctx = _context(docs[d], units, i)
                if ctx is not None:
                    cands.append((i, ctx))
        rng.shuffle(cands)
        candidates.append(cands)

    order = list(range(len(docs)))
    rng.shuffle(order)
    picked: list[tuple[int, int, str]] = []
    depth = 0
    while len(picked) < max_questions and any(len(c) > depth for c in candidates):
        for d in order:
            if depth < len(candidates[d]) and len(picked) < max_questions:
                i, ctx = candidates[d][depth]
                picked.append((d, i, ctx))
        depth += 1
    if not picked:
        raise ValueError("no held-out sentence qualifies as a cloze answer "
                         f"({MIN_UNIT_CHARS}-{MAX_UNIT_CHARS} characters after some context)")

    rows = []
    for d, i, ctx in sorted(picked, key=lambda p: (docs[p[0]].id, p[1])):
        truth = doc_units[d][i].text
        own = {u.text for u in doc_units[d]}
        distractors = _draw_distractors(pool, own, num_choices - 1, rng)
        if distractors is None:
            raise ValueError(
                f"not enough distinct sentences in documents other than {docs[d].id!r} for "
                f"{num_choices - 1} distractors; lower num_choices or hold out more documents")
        label = rng.randrange(num_choices)
        choices = distractors[:label] + [truth] + distractors[label:]
        rows.append({"id": f"{docs[d].id}#{i}", "context": ctx, "choices": choices,
                     "label": label})
    return rows


def _draw_distractors(pool: list[str], own: set[str], k: int,
                      rng: random.Random) -> list[str] | None:
    """k distinct sentences from other documents, none of which appears in this one."""
    chosen: list[str] = []
    seen: set[str] = set()
    # Rejection sampling is cheap while most of the pool is usable; fall back to an
    # exhaustive shuffled scan so small pools still succeed (or fail) deterministically.
    for _ in range(20 * k):
        s = pool[rng.randrange(len(pool))]
        if s not in seen and s not in own:
            seen.add(s)
            chosen.append(s)
            if len(chosen) == k:
                return chosen
    rest = [s for s in pool if s not in seen and s not in own]
    rng.shuffle(rest)
    chosen += rest[: k - len(chosen)]
    return chosen if len(chosen) == k else None


# ------------------------------------------------------------------------------ output


def random_baseline(task: LocalTaskSpec) -> dict[str, float]:
    """What chance scores. Cloze: 1/num_choices. Bpb: a model that spreads probability
    uniformly over the 256 byte values scores 8 bits per byte (byte perplexity 256)."""
    if task.kind == "cloze":
        return {"acc": 1.0 / task.num_choices, "acc_norm": 1.0 / task.num_choices}
    return {"bits_per_byte": 8.0, "byte_perplexity": 256.0}


def jsonl_bytes(rows: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n"
                   for r in rows).encode("utf-8")


def build_task(task: LocalTaskSpec, docs: Sequence[Doc], seed: int) -> tuple[bytes, dict[str, Any]]:
    """The task's data file (bytes) and manifest."""
    rng = task_rng(seed, task)
    if task.kind == "bpb":
        rows = build_bpb_rows(docs, task.max_docs, rng)
    else:
        rows = build_cloze_rows(docs, task.max_docs, task.num_choices, rng)
    data = jsonl_bytes(rows)
    manifest: dict[str, Any] = {
        "name": task.task_name,
        "kind": task.kind,
        "dataset": task.dataset,
        "num_docs": len(rows),
        "heldout_docs": len(docs),
        "data_file": DATA_FILE,
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "output_type": OUTPUT_TYPES[task.kind],
        "metrics": METRICS[task.kind],
        "random_baseline": random_baseline(task),
        "seed": seed,
        "version": TASK_FORMAT_VERSION,
    }
    if task.kind == "cloze":
        manifest["num_choices"] = task.num_choices
        manifest["source_docs"] = len({r["id"].rsplit("#", 1)[0] for r in rows})
    return data, manifest


def read_manifest(task_dir: Path) -> dict[str, Any]:
    path = Path(task_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: {task_dir} is not an evaltasks output")
    data = Path(task_dir) / manifest.get("data_file", DATA_FILE)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    if digest != manifest["data_sha256"]:
        raise ValueError(f"{data} does not match its manifest (sha256 {digest} != "
                         f"{manifest['data_sha256']}); rebuild the task with `dvc repro`")
    return manifest


def check_choices_fit(task_dir: Path, manifest: dict[str, Any], tokenizer: Any,
                      max_length: int | None) -> None:
    """Fail early, with the fix, when a multiple-choice answer is longer than the scoring
    window (lm-eval would only raise a bare AssertionError mid-run)."""
    if max_length is None or manifest.get("output_type") != "multiple_choice":
        return
    data = Path(task_dir) / manifest.get("data_file", DATA_FILE)
    longest = 0
    for line in data.read_text(encoding="utf-8").splitlines():
        for choice in json.loads(line)["choices"]:
            longest = max(longest, len(tokenizer(" " + choice)["input_ids"]))
    if longest > max_length:
        raise ValueError(
            f"task {manifest['name']}: an answer is {longest} tokens, longer than the "
            f"{max_length}-token evaluation window (the training seq_len); raise "
            "training.seq_len or use a tokenizer with a larger vocabulary"
        )
