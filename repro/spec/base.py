"""Base of every spec model, the shared field types (repro.spec.schema, repro.spec.search)
and the limits every number a spec holds is checked against."""

from __future__ import annotations

import math
import sys
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from repro.errors import ReproError
from repro.spec import redact

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class FieldError(ReproError, ValueError):
    """A validator's error as data: the problem, the fix and, for a check that concerns
    one field of the model it validates (a cross-field check, a value deep in a mapping),
    `at`: that field's location relative to the model (`("hidden_size",)`,
    `("stages", 1, "schedule", "warmup_steps")`). repro.spec.load renders them as the
    issue's message, its `fix:` line and the line of that field. A ValueError, because
    pydantic turns only ValueError and AssertionError raised in validators into
    validation errors."""

    def __init__(self, problem: str, fix: str = "", *, at: tuple[str | int, ...] = ()):
        super().__init__(problem, fix=fix, field=_dotted(at))
        self.at = at


def _dotted(at: tuple[str | int, ...]) -> str:
    """`("stages", 1, "schedule")` -> `stages[1].schedule`."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at).lstrip(".")


# ------------------------------------------------------------------------------ limits
# Every integer a spec may hold has an upper bound, and so has every count the compiler
# expands a spec into (repro.spec.schema.ExperimentSpec, repro.spec.search). Why: a spec
# may come from someone else, and nothing downstream (compile, plan, sweep, the stages)
# should allocate or loop in proportion to a number nobody checked; with these limits any
# spec that validates compiles and plans in seconds and well under 1 GB, and every value
# fits the int64 (torch, numpy, JSON readers) or uint32 (seeds) it is handed to. They are
# generous for real use: SmolLM3-3B (11.2T tokens, 4.72M steps of 2.36M tokens, 64k
# context; FACTS 3) and the FineWeb ablations (specs/reference/) validate far inside them.

MAX_TOKENS = 10**15
"""Token counts and budgets: about 90x SmolLM3-3B's 11.2T training tokens."""
MAX_BATCH_TOKENS = 2**30
"""Tokens per optimizer step (~1.07B): SmolLM3 takes 2.36M, the largest published runs
tens of millions."""
MAX_STEPS = 10**9
"""Optimizer steps of a run, and step intervals (warmup, logging, checkpoints): about 200x
SmolLM3-3B's 4.72M steps."""
MAX_SEED = 2**32 - 1
"""Seeds: numpy's legacy seeding takes 0 <= seed < 2**32 (torch takes < 2**64)."""
MAX_LAYERS = 1024
"""Transformer blocks (the largest dense models have ~126)."""
MAX_WIDTH = 2**17
"""hidden_size (131,072; Llama-3.1-405B: 16,384; SmolLM3-3B: 2,048)."""
MAX_INTERMEDIATE = 2**20
"""MLP inner width (1,048,576; Llama-3.1-405B: 53,248; SmolLM3-3B: 11,008)."""
MAX_HEADS = 4096
"""Attention heads (Llama-3.1-405B: 128; SmolLM3-3B: 16)."""
MAX_SEQ_LEN = 2**24
"""Sequence lengths and positions (16.8M; the longest published contexts are ~10M;
SmolLM3-3B trains up to 64k)."""
MAX_VOCAB = 1_000_000
"""Vocabulary size (the largest common tokenizers have ~256k entries)."""
MAX_DOCS = 10**12
"""Document counts and limits (FineWeb holds ~22.5B documents)."""
MAX_TEXT = 10**9
"""Lengths and counts inside one document (characters, words, lines, pages, n-gram
sizes)."""
MAX_PARALLEL = 2**16
"""Processes, tasks, workers, shards, CPUs and GPUs (65,536)."""
MAX_BATCH = 2**20
"""Sequences or documents in one forward pass (micro-batches, probe batches, lm-eval
batches)."""
MAX_FEWSHOT = 1024
"""Few-shot examples per evaluation request."""
MAX_DATASETS = 256
"""Datasets of one experiment (each compiles into a handful of stages)."""
MAX_TRAINING_PHASES = 64
"""Curriculum phases (`training.stages`) of one training run (SmolLM3: 5)."""
MAX_REPLICAS = 64
"""Extra runs of one experiment (FineWeb: 2 runs per variant, DataDecide: 3 seeds)."""
MAX_TRAIN_STAGES = 1024
"""Train stages of one experiment: runs (main + replicas) x curriculum phases."""
MAX_SNAPSHOTS = 2_000
"""Snapshot evaluations of one experiment (evaluation.every_tokens), over all its runs:
each is a snapshot output of a train stage and a pair of outputs of its run's evaluate
stage (measured when each was a stage of its own: a million took 2 minutes and 4.9 GB to
compile; 10,000 took 9 s to compile and 37 s and 950 MB to plan). FineWeb's curves have ~30
points per run."""
MAX_SWEEP_POINTS = 1_000
"""Configurations of one sweep: grid points (the product of every parameter's value
count) or trials; each is a queued DVC experiment, checked against the stage configs when
the sweep is planned (`repro sweep --dry-run` took 68 s for 10,000 points)."""
MAX_LADDER_POINTS = 256
"""Runs of one scaling ladder: sizes x budgets + recipes x sizes; each is a whole
experiment in the graph (a 100x100 ladder took over 2.3 GB to compile)."""
MAX_EVAL_TASKS = 256
"""Names in one list of evaluation tasks, presets or local tasks: every evaluate stage's
settings repeat them, so with MAX_SNAPSHOTS evaluations the graph stays within
repro.compile.limits.MAX_GRAPH_SIZE (a group such as `mmlu` counts as one name)."""
MAX_BOOTSTRAP = 1_000_000
"""Bootstrap resamples (10,000 keep a 95% interval's ends stable to ~1%)."""
MAX_DPI = 2400
"""Resolution of pages rendered for OCR (scanners top out at 1200-2400 dpi; an A4 page at
2400 dpi is already ~560 megapixels)."""
MAX_MINHASH = 1024
"""MinHash buckets, and hashes per bucket (FineWeb: 14 x 8)."""
MAX_INT = 2**63 - 1
"""Any other integer (the int64 every reader of params.yaml and metrics takes)."""


def _shown(value: int) -> str:
    """An integer for a message: in full when short, else by its number of digits (a
    400-digit number written out helps nobody)."""
    digits = len(str(abs(value))) if value.bit_length() < 10_000 else int(
        value.bit_length() * math.log10(2)) + 1
    return f"{value:,}" if digits <= 24 else f"a {digits}-digit number"


@dataclass(frozen=True)
class UpTo:
    """An integer field's upper limit (a MAX_* constant above) and why it is there, used as
    `AfterValidator(UpTo(MAX_TOKENS, "..."))` (see `bounded`): the error names both."""

    limit: int
    why: str

    def __call__(self, value: int) -> int:
        if value > self.limit:
            raise FieldError(f"{_shown(value)} is above the limit of {self.limit:,} ({self.why})",
                             f"write at most {self.limit:,}")
        return value


def bounded(lo: int, limit: int, why: str) -> Any:
    """`int` from `lo` to `limit` (a MAX_* constant; `why` says why in the error)."""
    return Annotated[int, Field(ge=lo), AfterValidator(UpTo(limit, why))]


PositiveInt = bounded(1, MAX_INT, "the largest int64")
"""A positive integer that fits an int64 (fields with a tighter limit use `bounded` or a
type below)."""
Tokens = bounded(1, MAX_TOKENS, "1e15 tokens, ~90x SmolLM3-3B's 11.2T")
"""A token count or budget."""
_STEPS_WHY = "1e9 steps, ~200x SmolLM3-3B's 4.72M"
Steps = bounded(0, MAX_STEPS, _STEPS_WHY)
"""A number of optimizer steps (0 allowed: e.g. no warmup)."""
PositiveSteps = bounded(1, MAX_STEPS, _STEPS_WHY)
Seed = bounded(0, MAX_SEED, "seeds are 32-bit: numpy takes 0 <= seed < 2**32")
"""A random seed."""
_DOCS_WHY = "1e12 documents; FineWeb holds ~22.5B"
Docs = bounded(1, MAX_DOCS, _DOCS_WHY)
"""A positive number of documents."""
DocLimit = bounded(-1, MAX_DOCS, _DOCS_WHY)
"""At most this many documents; -1 for all."""
_TEXT_WHY = "1e9 characters, words or lines in one document"
TextCount = bounded(0, MAX_TEXT, _TEXT_WHY)
"""A length or count inside one document."""
PositiveTextCount = bounded(1, MAX_TEXT, _TEXT_WHY)
Parallel = bounded(1, MAX_PARALLEL, "2**16 processes, tasks, shards or CPUs")
"""A number of processes, tasks, workers, shards, CPUs or GPUs."""
Batch = bounded(1, MAX_BATCH, "2**20 sequences or documents in one pass")
"""Sequences or documents processed at once."""
SeqLen = bounded(1, MAX_SEQ_LEN, "2**24 positions; the longest published contexts are ~10M")
"""A sequence length or a number of positions."""
SpikeWindow = bounded(5, MAX_STEPS, _STEPS_WHY)
"""Steps of the loss-spike window (at least 5 for a z-score)."""
BatchTokens = bounded(1, MAX_BATCH_TOKENS, "2**30 tokens per step; SmolLM3-3B takes 2.36M")
Vocab = bounded(260, MAX_VOCAB, "the largest common tokenizers have ~256k entries")
"""A vocabulary size: 256 bytes and a few special tokens at least."""
_LAYERS_WHY = "the largest dense models have ~126 layers"
Layers = bounded(1, MAX_LAYERS, _LAYERS_WHY)
LayerInterval = bounded(0, MAX_LAYERS, _LAYERS_WHY)
"""Every n-th layer (0: none)."""
FewShot = bounded(0, MAX_FEWSHOT, "few-shot examples per request")
Dpi = bounded(1, MAX_DPI, "2400 dpi; an A4 page is then ~560 megapixels")
MinhashCount = bounded(1, MAX_MINHASH, "FineWeb uses 14 buckets of 8 hashes")
Bootstrap = bounded(0, MAX_BOOTSTRAP, "1e6 resamples; 10,000 keep interval ends stable to ~1%")
SweepPoints = bounded(1, MAX_SWEEP_POINTS, "each configuration is a queued DVC experiment")
Width = bounded(1, MAX_WIDTH, "2**17; Llama-3.1-405B is 16,384 wide")
Intermediate = bounded(1, MAX_INTERMEDIATE, "2**20; Llama-3.1-405B's MLP is 53,248 wide")
Heads = bounded(1, MAX_HEADS, "Llama-3.1-405B has 128 query heads")


# ------------------------------------------------------------- checks of raw values


def _members(tp: Any, meta: tuple = ()) -> list[tuple[Any, tuple]]:
    """The alternatives of a type, through Annotated and Optional/Union, each with the
    Annotated metadata found on the way."""
    while typing.get_origin(tp) is Annotated:
        meta = meta + tuple(getattr(tp, "__metadata__", ()))
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a, meta)]
    return [(tp, meta)]


def _admits(members: list[tuple[Any, tuple]], kind: type) -> bool:
    """Whether one of the alternatives takes a value of exactly `kind` (bool, int, float)."""
    for tp, _ in members:
        if tp is Any or tp is kind:
            return True
        if typing.get_origin(tp) is Literal and any(type(a) is kind for a in typing.get_args(tp)):
            return True
    return False


def _limited(members: list[tuple[Any, tuple]]) -> bool:
    """Whether an integer alternative carries its own limit (`UpTo`), which then reports an
    out-of-range integer with its own message."""
    return any(tp is int and any(isinstance(getattr(m, "func", None), UpTo) for m in meta)
               for tp, meta in members)


def _check_raw(members: list[tuple[Any, tuple]], value: Any, where: str, at: tuple) -> None:
    """Refuse, in the raw input `value` of a field whose type has these `members`: `${` in
    any text (keys and items too), a YAML boolean where a number is expected, and an
    integer beyond int64 unless an integer limit (`UpTo`) applies. A value that becomes a
    spec model is left to its own fields' checks (which point at the exact line). `where`
    names the value in messages, `at` is its location in the model's input."""
    if isinstance(value, str):
        if "://" in value:  # any URL in any text: no credentials (repro.spec.safety)
            shown = redact.redact_text(value)  # hides userinfo and secret query values
            if shown != value:
                shown = shown if len(shown) <= 120 else shown[:120] + "..."
                raise FieldError(f"{where} {shown!r} holds a URL that carries credentials",
                                 redact.CREDENTIALS_FIX, at=at)
        if "${" in value:
            shown = value if len(value) <= 80 else value[:80] + "..."
            raise FieldError(
                f"{where} {shown!r} holds `${{`, which DVC would replace with a value of "
                "params.yaml when it runs the pipeline (a spec could rewrite a stage's "
                "command that way)",
                "remove the `${` (text in a spec is used as written: write the value itself)",
                at=at)
        return
    if isinstance(value, bool):
        if not _admits(members, bool) and (_admits(members, int) or _admits(members, float)):
            raise FieldError(f"{where} is {str(value).lower()} (YAML reads true/false, yes/no "
                             "and on/off as booleans), but it is a number",
                             "write a whole number" if _admits(members, int) else "write a number",
                             at=at)
        return
    if isinstance(value, int):
        if _admits(members, float) and not _admits(members, int):
            if abs(value) > sys.float_info.max:  # a float field: its own range
                raise FieldError(f"{where} is {_shown(value)}, beyond the range of a number "
                                 "setting", "write a number in its range (e.g. 2.0e-4 or 1.0e+9)",
                                 at=at)
        elif abs(value) > MAX_INT and not _limited(members):
            raise FieldError(f"{where} is {_shown(value)}, beyond the range of any setting",
                             f"write a number between {-MAX_INT:,} and {MAX_INT:,}", at=at)
        return
    if isinstance(value, dict):
        if any(isinstance(tp, type) and issubclass(tp, BaseModel) for tp, _ in members):
            return  # a spec model checks its own fields
        kv = [typing.get_args(tp) for tp, _ in members if typing.get_origin(tp) is dict]
        key_tp, value_tp = kv[0] if kv and len(kv[0]) == 2 else (Any, Any)
        for k, v in value.items():
            label = str(k) if len(str(k)) <= 80 else str(k)[:80] + "..."
            _check_raw(_members(key_tp), k, f"{where} key {label!r}", at + (k,))
            _check_raw(_members(value_tp), v, f"{where}.{label}" if label.isidentifier()
                       else f"{where}[{label!r}]", at + (k,))
        return
    if isinstance(value, (list, tuple)):
        seqs = [tp for tp, _ in members if typing.get_origin(tp) in (list, tuple)]
        args = typing.get_args(seqs[0]) if seqs else ()
        fixed = bool(seqs) and typing.get_origin(seqs[0]) is tuple and Ellipsis not in args
        for i, item in enumerate(value):
            item_tp = (args[i] if i < len(args) else Any) if fixed else (args[0] if args else Any)
            _check_raw(_members(item_tp), item, f"{where}[{i}]", at + (i,))


class Model(BaseModel):
    """Base of every spec model: closed, frozen, finite. A rejected value is left out of
    the text of a ValidationError (it could be a credential); located spec errors
    (repro.spec.load) say what is wrong without echoing it either."""

    # allow_inf_nan=False: `.inf`/`.nan` are valid YAML floats, but no setting means
    # anything at infinity (`lr: .inf` passed `gt=0`). The fields' docstrings are for readers
    # of the source: pydantic's use_attribute_docstrings re-reads and tokenizes every model's
    # source at import (0.23 s per process, and every DVC stage is a process; nothing of ours
    # reads a field's description).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True,
                              allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _raw_values(cls, data: Any) -> Any:
        """Checks every field of every spec model (and stage config) gets, in one place,
        before pydantic converts anything:
        - no `${` in any text (keys and list items too): DVC substitutes `${...}` in
          dvc.yaml commands and paths with params.yaml values, so a spec's text could
          rewrite another stage's command;
        - no YAML boolean for a number (`num_layers: true` would be 1): pydantic's lax mode
          reads a bool as 0/1;
        - no integer beyond int64 where no integer limit (`UpTo`) applies;
        - no URL carrying credentials in any text (repro.spec.safety.check_url): a field
          that takes a URL checks it too, this catches the others (a glob, a description).
        Each error carries the value's location (`at`), so repro.spec.load points at its
        line."""
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is not None:
                    _check_raw(_members(field.annotation, tuple(field.metadata)), value, name,
                               (name,))
        return data
