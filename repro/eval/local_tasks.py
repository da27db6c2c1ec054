"""Local lm-eval tasks built from a dataset's held-out documents.

Three kinds, all plain data (a JSONL file plus a manifest) that `repro.eval.lm_eval_runner`
turns into lm-eval task YAMLs at evaluation time:

- `bpb`: whole held-out documents scored by rolling loglikelihood, like lm-eval's
  `wikitext` task (word/byte perplexity, bits per byte). Bits per byte does not depend on the
  tokenizer, so models with different vocabularies stay comparable.
- `cloze`: a few sentences of context and the true next sentence among distractors taken
  from *other* held-out documents (multiple choice, acc / acc_norm), in the spirit of the
  cloze formulation SmolLM3 and FineWeb use for early-signal tasks (FACTS 4.3, 4.5).
- `code_cloze`: the same question over code files: the preceding lines of a file and its
  true next non-trivial line among lines from *other* files. Lines are the units, the
  answer follows the context after a newline (lm-eval `target_delimiter: "\n"`), and the
  distractors take the answer's indentation, so layout alone does not give the answer away.

Every choice is seeded and made over documents sorted by id, so the same held-out split and
seed give byte-identical task data.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from repro.eval import task_loader
from repro.jsonio import dumps_json
from repro.jsonl import iter_lines, iter_rows
from repro.spec.schema import LocalTaskSpec

TASK_FORMAT_VERSION = 2
"""Version of the task data format and prompt; goes into the lm-eval task `version`, so a
change here must bump it (results of different versions are not comparable).
2: cloze and code_cloze distractors matched in length to the answer (issue 22)."""

DATA_FILE = "data.jsonl"
MANIFEST_FILE = "task.json"
LOADER_FILE = "task_loader.py"
"""repro/eval/task_loader.py, copied next to each task's YAML (its `custom_dataset`)."""

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

# code_cloze bounds (our choice: a line must carry content to be worth predicting, and the
# context should show the enclosing block, as a code model sees it).
MIN_CODE_LINE_CHARS = 8
"""Shorter lines (`pass`, `}`, `x = 1`) are neither asked nor used as distractors."""
MAX_CODE_LINE_CHARS = 200
"""Longer lines (data tables, minified code) are skipped as answers."""
MIN_CODE_CONTEXT_LINES = 2
"""A question needs at least this many non-blank lines before the answer."""
MAX_CODE_CONTEXT_LINES = 20
MAX_CODE_CONTEXT_CHARS = 1200
"""Context = up to MAX_CODE_CONTEXT_LINES non-blank lines (with the blank lines between
them) right before the answer, within this many characters."""
TRIVIAL_CODE_LINES = frozenset({
    "pass", "else:", "try:", "finally:", "return", "break", "continue", "else", "end",
    "fi", "done", "esac", "then", "do", "begin", "default:", "return;", "break;",
    "continue;", "} else {", "@end", "end if", "end do"})
"""Lines that say nothing about the file (block keywords); lone brackets and punctuation
are excluded by the letter test."""

LENGTH_NEIGHBOURS = 10
"""Cloze distractors on each side of the answer's length are drawn among this many usable
units nearest to it in byte length (our choice: enough that questions with answers of one
length do not all share distractors, few enough that in a pool of thousands of sentences
they lie within a few bytes of the answer)."""

MULTIPLE_CHOICE_KINDS = ("cloze", "code_cloze")
OUTPUT_TYPES = {"bpb": "loglikelihood_rolling", "cloze": "multiple_choice",
                "code_cloze": "multiple_choice"}
METRICS = {"bpb": ["word_perplexity", "byte_perplexity", "bits_per_byte"],
           "cloze": ["acc", "acc_norm"], "code_cloze": ["acc", "acc_norm"]}
TARGET_DELIMITERS = {"cloze": " ", "code_cloze": "\n"}
"""What lm-eval puts between the context and each choice: sentences follow a space, code
lines follow a line break (the context ends where the answer's line begins, minus that
line break, so context + delimiter + true choice is the file's text)."""

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
    for line in iter_lines(path):
        try:
            doc = Doc(str(line.value["id"]), line.value["text"])
        except (KeyError, TypeError) as e:
            raise line.error(f"not a held-out row {{\"id\", \"text\"}}: {e}") from e
        if doc.text.strip():
            docs[doc.id] = doc
    return [docs[k] for k in sorted(docs)]


def task_rng(seed: int, task: LocalTaskSpec) -> random.Random:
    """A generator private to this task: two tasks on the same dataset draw independently."""
    digest = hashlib.sha256(f"{seed}/{task.task_name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# --------------------------------------------------------------------------------- bpb


def build_bpb_rows(docs: Sequence[Doc], max_docs: int, rng: random.Random,
                   max_bytes: int | None = None) -> list[dict]:
    """Up to `max_docs` documents, chosen at random, kept in id order; with `max_bytes`,
    whole documents in draw order, passing over any that would overflow the budget."""
    if not docs:
        raise ValueError("the held-out split has no documents; raise heldout.fraction/max_docs")
    if max_bytes is None:
        chosen = rng.sample(range(len(docs)), min(max_docs, len(docs)))
    else:
        chosen, used = [], 0
        for i in rng.sample(range(len(docs)), len(docs)):
            size = len(docs[i].text.encode("utf-8"))
            if used + size <= max_bytes:
                chosen.append(i)
                used += size
                if len(chosen) == max_docs:
                    break
        if not chosen:
            smallest = min(len(d.text.encode("utf-8")) for d in docs)
            raise ValueError(f"no held-out document fits max_bytes={max_bytes:,} (the smallest "
                             f"has {smallest:,} bytes); raise max_bytes")
    return [{"id": docs[i].id, "text": docs[i].text} for i in sorted(chosen)]


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
    distractor sentences drawn from other documents; the answer's position is random."""
    return _multiple_choice_rows(docs, [split_units(d.text) for d in docs], _answerable,
                                 _context, _same_text, max_questions, num_choices, rng,
                                 unit_name="sentence", bounds=(
                                     f"{MIN_UNIT_CHARS}-{MAX_UNIT_CHARS} characters after "
                                     "some context"))


def build_code_cloze_rows(docs: Sequence[Doc], max_questions: int, num_choices: int,
                          rng: random.Random) -> list[dict]:
    """Next-line questions over code files: the preceding lines, the true next non-trivial
    line and `num_choices - 1` lines of other files, re-indented like the answer."""
    return _multiple_choice_rows(docs, [split_code_lines(d.text) for d in docs],
                                 _code_answerable, _code_context, _code_choice, max_questions,
                                 num_choices, rng, unit_name="line", bounds=(
                                     f"{MIN_CODE_LINE_CHARS}-{MAX_CODE_LINE_CHARS} characters, "
                                     f"not a block keyword, after {MIN_CODE_CONTEXT_LINES} "
                                     "lines of context"))


def _same_text(doc: Doc, truth: Unit, text: str) -> str:
    return text


def _multiple_choice_rows(docs: Sequence[Doc], doc_units: list[list[Unit]],
                          answerable: Callable[[Unit], bool],
                          context_of: Callable[[Doc, list[Unit], int], str | None],
                          render: Callable[[Doc, Unit, str], str],
                          max_questions: int, num_choices: int, rng: random.Random, *,
                          unit_name: str, bounds: str) -> list[dict]:
    """The cloze machinery shared by sentences and code lines.

    Questions are spread over documents round-robin (documents and their candidate
    positions in random order), so a few long documents cannot fill the task. Distractors
    are drawn (by unit text) from answerable units of other documents; `render` turns the
    answer unit or a distractor's text into the choice string.
    """
    if len(docs) < 2:
        raise ValueError(
            f"a cloze task needs at least 2 held-out documents (distractors come from other "
            f"documents), got {len(docs)}; raise the dataset's heldout.fraction/max_docs")
    # Distractor pool: every answerable unit, deduplicated by text, in length order (see
    # _draw_distractors). A unit that also occurs in the question's own document is never
    # used (it could be a second true answer).
    pool = sorted({u.text for units in doc_units for u in units if answerable(u)},
                  key=_length_key)
    keys = [_length_key(t) for t in pool]

    candidates: list[list[tuple[int, str]]] = []
    for d, units in enumerate(doc_units):
        cands = []
        for i, u in enumerate(units):
            if i and answerable(u):
                ctx = context_of(docs[d], units, i)
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
        raise ValueError(f"no held-out {unit_name} qualifies as a cloze answer ({bounds})")

    rows = []
    for d, i, ctx in sorted(picked, key=lambda p: (docs[p[0]].id, p[1])):
        unit = doc_units[d][i]
        own = {u.text for u in doc_units[d]}
        distractors = _draw_distractors(pool, keys, unit.text, own, num_choices - 1, rng)
        if distractors is None:
            raise ValueError(
                f"not enough distinct {unit_name}s in documents other than {docs[d].id!r} "
                f"for {num_choices - 1} distractors; lower num_choices or hold out more "
                "documents")
        label = rng.randrange(num_choices)
        choices = [render(docs[d], unit, t) for t in distractors]
        choices.insert(label, render(docs[d], unit, unit.text))
        rows.append({"id": f"{docs[d].id}#{i}", "context": ctx, "choices": choices,
                     "label": label})
    return rows


# -------------------------------------------------------------------------- code cloze


def split_code_lines(text: str) -> list[Unit]:
    """Non-blank lines of `text`: span from the line start (indentation included) to its
    last non-space character; `text` is the stripped line (what is compared and pooled)."""
    units: list[Unit] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip()
        if body.strip():
            units.append(Unit(pos, pos + len(body), body.strip()))
        pos += len(line)
    return units


def _code_answerable(unit: Unit) -> bool:
    return (MIN_CODE_LINE_CHARS <= len(unit.text) <= MAX_CODE_LINE_CHARS
            and unit.text not in TRIVIAL_CODE_LINES
            and _LETTER.search(unit.text) is not None)


def _code_context(doc: Doc, units: list[Unit], i: int) -> str | None:
    """The longest run of up to MAX_CODE_CONTEXT_LINES lines before line i that fits
    MAX_CODE_CONTEXT_CHARS, verbatim (blank lines kept) up to the line break that ends it:
    the delimiter `\n` supplies that one, so context + "\n" + answer is the file's text."""
    if i < MIN_CODE_CONTEXT_LINES:
        return None
    end = units[i].start
    for newline in ("\r\n", "\n"):
        if doc.text.endswith(newline, 0, end):
            end -= len(newline)
            break
    for k in range(min(MAX_CODE_CONTEXT_LINES, i), MIN_CODE_CONTEXT_LINES - 1, -1):
        start = units[i - k].start
        if end - start <= MAX_CODE_CONTEXT_CHARS:
            return doc.text[start:end]
    return None


def _code_choice(doc: Doc, truth: Unit, text: str) -> str:
    """A choice line with the answer's indentation (distractors are re-indented)."""
    line = doc.text[truth.start:truth.end]
    return line[: len(line) - len(line.lstrip())] + text


def _length_key(text: str) -> tuple[int, str]:
    return len(text.encode("utf-8")), text


def _draw_distractors(pool: list[str], keys: list[tuple[int, str]], truth: str, own: set[str],
                      k: int, rng: random.Random) -> list[str] | None:
    """k distinct units from other documents, none of which appears in this one, matched in
    length to the answer `truth`; None if the pool has fewer than k usable units.

    Why: a log-likelihood sums over tokens, so shorter choices score higher, and with
    distractors drawn regardless of length "pick the shortest choice" answers the question
    (issue 22: 37 of 100 labels were the shortest choice, every model scored exactly 0.37 by
    choosing it 88-90 times in 100, and acc_norm sat at chance). This is the length bias of
    log-likelihood scoring that lm-eval's acc_norm (per-character) and acc_bytes only
    partly correct (lm-eval docs, "multiple choice" metrics; Gao 2021, "Multiple Choice
    Normalization in LM Evaluation"). So the answer's length rank among the choices is drawn
    uniformly (`shorter` distractors are shorter than it, the rest longer), and each side's
    distractors are drawn among the LENGTH_NEIGHBOURS usable units nearest to the answer in
    byte length (`pool` sorted by `keys` = (bytes, text)): the shortest choice is the answer
    in 1/num_choices of the questions, as is the longest, whatever the model.
    An answer among the shortest (longest) units of the pool takes what its short (long)
    side lacks from the other side; that is the only departure from a uniform rank."""
    p = bisect.bisect_left(keys, _length_key(truth))

    def side(indices: range) -> list[str]:
        found: list[str] = []
        for i in indices:
            if pool[i] != truth and pool[i] not in own:
                found.append(pool[i])
                if len(found) == max(LENGTH_NEIGHBOURS, k):
                    break
        return found

    below = side(range(p - 1, -1, -1))  # nearest first
    above = side(range(p, len(pool)))
    if len(below) + len(above) < k:
        return None
    shorter = rng.randrange(k + 1)
    shorter = min(max(shorter, k - len(above)), len(below))
    chosen = rng.sample(below, shorter) + rng.sample(above, k - shorter)
    rng.shuffle(chosen)
    return chosen


# ------------------------------------------------------------------------------ output


def random_baseline(task: LocalTaskSpec) -> dict[str, float]:
    """What chance scores. Cloze, code_cloze: 1/num_choices. Bpb: a model that spreads
    probability uniformly over the 256 byte values scores 8 bits per byte (byte perplexity
    256)."""
    if task.kind in MULTIPLE_CHOICE_KINDS:
        return {"acc": 1.0 / task.num_choices, "acc_norm": 1.0 / task.num_choices}
    return {"bits_per_byte": 8.0, "byte_perplexity": 256.0}


def jsonl_bytes(rows: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n"
                   for r in rows).encode("utf-8")


def build_task(task: LocalTaskSpec, docs: Sequence[Doc], seed: int) -> tuple[bytes, dict[str, Any]]:
    """The task's data file (bytes) and manifest."""
    rng = task_rng(seed, task)
    if task.kind == "bpb":
        rows = build_bpb_rows(docs, task.max_docs, rng, task.max_bytes)
    elif task.kind == "code_cloze":
        rows = build_code_cloze_rows(docs, task.max_docs, task.num_choices, rng)
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
    if task.kind == "bpb":
        manifest["text_bytes"] = sum(len(r["text"].encode("utf-8")) for r in rows)
    if task.kind in MULTIPLE_CHOICE_KINDS:
        manifest["num_choices"] = task.num_choices
        manifest["source_docs"] = len({r["id"].rsplit("#", 1)[0] for r in rows})
    return data, manifest


# ---------------------------------------------------------------------- lm-eval task YAML


def yaml_file(name: str) -> str:
    """The task YAML's file name in its folder: `<task name>.yaml`."""
    return f"{name}.yaml"


def task_config(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The lm-eval task config of a local task, but its `custom_dataset` (a YAML tag,
    added by task_yaml): what lm-eval scores and how."""
    kind = manifest["kind"]
    config: dict[str, Any] = {
        "task": manifest["name"],
        # passed to task_loader.load, which reads the file next to the YAML and checks it
        "dataset_kwargs": {"data_file": manifest.get("data_file", DATA_FILE),
                           "data_sha256": manifest["data_sha256"]},
        "test_split": "test",
        "output_type": manifest["output_type"],
        "metric_list": [],
        "metadata": {"version": manifest["version"]},
    }
    if kind == "bpb":
        # As lm-eval's wikitext task: the whole document is the target of a rolling
        # loglikelihood; word/byte counts come from the target text.
        config |= {"doc_to_text": "", "doc_to_target": "text"}
        config["metric_list"] = [{"metric": m} for m in METRICS["bpb"]]
    elif kind in MULTIPLE_CHOICE_KINDS:
        # Column names, not Jinja templates: the values reach lm-eval untouched. The
        # delimiter is a space between sentences and a line break before a code line.
        config |= {"doc_to_text": "context", "doc_to_choice": "choices",
                   "doc_to_target": "label", "target_delimiter": TARGET_DELIMITERS[kind]}
        config["metric_list"] = [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                 for m in METRICS[kind]]
    else:
        raise ValueError(f"unknown local task kind {kind!r}")
    return config


def task_yaml(manifest: Mapping[str, Any]) -> str:
    """The task's lm-eval YAML, as the evaltasks stage writes it next to its data. Every
    path in it is relative to its own folder (see repro/eval/task_loader.py), so the folder
    works from the repository root, a clone or a copy anywhere."""
    name = manifest["name"]
    header = (
        f"# lm-eval task {name}: written by the evaltasks stage (repro/eval/local_tasks.py);\n"
        "# do not edit (the evaluate stage refuses a task whose files differ from what it\n"
        f"# would write). Data: {manifest.get('data_file', DATA_FILE)} next to this file, read by "
        f"{LOADER_FILE}.\n"
        "# Scores as the project's evaluate stage does, from any working directory:\n"
        "#   lm_eval --model hf \\\n"
        "#     --model_args pretrained=<checkpoint>,dtype=float32,max_length=<L> \\\n"
        f"#     --include_path <this folder> --tasks {name} --batch_size <b> --device cpu\n"
        "# <L>: the checkpoint's training seq_len (trainer_state.json:seq_len), the window\n"
        "# the project scores in. Each evaluation records its exact command in results.json:\n"
        f"# tasks.{name}.lm_eval_command.\n")
    body = yaml.safe_dump(task_config(manifest), sort_keys=True, allow_unicode=True)
    return header + f"custom_dataset: !function {Path(LOADER_FILE).stem}.load\n" + body


def task_files(data: bytes, manifest: Mapping[str, Any]) -> dict[str, bytes]:
    """Every file of a task folder (evaltasks output): data, manifest, lm-eval YAML and the
    loader it names."""
    return {DATA_FILE: data,
            MANIFEST_FILE: dumps_json(manifest).encode("utf-8"),
            yaml_file(manifest["name"]): task_yaml(manifest).encode("utf-8"),
            LOADER_FILE: Path(task_loader.__file__).read_bytes()}


def read_manifest(task_dir: Path) -> dict[str, Any]:
    """A task folder's manifest, after checking that its data matches it."""
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


def check_task_files(task_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Fail unless the folder's lm-eval YAML and loader are the ones this code writes (one
    source of truth: the evaluate stage scores with the very files `lm_eval --include_path
    <folder>` reads, and a hand edit or an output of older code is refused)."""
    expected = {yaml_file(manifest["name"]): task_yaml(manifest).encode("utf-8"),
                LOADER_FILE: Path(task_loader.__file__).read_bytes()}
    for name, content in expected.items():
        f = Path(task_dir) / name
        if not f.is_file() or f.read_bytes() != content:
            raise ValueError(f"{f} is {'stale' if f.is_file() else 'missing'}: the task folder "
                             "was written by other code or edited; rebuild it with `dvc repro`")


def check_choices_fit(task_dir: Path, manifest: dict[str, Any], tokenizer: Any,
                      max_length: int | None) -> None:
    """Fail early, with the fix, when a multiple-choice answer is longer than the scoring
    window (lm-eval would only raise a bare AssertionError mid-run)."""
    if max_length is None or manifest.get("output_type") != "multiple_choice":
        return
    data = Path(task_dir) / manifest.get("data_file", DATA_FILE)
    delimiter = TARGET_DELIMITERS.get(manifest.get("kind", "cloze"), " ")
    longest = 0
    for row in iter_rows(data):
        for choice in row["choices"]:
            longest = max(longest, len(tokenizer(delimiter + choice)["input_ids"]))
    if longest > max_length:
        raise ValueError(
            f"task {manifest['name']}: an answer is {longest} tokens, longer than the "
            f"{max_length}-token evaluation window (the training seq_len); raise "
            "training.seq_len or use a tokenizer with a larger vocabulary"
        )
