"""Trial values are checked with the stages' own configs, and written so that DVC's `-S`
(Hydra's override grammar) reads back the same type and value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from repro.compile.render import params_sections
from repro.compile.specs import compile_files
from repro.sweep.values import (
    ValueProblem,
    check_passable,
    override_text,
    overrides,
    stage_kind,
    validate_overrides,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_params() -> dict:
    graph = compile_files([REPO / "specs/ci/tiny.yaml"], REPO / "specs/ci", REPO)
    return {name: section for sections in params_sections(graph).values()  # every file's
            for name, section in sections.items()}


def _train(params: dict) -> str:
    return next(s for s in params if s == "train-ci-tiny-stable")


@pytest.mark.parametrize("value", [0.0, 1e-05, 0.002, 3.0, -1.5, 2.5e-08, 1e22, 0, 7, -3,
                                   True, False, "cosine", "a,b", "two words", "true", "1e-3"])
def test_overrides_read_back_as_the_same_value_and_type(value):
    from dvc.utils.hydra import to_hydra_overrides

    (parsed,) = to_hydra_overrides([override_text("stage-x-1.field", value)])
    assert parsed.key_or_group == "stage-x-1.field"
    back = parsed.value()
    assert back == value and type(back) is type(value)


def test_values_dvc_cannot_carry_are_refused():
    for bad in (float("inf"), float("nan"), "it's", "back\\slash"):
        with pytest.raises(ValueError):
            check_passable(bad)
    check_passable("fine")


def test_every_key_of_a_parameter_gets_its_value():
    keys = {"lr": ("a.optimizer.lr", "b.optimizer.lr"), "wd": ("a.optimizer.weight_decay",)}
    assert overrides({"lr": 0.01, "wd": 0.0}, keys) == {
        "a.optimizer.lr": 0.01, "b.optimizer.lr": 0.01, "a.optimizer.weight_decay": 0.0}


def test_stage_kind_is_the_id_prefix():
    assert stage_kind("train-qs-lr-stable") == "train"


def test_valid_values_pass_and_leave_params_untouched(tiny_params):
    train = _train(tiny_params)
    before = yaml.safe_dump(tiny_params)
    validate_overrides(tiny_params, {f"{train}.optimizer.lr": 0.01,
                                     f"{train}.schedule.warmup_steps": 1}, REPO)
    assert yaml.safe_dump(tiny_params) == before


def test_a_value_the_stage_refuses_names_its_key(tiny_params):
    train = _train(tiny_params)
    sets = {f"{train}.optimizer.weight_decay": 0.1, f"{train}.optimizer.lr": -0.004}
    with pytest.raises(ValueProblem, match="greater than 0") as e:
        validate_overrides(tiny_params, sets, REPO)
    # pydantic reports `optimizer.adamw.lr` (the union's tag); the key is still found
    assert e.value.key == f"{train}.optimizer.lr" and e.value.value == -0.004
