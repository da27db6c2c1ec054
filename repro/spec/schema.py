"""Spec schema v1: the pydantic models an experiment YAML is validated against.

Every model is closed (`extra="forbid"`), frozen and documented, so a typo is an error and
a validated spec can be hashed and shared between stages. Stage configs in
`repro.compile.configs` are assembled from these same models, so a value read back from
`params.yaml` (possibly overridden with `dvc exp run -S`) is checked by the same rules.
Defaults follow the published recipes in shared FACTS.md; each cites its source. What a
spec may point at and run (local paths inside the workspace, URLs without credentials,
names instead of code) is checked with the rules of `repro.spec.safety`.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from repro.eval import registry
from repro.eval.presets import PRESETS, unknown_presets
from repro.spec import safety
from repro.spec.language_thresholds import LINGUA_THRESHOLDS
from repro.spec.search import LadderSpec, SweepSpec
from repro.spec.base import (  # noqa: F401 (Name, NAME_PATTERN, PositiveInt re-exported)
    MAX_BOOTSTRAP,
    MAX_DATASETS,
    MAX_EVAL_TASKS,
    MAX_LADDER_POINTS,
    MAX_REPLICAS,
    MAX_SNAPSHOTS,
    MAX_STEPS,
    MAX_TRAIN_STAGES,
    MAX_TRAINING_PHASES,
    NAME_PATTERN,
    Batch,
    BatchTokens,
    DocLimit,
    Docs,
    Dpi,
    FewShot,
    FieldError,
    Fraction,
    Heads,
    Intermediate,
    LayerInterval,
    Layers,
    MinhashCount,
    Model,
    Name,
    Parallel,
    PositiveInt,
    PositiveSteps,
    PositiveTextCount,
    Seed,
    SeqLen,
    SpikeWindow,
    Steps,
    TextCount,
    Tokens,
    Vocab,
    Width,
)

SCHEMA_VERSION = 1



def _not_empty(ref: str) -> str:
    # an empty path would name the whole workspace (or a hub model called "")
    if not ref.strip():
        raise FieldError("the path is empty", "name a local folder inside the workspace "
                         "(e.g. data/external/web), a remote URL (s3://, hf://...) or a hub id")
    return ref


Location = Annotated[str, AfterValidator(_not_empty), AfterValidator(safety.check_location)]
"""A local path (confined to the workspace) or a remote URL (without credentials); see
repro.spec.safety."""
def _glob_not_url(pattern: str) -> str:
    # a URL (or a query with a credential) in a glob would be written into params.yaml and
    # logged; the source's `path` is where a URL goes, and it is checked there
    shown = safety.redact_url(f"x://h/{pattern}")[len("x://h/"):]
    if "://" in pattern:
        raise FieldError(f"glob {safety.redact_text(pattern)!r} is a URL, but a glob is a "
                         "pattern relative to the source's `path`", "put the URL in `path` "
                         "(without credentials) and the pattern here (e.g. '*.jsonl')")
    if safety.secret_params(f"x://h/{pattern}"):
        raise FieldError(f"glob {shown!r} holds a credential in a `?key=value` part",
                         safety.CREDENTIALS_FIX)
    return pattern


Glob = Annotated[str, AfterValidator(safety.check_glob), AfterValidator(_glob_not_url)]
"""A glob relative to its source's path (no absolute pattern, no `..`, no URL)."""
ScriptValue = Annotated[str, AfterValidator(safety.check_no_control)]
"""A value written on one line of a generated job script."""
TaskName = Annotated[str, AfterValidator(safety.check_task_name),
                     AfterValidator(registry.check_registered_task)]
"""An lm-eval task, group or tag name (never a path) in lm-eval's registry, or a local task's
name (repro.eval.registry: checked offline, without importing lm-eval)."""


# --------------------------------------------------------------------------- sources


class BuiltinSource(Model):
    """A raw corpus the pipeline builds itself from what any Python installation has."""

    kind: Literal["builtin"] = "builtin"
    name: Literal["pydoc_web", "pydoc_pdf", "stdlib_code"]
    """`pydoc_web`: standard-library documentation rendered to HTML pages with pydoc and
    packed into a WARC file; `pydoc_pdf`: the same documentation typeset as PDF files (some
    pages rendered as images only, with no text layer, so OCR routing is exercised);
    `stdlib_code`: the standard library's own `.py` files."""
    max_docs: Docs | None = None
    """Keep at most this many documents (the first ones in sorted module order)."""


class FolderSource(Model):
    """The fields every source reading files under a folder or URL prefix shares (warc,
    jsonl, parquet, files): where the files are, which of them, how many documents. They
    are declared once here; a source adds its own fields and its default `glob`."""

    kind: str
    """The source kind: each source narrows it to its own literal (declared here so that it
    stays the first key of a source, in specs and in params.yaml)."""
    path: Location
    """Folder or URL prefix holding the files. A local path is resolved from the
    workspace and must stay inside it; a URL carries no credentials (repro.spec.safety)."""
    glob: Glob
    """Glob pattern selecting files under `path` (each source has its default)."""
    limit: DocLimit = -1
    """Read at most this many documents per task (-1: all)."""


class WarcSource(FolderSource):
    """WARC or WARC.gz files from a local folder or any fsspec URL (s3://, hf://...)."""

    kind: Literal["warc"] = "warc"
    glob: Glob = "*.warc*"
    """Glob pattern selecting files under `path`."""
    content: Literal["html", "pdf"] = "html"
    """Which response records to read, by MIME type: HTML pages (web chain) or PDF files
    (PDF chain, as FinePDFs selects PDFs from Common Crawl by MIME; FACTS 2.2)."""


class JsonlSource(FolderSource):
    """JSONL(.gz) documents from a local folder or any fsspec URL."""

    kind: Literal["jsonl"] = "jsonl"
    glob: Glob = "*.jsonl*"
    """Glob pattern selecting files under `path`."""
    text_key: str = "text"
    """Field holding the document text."""
    id_key: str = "id"
    """Field holding the document id."""


class ParquetSource(FolderSource):
    """Parquet documents from a local folder or any fsspec URL."""

    kind: Literal["parquet"] = "parquet"
    glob: Glob = "*.parquet"
    """Glob pattern selecting files under `path`."""
    text_key: str = "text"
    """Column holding the document text."""
    id_key: str = "id"
    """Column holding the document id."""


class HFDatasetSource(Model):
    """A dataset on the Hugging Face hub, read by name (streamed)."""

    kind: Literal["hf_dataset"] = "hf_dataset"
    repo: Location
    """Hub dataset id, e.g. `HuggingFaceFW/fineweb-edu`, or a local folder of jsonl/parquet
    files (inside the workspace). Dataset loading scripts are never run
    (`trust_remote_code=False`)."""
    subset: str | None = None
    """Dataset configuration name, if any."""
    split: str = "train"
    """Split to read."""
    text_key: str = "text"
    """Column holding the document text."""
    limit: DocLimit = -1
    """Read at most this many documents (-1: all)."""


class FilesSource(FolderSource):
    """A folder (local or any fsspec URL) of files, one document per file."""

    kind: Literal["files"] = "files"
    glob: Glob = "**/*"
    """Glob pattern selecting files under `path` (recursive by default)."""
    format: Literal["auto", "html", "pdf", "text", "code"] = "auto"
    """How to read each file: `auto` decides by extension (.html/.htm, .pdf, source-code
    extensions, anything else as text). Code files get their language from the extension."""


Source = Annotated[
    Union[BuiltinSource, WarcSource, JsonlSource, ParquetSource, HFDatasetSource, FilesSource],
    Field(discriminator="kind"),
]


# ----------------------------------------------------------------------- curation steps


class UrlFilterStep(Model):
    """datatrove URLFilter: bundled domain/URL blocklists and banned words (FineWeb step 1)."""

    kind: Literal["url_filter"] = "url_filter"
    soft_word_threshold: PositiveTextCount = 2
    """Drop a URL holding at least this many soft-banned words (FACTS 1.2: 2)."""


class TrafilaturaStep(Model):
    """datatrove Trafilatura HTML extraction (FACTS 1.3)."""

    kind: Literal["trafilatura"] = "trafilatura"
    favour_precision: bool = True
    """Prefer precision over recall (FineWeb: True)."""
    deduplicate: bool = True
    """Let trafilatura drop repeated segments (FineWeb: True)."""
    timeout_s: Annotated[float, Field(gt=0)] = 1.0
    """Per-document extraction timeout in seconds (FineWeb: 1 s)."""


class ResiliparseStep(Model):
    """HTML extraction with resiliparse, a faster alternative to trafilatura (datatrove
    0.10.1 has no resiliparse extractor; shared OFFLINE.md, PERF.md)."""

    kind: Literal["resiliparse"] = "resiliparse"
    main_content: bool = True
    """Keep only the main content (drop navigation, headers, footers)."""
    preserve_formatting: bool = True
    """Keep line breaks and paragraphs (the line-based quality filters need them)."""
    list_bullets: bool = True
    """Prefix list items with a bullet."""
    alt_texts: bool = False
    """Include image alt texts."""
    links: bool = False
    """Include link targets."""
    comments: bool = False
    """Include comment sections."""
    timeout_s: Annotated[float, Field(gt=0)] = 1.0
    """Per-document extraction timeout in seconds (as trafilatura's)."""


class PdfExtractStep(Model):
    """Text extraction from PDF bytes with pypdfium2, page by page, with an OCR routing
    decision per document in the FinePDFs style (FACTS 2.3): a document whose text layer is
    empty or garbled goes to OCR. FinePDFs routes with an XGBoost classifier on PyMuPDF
    features (ocr_prob >= 0.2) or any garbled text; that model is not available offline, so
    the routing here uses the features it is built on, with thresholds in the spec."""

    kind: Literal["pdf_extract"] = "pdf_extract"
    ocr_backend: Literal["none", "tesseract"] = "none"
    """Backend for documents routed to OCR. `none`: they are set aside under
    `removed/<step>` with reason `ocr_pending` (counted, never silently lost);
    `tesseract`: pytesseract on page images (needs the tesseract binary)."""
    min_chars_per_page: TextCount = 20
    """A page with fewer extracted characters counts as having no text layer."""
    max_textless_page_fraction: Fraction = 0.5
    """Route to OCR when more than this fraction of pages has no text layer."""
    max_garbled_ratio: Fraction = 0.0
    """Route to OCR when the fraction of garbled characters (U+FFFD, private-use and
    control characters) exceeds this (FinePDFs: any garbled text, i.e. > 0)."""
    max_pages: PositiveTextCount | None = None
    """Extract at most this many pages per document (None: all)."""
    ocr_dpi: Dpi = 200
    """Rendering resolution of pages sent to OCR."""


@functools.cache
def _lingua_codes() -> frozenset[str]:
    """ISO 639-1 codes of the languages lingua identifies (empty if lingua is missing)."""
    try:
        from lingua import Language
    except ImportError:  # pragma: no cover - lingua is a dependency
        return frozenset()
    return frozenset(lang.iso_code_639_1.name.lower() for lang in Language.all())


class LanguageStep(Model):
    """Offline language identification with lingua (datatrove's fastText filter downloads
    its model at run time, which fails offline; see shared OFFLINE.md)."""

    kind: Literal["language"] = "language"
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = Field(
        default_factory=lambda: ["en"], min_length=1
    )
    """ISO 639-1 codes to keep (FineWeb keeps English only; FACTS 1.4)."""
    candidates: Union[list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]], Literal["all"]] = "all"
    """Languages the detector chooses between: `all` of lingua's 75 (as fastText lid.176
    chooses among all its languages), or a list. lingua's confidences are relative to this
    set: with only SmolLM3's six, Danish text scores 1.0 as German and code 1.0 as English,
    and no threshold can reject them (bench/calibrate_language.py measures this)."""
    high_accuracy: bool = False
    """lingua's high-accuracy mode (1- to 5-gram models). Off: trigram models only, which
    lingua recommends for texts over ~120 characters; for all 75 languages it needs about
    90 MB per process instead of 1.3 GB (measured), which keeps curation workers small."""
    thresholds: dict[Annotated[str, Field(pattern=r"^[a-z]{2}$")], Fraction] = Field(
        default_factory=lambda: dict(LINGUA_THRESHOLDS)
    )
    """Per-language minimum confidence of the top language, in the FineWeb-2 style
    (FACTS 1.14). Defaults come from `repro.spec.language_thresholds`, calibrated for
    lingua (whose confidences are not fastText scores); a kept language missing here uses
    `default_threshold`."""
    default_threshold: Fraction = 0.65
    """Threshold for kept languages without an entry in `thresholds` (FineWeb's fastText
    threshold, FACTS 1.4)."""
    max_chars: PositiveTextCount = 2000
    """Identify the language from the first this-many characters (bounds the cost)."""

    @field_validator("languages", "candidates")
    @classmethod
    def _lingua_knows(cls, value: list[str] | str) -> list[str] | str:
        # the language filter looks each code up in lingua's enum by name: an unknown code
        # is refused here, not as an AttributeError in a curation worker
        known = _lingua_codes()
        unknown = sorted(set(value) - known) if isinstance(value, list) and known else []
        if unknown:
            raise FieldError(f"language code(s) {unknown} are not among the {len(known)} "
                             "languages lingua identifies", "use ISO 639-1 codes from "
                             f"{', '.join(sorted(known))}")
        return value

    @model_validator(mode="after")
    def _kept_are_candidates(self) -> LanguageStep:
        if self.candidates == "all":
            return self
        missing = sorted(set(self.languages) - set(self.candidates))
        if missing:
            raise FieldError(
                f"languages {missing} are not among candidates {self.candidates}",
                "add them to `candidates`"
            )
        return self


class GopherRepetitionStep(Model):
    """datatrove GopherRepetitionFilter with its defaults (FACTS 1.5)."""

    kind: Literal["gopher_repetition"] = "gopher_repetition"
    dup_line_frac: Fraction = 0.3
    """Maximum fraction of duplicated lines."""
    dup_para_frac: Fraction = 0.3
    """Maximum fraction of duplicated paragraphs."""
    dup_line_char_frac: Fraction = 0.2
    """Maximum fraction of characters in duplicated lines."""
    dup_para_char_frac: Fraction = 0.2
    """Maximum fraction of characters in duplicated paragraphs."""
    top_n_grams: list[tuple[PositiveTextCount, Fraction]] = [(2, 0.20), (3, 0.18), (4, 0.16)]
    """(n, max fraction of characters in the most frequent n-gram)."""
    dup_n_grams: list[tuple[PositiveTextCount, Fraction]] = [
        (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)
    ]
    """(n, max fraction of characters in duplicated n-grams)."""


class GopherQualityStep(Model):
    """datatrove GopherQualityFilter with its defaults (FACTS 1.6)."""

    kind: Literal["gopher_quality"] = "gopher_quality"
    min_doc_words: PositiveTextCount = 50
    """Minimum number of words."""
    max_doc_words: PositiveTextCount = 100_000
    """Maximum number of words."""
    min_avg_word_length: float = 3
    """Minimum mean word length."""
    max_avg_word_length: float = 10
    """Maximum mean word length."""
    max_symbol_word_ratio: Fraction = 0.1
    """Maximum '#' and ellipsis per word."""
    max_bullet_lines_ratio: Fraction = 0.9
    """Maximum fraction of lines starting with a bullet."""
    max_ellipsis_lines_ratio: Fraction = 0.3
    """Maximum fraction of lines ending with an ellipsis."""
    max_non_alpha_words_ratio: Fraction = 0.8
    """At least this fraction of words must contain a letter (datatrove's name)."""
    min_stop_words: TextCount = 2
    """Minimum count of {the, be, to, of, and, that, have, with}."""


class C4QualityStep(Model):
    """datatrove C4QualityFilter, a filter that also rewrites text (FACTS 1.7)."""

    kind: Literal["c4_quality"] = "c4_quality"
    filter_no_terminal_punct: bool = False
    """FineWeb disables the terminal-punctuation line filter (it removed ~7% of tokens)."""
    min_num_sentences: TextCount = 5
    """Drop documents with fewer sentences left."""
    min_words_per_line: TextCount = 3
    """Drop lines with fewer words."""
    max_word_length: PositiveTextCount = 1000
    """Drop lines holding a longer word."""
    filter_lorem_ipsum: bool = True
    """Drop documents containing 'lorem ipsum'."""
    filter_javascript: bool = True
    """Drop lines mentioning javascript."""
    filter_curly_bracket: bool = True
    """Drop documents containing '{'."""
    filter_policy: bool = True
    """Drop cookie/terms-of-use lines."""


class FineWebQualityStep(Model):
    """datatrove FineWebQualityFilter with the FineWeb thresholds (FACTS 1.8, 1.9)."""

    kind: Literal["fineweb_quality"] = "fineweb_quality"
    line_punct_thr: Fraction = 0.12
    """Minimum fraction of lines ending in terminal punctuation."""
    short_line_thr: Fraction = 0.67
    """Maximum fraction of short lines."""
    short_line_length: PositiveTextCount = 30
    """A line this short or shorter counts as short."""
    char_duplicates_ratio: Fraction = 0.01
    """Maximum fraction of characters in duplicated lines (code and paper Table 2: 0.01)."""
    new_line_ratio: Fraction = 0.3
    """Maximum newlines per word ("list ratio")."""


class CodeQualityStep(Model):
    """The-Stack-style code filters: line lengths, alphanumeric fraction, generated files."""

    kind: Literal["code_quality"] = "code_quality"
    max_line_length: PositiveTextCount = 1000
    """Drop files with a longer line (The Stack: 1000)."""
    max_avg_line_length: PositiveTextCount = 100
    """Drop files whose mean line length is above this (The Stack: 100)."""
    min_alnum_fraction: Fraction = 0.25
    """Drop files with a smaller fraction of alphanumeric characters (The Stack: 0.25)."""
    drop_autogenerated: bool = True
    """Drop files whose first lines carry an auto-generated marker."""


class ExactDedupStep(Model):
    """Drop documents whose normalised text hash was already seen."""

    kind: Literal["exact_dedup"] = "exact_dedup"
    content: Literal["text", "pdf_bytes"] = "text"
    """`text`: normalised text; `pdf_bytes`: the original PDF file's bytes (FinePDFs dedups
    PDFs on bytes; FACTS 2.3)."""


class MinhashStep(Model):
    """datatrove MinHash near-dedup with the FineWeb parameters (FACTS 1.10)."""

    kind: Literal["minhash"] = "minhash"
    n_grams: PositiveTextCount = 5
    """Word n-gram size (FineWeb: 5)."""
    num_buckets: MinhashCount = 14
    """LSH buckets (FineWeb: 14)."""
    hashes_per_bucket: MinhashCount = 8
    """Hashes per bucket (FineWeb: 8; 112 hashes in all)."""
    use_64bit_hashes: bool = True
    """64-bit hashes (FineWeb 2024 example)."""
    seed: Seed = 1
    """Hash seed (datatrove default)."""


class PIIStep(Model):
    """datatrove PIIFormatter: emails and public IPs replaced (FACTS 1.12)."""

    kind: Literal["pii"] = "pii"
    remove_emails: bool = True
    """Replace e-mail addresses."""
    remove_ips: bool = True
    """Replace IP addresses."""
    only_remove_public_ips: bool = True
    """Leave private IPs (FineWeb: True)."""


CurationStep = Annotated[
    Union[
        UrlFilterStep,
        TrafilaturaStep,
        ResiliparseStep,
        PdfExtractStep,
        LanguageStep,
        GopherRepetitionStep,
        GopherQualityStep,
        C4QualityStep,
        FineWebQualityStep,
        CodeQualityStep,
        ExactDedupStep,
        MinhashStep,
        PIIStep,
    ],
    Field(discriminator="kind"),
]


class SlurmSpec(Model):
    """Slurm settings, mapped onto datatrove's SlurmPipelineExecutor."""

    partition: ScriptValue
    """Partition (queue) jobs are submitted to."""
    time: ScriptValue = "24:00:00"
    """Wall-clock limit per job (HH:MM:SS)."""
    cpus_per_task: Parallel = 1
    """CPUs per datatrove task."""
    mem_per_cpu_gb: Annotated[float, Field(gt=0)] = 2.0
    """Memory per CPU in GB."""
    qos: ScriptValue | None = None
    """Quality of service, if the cluster uses one."""
    account: ScriptValue | None = None
    """Account charged, if the cluster needs one."""
    env_command: Annotated[str, AfterValidator(safety.check_env_command)] | None = None
    """Environment set-up run before each task: commands of a few known forms joined by
    ` && ` (`source .venv/bin/activate`, `conda activate ENV`, `module load MOD...`; see
    `repro.spec.safety.ENV_COMMAND_FORMS`), not free shell: a spec cannot run code."""
    sbatch_args: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")], ScriptValue] = {}
    """Extra `#SBATCH --key=value` options (keys are sbatch's long option names)."""


SBATCH_EXTRA_OPTIONS = frozenset({
    "comment", "exclude", "exclusive", "gres", "gres-flags", "hint", "licenses", "mail-type",
    "mail-user", "network", "nodelist", "reservation", "switches", "wckey",
})
"""The `#SBATCH --key=value` options a training or evaluation job's `sbatch_args` may add:
where and alongside what the job runs, whom to mail. Not allowed: what the launcher sets
itself (`nodes`, `ntasks-per-node`, `output`, `open-mode`, `requeue`, `signal`, `chdir`,
the fields above) and what would run or export something (`export`, `wrap`, `get-user-env`,
`dependency`), so the generated script stays the launcher's."""

_SBATCH_WORD = re.compile(r"[^\s'\"\\$`]+")
_SLURM_TIME = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")


def slurm_time_seconds(value: str) -> int:
    """Seconds in a Slurm time limit, in any of sbatch's forms (`MM`, `MM:SS`, `HH:MM:SS`,
    `D-HH`, `D-HH:MM`, `D-HH:MM:SS`; sbatch(1), `--time`); ValueError otherwise."""
    m = _SLURM_TIME.match(value)
    if m is None:
        raise ValueError(value)
    d, dh, dm, ds, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if d is not None:
        return ((d * 24 + dh) * 60 + (dm or 0)) * 60 + (ds or 0)
    if c is not None:  # HH:MM:SS
        return (a * 60 + b) * 60 + c
    return a * 60 + (b or 0)  # MM or MM:SS


class SlurmLaunchSpec(SlurmSpec):
    """Slurm settings of a training or evaluation job (repro.launch.slurm): one job of
    `nodes` nodes with one task per node, which runs torchrun for that node's processes
    (training) or the stage's worker (evaluation). The inherited `cpus_per_task` and
    `mem_per_cpu_gb` are per node task; `sbatch_args` keys come from SBATCH_EXTRA_OPTIONS."""

    nodes: Parallel = 1
    """Nodes of the job. Training spreads `distributed.nproc` processes evenly over them
    (nproc / nodes per node); evaluation runs on one."""
    gpus_per_node: Annotated[int, Field(ge=0, le=64)] = 0
    """GPUs requested per node (`--gpus-per-node`); 0 requests none (CPU partitions)."""
    constraint: ScriptValue | None = None
    """Node features the job needs (`--constraint`, e.g. `h100`)."""
    signal_grace_s: Annotated[int, Field(ge=10, le=3600)] = 120
    """Seconds before the time limit at which Slurm signals the job (`--signal=B:USR1@N`),
    which then requeues itself: a training stage saves the update in progress and resumes
    from it (repro.train.preemption)."""

    @field_validator("time")
    @classmethod
    def _time_form(cls, value: str) -> str:
        try:
            slurm_time_seconds(value)
        except ValueError:
            raise FieldError(f"time {value!r} is not a Slurm time limit",
                             "write it as HH:MM:SS (or D-HH:MM:SS, or minutes)") from None
        return value

    @field_validator("sbatch_args")
    @classmethod
    def _allowed_options(cls, args: dict[str, str]) -> dict[str, str]:
        for key in sorted(args):
            if key not in SBATCH_EXTRA_OPTIONS:
                raise FieldError(f"sbatch_args {key!r} is not an option a job may add",
                                 f"use the launcher's own fields for what it sets, or one of "
                                 f"{', '.join(sorted(SBATCH_EXTRA_OPTIONS))}",
                                 at=(key,))  # under the field this validator checks
        return args

    @model_validator(mode="after")
    def _one_word_values(self) -> SlurmLaunchSpec:
        # sbatch splits an `#SBATCH` line into words (and honours quotes): a value with a
        # space or a quote would add options of its own (`gpu --chdir=/elsewhere`); sbatch
        # does not expand `$(...)` there, but no Slurm name holds `$` or a backtick, and a
        # value copied into a shell command (srun by hand) would run it
        values = [((name,), getattr(self, name)) for name in ("partition", "account", "qos",
                                                              "constraint")]
        values += [(("sbatch_args", key), value) for key, value in sorted(self.sbatch_args.items())]
        for at, value in values:
            if value is not None and not _SBATCH_WORD.fullmatch(value):
                raise FieldError(f"{'.'.join(at)} {value!r} holds a space, a quote, a "
                                 "backslash, `$` or a backtick: sbatch would read more "
                                 "options from it, a shell would expand it",
                                 "write it as one word (Slurm names and lists have no spaces: "
                                 "`a,b`, `h100&ib`)", at=at)
        return self

    @model_validator(mode="after")
    def _grace_within_time(self) -> SlurmLaunchSpec:
        if slurm_time_seconds(self.time) <= self.signal_grace_s:
            raise FieldError(f"time {self.time} is not longer than signal_grace_s "
                             f"{self.signal_grace_s}: the job would be told to requeue "
                             "before it starts", "raise `time` or lower `signal_grace_s`",
                             at=("time",))
        return self


class LauncherSpec(Model):
    """Where a training or evaluation stage runs. Execution only (repro.stages.kind): the
    launcher changes no output, so changing it reruns nothing."""

    kind: Literal["local", "slurm"] = "local"
    """`local`: on this machine (torchrun or accelerate here, as `distributed` asks);
    `slurm`: one Slurm job, which `dvc repro` waits for (repro.launch.slurm)."""
    slurm: SlurmLaunchSpec | None = None
    """Slurm settings (required when kind is `slurm`; kept but unused with `local`, so
    `dvc exp run -S <stage>.launcher.kind=local` runs a Slurm stage here)."""

    @model_validator(mode="after")
    def _backend_settings(self) -> LauncherSpec:
        if self.kind == "slurm" and self.slurm is None:
            raise FieldError("launcher kind `slurm` needs a `slurm:` block",
                             "add `slurm:` with at least `partition`")
        return self


class RaySpec(Model):
    """Ray settings, mapped onto datatrove's RayPipelineExecutor."""

    address: Annotated[str, AfterValidator(safety.check_url)] | None = None
    """Cluster address (`ray://host:10001` or `auto`); None starts a local Ray instance.
    Carries no credentials."""
    cpus_per_task: Parallel = 1
    """CPUs reserved per datatrove task."""
    mem_per_cpu_gb: Annotated[float, Field(gt=0)] = 2.0
    """Memory per CPU in GB."""


class ExecutorSpec(Model):
    """How datatrove runs the curation pipeline. Execution only: outputs are identical
    whatever the executor, task and worker counts (they depend on the dataset's `shards`),
    so changing these never changes a stage's identity or its outputs."""

    kind: Literal["local", "slurm", "ray"] = "local"
    """`local`: processes on this machine; `slurm`: sbatch job arrays; `ray`: Ray tasks."""
    tasks: Parallel = 1
    """datatrove tasks for the per-document steps (input files are split among them)."""
    workers: Parallel = 1
    """Tasks run at once (local: worker processes; slurm: array parallelism; ray: in flight)."""
    slurm: SlurmSpec | None = None
    """Slurm settings (required when kind is `slurm`)."""
    ray: RaySpec = RaySpec()
    """Ray settings (used when kind is `ray`)."""

    @model_validator(mode="after")
    def _backend_settings(self) -> ExecutorSpec:
        if self.kind == "slurm" and self.slurm is None:
            raise FieldError("executor kind `slurm` needs a `slurm:` block",
                             "add `slurm:` with at least `partition`")
        return self


class HeldoutSpec(Model):
    """Documents set aside from training for evaluation tasks."""

    fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    """Fraction of curated documents held out (chosen by hash of the document id)."""
    max_docs: Docs = 200
    """Cap on held-out documents."""


LICENSE_PATTERN = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")
"""The form of a Hugging Face license identifier (`apache-2.0`, `cc-by-4.0`, `openrail++`)."""


def _license_id(value: str) -> str:
    if not LICENSE_PATTERN.fullmatch(value):
        raise FieldError(f"license {value!r} is not a Hugging Face license identifier",
                         "write a lowercase id such as `cc-by-4.0`, `odc-by` or `apache-2.0` "
                         "(https://huggingface.co/docs/hub/repositories-licenses), `other` for "
                         "a license without one, or `unknown`")
    return value


License = Annotated[str, AfterValidator(_license_id)]
"""A dataset's license, as a Hugging Face license identifier (checked for its form only: the
Hub's list grows, and `other`/`unknown` are always valid)."""


class DatasetSpec(Model):
    """One curated dataset: where it comes from and what curation keeps."""

    source: Source
    """Where raw documents come from."""
    license: License = "unknown"
    """License of the curated data, as a Hugging Face license identifier (`cc-by-4.0`,
    `odc-by`, `apache-2.0`...: https://huggingface.co/docs/hub/repositories-licenses),
    written into the dataset card. `unknown` by default: repro cannot tell the terms of an
    arbitrary source, and a card must not claim any; `other` for a license without an id."""
    steps: list[CurationStep] = []
    """Curation steps in order. Readers and writers are implied; MinHash runs after the
    per-document steps, as in FineWeb."""
    executor: ExecutorSpec = ExecutorSpec()
    """How the curation pipeline is run (does not change outputs)."""
    shards: Parallel = 4
    """Output files of the curated dataset, and the parallelism of the dedup passes.
    Documents are assigned to shards by a hash of their id and sorted by id inside each,
    which makes outputs independent of the executor and its task count."""
    heldout: HeldoutSpec = HeldoutSpec()
    """Documents kept out of training for evaluation."""
    max_epochs: Annotated[float, Field(gt=0)] = 4.0
    """Most times training may repeat this dataset's tokens, summed over all training
    stages; the token ledger refuses a mixture that needs more. Default 4: repeating data
    up to ~4 epochs costs little (Muennighoff et al. 2023, arXiv 2305.16264)."""

    @model_validator(mode="after")
    def _steps_are_unique(self) -> DatasetSpec:
        kinds = [s.kind for s in self.steps]
        dupes = sorted({k for k in kinds if kinds.count(k) > 1})
        if dupes:
            raise FieldError(f"curation step(s) {dupes} appear more than once", "keep one of each")
        if self.source.kind == "builtin" and self.source.name == "stdlib_code":
            if any(k in ("trafilatura", "url_filter") for k in kinds):
                raise FieldError("code sources carry no HTML or URLs", "remove trafilatura/url_filter")
        extractors = [k for k in kinds if k in ("trafilatura", "resiliparse", "pdf_extract")]
        if len(extractors) > 1:
            raise FieldError(f"steps {extractors} each extract text", "keep one extractor")
        if extractors:
            position = kinds.index(extractors[0])
            if position > 1 or (position == 1 and kinds[0] != "url_filter"):
                raise FieldError(f"`{extractors[0]}` is not the first step: the steps after it "
                                 "work on extracted text", f"move `{extractors[0]}` first (or "
                                 "right after `url_filter`)")
        src = self.source
        pdf_source = ((src.kind == "builtin" and src.name == "pydoc_pdf")
                      or (src.kind == "warc" and src.content == "pdf")
                      or (src.kind == "files" and src.format == "pdf"))
        if pdf_source and "pdf_extract" not in kinds:
            raise FieldError("this source yields PDF files", "add a `pdf_extract` step first")
        if "pdf_extract" in kinds and src.kind in ("jsonl", "parquet", "hf_dataset"):
            raise FieldError(f"`pdf_extract` needs PDF bytes, but a {src.kind} source yields text",
                             "remove the `pdf_extract` step")
        for step in self.steps:
            if getattr(step, "content", "text") == "pdf_bytes" and "pdf_extract" not in kinds:
                raise FieldError("exact_dedup `content: pdf_bytes` needs a `pdf_extract` step",
                                 "add a `pdf_extract` step first, or use `content: text`")
        return self


# -------------------------------------------------------------------------- tokenizer


class TrainBPETokenizer(Model):
    """Train a byte-level BPE tokenizer with HF `tokenizers` on curated data."""

    kind: Literal["train_bpe"] = "train_bpe"
    vocab_size: Vocab = 8192
    """Vocabulary size including special tokens."""
    special_tokens: list[str] = Field(default_factory=lambda: ["<|endoftext|>", "<|pad|>"],
                                      min_length=2)
    """Special tokens, given ids 0, 1, ... in this order. The first is end of text (used as
    BOS and EOS, as SmolLM3's tokenizer has no BOS; FACTS 2.7), the second is padding."""
    datasets: list[Name] = []
    """Datasets (their training split) to train on; empty means all datasets."""
    min_frequency: Tokens = 2
    """Minimum pair frequency for a merge."""
    max_docs_per_dataset: Docs | None = None
    """Cap on documents read per dataset (None: all)."""


class PretrainedTokenizer(Model):
    """Load an existing tokenizer by local path or hub name."""

    kind: Literal["pretrained"] = "pretrained"
    name_or_path: Location
    """Local folder (inside the workspace) or hub id, e.g. `HuggingFaceTB/SmolLM3-3B`. Code
    shipped with a hub tokenizer is never run (`trust_remote_code=False`)."""
    revision: Annotated[str, AfterValidator(safety.check_revision)] | None = None
    """Hub revision (commit) to pin."""


TokenizerSpec = Annotated[
    Union[TrainBPETokenizer, PretrainedTokenizer], Field(discriminator="kind")
]


# ------------------------------------------------------------------------------ model


class YarnSpec(Model):
    """YaRN context extension at inference (transformers `rope_type: yarn`)."""

    factor: Annotated[float, Field(gt=1.0)] = 2.0
    """Context multiplier (SmolLM3: 2, 64k -> 128k; FACTS 3.10)."""
    original_max_position_embeddings: SeqLen | None = None
    """Context the model was trained for; default: the last training phase's
    max_position_embeddings."""


class ModelSpec(Model):
    """SmolLM3-family decoder (transformers `SmolLM3Config`). Defaults: SmolLM3-3B."""

    hidden_size: Width = 2048
    """Model width (SmolLM3-3B: 2048; FACTS 3.1)."""
    num_layers: Layers = 36
    """Transformer blocks (SmolLM3-3B: 36)."""
    num_heads: Heads = 16
    """Attention heads (SmolLM3-3B: 16)."""
    num_kv_heads: Heads = 4
    """Key/value heads for GQA (SmolLM3-3B: 4)."""
    intermediate_size: Intermediate = 11008
    """SwiGLU inner width (SmolLM3-3B: 11008)."""
    nope_interval: LayerInterval = 4
    """Every n-th layer (1-based) skips RoPE (SmolLM3: 4, i.e. 0-based layers 3, 7, ...;
    FACTS 3.2). 0 disables NoPE."""
    tie_embeddings: bool = True
    """Share input embedding and LM head (SmolLM3: tied)."""
    rope_theta: Annotated[float, Field(gt=0)] = 50_000.0
    """RoPE base during 4k pretraining (SmolLM3: 50,000; FACTS 3.4)."""
    max_position_embeddings: SeqLen = 4096
    """Longest sequence the model is configured for."""
    rms_norm_eps: Annotated[float, Field(gt=0)] = 1e-6
    """RMSNorm epsilon (SmolLM3: 1e-6)."""
    init_std: Annotated[float, Field(gt=0)] = 0.02
    """Weight init standard deviation (SmolLM3: 0.02)."""
    inference_yarn: YarnSpec | None = None
    """YaRN RoPE scaling written into the exported config for inference only (training
    always uses plain RoPE). SmolLM3 extends 64k to 128k with YaRN x2 (FACTS 3.10)."""

    @model_validator(mode="after")
    def _shapes(self) -> ModelSpec:
        if self.hidden_size % self.num_heads:
            raise FieldError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}",
                "choose num_heads dividing hidden_size", at=("hidden_size",)
            )
        if self.num_heads % self.num_kv_heads:
            raise FieldError(
                f"num_kv_heads {self.num_kv_heads} does not divide num_heads {self.num_heads}",
                "GQA needs num_heads to be a multiple of num_kv_heads", at=("num_kv_heads",)
            )
        return self


# --------------------------------------------------------------------------- training


class AdamWParams(Model):
    """AdamW's hyperparameters; defaults from SmolLM3 (FACTS 3.8). Muon's AdamW part holds
    these alone: gradient clipping is over all parameters, so Muon's own `grad_clip` applies
    (a second one here would be a setting that does nothing)."""

    lr: Annotated[float, Field(gt=0)] = 2e-4
    """Peak learning rate (SmolLM3: 2e-4)."""
    betas: tuple[Fraction, Fraction] = (0.9, 0.95)
    """Adam betas (SmolLM3: 0.9, 0.95)."""
    eps: Annotated[float, Field(gt=0)] = 1e-8
    """Adam epsilon (SmolLM3: 1e-8)."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    """Decoupled weight decay (SmolLM3: 0.1)."""
    no_decay_patterns: list[str] = [r".*embed_tokens.*"]
    """Regexes of parameter names excluded from weight decay (SmolLM3/nanotron excludes
    only the token embedding, so norm gains are decayed; FACTS 3.8)."""
    @field_validator("no_decay_patterns")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as e:
                raise FieldError(f"no_decay_patterns entry {p!r} is not a valid regex: {e}",
                                 "write a Python regular expression (e.g. '.*embed_tokens.*')")
        return patterns


class AdamWSpec(AdamWParams):
    """torch.optim.AdamW on every parameter (SmolLM3, FACTS 3.8)."""

    kind: Literal["adamw"] = "adamw"
    grad_clip: Annotated[float, Field(gt=0)] | None = 1.0
    """Clip the global gradient norm to this value (SmolLM3: 1.0); None disables."""


class MuonSpec(Model):
    """torch.optim.Muon on the 2-D hidden matrices (attention q/k/v/o and MLP), AdamW on
    everything else: token embedding, LM head (tied or not), norm gains and biases (FACTS
    5.4). Both are scheduled by the same LR schedule, each from its own peak."""

    kind: Literal["muon"] = "muon"
    lr: Annotated[float, Field(gt=0)] = 0.02
    """Peak Muon LR (Keller Jordan's example: 0.02; FACTS 5.4). With
    `adjust_lr: match_rms_adamw` use an AdamW-sized LR instead (Moonlight; FACTS 5.3)."""
    momentum: Fraction = 0.95
    """Momentum (torch default 0.95; FACTS 5.1)."""
    nesterov: bool = True
    """Nesterov momentum (torch default; FACTS 5.1)."""
    ns_steps: Annotated[int, Field(ge=1, le=20)] = 5
    """Newton-Schulz iterations (torch default 5)."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    """Decoupled weight decay on the Muon matrices (Keller's example: 0.01; FACTS 5.4)."""
    adjust_lr: Literal["original", "match_rms_adamw"] = "original"
    """torch's adjust_lr_fn: `original` scales by sqrt(max(1, A/B)); `match_rms_adamw`
    by 0.2*sqrt(max(A, B)), so AdamW's LR and weight decay carry over (FACTS 5.3)."""
    ns_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Precision of the Newton-Schulz iteration. `bfloat16` is Keller Jordan's and torch's
    (FACTS 5.1): right on GPUs, whose tensor cores run it natively. A CPU without native
    bf16 emulates it, 24x slower than float32 for the quickstart's matrices (AMD EPYC, AVX2),
    and a CPU with AVX512-BF16 rounds it differently from one without, so the same run gives
    other weights on another CPU kind (issue 20). `auto`: bfloat16 on CUDA, float32
    elsewhere."""
    adamw: AdamWParams = AdamWParams(lr=3e-4, weight_decay=0.01)
    """AdamW for the non-matrix parameters (Keller's example: lr 3e-4, betas 0.9/0.95,
    wd 0.01; FACTS 5.4)."""
    grad_clip: Annotated[float, Field(gt=0)] | None = 1.0
    """Clip the global gradient norm (all parameters) to this value; None disables."""


OptimizerSpec = Annotated[Union[AdamWSpec, MuonSpec], Field(discriminator="kind")]


class QKClipSpec(Model):
    """QK-Clip (Kimi K2's MuonClip; FACTS 5.7): after each step, for each attention head
    whose largest pre-softmax logit q.k/sqrt(d) in the step's batch exceeded `tau`, shrink
    its query and key projections so the logit would have been `tau`. With GQA a key head is
    shared by several query heads; we scale only W_q of the offending head by tau/S_max (our
    choice: the source covers MHA/MLA only), which leaves the other heads untouched."""

    tau: Annotated[float, Field(gt=0)] = 100.0
    """Logit threshold (Kimi K2: 100)."""


class MTPSpec(Model):
    """Multi-token prediction: extra training signal from predicting tokens further ahead.
    The modules are training-only: the exported checkpoint is the plain model (loads with
    AutoModelForCausalLM) and the MTP weights are saved beside it in `mtp.safetensors`."""

    kind: Literal["sequential", "parallel"] = "sequential"
    """`sequential`: DeepSeek-V3 modules, module k combines the previous depth's hidden
    state with the embedding of token t+k and runs one transformer block, sharing the
    embedding and output head (FACTS 6.2). `parallel`: Gloeckle et al.'s independent heads,
    one transformer block each on the shared trunk (FACTS 6.1)."""
    depth: Annotated[int, Field(ge=1, le=8)] = 1
    """Extra tokens predicted (DeepSeek-V3: D = 1)."""
    loss_weight: Annotated[float, Field(ge=0)] = 0.3
    """lambda: total loss = CE + lambda/D * sum_k CE_k (DeepSeek-V3: 0.3 for the first 10T
    tokens; FACTS 6.2)."""
    later_loss_weight: Annotated[float, Field(ge=0)] | None = None
    """lambda after `later_from_tokens` (DeepSeek-V3: 0.1 for the last 4.8T tokens)."""
    later_from_tokens: Tokens | None = None
    """Tokens seen (all phases) from which `later_loss_weight` applies."""

    @model_validator(mode="after")
    def _later_pair(self) -> MTPSpec:
        if (self.later_loss_weight is None) != (self.later_from_tokens is None):
            raise FieldError("only one of later_loss_weight and later_from_tokens is set",
                             "set both later_loss_weight and later_from_tokens, or neither")
        return self

    def weight_at(self, tokens_seen: int) -> float:
        if self.later_from_tokens is not None and tokens_seen >= self.later_from_tokens:
            return float(self.later_loss_weight)
        return self.loss_weight


def _check_teacher(ref: str) -> str:
    """A teacher is another experiment, or a local folder / hub name (safety.check_location)."""
    if ref.startswith("experiment:"):
        if not re.fullmatch(NAME_PATTERN, ref[len("experiment:"):]):
            raise FieldError(f"teacher {safety.redact_text(ref)!r} does not name an experiment",
                             "write `experiment:<name>` with the name of an experiment "
                             "(lowercase letters, digits, `_` and `-`)")
        return ref
    return safety.check_location(_not_empty(ref))


class DistillationSpec(Model):
    """Knowledge distillation: loss = alpha * T^2 * KL(teacher || student) at temperature T
    + (1 - alpha) * CE (Hinton et al.; FACTS 7.1)."""

    teacher: Annotated[str, AfterValidator(_check_teacher)]
    """`experiment:<name>`: the final checkpoint of another experiment compiled in the same
    pipeline (a DVC dependency, trained first); a path starting with `/`, `./` or `../`: a
    local checkpoint folder (a DVC dependency), which must lie inside the workspace
    (repro.spec.safety); anything else: a hub model name. Its vocabulary must match the
    student's."""
    alpha: Fraction = 0.5
    """Weight of the distillation term."""
    temperature: Annotated[float, Field(gt=0)] = 1.0
    """Softmax temperature T for both teacher and student in the KL term."""
    logits: Literal["full", "top_k", "sampled"] = "full"
    """Teacher targets: the full distribution (teacher run alongside the student); `top_k`
    (renormalised k largest, biased; FACTS 7.7) or `sampled` (k tokens sampled from the
    teacher, Gemma 3 / random-sampling KD, unbiased; FACTS 7.3, 7.7), both computed once by
    their own `teacher-logits` stage and read from disk."""
    k: Annotated[int, Field(ge=1, le=4096)] = 256
    """Logits kept per token for `top_k` / `sampled` (Gemma 3: 256)."""
    trust_remote_code: bool = False
    """Let transformers run code shipped with a hub teacher (off unless set)."""


class StabilitySpec(Model):
    """What to do when training goes wrong. Decisions depend only on values the run
    computes deterministically, so a rerun makes the same ones."""

    on_nonfinite: Literal["skip", "rollback", "stop"] = "stop"
    """NaN/Inf loss or gradient norm: skip the batch (no update), roll back to the last
    in-run checkpoint and lower the LR, or stop with an error."""
    on_spike: Literal["none", "skip", "rollback", "stop"] = "none"
    """Loss spike (z-score above `spike_z` over the previous `spike_window` steps)."""
    spike_window: SpikeWindow = 50
    """Steps in the running window the z-score is computed over."""
    spike_z: Annotated[float, Field(gt=0)] = 6.0
    """z-score above which a step's loss is a spike."""
    rollback_lr_factor: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """LR multiplier applied after each rollback (cumulative)."""
    max_events: PositiveSteps = 10
    """Stop after this many skips/rollbacks in one phase: the run is not recovering."""


LiveSink = Literal["tensorboard", "wandb", "trackio"]
"""A destination for a train stage's live curves besides DVCLive (TrainingSettings.live_sinks)."""


class MonitorSpec(Model):
    """Feature-learning monitor on a fixed probe batch: per-layer update/weight RMS ratio,
    max attention logit per layer and effective rank of hidden states."""

    every_steps: PositiveSteps = 50
    """Record the monitor every this-many steps (and at the last step of each phase)."""
    probe_sequences: Batch = 4
    """Sequences in the probe batch (the first windows of the phase's first source)."""


class DistributedSpec(Model):
    """How many processes train, and how. Data parallel keeps the global batch: each of the
    `nproc` ranks takes every nproc-th sequence of the step."""

    kind: Literal["single", "ddp", "fsdp2"] = "single"
    """`ddp`: torch DistributedDataParallel; `fsdp2`: torch.distributed.fsdp.fully_shard
    (GPUs). Both launch `nproc` processes with torchrun."""
    nproc: Parallel = 1
    """Processes (one per GPU; on CPU, each gets an equal share of the cores)."""
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Collective backend; auto: nccl with CUDA, else gloo."""

    @model_validator(mode="after")
    def _nproc(self) -> DistributedSpec:
        if self.kind == "single" and self.nproc != 1:
            raise FieldError(f"distributed.kind single runs one process, nproc is {self.nproc}",
                             "set kind: ddp to use several")
        return self


class ScheduleSpec(Model):
    """Warmup-stable-decay learning-rate schedule spanning all training phases."""

    warmup_steps: Steps = 2000
    """Linear warmup steps (SmolLM3: 2000)."""
    decay_shape: Literal["linear", "1-sqrt", "cosine"] = "linear"
    """Shape of the final decay (SmolLM3: linear; Hägele et al. favour 1-sqrt; FACTS 8.2)."""
    decay_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    """Fraction of all training steps spent decaying, at the end (SmolLM3 ≈ 11%; MiniCPM
    ~10%; FACTS 3.9, 8.1). 1.0 with `cosine` gives a plain warmup-cosine schedule."""
    min_lr_ratio: Fraction = 0.0
    """LR at the end of decay, as a fraction of the peak (SmolLM3: 0)."""


class PhaseScheduleSpec(ScheduleSpec):
    """The schedule of a phase that restarts the LR schedule, as SmolLM3's long-context
    stages do (lr 2e-5, 1000 warmup steps, cosine to 0; FACTS 3.10). Its warmup and decay
    span this phase only."""

    lr: Annotated[float, Field(gt=0)]
    """Peak LR of this phase (for Muon: of the AdamW part; the Muon LR is scaled by the
    same ratio to the optimizer's LR)."""


class TrainingPhaseSpec(Model):
    """One curriculum phase (an entry of `training.stages` in a spec; SmolLM3 calls them
    stages): a token budget and a data mixture; optionally a longer context (sequence
    length, RoPE theta) and its own LR schedule. "Phase" in code, so that "stage" always
    means a DVC stage; each phase trains in a `train` stage of its own."""

    name: Name
    """Phase name, unique within the experiment."""
    tokens: Tokens
    """Token budget of this phase."""
    mixture: dict[Name, Annotated[float, Field(gt=0)]]
    """Dataset name -> sampling weight; weights must sum to 1."""
    seq_len: SeqLen | None = None
    """Sequence length from this phase on (SmolLM3 long context: 4k -> 32k -> 64k;
    FACTS 3.10); default: the previous phase's."""
    rope_theta: Annotated[float, Field(gt=0)] | None = None
    """RoPE base from this phase on (SmolLM3: 2e6 at 32k, 5e6 at 64k); default: the
    previous phase's."""
    max_position_embeddings: SeqLen | None = None
    """Model context from this phase on; default: the previous phase's."""
    reset_optimizer: bool = False
    """Start this phase with fresh optimizer state (SmolLM3's 64k stage; FACTS 3.10)."""
    schedule: PhaseScheduleSpec | None = None
    """Restart the LR schedule for this phase; default: the phase follows the experiment's
    schedule, which spans every phase that has none of its own."""

    @field_validator("mixture")
    @classmethod
    def _weights_sum_to_one(cls, mixture: dict[str, float]) -> dict[str, float]:
        if not mixture:
            raise FieldError("mixture is empty", "give at least one dataset with weight 1.0")
        total = sum(mixture.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise FieldError(
                f"mixture weights sum to {total:.6g}, not 1", "rescale them "
                f"(e.g. divide each by {total:.6g})"
            )
        return mixture


class TrainingSettings(Model):
    """The training settings every curriculum phase of an experiment runs with, defined once:
    `training:` in a spec holds them (TrainingSpec extends this model, so their YAML keys sit
    directly under `training:`), and each train stage's params.yaml section holds them as the
    same fields (repro.stages.configs.TrainConfig extends it too), with these defaults."""

    micro_batch_size: Batch = 1
    """Sequences per forward/backward pass; gradient accumulation makes up the rest."""
    log_every_steps: PositiveSteps = 10
    """Record the loss curve every this-many steps."""
    doc_masking: bool = True
    """Intra-document attention: within a packed sequence no token attends across an EOS
    boundary and positions restart at every document (SmolLM3: on; FACTS 3.3)."""
    z_loss: Annotated[float, Field(ge=0)] = 0.0
    """Weight of the z-loss (mean squared log-partition of the logits); 0 disables
    (SmolLM3: off; FACTS 3.8)."""
    qk_clip: QKClipSpec | None = None
    """QK-Clip after every step (Kimi K2); None disables."""
    mtp: MTPSpec | None = None
    """Multi-token prediction; None disables."""
    distillation: DistillationSpec | None = None
    """Knowledge distillation from a teacher; None trains on the data alone."""
    stability: StabilitySpec = StabilitySpec()
    """NaN/Inf and loss-spike handling."""
    monitor: MonitorSpec | None = MonitorSpec()
    """Feature-learning monitor; None disables."""
    live_sinks: list[LiveSink] = []
    """Where each train stage also streams its live curves while it trains, besides its
    DVCLive folder live/<stage>/ (always written; `dvc exp show` and `dvc plots show` read
    it, repro.train.live): `tensorboard` (event files in .repro/tensorboard/<stage>/; needs
    the tensorboard package), `wandb` (a Weights & Biases run named by the stage in project
    <experiment>; needs wandb and `wandb login`), `trackio` (a trackio run, same names;
    needs trackio). None by default: each is a package repro does not install and most
    want an account or a server. Changes no output (not part of the stage identity)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """`bf16`: autocast matmuls to bfloat16 with fp32 master weights and gradient
    accumulation (SmolLM3 trained in bf16; FACTS 3.1, 3.8); `fp32` everywhere."""
    compile: Union[Literal["auto"], bool] = "auto"
    """torch.compile the model with static shapes. `auto`: on with CUDA (+13-26% tokens/s on
    an H200, issue 17), off on CPU (it needs a C++ compiler there and pays off little)."""
    attention: Literal["auto", "sdpa", "flex", "flash"] = "auto"
    """Attention kernel. `sdpa`: torch's fused attention; with doc_masking it gets a dense
    block-diagonal mask, which rules out the flash kernel (costs 12-19% on a GPU). `flex`:
    torch FlexAttention with a block mask built from the EOS positions (torchtitan).
    `flash`: flash-attn's varlen kernel over the packed documents (nanotron's SmolLM3 path;
    needs the flash-attn package and CUDA). `auto`: on CUDA with doc_masking, flash where
    installed else flex; sdpa otherwise (repro.train.backends)."""
    cross_entropy: Literal["auto", "plain", "chunked", "liger"] = "auto"
    """LM-head + cross-entropy kernel. `plain`: full fp32 logits (batch x seq x vocab) then
    F.cross_entropy. `chunked`: a fused linear cross-entropy in torch that never holds more
    than a chunk of logits (torchtitan/modded-nanogpt style). `liger`: Liger's fused kernel
    (OLMo-core; CUDA and the liger-kernel package). `auto`: liger on CUDA where installed,
    else chunked; plain under distillation (its loss needs the full logits)."""
    deterministic: bool = True
    """Deterministic kernels on CUDA (cuBLAS workspace, deterministic algorithms; a kernel
    without a deterministic version is an error naming it). `false`: fastest kernels; the
    stage records that reruns may differ and `repro verify` compares within a tolerance.
    On CPU the kernels are deterministic either way."""
    distributed: DistributedSpec = DistributedSpec()
    """Single process, DDP or FSDP2."""
    checkpoint_every_steps: PositiveSteps | None = 100
    """Save resumable state this often inside a train stage, so a crash costs at most this many
    steps; resuming is bitwise exact. Changes no output (not part of the stage identity)."""
    launcher: LauncherSpec = LauncherSpec()
    """Where each train stage runs: here (`local`) or as a Slurm job of one or more nodes
    (`slurm`; `distributed.nproc` processes in all, nproc / nodes per node). Changes no
    output (not part of the stage identity)."""

    @field_validator("live_sinks")
    @classmethod
    def _sinks_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise FieldError(f"live_sinks {value} names a sink twice", "list each sink once")
        return value

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_setting(cls, value):
        # one message instead of pydantic's two (one per member of the union)
        if value == "auto" or isinstance(value, bool):
            return value
        raise FieldError(f"compile is {value!r}", "use auto (on with CUDA, off on CPU), true or false")


class TrainingSpec(TrainingSettings):
    """Sequence length, batch, optimizer, schedule and curriculum phases; the settings every
    phase runs with (precision, kernels, monitor, ...) are TrainingSettings' fields."""

    def _launcher_fits(self) -> None:
        """A Slurm job's nodes must split the processes evenly and hold them, and a job that
        Slurm requeues needs in-stage checkpoints to resume from (repro.launch.slurm)."""
        slurm = self.launcher.slurm
        if slurm is None:
            return
        nproc, nodes = self.distributed.nproc, slurm.nodes
        if nodes > 1 and self.distributed.kind == "single":
            raise FieldError(f"launcher.slurm.nodes is {nodes} but distributed.kind single runs "
                             "one process", f"set distributed.kind ddp (or fsdp2) with nproc "
                             f"{nodes} or a multiple of it, or nodes: 1",
                             at=("launcher", "slurm", "nodes"))
        if nproc % nodes:
            raise FieldError(f"launcher.slurm.nodes {nodes} does not divide distributed.nproc "
                             f"{nproc}, the processes over all nodes (each node runs the same "
                             "number, and each takes an equal share of the global batch)",
                             f"set nodes to a divisor of {nproc}, or nproc to a multiple of "
                             f"{nodes}", at=("launcher", "slurm", "nodes"))
        per_node = nproc // nodes
        if slurm.gpus_per_node and per_node > slurm.gpus_per_node:
            raise FieldError(f"distributed.nproc {nproc} over {nodes} node(s) is {per_node} "
                             f"processes per node, more than launcher.slurm.gpus_per_node "
                             f"{slurm.gpus_per_node} (one process per GPU)",
                             f"use at least {-(-nproc // slurm.gpus_per_node)} nodes, or lower nproc",
                             at=("launcher", "slurm", "gpus_per_node"))
        if self.checkpoint_every_steps is None:
            raise FieldError("a Slurm job that is preempted or reaches its time limit is "
                             "requeued and resumes from its last in-stage checkpoint, but "
                             "checkpoint_every_steps is null: it would start the stage over",
                             "set checkpoint_every_steps (e.g. 100)",
                             at=("checkpoint_every_steps",))


    seq_len: SeqLen = 4096
    """Tokens per training sequence (SmolLM3 pretraining: 4096)."""
    batch_tokens: BatchTokens = 2_359_296
    """Tokens per optimizer step (SmolLM3: 3 x 192 x 4096; FACTS 3.5)."""
    optimizer: OptimizerSpec = AdamWSpec()
    """Optimizer."""
    schedule: ScheduleSpec = ScheduleSpec()
    """Learning-rate schedule."""
    stages: list[TrainingPhaseSpec] = Field(min_length=1, max_length=MAX_TRAINING_PHASES)
    """Curriculum phases (the YAML key keeps SmolLM3's word, `stages`; each is a
    TrainingPhaseSpec), trained in order, each continuing from the previous one."""

    @model_validator(mode="after")
    def _batch_and_phases(self) -> TrainingSpec:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise FieldError(f"training stage names must be unique, got {names}", "give each "
                             "stage its own name")
        restarted = None
        for i, (s, seq_len) in enumerate(zip(self.stages, self.phase_seq_lens())):
            where = f"training.stages[{i}] ({s.name!r})"
            if self.batch_tokens % seq_len:
                raise FieldError(
                    f"batch_tokens {self.batch_tokens} is not a multiple of {where}'s seq_len "
                    f"{seq_len}", f"use {max(1, self.batch_tokens // seq_len) * seq_len}",
                    at=("batch_tokens",)
                )
            sequences = self.batch_tokens // seq_len
            nproc = self.distributed.nproc
            if sequences % nproc:
                raise FieldError(
                    f"distributed.nproc {nproc} does not divide the {sequences} "
                    f"sequences per step of {where}", f"pick a divisor of {sequences}"
                )
            per_rank = sequences // nproc
            if per_rank % self.micro_batch_size:
                raise FieldError(
                    f"micro_batch_size {self.micro_batch_size} does not divide the {per_rank} "
                    f"sequences per step{' and process' if nproc > 1 else ''} of {where}",
                    f"pick a divisor of {per_rank}", at=("micro_batch_size",)
                )
            if s.tokens < self.batch_tokens:
                raise FieldError(
                    f"stage {s.name!r} has {s.tokens} tokens, less than one step "
                    f"({self.batch_tokens} batch_tokens)", "raise its budget"
                )
            if s.schedule is not None:
                restarted = s.name
            elif restarted is not None:
                raise FieldError(
                    f"{where} follows stage {restarted!r}, which restarts the LR schedule, but "
                    "has no schedule of its own", "give it a `schedule` (the experiment's "
                    "schedule spans only the stages before the first restart)"
                )
        self._launcher_fits()
        if self.distributed.kind == "fsdp2" and self.optimizer.kind == "muon":
            raise FieldError(
                "distributed.kind fsdp2 shards every matrix across processes, but Muon's "
                "Newton-Schulz step needs whole matrices", "use kind: ddp with Muon, or AdamW with fsdp2"
            )
        if self.distillation is not None and self.mtp is not None:
            raise FieldError("training.distillation and training.mtp cannot be combined yet",
                             "use one of them per experiment")
        # kernel choices that cannot work on any machine (repro.train.backends refuses the
        # machine-dependent ones when the stage starts)
        if self.attention == "flash" and self.precision != "bf16":
            raise FieldError("attention flash computes in bf16/fp16 only and precision is fp32", "set precision: bf16, or attention: auto")
        if self.cross_entropy in ("chunked", "liger") and self.distillation is not None:
            raise FieldError(f"cross_entropy {self.cross_entropy} never holds the full logits, "
                             "which the distillation loss needs",
                             "set cross_entropy: auto or plain for a distillation run")
        return self

    @model_validator(mode="after")
    def _steps_and_schedules(self) -> TrainingSpec:
        """Bounded step count; each LR schedule fits the steps it spans (a phase trains
        tokens // batch_tokens optimizer steps, as repro.compile.graph.schedule_segments
        counts them, and decays over round(decay_fraction x its steps))."""
        steps = self.phase_steps()
        total = sum(steps)
        if total > MAX_STEPS:
            raise FieldError(
                f"stages: their tokens make {total:,} optimizer steps of {self.batch_tokens:,} "
                f"batch_tokens, above the limit of {MAX_STEPS:,} (~200x SmolLM3-3B's 4.72M)",
                "raise batch_tokens or lower the stages' tokens")
        first_restart = next((i for i, s in enumerate(self.stages) if s.schedule is not None),
                             len(self.stages))
        spans: list[tuple[tuple[str | int, ...], ScheduleSpec, int, list[int]]] = []
        if first_restart:
            spans.append((("schedule",), self.schedule, sum(steps[:first_restart]),
                          list(range(first_restart))))
        spans += [(("stages", i, "schedule"), s.schedule, steps[i], [i])
                  for i, s in enumerate(self.stages) if s.schedule is not None]
        for at, sched, n, idx in spans:
            field = "schedule" if len(at) == 1 else f"stages[{at[1]}].schedule"
            names = ", ".join(repr(self.stages[i].name) for i in idx)
            tokens = sum(self.stages[i].tokens for i in idx)
            what = (f"the {n:,} optimizer steps it spans (stage{'s' if len(idx) > 1 else ''} "
                    f"{names}: {tokens:,} tokens / batch_tokens {self.batch_tokens:,})")
            more = f"raise the tokens of stage{'s' if len(idx) > 1 else ''} {names}"
            warmup = sched.warmup_steps
            if warmup > n:
                raise FieldError(
                    f"{field}.warmup_steps {warmup:,} is longer than {what}: the LR would "
                    "never reach its peak",
                    f"lower {field}.warmup_steps to at most {n:,}, or {more}",
                    at=at + ("warmup_steps",))
            decay = round(sched.decay_fraction * n)
            if sched.decay_fraction < 1 and warmup + decay > n:
                raise FieldError(
                    f"{field}: warmup_steps {warmup:,} + decay {decay:,} steps (decay_fraction "
                    f"{sched.decay_fraction:g} of {n:,}) are longer than {what}: the warmup "
                    "would run into the decay",
                    f"lower {field}.warmup_steps to at most {n - decay:,} or decay_fraction to "
                    f"at most {(n - warmup) / n:.4g} (1.0 gives a warmup-then-decay schedule "
                    f"over all of it), or {more}", at=at)
        return self

    def phase_steps(self) -> list[int]:
        """Each phase's optimizer steps (its tokens // batch_tokens, as training runs them)."""
        return [s.tokens // self.batch_tokens for s in self.stages]

    def phase_seq_lens(self) -> list[int]:
        """Each phase's sequence length (a phase inherits the previous phase's)."""
        out, current = [], self.seq_len
        for s in self.stages:
            current = s.seq_len or current
            out.append(current)
        return out

    def phase_rope(self, model: ModelSpec) -> list[tuple[float, int]]:
        """Each phase's (rope_theta, max_position_embeddings), inherited like seq_len."""
        out, theta, max_pos = [], model.rope_theta, model.max_position_embeddings
        for s in self.stages:
            theta = s.rope_theta or theta
            max_pos = s.max_position_embeddings or max_pos
            out.append((theta, max_pos))
        return out

    @property
    def sequences_per_step(self) -> int:
        return self.batch_tokens // self.seq_len


# ------------------------------------------------------------------------- evaluation


class LocalTaskRef(Model):
    """Which local lm-eval task: its kind and dataset (its name follows). What an evaluate
    stage reads; the task's size and choices are the evaltasks stage's, whose output the
    evaluate stage gets as an input (a copy here would rerun it for nothing)."""

    kind: Literal["bpb", "cloze", "code_cloze"]
    """`bpb`: bits per byte by rolling loglikelihood; `cloze`: pick the true next sentence
    among distractors (multiple choice); `code_cloze`: pick the true next non-trivial line
    of a code file among lines of other files (multiple choice)."""
    dataset: Name
    """Dataset whose held-out split the task is built from."""

    @property
    def task_name(self) -> str:
        return f"repro_{self.kind}_{self.dataset}".replace("-", "_")

    def ref(self) -> LocalTaskRef:
        """This task as an evaluate stage names it."""
        return LocalTaskRef(kind=self.kind, dataset=self.dataset)


class LocalTaskSpec(LocalTaskRef):
    """An lm-eval task generated from a dataset's held-out documents."""

    max_docs: Docs = 100
    """Documents (bpb) or questions (cloze, code_cloze) in the task."""
    max_bytes: PositiveInt | None = None
    """bpb only: a budget of UTF-8 bytes for the task's text. Documents are drawn at random
    as for `max_docs` and kept whole; one that would overflow the budget is passed over
    (a smaller one drawn later may still fit). Scoring cost grows with the bytes, not the
    documents: one 75 KB stdlib module costs as much as 70 short pydoc pages. None: no
    budget."""
    num_choices: Annotated[int, Field(ge=2, le=10)] = 4
    """Choices per cloze / code_cloze question (ignored for bpb)."""

    @model_validator(mode="after")
    def _bytes_for_bpb(self) -> "LocalTaskSpec":
        if self.max_bytes is not None and self.kind != "bpb":
            raise FieldError(f"max_bytes is a budget for bpb tasks; this task is {self.kind}",
                             "remove max_bytes (use max_docs to size a multiple-choice task)",
                             at=("max_bytes",))
        return self


class DecontaminationSpec(Model):
    """N-gram decontamination of training data against the evaluation tasks' documents
    (datatrove's NGramsDecont: an n-gram of the gold answer, or spanning prompt and
    answer, found in a training document removes it)."""

    n_grams: PositiveTextCount = 12
    """N-gram length in words (datatrove default: 12)."""
    find_query_ngrams: bool = False
    """Also match n-grams lying wholly inside the prompt (datatrove default: False)."""
    find_overlap_ngrams: bool = True
    """Match n-grams spanning prompt and answer (datatrove default: True)."""
    max_items_per_ngram: Docs | None = None
    """Ignore an n-gram found in more than this many items of one task: it is the task's
    template or the corpus's boilerplate (pydoc's "Data descriptors defined here: ..."),
    not an item's content, and would remove every training document sharing it. None keeps
    every n-gram (datatrove's behaviour)."""


class EvaluationSettings(Model):
    """How one checkpoint is evaluated: the settings an evaluate stage reads, defined once.
    `evaluation:` in a spec holds them (EvaluationSpec extends this model with which
    checkpoints to evaluate and the decontamination of training data), and each evaluate
    stage's params.yaml section holds exactly these (repro.stages.configs.EvaluateConfig),
    so a setting no evaluation reads (`checkpoints`, `every_tokens`, `decontamination`)
    changes which stages exist or what they train on, never an evaluation's identity."""

    tasks: list[TaskName] = Field(default=[], max_length=MAX_EVAL_TASKS)
    """Standard lm-eval task names (need their datasets from the hub or a local cache).
    Names only, never paths: lm-eval would load a task YAML from a path, and a YAML's
    `!function` tags import Python code."""
    local_tasks: list[LocalTaskRef] = Field(default=[], max_length=MAX_EVAL_TASKS)
    """Tasks generated from held-out curated documents (an evaluate stage names them; the
    spec, EvaluationSpec, says how each is built)."""
    num_fewshot: FewShot = 0
    """Few-shot examples per request."""
    limit: Docs | None = None
    """Evaluate at most this many documents per task (None: all)."""
    batch_size: Union[Batch, Literal["auto"]] = 8
    """lm-eval batch size, or `auto` (lm-eval finds the largest that fits; GPUs)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Weights dtype lm-eval loads the checkpoint in. `auto`: bfloat16 on CUDA, float32 on
    CPU (CPU bf16 matmuls are slow and less exact)."""
    presets: list[str] = Field(default=[], max_length=MAX_EVAL_TASKS)
    """Named suites of standard lm-eval tasks (repro.eval.presets): `fineweb_early_signal`
    (FACTS 4.3, at most 1000 documents per task) and `smollm3_base` (FACTS 4.5, its 0-shot
    cloze part). Expanded before `tasks`; see `standard_tasks`."""
    cache_requests: bool = True
    """Keep each checkpoint's finished evaluation, and the model responses (lm-eval's sqlite
    cache, `use_cache`), under .repro/cache/lm_eval/<checkpoint sha256>/, so a rerun of a
    run's evaluate stage (a snapshot added) scores only the checkpoints not scored before,
    and a changed task list recomputes only the new tasks. The caches never change the
    outputs (repro.eval.result_cache)."""
    backend: Literal["hf", "accelerate", "vllm"] = "hf"
    """`hf`: one process (CUDA if available, else CPU); `accelerate`: lm-eval's hf model,
    data parallel over `num_processes` GPUs under `accelerate launch`; `vllm`: lm-eval's vllm
    model (needs CUDA and the vllm package)."""
    num_processes: Parallel = 1
    """Data-parallel processes (GPUs) of the `accelerate` backend."""
    tensor_parallel_size: Parallel = 1
    """GPUs one model is split over (`vllm` backend)."""
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    """Fraction of GPU memory vllm may take (`vllm` backend; vllm's default 0.9)."""
    on_task_error: Literal["fail", "record"] = "fail"
    """A standard task that cannot load: `fail` the stage, or `record` it under
    `failed_tasks` in the outputs and evaluate the others (the stage still fails if no task
    is left)."""
    launcher: LauncherSpec = LauncherSpec()
    """Where each evaluate stage runs: here (`local`) or as a one-node Slurm job (`slurm`).
    Changes no output (not part of the stage identity)."""

    @field_validator("presets")
    @classmethod
    def _known_presets(cls, value: list[str]) -> list[str]:
        unknown = unknown_presets(value)
        if unknown:
            raise FieldError(f"unknown evaluation preset(s) {unknown}", f"known: {sorted(PRESETS)}")
        return value

    @model_validator(mode="after")
    def _some_task(self) -> EvaluationSettings:
        if not self.tasks and not self.local_tasks and not self.presets:
            raise FieldError("no evaluation tasks", "add `tasks`, `presets` or `local_tasks`")
        names = [t.task_name for t in self.local_tasks]
        if len(set(names)) != len(names):
            raise FieldError(f"local tasks repeat: {names}", "keep one per kind and dataset")
        registry.check_local_tasks_declared(self.tasks, names)
        return self

    @model_validator(mode="after")
    def _backend_fields(self) -> EvaluationSettings:
        # A field of another backend would be silently ignored: say which backend uses it.
        if self.num_processes != 1 and self.backend != "accelerate":
            raise FieldError(f"evaluation.num_processes is {self.num_processes} but backend is "
                             f"{self.backend!r}", "data-parallel processes need backend: accelerate")
        vllm_only = {"tensor_parallel_size": (self.tensor_parallel_size, 1),
                     "gpu_memory_utilization": (self.gpu_memory_utilization, 0.9)}
        for name, (value, default) in vllm_only.items():
            if value != default and self.backend != "vllm":
                raise FieldError(f"evaluation.{name} is set but backend is {self.backend!r}",
                                 "it is a vllm setting: set backend: vllm or remove it")
        slurm = self.launcher.slurm
        if slurm is not None and slurm.nodes != 1:
            # lm-eval's data parallelism (accelerate) and vllm run on one node here
            raise FieldError(f"evaluation.launcher.slurm.nodes is {slurm.nodes}, but an "
                             "evaluation runs on one node", "set nodes: 1 (num_processes or "
                             "tensor_parallel_size use that node's GPUs)",
                             at=("launcher", "slurm", "nodes"))
        gpus = 0 if slurm is None else slurm.gpus_per_node
        wanted = max(self.num_processes, self.tensor_parallel_size)
        if slurm is not None and gpus and wanted > gpus:
            raise FieldError(f"evaluation uses {wanted} GPUs but launcher.slurm.gpus_per_node "
                             f"is {gpus}", f"set gpus_per_node to at least {wanted}",
                             at=("launcher", "slurm", "gpus_per_node"))
        return self

    @property
    def standard_tasks(self) -> list[str]:
        """lm-eval task names to run: presets expanded in order, then `tasks`, each once."""
        expanded = [t for p in self.presets for t in PRESETS[p].tasks] + list(self.tasks)
        return list(dict.fromkeys(expanded))

    def task_limits(self) -> dict[str, int | None]:
        """Per standard task, the most documents (per leaf task) to evaluate: `limit`,
        lowered to a preset's cap for tasks that come from it (FACTS 4.3: 1000)."""
        out: dict[str, int | None] = {t: self.limit for t in self.standard_tasks}
        for p in self.presets:
            cap = PRESETS[p].max_samples
            for t in PRESETS[p].tasks:
                if cap is not None:
                    out[t] = cap if out[t] is None else min(out[t], cap)
        return out


class EvaluationSpec(EvaluationSettings):
    """lm-eval evaluation of the trained checkpoints: how each is evaluated
    (EvaluationSettings' fields), which ones, and the decontamination of the training data
    against the evaluation tasks."""

    local_tasks: list[LocalTaskSpec] = Field(default=[], max_length=MAX_EVAL_TASKS)
    """Tasks generated from held-out curated documents: which, how many documents or
    questions, how many choices (built by the evaltasks stage)."""
    checkpoints: Literal["final", "every_stage"] = "final"
    """Evaluate only the final checkpoint, or the end of every training phase (`every_stage`:
    the spec's word for a phase)."""
    decontamination: DecontaminationSpec | None = DecontaminationSpec()
    """Remove training documents that overlap the evaluation tasks; None disables."""
    every_tokens: Tokens | None = None
    """Also evaluate snapshots taken every this many training tokens (a multiple of
    `training.batch_tokens`), and the end of every training phase, for score-vs-tokens curves
    (FineWeb chose its early-signal tasks by how they move with tokens, FACTS 4.3-4.4). Each
    snapshot is an output of its training stage and is scored by the run's evaluate stage,
    its result cached on its own (a snapshot added scores only that one). None: see
    `checkpoints`."""


# ----------------------------------------------------------------------------- report


class ReportSpec(Model):
    """A comparison report across experiments, written under `reports/<name>/`."""

    name: Name
    """Report name (folder under reports/)."""
    experiments: list[Name] = Field(min_length=1)
    """Experiments compared (this one is added if missing)."""
    baseline: Name
    """Experiment the others are compared against."""
    bootstrap_iterations: int = Field(default=10_000, ge=100, le=MAX_BOOTSTRAP)
    """Draws of the paired bootstrap over evaluation items (and replicas) that gives each
    difference's confidence interval; 10,000 keeps 95% interval ends stable to ~1%."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    """Confidence level of the intervals (0.95: a 95% percentile interval)."""
    bootstrap_seed: Seed = 0
    """Seed of the bootstrap draws; fixed so reruns give identical reports."""
    aggregate_tasks: list[str] | None = Field(default=None, min_length=1,
                                              max_length=MAX_EVAL_TASKS)
    """Tasks whose normalised primary scores are averaged into the aggregate score (e.g. the
    FineWeb early-signal tasks, FACTS §4.3); None: every task with a chance level."""

    @model_validator(mode="after")
    def _aggregate_unique(self) -> ReportSpec:
        if self.aggregate_tasks is not None and len(set(self.aggregate_tasks)) != len(
                self.aggregate_tasks):
            raise FieldError(f"report.aggregate_tasks {self.aggregate_tasks} lists a task "
                             "twice", "list each once")
        return self


# -------------------------------------------------------------------------- experiment


def replica_label(seed: int, data_seed: int) -> str:
    """`seed3`, or `seed3-data7` when the data order comes from another seed."""
    return f"seed{seed}" if data_seed == seed else f"seed{seed}-data{data_seed}"


class ReplicaSpec(Model):
    """One extra run of an experiment."""

    seed: Seed
    """Seed of model initialisation (and of the data order unless `data_seed` is set)."""
    data_seed: Seed | None = None
    """Seed of the data order: which token windows each phase draws and in which order, so a
    phase that draws less than an epoch of a source sees a different subset of it (FineWeb's
    "different data subset", FACTS 4.2). None: the same as `seed`."""

    @property
    def effective_data_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed


class ExperimentMeta(Model):
    """Identity of the experiment."""

    name: Name
    """Unique experiment name; used in stage names and reports."""
    description: str = ""
    """What this experiment tests."""
    seed: Seed = 0
    """Seed for every random choice (data order, init, sampling)."""
    replicas: list[ReplicaSpec] = Field(default=[], max_length=MAX_REPLICAS)
    """Extra training runs of the same experiment with other seeds and/or data orders, each
    trained and evaluated on its own; the report aggregates them with the main run. FineWeb
    trained two models per variant (different data subset and seed) and averaged them
    (FACTS 4.2); DataDecide used three seeds (FACTS 9.2). Curation, tokenizer and evaluation
    tasks are shared, so every replica answers the same evaluation items (paired)."""

    @model_validator(mode="after")
    def _distinct_replicas(self) -> ExperimentMeta:
        runs = [(self.seed, self.seed)] + [(r.seed, r.effective_data_seed) for r in self.replicas]
        labels = [replica_label(s, d) for s, d in runs]
        repeated = sorted({x for x in labels if labels.count(x) > 1})
        if repeated:
            raise FieldError(
                f"experiment.replicas repeat a run: {repeated} (the main run is "
                f"{labels[0]}: seed {self.seed})", "give each replica another seed or data_seed")
        return self

    def runs(self) -> list[tuple[str, int, int]]:
        """(label, seed, data_seed) of every run: the main run first, then the replicas."""
        runs = [(self.seed, self.seed)] + [(r.seed, r.effective_data_seed) for r in self.replicas]
        return [(replica_label(s, d), s, d) for s, d in runs]


class ExperimentSpec(Model):
    """A whole experiment: data, tokenizer, model, training, evaluation, report."""

    schema_version: Literal[1]
    """Spec format version; must be 1."""
    experiment: ExperimentMeta
    """Name, description and seed."""
    datasets: dict[Name, DatasetSpec] = Field(min_length=1, max_length=MAX_DATASETS)
    """Named datasets and their curation."""
    tokenizer: TokenizerSpec
    """Tokenizer to train or load."""
    model: ModelSpec
    """Model architecture."""
    training: TrainingSpec
    """Training recipe."""
    evaluation: EvaluationSpec
    """Evaluation."""
    report: ReportSpec | None = None
    """Optional comparison report this experiment produces."""
    sweep: SweepSpec | None = None
    """Hyperparameter search over this experiment, run by `repro sweep` as DVC experiments."""
    ladder: LadderSpec | None = None
    """Scaling ladder: the compiler trains this experiment at every size and token budget
    (instead of once, as written) and fits L(N, D); `repro fit` runs it."""

    @model_validator(mode="wrap")
    @classmethod
    def _in_workspace(cls, data, handler, info: ValidationInfo):
        """Validate with the workspace known, so local paths are confined to it: the
        validation context's `workspace`, else the directory repro runs in (repro.spec.safety)."""
        if safety.current_workspace() is not None:
            return handler(data)
        root = (info.context or {}).get("workspace") or Path.cwd()
        with safety.workspace(root):
            return handler(data)

    @model_validator(mode="after")
    def _references(self) -> ExperimentSpec:
        known = sorted(self.datasets)
        for i, phase in enumerate(self.training.stages):
            for name in phase.mixture:
                if name not in self.datasets:
                    raise FieldError(
                        f"training.stages[{i}].mixture names dataset {name!r}, "
                        "which is not declared", f"declared datasets: {known}",
                        at=("training", "stages", i, "mixture")
                    )
        if isinstance(self.tokenizer, TrainBPETokenizer):
            for name in self.tokenizer.datasets:
                if name not in self.datasets:
                    raise FieldError(
                        f"tokenizer.datasets names {name!r}, which is not declared",
                        f"declared datasets: {known}", at=("tokenizer", "datasets")
                    )
        for task in self.evaluation.local_tasks:
            if task.dataset not in self.datasets:
                raise FieldError(
                    f"evaluation.local_tasks names dataset {task.dataset!r}, which is not "
                    "declared", f"declared datasets: {known}", at=("evaluation", "local_tasks")
                )
        if self.report is not None:
            members = set(self.report.experiments) | {self.experiment.name}
            if self.report.baseline not in members:
                raise FieldError(
                    f"report.baseline {self.report.baseline!r} is not among the compared "
                    f"experiments {sorted(members)}", "add it to report.experiments or choose "
                    f"one of them as the baseline", at=("report", "baseline")
                )
        tr = self.training
        for i, (seq, (_, max_pos)) in enumerate(zip(tr.phase_seq_lens(), tr.phase_rope(self.model))):
            if seq > max_pos:
                field = ("model.max_position_embeddings" if i == 0 or not any(
                    s.max_position_embeddings for s in tr.stages[:i + 1])
                    else f"training.stages[{i}].max_position_embeddings")
                raise FieldError(
                    f"training.stages[{i}] ({tr.stages[i].name!r}) trains on sequences of "
                    f"{seq} tokens, more than {field} {max_pos}", f"raise {field} to at least {seq}",
                    at=("training", "stages", i)
                )
        if self.ladder is not None and (self.report is not None or self.sweep is not None):
            raise FieldError(
                "a ladder experiment is not trained as written (the compiler trains it at every "
                "ladder size and budget), so it cannot also have a `report` or a `sweep`", "put "
                "them in another spec")
        if self.ladder is not None:
            for name, recipe in self.ladder.recipes.items():
                for d in recipe.mixture or {}:
                    if d not in self.datasets:
                        raise FieldError(
                            f"ladder.recipes.{name}.mixture names dataset {d!r}, which is not "
                            "declared", f"declared datasets: {known}",
                            at=("ladder", "recipes", name, "mixture"))
        every = self.evaluation.every_tokens
        if every is not None and every % tr.batch_tokens:
            lower = max(1, every // tr.batch_tokens) * tr.batch_tokens
            raise FieldError(
                f"evaluation.every_tokens {every} is not a multiple of training.batch_tokens "
                f"{tr.batch_tokens} (snapshots are taken between optimizer steps)", f"use {lower} "
                f"or {lower + tr.batch_tokens}", at=("evaluation", "every_tokens")
            )
        return self

    @model_validator(mode="after")
    def _bounded_expansion(self) -> ExperimentSpec:
        """What the compiler expands this experiment into stays bounded (repro.spec.base
        limits), counted with Python integers before anything is built: train stages (runs
        x curriculum phases), snapshot evaluations (evaluation.every_tokens, per run) and
        ladder runs."""
        tr = self.training
        runs = 1 + len(self.experiment.replicas)
        trains = runs * len(tr.stages)
        if trains > MAX_TRAIN_STAGES:
            raise FieldError(
                f"experiment.replicas make {runs} runs (the main run and {runs - 1} replicas) x "
                f"{len(tr.stages)} training stages = {trains:,} train stages, above the limit "
                f"of {MAX_TRAIN_STAGES:,}", "use fewer replicas or training stages",
                at=("experiment", "replicas"))
        every = self.evaluation.every_tokens
        if every is not None:
            per_run, start = self.snapshots_per_run(), sum(tr.phase_steps())
            total = per_run * runs
            if total > MAX_SNAPSHOTS:
                need = -(-start * runs // MAX_SNAPSHOTS) * tr.batch_tokens
                raise FieldError(
                    f"evaluation.every_tokens {every:,} takes {per_run:,} snapshots per run x "
                    f"{runs} runs = {total:,} snapshot evaluations (each a stage of its own), "
                    f"above the limit of {MAX_SNAPSHOTS:,}",
                    f"raise every_tokens to at least {need:,} (a multiple of batch_tokens), or "
                    "evaluate stage ends only (remove every_tokens)",
                    at=("evaluation", "every_tokens"))
        if self.ladder is not None and all(s.schedule is None for s in tr.stages):
            # a ladder run spans budget // batch_tokens steps under the experiment's schedule
            # (repro.compile.ladder.split_tokens): its smallest budget must hold the warmup
            sched = tr.schedule
            budget = min(self.ladder.tokens + [self.ladder.recipe_tokens])
            n = budget // tr.batch_tokens
            decay = round(sched.decay_fraction * n)
            overlap = sched.decay_fraction < 1 and sched.warmup_steps + decay > n
            # (fewer steps than phases: repro.compile.ladder says so, with its own fix)
            if n >= len(tr.stages) and (sched.warmup_steps > n or overlap):
                need = sched.warmup_steps if sched.decay_fraction >= 1 else math.ceil(
                    sched.warmup_steps / (1 - sched.decay_fraction))
                while sched.decay_fraction < 1 and sched.warmup_steps + round(
                        sched.decay_fraction * need) > need:
                    need += 1  # round() may leave it a step short
                raise FieldError(
                    f"ladder.tokens: the smallest budget, {budget:,} tokens, is {n:,} optimizer "
                    f"steps of {tr.batch_tokens:,} tokens, too few for training.schedule's "
                    f"{sched.warmup_steps:,} warmup steps"
                    + (f" and {decay:,} decay steps" if overlap else ""),
                    f"use budgets of at least {need * tr.batch_tokens:,} tokens, or lower "
                    "training.schedule.warmup_steps", at=("ladder", "tokens"))
        if self.ladder is not None:  # every ladder run is the experiment, trained again
            points = self.ladder.run_count()
            if points * runs > MAX_LADDER_POINTS:
                raise FieldError(
                    f"ladder {self.ladder.name!r} trains {points:,} runs x {runs} runs each "
                    f"(the main run and {runs - 1} replicas) = {points * runs:,} trained "
                    "experiments, above the "
                    f"limit of {MAX_LADDER_POINTS:,}",
                    "use fewer replicas, sizes, token budgets or recipes")
            if points * trains > MAX_TRAIN_STAGES:
                raise FieldError(
                    f"ladder {self.ladder.name!r} trains {points:,} runs x {trains:,} train "
                    f"stages each ({runs} runs x {len(tr.stages)} training stages) = "
                    f"{points * trains:,} train "
                    f"stages, above the limit of {MAX_TRAIN_STAGES:,}",
                    "use fewer training stages, replicas, sizes, token budgets or recipes")
        return self

    def snapshots_per_run(self) -> int:
        """Snapshots one run saves for evaluation over training, counted without listing
        them: the multiples of every_tokens // batch_tokens strictly inside each phase (as
        repro.compile.graph.snapshot_steps lists them)."""
        every = self.evaluation.every_tokens
        if every is None or every % self.training.batch_tokens:
            return 0
        interval, count, start = every // self.training.batch_tokens, 0, 0
        for n in self.training.phase_steps():
            count += (start + n - 1) // interval - start // interval
            start += n
        return count

    @property
    def name(self) -> str:
        return self.experiment.name
