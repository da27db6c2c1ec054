"""Specs -> stage graph. Pure: no I/O, no DVC; rendering lives in `repro.compile.render`.

Design note. A stage's identity is the hash of (kind, its config as it will appear in
params.yaml, the identities of its inputs). The stage id `<kind>-<label>-<hash8>` names its
output folders, so:
  * two experiments that need the same curated data, tokenizer or token shards produce the
    same stage and share it (it appears once);
  * changing one field changes that stage's id and the ids of its descendants, nothing else.
Its NAME (`name_stages`: `<kind>-<label>`, e.g. `train-qs-muon-stable`, `curate-web`) keys its
dvc.yaml entry and its params.yaml section. It carries no hash, so a settings change keeps
every name: dvc.lock still records the stage, `dvc params diff` shows the changed field under
the same section, and `repro explain` can say `old → new`. Each stage's params section holds
only the settings that stage reads, so `dvc exp run -S <name>.<field>=...` reruns that stage
and what depends on it.
A training schedule spans curriculum phases (a spec's `training.stages`; "stage" here is
always a DVC stage), each trained by a `train` stage of its own; each gets only the slice of
the schedule it needs (`ScheduleSegment`), so a later phase's budget enters an earlier phase
only when the decay overlaps it. The segment is a shape; the LR is stored once, in the train
stage's `optimizer` (a phase that restarts the schedule with its own `lr` gets it written
there).

Data path of one dataset (each arrow: the right stage reads the left one's output):
  source? -> curate -> split -> decontaminate? -> tokenize -> train (experiment)
  split -> evaltasks -> decontaminate (every evaluation task of the experiment)
  split -> tokenizer (trained on the training splits before decontamination, so evaluation
           tasks never change the tokenizer)
  curate, split, decontaminate, tokenizer -> funnel (per dataset and tokenizer) -> report
Every train stage checks the experiment's token ledger through its phase before it trains
(repro.train.ledger: training never starts on a mixture that would repeat a dataset more
than its `max_epochs`); the earlier phases' draws come from its `init` checkpoint, and the
last phase's `ledger` output is the one the report reads.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from repro import paths
from repro.compile import limits
from repro.compile.errors import GraphError
from repro.compile.ladder import LadderError, LadderPoint
from repro.compile.ladder import expand as ladder_points
from repro.compile.ladder import n_params as ladder_n_params
from repro.spec.schema import (
    BuiltinSource,
    EvaluationSettings,
    ExperimentSpec,
    MuonSpec,
    OptimizerSpec,
    PretrainedTokenizer,
    ReportSpec,
    TrainBPETokenizer,
    TrainingSettings,
    TrainingPhaseSpec,
)
from repro.stages.configs import (
    CurateConfig,
    DecontaminateConfig,
    EvalTasksConfig,
    EvaluateConfig,
    FitConfig,
    FunnelConfig,
    LadderRun,
    Model,
    ReportConfig,
    PredictTarget,
    SourceConfig,
    SplitConfig,
    TeacherLogitsConfig,
    TokenizeConfig,
    TokenizerConfig,
    TrainConfig,
    fields_of,
)
from repro.stages import kind as stage_kind
from repro.stages.kind import SNAPSHOT, per_checkpoint
from repro.train.schedule import ScheduleSegment

@dataclass(frozen=True)
class OutputRef:
    """An input that is another stage's output."""

    stage_id: str
    key: str


@dataclass(frozen=True)
class ExternalPath:
    """An input that is a local file or folder outside the pipeline."""

    path: str


Input = OutputRef | ExternalPath


@dataclass(frozen=True)
class Stage:
    kind: str
    label: str
    config: Model
    inputs: tuple[tuple[str, Input], ...] = ()
    id: str = field(init=False)

    def __post_init__(self) -> None:
        identity = {
            "kind": self.kind,
            # execution-only settings (how many processes, which cluster) do not change
            # outputs, so a stage moved from a laptop to Ray or Slurm keeps its id and cache
            "config": self.config.model_dump(
                mode="json", exclude=stage_kind(self.kind).identity_exclude()),
            "inputs": {k: _ref_identity(v) for k, v in self.inputs},
        }
        digest = hashlib.sha256(
            json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()[:8]
        object.__setattr__(self, "id", f"{self.kind}-{_slug(self.label)}-{digest}")

    def outputs(self) -> dict[str, PurePosixPath]:
        """Output key -> path, built by repro.paths (computed once: rendering asks for the
        outputs of a stage once per stage reading it)."""
        cached = self.__dict__.get("_outputs_cache")  # not a field: eq, hash, repr ignore it
        if cached is None:
            cached = self.__dict__["_outputs_cache"] = self._build_outputs()
        return dict(cached)

    def _build_outputs(self) -> dict[str, PurePosixPath]:
        return {key: out.path(self.id, self.config)
                for key, out in stage_kind(self.kind).outputs_for(self.config).items()}


def _ref_identity(ref: Input) -> str:
    return f"{ref.stage_id}:{ref.key}" if isinstance(ref, OutputRef) else f"path:{ref.path}"


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40] or "x"


def readable_name(stage: Stage) -> str:
    """`<kind>-<label>`: what the stage is, without its settings hash."""
    return f"{stage.kind}-{_slug(stage.label)}"


def name_stages(graph: StageGraph, fixed: dict[str, str] | None = None) -> dict[str, str]:
    """Stage id -> name, deterministic (a function of the graph, not of build order).

    Rule. A stage is named `<kind>-<label>` (`readable_name`) unless another stage of the
    graph, or a name in `fixed`, has that name too. Then every stage of that clash (two
    dataset variants both called `web`, or one `web` tokenized by two tokenizers) is named
    `<kind>-<label>-<experiment>`, after the first experiment, in name order, that uses it;
    and if that is still not unique (labels equal after slugging or cut at 40 characters),
    `<kind>-<label>-<hash8>`: the end of its id, as in its output folders, unique by
    construction. So a name changes only when its clash does (an experiment using a
    differently set-up `web` arrives or leaves), never when a setting of the stage changes.
    `fixed`: names given already and kept (an example's compile reuses the default
    pipeline's, so a default stage has one name everywhere, and no example stage takes a
    default stage's name: sweeps merge both params files into one namespace)."""
    fixed = {sid: n for sid, n in (fixed or {}).items() if sid in graph.stages}
    taken = set(fixed.values())
    groups: dict[str, list[str]] = {}
    for sid, stage in graph.stages.items():
        if sid not in fixed:
            groups.setdefault(readable_name(stage), []).append(sid)
    names = dict(fixed)
    for base, sids in groups.items():
        if len(sids) == 1 and base not in taken:
            names[sids[0]] = base
            continue
        qualified = {sid: f"{base}-{_slug(min(graph.users.get(sid) or {graph.origin.get(sid, 'x')}))}"
                     for sid in sids}
        counts: dict[str, int] = {}
        for n in qualified.values():
            counts[n] = counts.get(n, 0) + 1
        for sid, n in qualified.items():
            names[sid] = n if counts[n] == 1 and n not in taken else sid
    seen: dict[str, str] = {}
    for sid, n in names.items():
        if n in seen:  # a label that reads as another's label and hash: say so, do not guess
            raise GraphError(f"stages {seen[n]} and {sid} would both be named {n!r} in dvc.yaml",
                             fix="rename one of the datasets, experiments or phases they are "
                                 "named after", experiment=min(graph.users.get(sid) or {""}))
        seen[n] = sid
    return names


@dataclass
class StageGraph:
    """Stages in topological (insertion) order, deduplicated by id."""

    stages: dict[str, Stage] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    """Stage id -> the experiment whose spec names that stage's outputs (a report, a
    ladder's fit), so an error about them points at that spec."""
    spec_of: dict[str, str] = field(default_factory=dict)
    """Generated experiment (a ladder's run) -> the experiment whose spec file defines it."""
    users: dict[str, set[str]] = field(default_factory=dict)
    """Stage id -> the experiments whose stages include it (shared data: several)."""
    names: dict[str, str] = field(default_factory=dict)
    """Stage id -> its name in dvc.yaml and params.yaml (`name_stages`)."""
    building: str = ""
    """The experiment whose stages `add` is adding (recorded in `users`)."""

    def add(self, stage: Stage) -> Stage:
        for _, ref in stage.inputs:
            if isinstance(ref, OutputRef) and ref.stage_id not in self.stages:
                raise GraphError(f"{stage.id} reads {ref.stage_id}, which is not in the graph")
        if self.building:
            self.users.setdefault(stage.id, set()).add(self.building)
        return self.stages.setdefault(stage.id, stage)

    def name(self, stage_id: str) -> str:
        """The stage's name in dvc.yaml and params.yaml (its id before names were given)."""
        return self.names.get(stage_id, stage_id)

    def by_name(self) -> dict[str, str]:
        """Stage name -> stage id."""
        return {self.name(sid): sid for sid in self.stages}

    def path_of(self, ref: Input) -> PurePosixPath:
        if isinstance(ref, ExternalPath):
            return PurePosixPath(ref.path)
        return self.stages[ref.stage_id].outputs()[ref.key]

    def descendants(self, stage_id: str) -> set[str]:
        found: set[str] = set()
        frontier = {stage_id}
        while frontier:
            frontier = {
                s.id for s in self.stages.values()
                if s.id not in found and any(
                    isinstance(r, OutputRef) and r.stage_id in frontier for _, r in s.inputs)
            }
            found |= frontier
        return found


def _naming_field(stage: Stage) -> str:
    """The spec field whose value names some of a stage's output paths (`report.name` for
    reports/<report>, see repro.stages.kind.Output.named_by); empty if its outputs are all
    named by its content id."""
    return next((o.named_by for o in stage_kind(stage.kind).outputs.values() if o.named_by), "")


def _named(graph: StageGraph, stage: Stage) -> tuple[str, str, str]:
    """(spec field, the name it holds, experiment whose spec holds it) behind a stage's
    output paths; empty strings for id-named outputs."""
    field_ = _naming_field(stage)
    name = getattr(stage.config, "name", "") if field_ else ""
    experiment = str(getattr(stage.config, "experiment", "") or "")
    experiment = graph.origin.get(stage.id) or graph.spec_of.get(experiment, experiment)
    return field_, str(name), experiment


def _is_within(inner: tuple[str, ...], outer: tuple[str, ...]) -> bool:
    return inner[:len(outer)] == outer


_NAMED_WHAT = {"report": "report", "fit": "ladder"}


def _owner(graph: StageGraph, stage: Stage) -> str:
    """`report 'x'` for a stage whose outputs a spec names, `stage <id>` otherwise."""
    _, name, _ = _named(graph, stage)
    return (f"{_NAMED_WHAT[stage.kind]} {name!r}" if stage.kind in _NAMED_WHAT
            else f"stage {graph.name(stage.id)}")


def _relation(path: tuple[str, ...], other: tuple[str, ...]) -> str:
    return "is" if path == other else ("holds" if _is_within(other, path) else "is inside")


def check_outputs(graph: StageGraph) -> None:
    """Refuse output paths that overlap (equal, or one inside another) another stage's, or a
    path repro writes outside stages (repro.paths.RESERVED): DVC deletes a stage's outputs
    before running it, so such a stage would delete what it did not make (a report named
    `sweeps` would delete every sweep report), and DVC refuses overlapping outputs outright
    (`dvc status` and `dvc dag` fail). O(outputs log outputs)."""
    owned = [(path.parts, path, stage) for stage in graph.stages.values()
             for path in stage.outputs().values()]
    for parts, path, stage in owned:
        if path.is_absolute() or ".." in parts or not parts:
            # compared part by part below, so `a/../b` would hide an overlap
            field_, _, experiment = _named(graph, stage)
            raise GraphError(f"{_owner(graph, stage)} would write {str(path)!r}, outside the "
                             f"folder its kind writes to", field_,
                             f"choose another {field_ or 'name'}", experiment)
        clash = paths.reserved_clash(path, stage.kind)
        if clash is not None:
            field_, _, experiment = _named(graph, stage)
            raise GraphError(
                f"{_owner(graph, stage)} would write {path}, {clash}; DVC deletes "
                f"a stage's outputs before running it", field_,
                f"choose another {field_ or 'name'} ({clash.reserved} is reserved)", experiment)
    # sorted by path parts, a path and everything inside it are adjacent
    owned.sort(key=lambda o: o[0])
    for a, b in zip(owned, owned[1:]):
        if _is_within(b[0], a[0]):
            # blame the stage whose output path comes from a name in a spec
            first, second = (b, a) if _naming_field(b[2]) and not _naming_field(a[2]) else (a, b)
            field_, _, experiment = _named(graph, first[2])
            relation = _relation(first[0], second[0])
            verb = "is also" if relation == "is" else relation
            raise GraphError(
                f"{_owner(graph, first[2])} would write {first[1]}, which {verb} {second[1]}, "
                f"written by "
                f"{_owner(graph, second[2])}; DVC refuses overlapping outputs, and deletes a "
                f"stage's outputs before running it", field_,
                f"choose another {field_ or 'name'}", experiment)


@dataclass(frozen=True)
class EvaluatedCheckpoint:
    """A checkpoint of a run and the evaluate stage that scores it (one per run, scoring
    every checkpoint of the run): a training phase's name (its end) or `<phase>-step<N>` (a
    snapshot inside it)."""

    label: str
    stage: Stage
    final: bool
    """The experiment run's final checkpoint (the one reports compare)."""

    @property
    def metrics(self) -> OutputRef:
        """Its metrics file (`metrics:<label>` of the stage)."""
        return OutputRef(self.stage.id, per_checkpoint("metrics", self.label))

    @property
    def results(self) -> OutputRef:
        """Its results folder, with per-item samples (`results:<label>` of the stage)."""
        return OutputRef(self.stage.id, per_checkpoint("results", self.label))


@dataclass(frozen=True)
class RunStages:
    """One run (the main run or a replica) of an experiment."""

    label: str
    """Replica label, e.g. `seed0` or `seed2-data7` (repro.spec.schema.replica_label)."""
    train: tuple[Stage, ...]
    evaluate: tuple[EvaluatedCheckpoint, ...]


@dataclass(frozen=True)
class ExperimentStages:
    """Handles on one experiment's stages, used to wire reports."""

    runs: tuple[RunStages, ...]
    """The main run first, then the replicas."""
    funnels: dict[str, Stage]
    """Dataset -> its funnel stage (datasets in the training mixture)."""

    @property
    def main(self) -> RunStages:
        return self.runs[0]


def _is_remote(path: str) -> bool:
    return "://" in path


def _dataset_stages(graph: StageGraph, spec: ExperimentSpec, name: str) -> tuple[Stage, Stage]:
    """source? -> curate -> split for one dataset; returns (curate, split)."""
    ds = spec.datasets[name]
    curate_inputs: list[tuple[str, Input]] = []
    if isinstance(ds.source, BuiltinSource):
        source = graph.add(Stage("source", ds.source.name, SourceConfig(source=ds.source)))
        curate_inputs.append(("raw", OutputRef(source.id, "corpus")))
    elif hasattr(ds.source, "path") and not _is_remote(ds.source.path):
        curate_inputs.append(("raw", ExternalPath(ds.source.path)))
    curate = graph.add(Stage(
        "curate", name,
        CurateConfig(dataset=name, license=ds.license, source=ds.source, steps=ds.steps,
                     shards=ds.shards, executor=ds.executor),
        tuple(curate_inputs),
    ))
    split = graph.add(Stage(
        "split", name,
        SplitConfig(heldout=ds.heldout, seed=spec.experiment.seed),
        (("docs", OutputRef(curate.id, "docs")),),
    ))
    return curate, split


def _tokenizer_stage(graph: StageGraph, spec: ExperimentSpec, splits: dict[str, Stage]) -> Stage:
    tok = spec.tokenizer
    if isinstance(tok, TrainBPETokenizer):
        names = list(tok.datasets) or sorted(spec.datasets)
        inputs = tuple((f"train:{n}", OutputRef(splits[n].id, "split")) for n in names)
        label = f"bpe{tok.vocab_size}"
    else:
        assert isinstance(tok, PretrainedTokenizer)
        names, label = [], tok.name_or_path.rsplit("/", 1)[-1]
        local = not _is_remote(tok.name_or_path) and tok.name_or_path.startswith((".", "/"))
        inputs = (("pretrained", ExternalPath(tok.name_or_path)),) if local else ()
    return graph.add(Stage("tokenizer", label, TokenizerConfig(tokenizer=tok, datasets=names), inputs))


def phase_optimizer(spec: ExperimentSpec, phase: TrainingPhaseSpec) -> OptimizerSpec:
    """The optimizer settings a training phase runs with: the experiment's, except that a
    phase restarting the schedule with its own `lr` (SmolLM3's long-context stages, FACTS
    3.10) has it as its AdamW LR, and for Muon the Muon LR scaled by the same ratio
    (PhaseScheduleSpec.lr). So the train stage's params hold its LR once, in `optimizer`."""
    opt = spec.training.optimizer
    if phase.schedule is None:
        return opt
    own = phase.schedule.lr
    if isinstance(opt, MuonSpec):
        # lr * (own / reference): at the peak, the product the loop formed before the LR
        # moved out of the schedule
        return opt.model_copy(update={"lr": opt.lr * (own / opt.adamw.lr),
                                      "adamw": opt.adamw.model_copy(update={"lr": own})})
    return opt.model_copy(update={"lr": own})


def schedule_segments(spec: ExperimentSpec) -> list[tuple[int, int, ScheduleSegment]]:
    """(step_start, steps, segment) per training phase. The experiment's schedule spans the
    phases before the first one with a schedule of its own; each such phase restarts it
    (warmup and decay within the phase, as SmolLM3's long-context stages; FACTS 3.10).
    Segments are shapes; the LRs they multiply come from phase_optimizer."""
    tr = spec.training
    steps = [s.tokens // tr.batch_tokens for s in tr.stages]
    first_restart = next((i for i, s in enumerate(tr.stages) if s.schedule is not None), len(steps))
    total = sum(steps[:first_restart])
    decay_steps = round(tr.schedule.decay_fraction * total)
    decay_start = total - decay_steps
    out, start = [], 0
    for phase, n in zip(tr.stages, steps):
        if phase.schedule is not None:
            own = phase.schedule
            own_decay = round(own.decay_fraction * n)
            segment = _segment(start, own.warmup_steps,
                               (start + n - own_decay, start + n) if own_decay else None,
                               own.decay_shape, own.min_lr_ratio)
        else:
            segment = _segment(0, tr.schedule.warmup_steps,
                               (decay_start, total) if decay_steps > 0 else None,
                               tr.schedule.decay_shape, tr.schedule.min_lr_ratio)
        # only what moves this phase's LRs: another phase's budget enters a phase only
        # where it does (repro.train.schedule.ScheduleSegment.for_phase)
        out.append((start, n, segment.for_phase(start, n)))
        start += n
    return out


def _segment(start_step: int, warmup_steps: int, decay: tuple[int, int] | None,
             shape: str, min_lr_ratio: float) -> ScheduleSegment:
    """A schedule (re)starting after `start_step`: its warmup, and its decay with its shape
    and floor, if it has one."""
    if decay is None:
        return ScheduleSegment(start_step=start_step if warmup_steps else 0,
                               warmup_steps=warmup_steps)
    return ScheduleSegment(start_step=start_step if warmup_steps else 0,
                           warmup_steps=warmup_steps, decay_start_step=decay[0],
                           decay_end_step=decay[1], decay_shape=shape, min_lr_ratio=min_lr_ratio)


def _training_docs(graph: StageGraph, spec: ExperimentSpec, splits: dict[str, Stage],
                   tasks: dict[str, Stage], names: list[str]) -> dict[str, Stage]:
    """Per dataset, the stage whose output holds its training documents: the split, or its
    decontamination against every evaluation task of the experiment when
    `evaluation.decontamination` is set. Experiments with the same tasks share it."""
    ev = spec.evaluation
    if ev.decontamination is None:
        return {n: splits[n] for n in names}
    task_inputs = tuple((f"task:{name}", OutputRef(t.id, "task")) for name, t in sorted(tasks.items()))
    return {
        n: graph.add(Stage(
            "decontaminate", n,
            DecontaminateConfig(dataset=n, decontamination=ev.decontamination,
                                local_tasks=sorted(tasks), tasks=list(ev.standard_tasks)),
            (("split", OutputRef(splits[n].id, "split")), *task_inputs),
        ))
        for n in names
    }


def _docs_ref(stage: Stage) -> OutputRef:
    return OutputRef(stage.id, "split" if stage.kind == "split" else "docs")


def _funnel_stage(graph: StageGraph, name: str, curate: Stage, split: Stage, docs: Stage,
                  tokenizer: Stage) -> Stage:
    inputs: list[tuple[str, Input]] = [
        ("curated", OutputRef(curate.id, "docs")),
        ("curate_metrics", OutputRef(curate.id, "metrics")),
        ("split", OutputRef(split.id, "split")),
        ("tokenizer", OutputRef(tokenizer.id, "tokenizer")),
    ]
    if docs.kind == "decontaminate":
        inputs.append(("decontaminated", OutputRef(docs.id, "docs")))
    return graph.add(Stage("funnel", name, FunnelConfig(dataset=name), tuple(inputs)))


TEACHER_EXPERIMENT_PREFIX = "experiment:"


def teacher_experiment(spec: ExperimentSpec) -> str | None:
    """The experiment a spec distils from, when its teacher is `experiment:<name>`."""
    d = spec.training.distillation
    if d is not None and d.teacher.startswith(TEACHER_EXPERIMENT_PREFIX):
        return d.teacher[len(TEACHER_EXPERIMENT_PREFIX):]
    return None


def _teacher_input(spec: ExperimentSpec, teachers: dict[str, Stage]) -> Input | None:
    """The teacher checkpoint as a stage input: another experiment's final checkpoint, or a
    local folder; None for a hub name (loaded by name at run time)."""
    d = spec.training.distillation
    if d is None:
        return None
    name = teacher_experiment(spec)
    if name is not None:
        return OutputRef(teachers[name].id, "checkpoint")
    if not d.teacher.startswith(("/", "./", "../")):
        return None  # a hub name
    return ExternalPath(d.teacher)


def _teacher_logits_stages(graph: StageGraph, spec: ExperimentSpec, teacher: Input,
                           tokens: dict[str, Stage]) -> dict[tuple[str, int], Stage]:
    """For `top_k` / `sampled` targets: one stage per (dataset, sequence length) that runs
    the teacher once over every window and stores its sparse targets (FACTS 7.3, 7.7)."""
    d = spec.training.distillation
    assert d is not None
    out: dict[tuple[str, int], Stage] = {}
    tr = spec.training
    for phase, seq_len in zip(tr.stages, tr.phase_seq_lens()):
        for name in sorted(phase.mixture):
            if (name, seq_len) in out:
                continue
            out[(name, seq_len)] = graph.add(Stage(
                "teacherlogits", f"{spec.name}-{name}-{seq_len}",
                TeacherLogitsConfig(dataset=name, seq_len=seq_len, mode=d.logits, k=d.k,
                                    temperature=d.temperature, seed=spec.experiment.seed,
                                    doc_masking=tr.doc_masking, teacher=d.teacher,
                                    trust_remote_code=d.trust_remote_code),
                (("teacher", teacher), ("tokens", OutputRef(tokens[name].id, "tokens")))
                if teacher is not None else (("tokens", OutputRef(tokens[name].id, "tokens")),),
            ))
    return out


def _run_prefix(spec: ExperimentSpec, run: tuple[str, int, int]) -> str:
    """Stage label prefix of a run: the experiment name for the main run (so adding replicas
    leaves its stages, and their cache, untouched), `<experiment>-<replica>` otherwise."""
    label, seed, data_seed = run
    is_main = (seed, data_seed) == (spec.experiment.seed, spec.experiment.seed)
    return spec.name if is_main else f"{spec.name}-{label}"


def snapshot_steps(spec: ExperimentSpec) -> list[list[int]]:
    """Per training phase, the global steps strictly inside it at which a snapshot is saved
    for evaluation over training: every `evaluation.every_tokens` tokens, counted from the
    start of training (each phase's last step is its checkpoint, evaluated anyway)."""
    every = spec.evaluation.every_tokens
    segments = schedule_segments(spec)
    if every is None:
        return [[] for _ in segments]
    interval = every // spec.training.batch_tokens
    # the multiples of interval inside (start, start + n), stepped to: a phase may have
    # millions of steps and only a few snapshots
    return [list(range((start // interval + 1) * interval, start + n, interval))
            for start, n, _ in segments]


def _train_stages(graph: StageGraph, spec: ExperimentSpec, tokenizer: Stage,
                  tokens: dict[str, Stage], teachers: dict[str, Stage],
                  run: tuple[str, int, int]) -> list[Stage]:
    """One train stage per curriculum phase, each continuing the previous one's checkpoint, for one
    run (label, seed, data_seed) of the experiment. The main run keeps the plain labels."""
    _, seed, data_seed = run
    prefix = _run_prefix(spec, run)
    snapshots = snapshot_steps(spec)
    trains: list[Stage] = []
    tr = spec.training
    teacher = _teacher_input(spec, teachers)
    caches = (_teacher_logits_stages(graph, spec, teacher, tokens)
              if tr.distillation is not None and tr.distillation.logits != "full" else {})
    shapes = zip(tr.stages, schedule_segments(spec), tr.phase_seq_lens(), tr.phase_rope(spec.model))
    for i, (phase, (start, n, segment), seq_len, (theta, max_pos)) in enumerate(shapes):
        inputs: list[tuple[str, Input]] = [("tokenizer", OutputRef(tokenizer.id, "tokenizer"))]
        inputs += [(f"tokens:{d}", OutputRef(tokens[d].id, "tokens")) for d in sorted(phase.mixture)]
        if trains:
            # the previous phase's export (weights) and its optimizer and trainer state
            inputs += [("init", OutputRef(trains[-1].id, "checkpoint")),
                       ("init_state", OutputRef(trains[-1].id, "state"))]
        if caches:
            inputs += [(f"teacher_targets:{d}", OutputRef(caches[(d, seq_len)].id, "targets"))
                       for d in sorted(phase.mixture)]
        elif teacher is not None:
            inputs.append(("teacher", teacher))
        # only the last phase's checkpoint is the export that serves with YaRN
        yarn = spec.model.inference_yarn if i == len(tr.stages) - 1 else None
        model = spec.model.model_copy(update={"rope_theta": theta, "max_position_embeddings": max_pos,
                                              "inference_yarn": yarn})
        trains.append(graph.add(Stage(
            "train", f"{prefix}-{phase.name}",
            # the experiment's TrainingSettings pass whole; the rest is this phase's own
            TrainConfig(
                **fields_of(tr, TrainingSettings),
                experiment=spec.name, phase=phase.name, model=model,
                optimizer=phase_optimizer(spec, phase), reset_optimizer=phase.reset_optimizer,
                schedule=segment, seq_len=seq_len, batch_tokens=tr.batch_tokens,
                step_start=start, steps=n, mixture=dict(sorted(phase.mixture.items())),
                max_epochs={d: spec.datasets[d].max_epochs for d in sorted(phase.mixture)},
                seed=seed, data_seed=None if data_seed == seed else data_seed,
                snapshot_steps=snapshots[i],
            ),
            tuple(inputs),
        )))
    return trains


def _experiment(graph: StageGraph, spec: ExperimentSpec, teachers: dict[str, Stage]) -> ExperimentStages:
    data = {n: _dataset_stages(graph, spec, n) for n in sorted(spec.datasets)}
    splits = {n: split for n, (_, split) in data.items()}
    tokenizer = _tokenizer_stage(graph, spec, splits)
    tasks = {
        t.task_name: graph.add(Stage(
            "evaltasks", t.task_name, EvalTasksConfig(task=t, seed=spec.experiment.seed),
            (("split", OutputRef(splits[t.dataset].id, "split")),),
        ))
        for t in spec.evaluation.local_tasks
    }
    trained = sorted({n for s in spec.training.stages for n in s.mixture})
    docs = _training_docs(graph, spec, splits, tasks, trained)
    tokens = {
        n: graph.add(Stage(
            "tokenize", n, TokenizeConfig(dataset=n, seed=spec.experiment.seed),
            (("docs", _docs_ref(docs[n])), ("tokenizer", OutputRef(tokenizer.id, "tokenizer"))),
        ))
        for n in trained
    }
    funnels = {n: _funnel_stage(graph, n, *data[n], docs[n], tokenizer) for n in trained}
    runs = tuple(_run(graph, spec, tokenizer, tokens, teachers, tasks, run)
                 for run in spec.experiment.runs())
    return ExperimentStages(runs, funnels)


def _run(graph: StageGraph, spec: ExperimentSpec, tokenizer: Stage, tokens: dict[str, Stage],
         teachers: dict[str, Stage], tasks: dict[str, Stage],
         run: tuple[str, int, int]) -> RunStages:
    """Training and evaluation stages of one run. Every run uses the same evaluation tasks
    and lm-eval seed, so runs answer the same items and reports can pair them."""
    trains = _train_stages(graph, spec, tokenizer, tokens, teachers, run)
    ev = spec.evaluation
    checkpoints: list[tuple[str, OutputRef, bool]] = []
    for i, t in enumerate(trains):
        name = t.config.phase  # type: ignore[attr-defined]
        if ev.every_tokens is not None:
            checkpoints += [(f"{name}-step{step}", OutputRef(t.id, f"{SNAPSHOT}:{step}"), False)
                            for step in t.config.snapshot_steps]  # type: ignore[attr-defined]
        last = i == len(trains) - 1
        if last or ev.every_tokens is not None or ev.checkpoints == "every_stage":
            checkpoints.append((name, OutputRef(t.id, "checkpoint"), last))
    label = run[0]
    # what an evaluation reads of the spec's `evaluation` (not which checkpoints, nor the
    # decontamination of training data): changing those changes no evaluation's identity
    # the local tasks by name only: they arrive built, as the evaltasks stages' outputs
    evaluation = EvaluationSettings(**{**fields_of(ev, EvaluationSettings),
                                       "local_tasks": [t.ref() for t in ev.local_tasks]})
    # one stage scores every checkpoint of the run (one process start, one lm-eval setup);
    # each checkpoint's result is cached on its own (repro.eval.result_cache), so adding a
    # snapshot reruns the stage but scores only the new one
    stage = graph.add(Stage(
        "evaluate", _run_prefix(spec, run),
        EvaluateConfig(experiment=spec.name, checkpoints=[c for c, _, _ in checkpoints],
                       evaluation=evaluation, seed=spec.experiment.seed),
        (*((per_checkpoint("checkpoint", c), ref) for c, ref, _ in checkpoints),
         *((f"task:{name}", OutputRef(t.id, "task")) for name, t in sorted(tasks.items()))),
    ))
    evals = tuple(EvaluatedCheckpoint(c, stage, final) for c, _, final in checkpoints)
    return RunStages(label, tuple(trains), evals)


def _teachers_first(specs: list[ExperimentSpec]) -> list[ExperimentSpec]:
    """Experiments in name order, except that a teacher comes before its students."""
    by_name = {s.name: s for s in specs}
    ordered: list[ExperimentSpec] = []
    state: dict[str, str] = {}

    def visit(spec: ExperimentSpec, chain: list[str]) -> None:
        if state.get(spec.name) == "done":
            return
        if state.get(spec.name) == "visiting":
            raise GraphError("distillation teachers form a cycle: " + " -> ".join(chain + [spec.name]),
                             "training.distillation.teacher",
                             "make one experiment of the cycle distil from a model outside it",
                             chain[0] if chain else spec.name)
        state[spec.name] = "visiting"
        teacher = teacher_experiment(spec)
        if teacher == spec.name:
            raise GraphError(
                f"experiment {spec.name!r} distils from itself (teacher "
                f"'{TEACHER_EXPERIMENT_PREFIX}{teacher}'): a teacher is trained before its student",
                "training.distillation.teacher",
                "name another experiment, a checkpoint folder or a hub model as the teacher",
                spec.name)
        if teacher is not None:
            if teacher not in by_name:
                raise GraphError(
                    f"experiment {spec.name!r} distils from experiment {teacher!r} "
                    f"(training.distillation.teacher), which no compiled spec defines; "
                    f"known experiments: {sorted(by_name)}",
                    "training.distillation.teacher",
                    "add the teacher's spec to the compiled folder or fix the experiment name",
                    spec.name)
            visit(by_name[teacher], chain + [spec.name])
        state[spec.name] = "done"
        ordered.append(spec)

    for spec in sorted(specs, key=lambda s: s.name):
        visit(spec, [])
    return ordered


def _ladder_runs(specs: list[ExperimentSpec]) -> tuple[list[ExperimentSpec], dict[str, list[LadderPoint]]]:
    """The experiments to train: every spec without a ladder as written, and every ladder's
    generated runs (once each); and each ladder's points."""
    trained = [s for s in specs if s.ladder is None]
    owner = {s.name: "" for s in trained}
    points: dict[str, list[LadderPoint]] = {}
    for spec in (s for s in specs if s.ladder is not None):
        try:
            points[spec.name] = ladder_points(spec)
        except LadderError as e:
            raise GraphError(e.message, e.field, e.fix, spec.name) from e
        for p in points[spec.name]:
            if p.spec.name in owner:
                if owner[p.spec.name] == spec.name:
                    continue  # a recipe without a mixture reuses a fit run
                raise GraphError(
                    f"ladder {spec.ladder.name!r} generates experiment {p.spec.name!r}, which "  # type: ignore[union-attr]
                    f"{'another spec' if not owner[p.spec.name] else 'ladder of ' + owner[p.spec.name]} "
                    f"already defines", "ladder.name", "give the ladder another name", spec.name)
            owner[p.spec.name] = spec.name
            trained.append(p.spec)
    return trained, points


def _fit_stage(graph: StageGraph, spec: ExperimentSpec, points: list[LadderPoint],
               by_name: dict[str, ExperimentStages], predict: list[PredictTarget],
               root: Path) -> Stage:
    """The `fit` stage of a ladder: reads the final evaluation of every run."""
    ladder = spec.ladder
    assert ladder is not None
    runs: list[LadderRun] = []
    inputs: dict[str, Input] = {}
    n_of: dict[str, int] = {}
    for p in points:
        if p.spec.name not in n_of:
            try:
                n_of[p.spec.name] = ladder_n_params(p.spec, ladder.parameters, root)
            except LadderError as e:
                raise GraphError(e.message, e.field, e.fix, spec.name) from e
        for run in by_name[p.spec.name].runs:
            final = next(e for e in run.evaluate if e.final)
            inputs[f"eval:{p.spec.name}:{run.label}"] = final.metrics
            runs.append(LadderRun(experiment=p.spec.name, run=run.label, size=p.size, recipe=p.recipe,
                                  n_params=n_of[p.spec.name], tokens=p.tokens))
    return graph.add(Stage("fit", ladder.name, FitConfig(
        name=ladder.name, parameters=ladder.parameters, loss_task=ladder.loss.task,
        loss_metric=ladder.loss.metric, huber_delta=ladder.huber_delta,
        bootstrap=ladder.bootstrap, confidence=ladder.confidence, seed=ladder.seed,
        target_compute=ladder.target_compute, runs=runs,
        recipe_tokens=ladder.recipe_tokens if ladder.recipes else None, predict=predict,
    ), tuple(sorted(inputs.items()))))


def compile_graph(specs: list[ExperimentSpec],
                  predictions: dict[str, list[PredictTarget]] | None = None,
                  root: Path = Path(".")) -> StageGraph:
    """Build the stage graph of a set of experiments (pure but for reading the vocabulary
    size of a local pretrained tokenizer, see repro.plan.vocab). `predictions`: per ladder
    spec name, the reference specs its fit predicts (repro.compile.ladder.prediction_targets,
    which reads those files)."""
    limits.check(specs)  # counted from the specs, before anything is built
    graph = StageGraph()
    by_name: dict[str, ExperimentStages] = {}
    ladder_specs = [s for s in specs if s.ladder is not None]
    _unique_names(ladder_specs, lambda s: s.ladder.name, "ladder.name",  # type: ignore[union-attr]
                  "ladder", "give each ladder its own name")
    _unique_names([s for s in specs if s.report is not None], lambda s: s.report.name,  # type: ignore[union-attr]
                  "report.name", "report", "give each report its own name")
    specs, points = _ladder_runs(specs)
    graph.spec_of.update({p.spec.name: ladder for ladder, ps in points.items() for p in ps})
    for spec in _teachers_first(specs):
        teacher = teacher_experiment(spec)
        # a student distils from the teacher experiment's main run
        teachers = {teacher: by_name[teacher].main.train[-1]} if teacher else {}
        graph.building = spec.name
        by_name[spec.name] = _experiment(graph, spec, teachers)
    graph.building = ""
    for spec in sorted(specs, key=lambda s: s.name):
        if spec.report is None:
            continue
        rep = spec.report
        names = list(dict.fromkeys([rep.baseline, *rep.experiments, spec.name]))
        missing = [n for n in names if n not in by_name]
        if missing:
            raise GraphError(
                f"report {rep.name!r} in experiment {spec.name!r} compares {missing}, "
                f"which no compiled spec defines; known experiments: {sorted(by_name)}",
                "report.experiments", "add the missing specs or remove them from the report",
                spec.name)
        inputs: list[tuple[str, Input]] = []
        for n in names:
            for run in by_name[n].runs:
                key = f"{n}:{run.label}"
                for t in run.train:
                    phase = t.config.phase  # type: ignore[attr-defined]
                    inputs += [(f"train:{key}:{phase}", OutputRef(t.id, "metrics")),
                               (f"loss:{key}:{phase}", OutputRef(t.id, "loss"))]
                for e in run.evaluate:
                    inputs.append((f"eval:{key}:{e.label}", e.metrics))
                    if e.final:  # per-item samples, for the paired bootstrap
                        inputs.append((f"results:{key}:{e.label}", e.results))
            # the token ledger through the main run's last phase (replicas draw the same counts)
            inputs.append((f"ledger:{n}", OutputRef(by_name[n].main.train[-1].id, "ledger")))
            inputs += [(f"funnel:{n}:{d}", OutputRef(f.id, "metrics"))
                       for d, f in sorted(by_name[n].funnels.items())]
        report = graph.add(Stage("report", rep.name,
                                 # the spec's report, its experiments resolved to all compared
                                 ReportConfig(**{**fields_of(rep, ReportSpec), "experiments": names}),
                                 tuple(inputs)))
        graph.origin[report.id] = spec.name
    for spec in ladder_specs:
        fit = _fit_stage(graph, spec, points[spec.name], by_name,
                         (predictions or {}).get(spec.name, []), root)
        graph.origin[fit.id] = spec.name
    check_outputs(graph)
    graph.names = name_stages(graph)
    return graph


def _unique_names(specs: list[ExperimentSpec], name_of, field_: str, what: str, fix: str) -> None:
    """Refuse a report or ladder name that two specs define (both would write one folder)."""
    seen: dict[str, str] = {}
    for spec in sorted(specs, key=lambda s: s.name):
        name = name_of(spec)
        if name in seen:
            raise GraphError(f"{what} name {name!r} is also defined by experiment {seen[name]!r}; "
                             f"both would write the same folder", field_, fix, spec.name)
        seen[name] = spec.name
