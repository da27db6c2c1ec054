"""Stage configs read params.yaml, which `dvc exp run -S` edits after the spec was
validated: their fields carry the same limits as the spec's."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from repro.compile.render import params_sections
from repro.compile.specs import compile_files
from repro.spec.base import MAX_SEED, MAX_STEPS
from repro.stages import kinds
from repro.sweep.values import ValueProblem, validate_overrides
from tests.spec.test_limits import _unbounded_ints

REPO = Path(__file__).resolve().parents[2]


def _seed_fields() -> list[tuple[str, type[BaseModel], str]]:
    found = []
    for kind, model in sorted((k, d.config) for k, d in kinds().items()):
        for name in model.model_fields:
            if name.endswith("seed"):
                found.append((kind, model, name))
    return found


SEED_FIELDS = _seed_fields()


def test_stage_configs_have_seeds() -> None:
    assert {kind for kind, _, _ in SEED_FIELDS} >= {"train", "evaluate", "report"}


@pytest.mark.parametrize(("kind", "model", "name"), SEED_FIELDS,
                         ids=[f"{k}.{n}" for k, _, n in SEED_FIELDS])
def test_seed_out_of_range_is_refused_from_params(kind, model, name) -> None:
    # only the seed's own error matters: the other (missing) fields fail too
    for bad in (MAX_SEED + 1, 2**70, -1):
        with pytest.raises(ValidationError) as info:
            model.model_validate({name: bad})
        assert any(err["loc"][:1] == (name,) for err in info.value.errors()), (kind, bad)
    with pytest.raises(ValidationError) as info:
        model.model_validate({name: MAX_SEED})
    assert not any(err["loc"][:1] == (name,) for err in info.value.errors())


# ------------------------------------------------------------ every integer bounded


def _models_within(tp: typing.Any, found: set[type[BaseModel]]) -> None:
    """Every model reachable from `tp`, through Annotated, unions, containers and fields."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp not in found:
            found.add(tp)
            for f in tp.model_fields.values():
                _models_within(f.annotation, found)
        return
    for arg in typing.get_args(tp):
        _models_within(arg, found)


def _config_models() -> list[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    for model in (d.config for d in kinds().values()):
        _models_within(model, found)
    return sorted(found, key=lambda m: m.__name__)


def test_every_integer_field_of_every_stage_config_has_an_upper_limit() -> None:
    models = _config_models()
    # the walk reaches the configs' own nested models, not only the registered ones
    assert {"ModelSpec", "ScheduleSegment", "LadderRun", "PredictTarget"} <= {
        m.__name__ for m in models}
    unbounded = [f"{m.__name__}.{name}" for m in models
                 for name, f in m.model_fields.items()
                 if _unbounded_ints(f.annotation, tuple(f.metadata))]
    assert unbounded == []


@pytest.fixture(scope="module")
def tiny_params() -> dict:
    graph = compile_files([REPO / "specs/ci/tiny.yaml"], REPO / "specs/ci", REPO)
    return {name: section for sections in params_sections(graph).values()  # every file's
            for name, section in sections.items()}


def test_a_sweep_value_beyond_the_step_limit_is_refused_before_it_is_queued(tiny_params) -> None:
    train = next(s for s in tiny_params if s.startswith("train-"))
    key = f"{train}.steps"
    validate_overrides(tiny_params, {key: MAX_STEPS}, REPO)  # the limit itself passes
    with pytest.raises(ValueProblem, match="above the limit of 1,000,000,000") as e:
        validate_overrides(tiny_params, {key: 10**18}, REPO)
    assert e.value.key == key and e.value.value == 10**18


# ------------------------------------------------- one definition per group of settings


def test_stage_configs_extend_the_spec_models_instead_of_copying_them() -> None:
    """Each group of settings is declared once, in repro.spec.schema, with one default: the
    train config extends TrainingSettings without declaring any of its fields again, the
    report config is the spec's ReportSpec, and the evaluate config holds the part of the
    spec's evaluation that an evaluation reads."""
    from repro.spec.schema import (
        EvaluationSettings,
        EvaluationSpec,
        ReportSpec,
        TrainingSettings,
        TrainingSpec,
    )
    from repro.stages.configs import EvaluateConfig, ReportConfig, TrainConfig

    assert issubclass(TrainConfig, TrainingSettings) and issubclass(TrainingSpec, TrainingSettings)
    redeclared = set(vars(TrainConfig).get("__annotations__", {})) & set(TrainingSettings.model_fields)
    assert redeclared == set()
    for name in TrainingSettings.model_fields:  # the spec's defaults (monitor on, checkpoints)
        assert TrainConfig.model_fields[name].default == TrainingSpec.model_fields[name].default, name
    assert issubclass(ReportConfig, ReportSpec) and not vars(ReportConfig).get("__annotations__")
    assert issubclass(EvaluationSpec, EvaluationSettings)
    assert EvaluateConfig.model_fields["evaluation"].annotation is EvaluationSettings
    unread = set(EvaluationSpec.model_fields) - set(EvaluationSettings.model_fields)
    assert unread == {"checkpoints", "decontamination", "every_tokens"}
