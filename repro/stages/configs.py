"""Stage configs: the settings one stage reads from its section of `params.yaml`.

They are assembled from the spec models (same classes, same validation), so a value set with
`dvc exp run -S` is checked exactly as if it had been written in the spec. Their own fields
use the spec's bounded types (repro.spec.base: Steps, Tokens, SeqLen, ...) and list limits for
the same reason: `-S` and `repro sweep` edit params.yaml after the spec was validated, and a
stage must not loop or allocate in proportion to an unchecked number. A config holds
only what changes the stage's output; anything else would make DVC rerun for nothing.

A group of settings is defined once, in repro.spec.schema, with one default: a config that
reads a whole group extends or holds the spec's own model (TrainConfig extends
TrainingSettings, EvaluateConfig holds EvaluationSettings, ReportConfig is a ReportSpec), and
the compiler passes those models through (`fields_of`), never field by field. Where a stage
reads only part of a spec section, the schema defines that part as its own model, so the
stage's identity follows what it reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from repro.spec.base import (
    FieldError,
    MAX_DATASETS,
    MAX_LADDER_POINTS,
    MAX_SNAPSHOTS,
    MAX_TRAINING_PHASES,
    BatchTokens,
    Bootstrap,
    Parallel,
    PositiveSteps,
    Seed,
    SeqLen,
    Steps,
    Tokens,
)
from repro.spec.schema import (
    BuiltinSource,
    CurationStep,
    DecontaminationSpec,
    DistillationSpec,
    EvaluationSettings,
    ExecutorSpec,
    HeldoutSpec,
    License,
    LocalTaskSpec,
    Model,
    ModelSpec,
    Name,
    OptimizerSpec,
    PositiveInt,
    ReportSpec,
    Source,
    TokenizerSpec,
    TrainingSettings,
)
from repro.train.schedule import ScheduleSegment  # the schedule's shape lives with its user


def fields_of(model: BaseModel, view: type[BaseModel]) -> dict[str, Any]:
    """The values `model` holds for the fields `view` declares, as validated objects (nested
    models pass as they are): how the compiler hands a spec's settings group to a stage config
    built on the same definition (`TrainConfig(**fields_of(training, TrainingSettings), ...)`),
    with no field listed by hand."""
    return {name: getattr(model, name) for name in view.model_fields}


class SourceConfig(Model):
    """Build a builtin raw corpus."""

    source: BuiltinSource
    """Which corpus and how many documents."""


class CurateConfig(Model):
    """Run one dataset's curation pipeline."""

    dataset: Name
    """Dataset name (labels metrics and samples, titles the dataset card)."""
    license: License = "unknown"
    """License identifier written into the dataset card (see DatasetSpec.license)."""
    source: Source
    """Where raw documents come from (builtin corpora arrive as the `raw` input)."""
    steps: list[CurationStep]
    """Curation steps in order."""
    shards: Parallel
    """Output files; documents go to a shard by a hash of their id (see DatasetSpec)."""
    executor: ExecutorSpec
    """How datatrove runs the pipeline (execution only: not part of the stage identity)."""


class SplitConfig(Model):
    """Split curated documents into training and held-out sets."""

    heldout: HeldoutSpec
    """Held-out fraction and cap."""
    seed: Seed
    """Seed of the hash that assigns documents to the held-out set."""


class TokenizerConfig(Model):
    """Train or load the tokenizer."""

    tokenizer: TokenizerSpec
    """Tokenizer settings."""
    datasets: list[Name]
    """Datasets (training splits) the tokenizer is trained on, in input order."""


class DecontaminateConfig(Model):
    """Remove a dataset's training documents that share word n-grams with the experiment's
    evaluation tasks (local tasks arrive as `task:<name>` inputs; standard lm-eval tasks are
    loaded by name)."""

    dataset: Name
    """Dataset whose training split is decontaminated."""
    decontamination: DecontaminationSpec
    """N-gram length and which n-grams of each task item are matched."""
    local_tasks: list[Name]
    """Names of the local tasks (evaltasks outputs) decontaminated against, sorted."""
    tasks: list[str]
    """Standard lm-eval task names decontaminated against, in spec order."""


class FunnelConfig(Model):
    """Assemble one dataset's funnel (curation steps, held-out split, decontamination) with
    token counts made by the experiment's tokenizer."""

    dataset: Name
    """Dataset name."""


class TokenizeConfig(Model):
    """Tokenize a dataset's training documents (split or decontaminated) into packed shards."""

    dataset: Name
    """Dataset name."""
    seed: Seed
    """Seed for the document shuffle."""


class TrainConfig(TrainingSettings):
    """A train stage: one curriculum phase of training. The experiment's TrainingSettings
    (micro batch, logging, objective terms, stability, monitor, kernels, processes, in-stage
    checkpoints; declared once in repro.spec.schema, with the spec's defaults), and what this
    phase resolves for itself below."""

    experiment: Name
    """Experiment this stage belongs to (labels outputs)."""
    phase: Name
    """Training phase name (an entry of the spec's `training.stages`; trainer_state.json
    and the metrics still record it under their `stage` key)."""
    model: ModelSpec
    """Architecture as of this phase (rope_theta and max_position_embeddings resolved for
    the phase); built in the first phase, checked in later ones."""
    optimizer: OptimizerSpec
    """Optimizer settings, the LRs included (the schedule only multiplies them). A phase that
    restarts the schedule with its own `lr` gets it here (repro.compile.graph)."""
    reset_optimizer: bool = False
    """Start this phase with fresh optimizer state."""
    schedule: ScheduleSegment
    """LR schedule as seen by this phase: a shape (warmup, decay, floor ratio) multiplying
    the optimizer's LRs, which are stored only in `optimizer`."""
    seq_len: SeqLen
    """Tokens per sequence in this phase."""
    batch_tokens: BatchTokens
    """Tokens per optimizer step."""
    step_start: Steps
    """Global step this phase starts at."""
    steps: PositiveSteps
    """Optimizer steps in this phase (= tokens // batch_tokens)."""
    mixture: dict[Name, float] = Field(max_length=MAX_DATASETS)
    """Dataset -> sampling weight for this phase."""
    max_epochs: dict[Name, Annotated[float, Field(gt=0)]] = Field(max_length=MAX_DATASETS)
    """Dataset of the mixture -> most passes training may make over its tokens through this
    phase (DatasetSpec.max_epochs): the stage's token ledger (repro.train.ledger) refuses to
    train past it, and records it in its `ledger` output."""
    seed: Seed
    """Seed for init, and for the data order unless `data_seed` is set."""
    data_seed: Seed | None = None
    """Seed of the data order (a replica drawing another subset/order); None: `seed`."""
    snapshot_steps: list[PositiveSteps] = Field(default=[], max_length=MAX_SNAPSHOTS)
    """Global steps inside this phase after which the model is also saved as a `snapshot:<step>`
    output, for evaluation over training (`evaluation.every_tokens`)."""

    @model_validator(mode="after")
    def _every_setting_applies(self) -> TrainConfig:
        """Values that this stage would run exactly as another value (a `dvc exp run -S` on
        them would rerun it for nothing) are refused (tests/compile/test_params_live.py)."""
        if self.batch_tokens % self.seq_len:
            raise FieldError(f"batch_tokens {self.batch_tokens} is not a multiple of seq_len "
                             f"{self.seq_len}: a step trains on whole sequences",
                             f"use a multiple of {self.seq_len}", at=("batch_tokens",))
        if self.reset_optimizer and self.step_start == 0:
            raise FieldError("reset_optimizer is set on the phase that starts the run: there is "
                             "no optimizer state to reset", "set it to false",
                             at=("reset_optimizer",))
        if set(self.max_epochs) != set(self.mixture):
            raise FieldError(f"max_epochs names {sorted(self.max_epochs)}, the mixture "
                             f"{sorted(self.mixture)}: the ledger limits exactly the datasets "
                             "this phase draws from", "run `repro compile`, which writes one "
                             "max_epochs per dataset of the mixture", at=("max_epochs",))
        if self.data_seed is not None and self.data_seed == self.seed:
            raise FieldError(f"data_seed {self.data_seed} equals seed: null already means the "
                             "seed", "set data_seed to null, or to another seed",
                             at=("data_seed",))
        try:
            self.schedule.check_applies(self.step_start, self.steps)
        except FieldError as e:
            raise FieldError(e.message, e.fix, at=("schedule", *e.at)) from None
        return self

    @model_validator(mode="after")
    def _snapshots_inside(self) -> TrainConfig:
        inside = range(self.step_start + 1, self.step_start + self.steps)
        outside = [s for s in self.snapshot_steps if s not in inside]
        if outside:
            raise FieldError(f"snapshot_steps {outside} are not inside this stage's steps "
                             f"{inside.start}..{inside.stop - 1} (its last step is its checkpoint)",
                             f"keep only steps {inside.start}..{inside.stop - 1}, or run `repro "
                             "compile`, which writes them from evaluation.every_tokens",
                             at=("snapshot_steps",))
        if self.snapshot_steps != sorted(set(self.snapshot_steps)):
            raise FieldError(f"snapshot_steps {self.snapshot_steps} must be increasing and "
                             "distinct", "list each step once, in increasing order",
                             at=("snapshot_steps",))
        return self


class TeacherLogitsConfig(Model):
    """Sparse teacher targets for every window of one dataset at one sequence length."""

    dataset: Name
    """Dataset whose token windows the teacher scores."""
    seq_len: SeqLen
    """Window length (the student stage's seq_len)."""
    mode: Literal["top_k", "sampled"]
    """Top-k (renormalised) or sampled targets."""
    k: Annotated[(int, *DistillationSpec.model_fields["k"].metadata)]  # its range in the spec
    """Targets kept per token."""
    temperature: float = Field(gt=0)
    """Teacher softmax temperature."""
    seed: Seed
    """Seed of the sampling generators."""
    doc_masking: bool
    """Give the teacher the student's per-document positions and mask."""
    teacher: str
    """Teacher reference as written in the spec (the checkpoint itself is the `teacher`
    input when it is a pipeline experiment or a local folder)."""
    trust_remote_code: bool = False
    """Allow a hub teacher's own code."""


class EvalTasksConfig(Model):
    """Build one local lm-eval task from held-out documents."""

    task: LocalTaskSpec
    """Task kind, source dataset and size."""
    seed: Seed
    """Seed for document and distractor choice."""


class EvaluateConfig(Model):
    """Evaluate every checkpoint of one training run with lm-eval, in one process (lm-eval,
    torch and transformers are imported, and the tasks loaded, once per run)."""

    experiment: Name
    """Experiment evaluated."""
    checkpoints: list[Name] = Field(min_length=1, max_length=MAX_SNAPSHOTS + MAX_TRAINING_PHASES)
    """Checkpoints evaluated, in training order: a training phase's name (its end) or
    `<phase>-step<N>` (a snapshot inside it). Each is an input `checkpoint:<label>` and has
    its own outputs `results:<label>` and `metrics:<label>`; the last is the run's final
    checkpoint (the one reports compare)."""
    evaluation: EvaluationSettings
    """Tasks, few-shot, limit, batch size, backend: the spec's `evaluation` less what no
    evaluate stage reads (repro.spec.schema.EvaluationSettings)."""
    seed: Seed
    """lm-eval random seeds."""

    @model_validator(mode="after")
    def _distinct_checkpoints(self) -> EvaluateConfig:
        if len(set(self.checkpoints)) != len(self.checkpoints):
            raise FieldError(f"checkpoints {self.checkpoints} name a checkpoint twice: each "
                             "has outputs of its own", "list each checkpoint once",
                             at=("checkpoints",))
        return self


class ReportConfig(ReportSpec):
    """Compare experiments: the spec's `report` (same fields, defaults and checks), with
    `experiments` resolved by the compiler to every experiment compared, in display order
    (the baseline first, the spec's own experiment added; repro.compile.graph)."""


class LadderRun(Model):
    """One trained run of a scaling ladder: where it sits on the (N, D) grid."""

    experiment: Name
    """The generated experiment (`<ladder>-<size>-<tokens>`, or with the recipe)."""
    run: str
    """Run label (main run or replica, see `replica_label`)."""
    size: Name
    """Ladder size name."""
    recipe: Name | None = None
    """Data recipe of a decision-accuracy run; None for the experiment's own mixtures."""
    n_params: PositiveInt
    """N of the fit (`FitConfig.parameters` decides what it counts); counted from a validated
    spec's shape, whose limits keep it far inside the int64 PositiveInt allows."""
    tokens: Tokens
    """D: training tokens actually run (whole optimizer steps)."""


class PredictTarget(Model):
    """A spec whose final loss the fitted law predicts."""

    name: str
    """Spec path (relative to the specs folder) or experiment name."""
    n_params: PositiveInt
    tokens: Tokens


class FitConfig(Model):
    """Fit L(N, D) over a ladder's runs and measure decision accuracy between its recipes."""

    name: Name
    """Ladder name (report in reports/ladders/<name>/)."""
    parameters: Literal["non_embedding", "total"]
    """What N counts."""
    loss_task: str
    """Evaluation task whose metric is the loss L."""
    loss_metric: str
    """That task's metric."""
    huber_delta: float = Field(gt=0)
    bootstrap: Bootstrap
    confidence: float = Field(gt=0, lt=1)
    seed: Seed
    target_compute: list[Annotated[float, Field(gt=0)]]
    runs: list[LadderRun] = Field(min_length=1, max_length=MAX_LADDER_POINTS)
    """Runs of the fit grid (recipe None) and of the decision-accuracy recipes."""
    recipe_tokens: Tokens | None = None
    """Token budget of the recipe runs (None: no recipes)."""
    predict: list[PredictTarget] = []
