"""Every path the pipeline uses, built in one place.

Stage outputs live under a folder named by the stage id (kind, label, content hash), so
two experiments needing the same curated data or tokenizer resolve to the same path.
Metrics, plots and reports are small, committed to git (`cache: false`) and diffable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath

SPECS_DIR = PurePosixPath("specs")
EXAMPLE_SPECS = PurePosixPath("examples")
"""Under a specs folder: one folder of specs per example pipeline (specs/examples/<name>/)."""
EXAMPLES_DIR = PurePosixPath("examples")
"""Under the workspace: one folder per example pipeline, holding its dvc.yaml, params.yaml
and dvc.lock (examples/<name>/; repro.compile.pipelines)."""
DVC_YAML = PurePosixPath("dvc.yaml")
PARAMS_YAML = PurePosixPath("params.yaml")
"""The experiment stages' settings (train, evaluate, report, fit ...): what `dvc exp run -S
<key>=<value>` sets without naming a file."""
DATA_PARAMS_YAML = PurePosixPath("params.data.yaml")
"""The data stages' settings (source, curate, split, decontaminate, tokenizer, tokenize,
funnel, evaltasks; repro.stages.kind.StageKind.params_file): `dvc exp run -S
params.data.yaml:<key>=<value>`. Apart from params.yaml because DVC parses a stage's whole
params file each time it checks that stage, on every `dvc repro` and `dvc status`: with one
file, each of the default pipeline's 36 stages parsed every stage's settings (PERF.md,
issue 19)."""
PARAMS_FILES = (PARAMS_YAML, DATA_PARAMS_YAML)
"""Every params file `repro compile` writes in a pipeline's folder; a stage's section (named
as the stage) lies in exactly one of them."""
DVC_LOCK = PurePosixPath("dvc.lock")  # written by DVC; read by `repro verify` and `repro explain`
PACKAGE_DIR = PurePosixPath("repro")
REPORTS_DIR = PurePosixPath("reports")
METRICS_DIR = PurePosixPath("metrics")
PLOTS_DIR = PurePosixPath("plots")
PLOT_TEMPLATES_DIR = PurePosixPath(".dvc/plots")
"""DVC's folder of custom plot templates: a `template: <name>` in dvc.yaml is <name>.json
there (committed; repro.compile.render.BY_LAYER_TEMPLATE)."""
LIVE_DIR = PurePosixPath("live")
"""One DVCLive folder per train stage (live/<id>/), written in place while it trains."""
VERIFY_DIR = REPORTS_DIR / "verify"  # `repro verify`'s certificate
SWEEP_REPORTS_DIR = REPORTS_DIR / "sweeps"
LADDER_REPORTS_DIR = REPORTS_DIR / "ladders"
STATE_DIR = PurePosixPath(".repro")  # resumable state, caches, logs: never a DVC output

RESERVED: dict[PurePosixPath, tuple[str, frozenset[str]]] = {
    VERIFY_DIR: ("`repro verify` writes its certificate there", frozenset()),
    SWEEP_REPORTS_DIR: ("`repro sweep` writes each sweep's report there", frozenset()),
    LADDER_REPORTS_DIR: ("it holds one folder per scaling ladder, each written by that "
                         "ladder's fit stage", frozenset({"fit"})),
    STATE_DIR: ("repro keeps resumable state, caches and logs there", frozenset()),
    SPECS_DIR: ("it holds the specs", frozenset()),
    PACKAGE_DIR: ("it holds repro's code, which stages depend on", frozenset()),
    DVC_YAML: ("`repro compile` writes it", frozenset()),
    PARAMS_YAML: ("`repro compile` writes it", frozenset()),
    DATA_PARAMS_YAML: ("`repro compile` writes it", frozenset()),
    DVC_LOCK: ("DVC writes it", frozenset()),
    EXAMPLES_DIR: ("`repro compile` writes the example pipelines' dvc.yaml and params files "
                   "there", frozenset()),
    PurePosixPath(".git"): ("it is git's repository", frozenset()),
    PurePosixPath(".dvc"): ("it holds DVC's configuration and cache", frozenset()),
}
"""Paths something other than a stage writes (or that the pipeline reads), with why, and the
stage kinds whose outputs may lie inside. DVC deletes a stage's outputs before running it,
and a stage replaces them whole (repro.stages.base.atomic_dir), so a stage output equal to
one of these, holding one, or (for a kind not listed) inside one would delete what the stage
did not make; `reserved_clash` says so, for the compiler (repro.compile.graph.check_outputs)
and for `repro stage --out` (repro.cli)."""


@dataclass(frozen=True)
class ReservedClash:
    """How an output path meets a reserved one (see `reserved_clash`)."""

    reserved: PurePosixPath
    where: str
    """`a reserved path`, `which holds the reserved <path>` or `inside the reserved <path>`."""
    why: str
    """Why the reserved path is not a stage's to replace (RESERVED's text)."""

    def __str__(self) -> str:
        return f"{self.where}: {self.why}"


def reserved_clash(path: PurePath, kind: str | None = None) -> ReservedClash | None:
    """How a stage output `path` (relative, without `..`: callers refuse those first, as a
    part-by-part comparison cannot see through them) clashes with a RESERVED path: equal to
    it, holding it, or inside it unless `kind` is one of the stage kinds allowed there; None
    if it does not."""
    parts = PurePosixPath(path).parts
    for reserved, (why, kinds) in RESERVED.items():
        r = reserved.parts
        if parts == r:
            return ReservedClash(reserved, "a reserved path", why)
        if r[:len(parts)] == parts:
            return ReservedClash(reserved, f"which holds the reserved {reserved}", why)
        if parts[:len(r)] == r and kind not in kinds:
            return ReservedClash(reserved, f"inside the reserved {reserved}", why)
    return None

def stage_metrics(stage_id: str) -> PurePosixPath:
    """The stage's DVC metrics file (committed)."""
    return METRICS_DIR / f"{stage_id}.json"


def stage_ledger(stage_id: str) -> PurePosixPath:
    """A train stage's token ledger through its phase (committed DVC metrics;
    repro.train.ledger): the report reads the last phase's."""
    return METRICS_DIR / f"{stage_id}.ledger.json"


def stage_perf(stage_id: str) -> PurePosixPath:
    """Timing metrics of a stage (tokens/s, MFU): committed, but measured, so they differ
    between runs; `repro verify` leaves them out of its comparison."""
    return METRICS_DIR / f"{stage_id}.perf.json"


def stage_env(stage_id: str) -> PurePosixPath:
    """The environment fingerprint of the run that made the stage's outputs (committed;
    repro.environment). Like perf.json it describes the machine, not the result, so
    `repro verify` compares it field by field instead of by hash."""
    return METRICS_DIR / f"{stage_id}.env.json"


MACHINE_RECORD_SUFFIXES = (".perf.json", ".env.json")
"""Outputs that describe how and where a stage ran (timings, environment), not what it made."""


def is_machine_record(path: str | PurePosixPath) -> bool:
    """An output that describes how and where a stage ran (MACHINE_RECORD_SUFFIXES), or a
    train stage's live DVCLive files (stage_live_dir): those hold the measured tokens/s and,
    after a stability rollback, the abandoned steps as they were logged; the curves that
    are part of the result are loss.csv and monitor.csv, compared like any output."""
    posix = PurePosixPath(path)
    return str(path).endswith(MACHINE_RECORD_SUFFIXES) or posix.parts[:1] == LIVE_DIR.parts


def resume_dir(stage_id: str) -> PurePosixPath:
    """In-stage resumable state of a training stage (not a DVC output: it must survive the
    crash DVC would clean up after). Removed when the stage completes."""
    return STATE_DIR / "resume" / stage_id


def live_sink_dir(sink: str, stage_id: str) -> PurePosixPath:
    """Where a train stage's optional live sink (TrainingSettings.live_sinks) writes: the
    TensorBoard event files, W&B's local run folder. Not a DVC output: sinks change none."""
    return STATE_DIR / sink / stage_id


def data_order_ledger(stage_id: str) -> PurePosixPath:
    """The batch fingerprints of a training stage's last completed run, kept so a rerun of
    the same stage is checked step by step against it (see repro.train.data_order)."""
    return STATE_DIR / "data-order" / f"{stage_id}.csv"


def lm_eval_cache(checkpoint_sha256: str) -> PurePosixPath:
    """The evaluation caches of one checkpoint (by the sha256 of its weights, so a
    retrained checkpoint never reads another's): lm-eval's response cache, and the finished
    results of each evaluation of it (`eval_result_cache`). Not a DVC output: it only saves
    time, and removing it is always safe."""
    return STATE_DIR / "cache" / "lm_eval" / checkpoint_sha256


EVAL_RESULTS_CACHE = "results"
"""Folder of finished evaluation results inside a checkpoint's cache folder (the response
caches beside it are named by a 16-hex-digit key, so they never meet it)."""


def eval_result_cache(cache_root: PurePath, key: str) -> PurePath:
    """One finished evaluation of a checkpoint (results folder and metrics file), keyed by
    everything that shapes its bytes (repro.eval.result_cache), inside the checkpoint's cache
    folder `cache_root` (lm_eval_cache, or the REPRO_LM_EVAL_CACHE override's)."""
    return cache_root / EVAL_RESULTS_CACHE / key


def eval_results_dir(stage_id: str, checkpoint: str) -> PurePosixPath:
    """The results folder (results.json and per-item samples) of one checkpoint evaluated by
    an evaluate stage (DVC-cached)."""
    return PurePosixPath("results/eval") / stage_id / checkpoint


def eval_metrics(stage_id: str, checkpoint: str) -> PurePosixPath:
    """The DVC metrics file of one checkpoint evaluated by an evaluate stage (committed): a
    folder per stage, so no checkpoint label can meet the stage's env record."""
    return METRICS_DIR / stage_id / f"{checkpoint}.json"


def stage_plot(stage_id: str, name: str) -> PurePosixPath:
    """A DVC plots file of the stage (committed)."""
    return PLOTS_DIR / stage_id / name


def stage_live_dir(stage_id: str) -> PurePosixPath:
    """A train stage's DVCLive folder (repro.train.live), written in place step by step while
    the stage trains, so `dvc exp show`, `dvc metrics show` and `dvc plots show` see the run
    as it goes (committed, uncached). Its layout is DVCLive's: stage_live_summary and
    stage_live_curves inside it."""
    return LIVE_DIR / stage_id


def stage_live_summary(stage_id: str) -> PurePosixPath:
    """DVCLive's summary of a train stage (dvclive.Live.metrics_file: the latest value of
    every live metric and the step), declared as DVC metrics."""
    return stage_live_dir(stage_id) / "metrics.json"


def stage_live_curves(stage_id: str) -> PurePosixPath:
    """DVCLive's metric histories of a train stage (dvclive.Live.plots_dir/metrics: one
    `step<TAB>value` TSV per metric, in folders by prefix), declared as DVC plots."""
    return stage_live_dir(stage_id) / "plots" / "metrics"


def report_dir(report_name: str) -> PurePosixPath:
    """Folder of a comparison report (committed)."""
    return REPORTS_DIR / report_name


def ladder_dir(ladder_name: str) -> PurePosixPath:
    """Folder of a scaling ladder's fit report (committed)."""
    return LADDER_REPORTS_DIR / ladder_name


def sweep_state_dir(sweep: str) -> PurePosixPath:
    """Resumable state of one sweep (the optuna study's journal; not a DVC output, not
    committed)."""
    return STATE_DIR / "sweeps" / sweep


def sweep_report_dir(sweep: str) -> PurePosixPath:
    """A sweep's report: report.md, results.json, one PNG per parameter (committed)."""
    return SWEEP_REPORTS_DIR / sweep


def report_headline(report_name: str, experiment: str) -> PurePosixPath:
    """The DVC metrics file of one experiment of a report: the scores of the report's
    Results table (committed). Under metrics/reports/, where no stage id can be (ids begin
    with their kind)."""
    return METRICS_DIR / "reports" / report_name / f"{experiment}.json"


def report_scores_dir(report_name: str) -> PurePosixPath:
    """Score-vs-tokens CSVs of a report, one per experiment (committed; DVC plots)."""
    return PLOTS_DIR / "reports" / report_name


def snapshot_dir(stage_id: str, step: int) -> PurePosixPath:
    """A model snapshot saved inside a training stage after global step `step`, for
    evaluation over training (DVC-cached, one output per snapshot)."""
    return PurePosixPath("artifacts/snapshots") / stage_id / f"step-{step:07d}"


def error_log(stamp: str) -> PurePosixPath:
    """Where the CLI writes the traceback of an internal error (a bug, not the user's input),
    so the terminal shows one line naming this file instead (not committed)."""
    return STATE_DIR / "logs" / f"error-{stamp}.log"
