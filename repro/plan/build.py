"""Assemble one experiment's plan from its spec, the compiled stage graph (stage ids, so
committed metrics of stages that already ran are found; evaluated checkpoints and snapshots
counted as the compiler creates them) and the committed measurements. Reads files, runs
nothing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from repro import paths
from repro.compile.errors import GraphError
from repro.compile.graph import compile_graph
from repro.compile.specs import locate
from repro.plan import measured
from repro.plan.curation import DatasetCuration, plan_dataset
from repro.plan.disk import DiskPlan, plan_disk
from repro.plan.evaluation import EvaluationPlan, plan_evaluation
from repro.plan.quantity import Q, total
from repro.plan.training import DEFAULT_MFU, DEFAULT_PEAK_TFLOPS, TrainingPlan, plan_training
from repro.spec import schema as S
from repro.spec.load import SpecError
from repro.spec.vocab import vocab_size


@dataclass(frozen=True)
class ExperimentPlan:
    experiment: str
    spec_file: str
    vocab_size: int | None
    vocab_basis: str
    curation: list[DatasetCuration]
    training: TrainingPlan
    evaluation: EvaluationPlan
    disk: DiskPlan
    measurements: dict
    """Where the per-step costs come from: the benchmark's command, date and machine."""
    notes: list[str] = field(default_factory=list)

    @property
    def curation_cpu_hours(self) -> Q:
        return total(c.cpu_hours for c in self.curation)

    def as_dict(self) -> dict:
        t, e = self.training, self.evaluation
        return {
            "experiment": self.experiment, "spec": self.spec_file,
            "vocab_size": self.vocab_size, "vocab_basis": self.vocab_basis,
            "measurements": self.measurements,
            "curation": {"datasets": [_plain(c) for c in self.curation],
                         "cpu_hours": self.curation_cpu_hours.as_dict()},
            "training": _plain(t) | {
                "tokens_per_run": t.tokens_per_run, "flops_per_run": t.flops_per_run,
                "flops": t.flops, "gpu_hours": t.gpu_hours, "cpu_core_hours": t.cpu_core_hours,
                "stages": [_plain(s) | {"total": s.total} for s in t.phases]},
            "evaluation": _plain(e) | {"flops_per_checkpoint": e.flops_per_checkpoint.as_dict(),
                                       "flops": e.flops.as_dict(),
                                       "gpu_hours": e.flops.scale(
                                           1 / (t.peak_flops * t.mfu * 3600)).as_dict()},
            "disk": {"parts": {k: v.as_dict() for k, v in self.disk.parts.items()},
                     "tokens": {k: v.as_dict() for k, v in self.disk.token_counts.items()},
                     "total": self.disk.total.as_dict()},
            "notes": self.notes,
        }


def _plain(obj):
    """Dataclass -> JSON-ready dict, quantities as their as_dict()."""
    if isinstance(obj, Q):
        return obj.as_dict()
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _graph_view(spec: S.ExperimentSpec):
    """The stage graph of this experiment alone. Its report (which may compare experiments
    not given) and a teacher that is another experiment are left out: neither changes the
    curate, tokenize or evaluate stages counted here."""
    tr = spec.training
    if tr.distillation is not None and tr.distillation.teacher.startswith("experiment:"):
        tr = tr.model_copy(update={"distillation": None})
    return compile_graph([spec.model_copy(update={"report": None, "training": tr})])


def plan_spec(spec: S.ExperimentSpec, spec_file: str, *, root: Path = Path("."),
              mfu: float = DEFAULT_MFU, peak_tflops: float = DEFAULT_PEAK_TFLOPS,
              others: dict[str, S.ExperimentSpec] | None = None) -> ExperimentPlan:
    """The plan of one spec; SpecError, located in `spec_file`, when its graph cannot be
    built (e.g. above repro.compile.limits, checked before anything is built)."""
    try:
        graph = _graph_view(spec)
    except GraphError as e:
        locate(e, {spec.name: Path(spec_file)})
        raise SpecError([e if e.file else e.located(spec_file)]) from None
    stages = list(graph.stages.values())
    ids = {(s.kind, getattr(s.config, "dataset", None)): s.id for s in stages}
    costs = measured.step_costs(root)
    runs = measured.builtin_runs(root)
    notes: list[str] = []
    if costs is None:
        notes.append(f"no {measured.STEP_COSTS}: curation costs unknown; run "
                     "`python -m bench.curation_steps`")

    curation = []
    for name, ds in sorted(spec.datasets.items()):
        sid = ids[("curate", name)]
        curation.append(plan_dataset(name, ds, measured.stage_metrics(root, sid),
                                     str(paths.stage_metrics(sid)), runs, costs, root))
        notes += curation[-1].notes

    vocab, vocab_basis = vocab_size(spec.tokenizer, root)
    if vocab is None:
        notes.append(f"{vocab_basis}: embedding and LM head left out of every count (lower bounds)")
    training = plan_training(spec, vocab or 0, mfu=mfu, peak_tflops=peak_tflops,
                             cpu_peak_flops=(costs or {}).get("cpu_fp32_peak_flops_per_core"),
                             others=others)

    trained = sorted({n for s in spec.training.stages for n in s.mixture})
    tok_metrics = {n: measured.stage_metrics(root, ids[("tokenize", n)]) for n in trained}
    bpt = {n: m["bytes_per_token"] for n, m in tok_metrics.items() if m and m.get("bytes_per_token")}
    # one evaluate stage per run scores every checkpoint of the run
    evaluated = sum(len(s.config.checkpoints) for s in stages if s.kind == "evaluate")  # type: ignore[attr-defined]
    snapshots = sum(len(s.config.snapshot_steps) for s in stages if s.kind == "train")
    evaluation = plan_evaluation(spec, vocab or 0, evaluated,
                                 {c.name: c.kept_docs for c in curation},
                                 {c.name: c.kept_bytes for c in curation}, bpt)
    disk = plan_disk(spec, curation, training, evaluation, snapshots, tok_metrics, bpt)
    measurements = {k: (costs or {}).get(k) for k in ("generated_by", "measured_at", "machine")}
    measurements["file"] = str(measured.STEP_COSTS) if costs else None
    return ExperimentPlan(spec.name, spec_file, vocab, vocab_basis, curation, training,
                          evaluation, disk, measurements,
                          list(dict.fromkeys(notes + training.notes + evaluation.notes)))
